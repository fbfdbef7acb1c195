//! `reap`'s work: the backstop for runs nothing tore down (SIGKILL, a lost runner). Deletes
//! this tool's services whose expiry has passed (or that are older than
//! `--older-than`), measured on the API's clock; never a service without this tool's
//! tags; never one tagged `aiven-ephemeral-keep=true`; a termination-protected one only
//! with `--force`. Judge each service, sweep the project (nothing changed yet), then
//! act; the command prints the sweep in between.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::teardown::{self, Force, Options, Target};
use super::tenancy::sweep;
use crate::api::{Client, Service};
use crate::connection::Connection;
use crate::error::{Error, Result, Status};
use crate::progress::Reporter;
use crate::settings::{self, Backend};
use crate::tags;

#[derive(Debug, Serialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Expired,
    TooOld,
    Live,
    Kept,
    Protected,
    /// A run's lease on a shared service expired: its tenancy is released.
    LeaseExpired,
    /// A shared service without a live lease for `--shared-idle`: powered off (or
    /// deleted with `--delete-idle-shared`).
    Idle,
    /// A shared service that keeps running (and costing): not idle for
    /// `--shared-idle` yet. `expires` says when it would be powered off.
    Running,
    /// A seed template nobody cloned for `--templates-unused-for`: dropped.
    UnusedTemplate,
    /// What a failed seed build left (a half-built template, a seed role): dropped.
    FailedSeed,
}

/// A service, lease or template, and what reap makes of it.
#[derive(Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub run: String,
    pub expires: String,
    pub created: String,
    pub verdict: Verdict,
}

pub fn judge(
    svc: &Service,
    now: OffsetDateTime,
    older_than: Option<Duration>,
    force: bool,
) -> Verdict {
    let expired = svc
        .tag(tags::TAG_EXPIRES)
        .and_then(tags::parse_rfc3339)
        .is_some_and(|t| t <= now);
    let too_old = older_than.is_some_and(|age| {
        svc.create_time
            .as_deref()
            .and_then(tags::parse_rfc3339)
            .is_some_and(|c| c + age <= now)
    });
    if !(expired || too_old) {
        Verdict::Live
    } else if svc.tag(tags::TAG_KEEP) == Some("true") {
        Verdict::Kept
    } else if svc.termination_protection && !force {
        Verdict::Protected
    } else if expired {
        Verdict::Expired
    } else {
        Verdict::TooOld
    }
}

/// The API this reap talks to, and the project it sweeps.
pub struct Reaping {
    conn: Connection,
    pub project: String,
}

/// What a sweep found: a row per service, lease and template, and what acting on them
/// touches.
pub struct Sweep {
    pub rows: Vec<Row>,
    expired: Vec<sweep::Lease>,
    idle: Vec<sweep::Idle>,
}

/// Lists the project once and judges everything in it; changes nothing (a dry run's
/// template look included).
pub async fn sweep(args: &settings::Reap, reporter: &Reporter) -> Result<(Reaping, Sweep)> {
    let project = project(args)?;
    let conn = Connection::open(&args.api, args.backend, &args.state.dir).await?;
    let listed = conn.list_services(&project).await?;
    // The API's clock, from this very list call: runners' clocks drift.
    let now = conn
        .client
        .server_time()
        .unwrap_or_else(OffsetDateTime::now_utc);
    // Shared services: leases (live ones are listed, expired ones released), idle
    // services, unused templates.
    let (expired, live): (Vec<_>, Vec<_>) = sweep::leases(&listed, now)
        .into_iter()
        .partition(|l| l.expired);
    let idle = sweep::idle(&listed, now, args.shared_idle);
    let mut rows = rows(&listed, now, args, (&expired, &live), &idle);
    rows.extend(template_rows(&conn.client, &project, &listed, now, args, reporter).await);
    rows.sort_by(|a, b| (&a.name, &a.run).cmp(&(&b.name, &b.run)));
    Ok((
        Reaping { conn, project },
        Sweep {
            rows,
            expired,
            idle,
        },
    ))
}

/// `--project`; in the sandbox, else the run's of the state file (the sandbox of a state
/// directory serves the project its run was made in); else the manifest's.
fn project(args: &settings::Reap) -> Result<String> {
    let manifest = crate::manifest::load_if_present(&args.manifest)?;
    let recorded = match args.backend {
        Backend::Sandbox if args.api.project.is_none() => crate::state::read(&args.state.file)?,
        _ => None,
    };
    match recorded {
        Some(s) => Ok(s.project),
        None => args.api.project(manifest.as_ref()),
    }
}

/// A row for each service of this tool, each lease (expired, live), each idle shared
/// service and each shared one that keeps running.
fn rows(
    listed: &[Service],
    now: OffsetDateTime,
    args: &settings::Reap,
    (expired, live): (&[sweep::Lease], &[sweep::Lease]),
    idle: &[sweep::Idle],
) -> Vec<Row> {
    let mut rows: Vec<Row> = listed
        .iter()
        .filter(|s| tags::is_ours(&s.tags))
        .map(|s| Row {
            name: s.service_name.clone(),
            run: s.tag(tags::TAG_RUN).unwrap_or("").to_string(),
            expires: s.tag(tags::TAG_EXPIRES).unwrap_or("-").to_string(),
            created: s.create_time.clone().unwrap_or_default(),
            verdict: judge(s, now, args.older_than, args.force),
        })
        .collect();
    for (lease, verdict) in expired
        .iter()
        .map(|l| (l, Verdict::LeaseExpired))
        .chain(live.iter().map(|l| (l, Verdict::Live)))
    {
        rows.push(Row {
            name: lease.service.clone(),
            run: lease.run_id.clone(),
            expires: lease.expires.clone(),
            created: String::new(),
            verdict,
        });
    }
    for i in idle {
        rows.push(Row {
            name: i.name.clone(),
            run: "-".into(),
            expires: format!("idle since {}", i.since),
            created: String::new(),
            verdict: Verdict::Idle,
        });
    }
    for (name, off_at) in sweep::standing(listed, now, args.shared_idle) {
        rows.push(Row {
            name,
            run: "-".into(),
            expires: match off_at {
                None => "kept running".into(),
                Some(at) => format!("powered off after {at} unless used"),
            },
            created: String::new(),
            verdict: Verdict::Running,
        });
    }
    rows
}

/// The seed templates nobody clones (and failed builds' leftovers) in the shared
/// PostgreSQL services this tool created; `--dry-run` is passed on.
async fn template_rows(
    client: &Client,
    project: &str,
    listed: &[Service],
    now: OffsetDateTime,
    args: &settings::Reap,
    reporter: &Reporter,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for svc in listed.iter().filter(|s| {
        s.tag(tags::TAG_SHARED).is_some()
            && crate::catalogue::get(&s.service_type)
                .is_some_and(|t| t.sharing == Some(crate::catalogue::Sharing::Postgres))
    }) {
        match sweep::templates(
            client,
            project,
            &svc.service_name,
            now,
            args.templates_unused_for,
            args.dry_run,
        )
        .await
        {
            Ok(found) => rows.extend(
                found
                    .unused
                    .into_iter()
                    .map(|t| (t, Verdict::UnusedTemplate))
                    .chain(found.failed.into_iter().map(|t| (t, Verdict::FailedSeed)))
                    .map(|(t, verdict)| Row {
                        name: format!("{}/{t}", svc.service_name),
                        run: "-".into(),
                        expires: "-".into(),
                        created: String::new(),
                        verdict,
                    }),
            ),
            Err(e) => reporter.warn(format!(
                "{}: cannot look at its seed templates: {e}",
                svc.service_name
            )),
        }
    }
    rows
}

/// Deletes what the sweep doomed, releases expired tenancies, powers off (or deletes)
/// idle shared services, and says what it did; with `--dry-run`, only what it would.
pub async fn act(
    reaping: Reaping,
    sweep: Sweep,
    args: &settings::Reap,
    reporter: &Reporter,
) -> Result<Status> {
    let Reaping { conn, project } = reaping;
    let Sweep {
        rows,
        expired,
        idle,
    } = sweep;
    let doomed: Vec<&Row> = rows
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Expired | Verdict::TooOld))
        .collect();
    let protected: Vec<String> = rows
        .iter()
        .filter(|r| r.verdict == Verdict::Protected)
        .map(|r| r.name.clone())
        .collect();
    for r in rows.iter().filter(|r| r.verdict == Verdict::Kept) {
        reporter.info(format!(
            "{}: expired but tagged {}=true; kept",
            r.name,
            tags::TAG_KEEP
        ));
    }
    let templates = rows
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::UnusedTemplate | Verdict::FailedSeed))
        .count();
    let idle_action = if args.delete_idle_shared {
        "delete"
    } else {
        "power off"
    };
    if args.dry_run {
        reporter.info(format!(
            "dry run: would delete {} service(s), release {} expired tenancy(ies), {idle_action} {} idle shared service(s) and drop {templates} seed template(s); nothing was changed",
            doomed.len(),
            expired.len(),
            idle.len(),
        ));
        conn.close().await;
        return Ok(Status::Success);
    }
    let targets: Vec<Target> = doomed
        .iter()
        .map(|r| Target::existing(r.name.clone()))
        .collect();
    let force = if args.force { Force::Ours } else { Force::No };
    let options = Options {
        force,
        owner: None,
        budget: args.budget,
        releases: expired
            .iter()
            .map(|l| sweep::release_of(&l.service, &l.run_id))
            .collect(),
    };
    let mut report =
        teardown::teardown(&conn.client, &project, targets, options, reporter, None).await;
    let idled = idle_off(
        &conn.client,
        &project,
        &idle,
        args,
        reporter,
        &mut report.failed,
    )
    .await;
    conn.close().await;
    let deleted = report
        .deleted
        .iter()
        .filter(|n| doomed.iter().any(|d| &d.name == *n))
        .count();
    reporter.info(format!(
        "reaped {deleted} service(s), released {} expired tenancy(ies), {} {idled} idle shared service(s), dropped {templates} seed template(s); {} protected, {} failed",
        report.deleted.len() - deleted,
        if args.delete_idle_shared { "deleted" } else { "powered off" },
        protected.len() + report.protected.len(),
        report.failed.len()
    ));
    outcome(&project, &protected, &report)
}

/// Success, or what is left (unconfirmed, or protected) and the command that finishes it.
fn outcome(project: &str, protected: &[String], report: &teardown::Report) -> Result<Status> {
    let mut unfinished = report.unconfirmed();
    unfinished.extend(protected.iter().cloned());
    if unfinished.is_empty() {
        Ok(Status::Success)
    } else {
        unfinished.sort();
        Err(Error::TeardownIncomplete {
            names: unfinished,
            command: format!(
                "aiven-ephemeral reap --project {project}{}",
                if protected.is_empty() && report.protected.is_empty() {
                    ""
                } else {
                    " --force"
                }
            ),
        })
    }
}

/// Powers off (or, with `--delete-idle-shared`, deletes) the idle shared services;
/// how many it did, the failures into `failed`.
async fn idle_off(
    client: &Client,
    project: &str,
    idle: &[sweep::Idle],
    args: &settings::Reap,
    reporter: &Reporter,
    failed: &mut Vec<(String, String)>,
) -> usize {
    let mut idled = 0;
    for i in idle {
        let done = if args.delete_idle_shared {
            client
                .delete_service(project, &i.name, crate::api::Retry::Standard)
                .await
        } else {
            client.set_powered(project, &i.name, false).await
        };
        match done {
            Ok(()) => {
                idled += 1;
                reporter.info(format!(
                    "{}: unused since {} (over --shared-idle {}); {}",
                    i.name,
                    i.since,
                    humantime::format_duration(args.shared_idle),
                    if args.delete_idle_shared {
                        "deleted".to_string()
                    } else {
                        format!(
                            "powered off: Aiven bills nothing while it is off, and deletes services off for more than 180 days; {}",
                            i.loses()
                        )
                    }
                ))
            }
            Err(e) => failed.push((i.name.clone(), e.to_string())),
        }
    }
    idled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(tags: &[(&str, &str)], created: &str, protected: bool) -> Service {
        serde_json::from_value(serde_json::json!({
            "service_name": "s", "service_type": "pg", "state": "RUNNING",
            "create_time": created, "termination_protection": protected,
            "tags": tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
        }))
        .unwrap()
    }

    #[test]
    fn verdicts() {
        let now = tags::parse_rfc3339("2026-11-22T12:00:00Z").unwrap();
        let base = [(tags::TAG_RUN, "r"), (tags::TAG_OWNER, "o")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut t = base.to_vec();
            t.extend_from_slice(extra);
            t
        };
        let expired = with(&[(tags::TAG_EXPIRES, "2026-11-22T11:00:00Z")]);
        let live = with(&[(tags::TAG_EXPIRES, "2026-11-22T13:00:00Z")]);
        assert_eq!(
            judge(
                &svc(&expired, "2026-11-22T10:00:00Z", false),
                now,
                None,
                false
            ),
            Verdict::Expired
        );
        assert_eq!(
            judge(&svc(&live, "2026-11-22T10:00:00Z", false), now, None, false),
            Verdict::Live
        );
        assert_eq!(
            judge(
                &svc(&live, "2026-11-22T10:00:00Z", false),
                now,
                Some(Duration::from_secs(3600)),
                false
            ),
            Verdict::TooOld
        );
        assert_eq!(
            judge(
                &svc(&expired, "2026-11-22T10:00:00Z", true),
                now,
                None,
                false
            ),
            Verdict::Protected
        );
        assert_eq!(
            judge(
                &svc(&expired, "2026-11-22T10:00:00Z", true),
                now,
                None,
                true
            ),
            Verdict::Expired
        );
        let kept = with(&[
            (tags::TAG_EXPIRES, "2026-11-22T11:00:00Z"),
            (tags::TAG_KEEP, "true"),
        ]);
        assert_eq!(
            judge(&svc(&kept, "2026-11-22T10:00:00Z", false), now, None, false),
            Verdict::Kept
        );
    }
}
