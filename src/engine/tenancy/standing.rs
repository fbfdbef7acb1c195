//! Shared services as a whole: what keeps running (and costs) once a run is gone, and
//! their removal of their own (`down --shared`), refused while a run holds a live lease.

use time::OffsetDateTime;

use super::sweep;
use crate::api::{Client, Service, ServiceState};
use crate::cli::{ApiArgs, DownArgs};
use crate::connection::Connection;
use crate::engine::cost;
use crate::engine::teardown::{self, Force, Options, Target};
use crate::error::{Error, Result, Status};
use crate::manifest::Shared;
use crate::progress::Reporter;
use crate::settings;
use crate::tags;

/// A shared service as the API shows it: its real plan, and that plan's price.
pub struct Standing {
    pub name: String,
    pub service_type: String,
    pub plan: String,
    pub state: ServiceState,
    pub hourly_usd: Option<f64>,
    /// Runs holding a live lease on it.
    pub live_leases: Vec<String>,
}

/// The listed services among `names`, with their prices (from the disk cache while
/// it is fresh).
pub async fn standing(
    client: &Client,
    project: &str,
    listed: &[Service],
    names: &[String],
) -> Vec<Standing> {
    let now = client.server_time().unwrap_or_else(OffsetDateTime::now_utc);
    let found: Vec<&Service> = names
        .iter()
        .filter_map(|n| listed.iter().find(|s| &s.service_name == n))
        .collect();
    let keys: Vec<(String, String, String)> = found
        .iter()
        .map(|s| (s.service_type.clone(), s.plan.clone(), s.cloud_name.clone()))
        .collect();
    let prices = cost::prices_of(client, project, &keys).await;
    found
        .into_iter()
        .zip(prices)
        .map(|(s, price)| Standing {
            name: s.service_name.clone(),
            service_type: s.service_type.clone(),
            plan: s.plan.clone(),
            state: s.state.clone(),
            hourly_usd: price.usd,
            live_leases: live_leases(s, now),
        })
        .collect()
}

/// The runs whose lease on `svc` has not expired on the API's clock.
pub fn live_leases(svc: &Service, now: OffsetDateTime) -> Vec<String> {
    let listed = std::slice::from_ref(svc);
    sweep::leases(listed, now)
        .into_iter()
        .filter(|l| !l.expired)
        .map(|l| l.run_id)
        .collect()
}

/// After `down`: the shared services that keep running, what they cost, and how to
/// stop them.
pub fn say_standing(standing: &[Standing], project: &str, sandbox: bool, reporter: &Reporter) {
    let running: Vec<&Standing> = standing.iter().filter(|s| s.state.is_billed()).collect();
    if running.is_empty() {
        return;
    }
    let mut lines = vec![
        "shared services keep running after this run, billed while powered on whether or not a run uses them:".to_string(),
    ];
    for s in &running {
        lines.push(format!(
            "  {} ({} {}): {}, {}",
            s.name,
            s.service_type,
            s.plan,
            s.hourly_usd
                .map_or("price unknown".to_string(), |p| format!("{p:.3} USD/h")),
            match s.live_leases.len() {
                0 => "no run holds a lease".to_string(),
                n => format!("{n} run(s) hold a lease"),
            }
        ));
    }
    if let Some(total) = running.iter().map(|s| s.hourly_usd).sum::<Option<f64>>() {
        lines.push(format!(
            "  together {total:.3} USD/h, {:.2} USD per day",
            total * 24.0
        ));
    }
    lines.push(format!(
        "  `aiven-ephemeral reap{} --project {project}` powers them off once no run has used them for --shared-idle (24h); `{}` deletes them now",
        if sandbox { " --sandbox" } else { "" },
        remove_command(
            project,
            sandbox,
            &running.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
        )
    ));
    reporter.info(lines.join("\n"));
}

/// The command that deletes these shared services.
pub fn remove_command(project: &str, sandbox: bool, names: &[&str]) -> String {
    format!(
        "aiven-ephemeral down --shared{} --project {project}{}",
        if sandbox { " --sandbox" } else { "" },
        names
            .iter()
            .map(|n| format!(" --service {n}"))
            .collect::<String>()
    )
}

/// `down --shared`: deletes the shared services this tool created that `--service`
/// names, or else the manifest's `shared: true` ones. Nothing is deleted while one of
/// them is refused: not created by this tool as shared, or leased by a live run
/// (unless `--force`).
pub async fn down_shared(
    global: &ApiArgs,
    args: &DownArgs,
    reporter: &Reporter,
    signals: &crate::signals::Signals,
) -> Result<Status> {
    let manifest = if args.services.is_empty() {
        Some(crate::manifest::load(&args.file)?)
    } else {
        crate::manifest::load_if_present(&args.file)?
    };
    let names: Vec<String> = match (&manifest, args.services.is_empty()) {
        (Some(m), true) => {
            for spec in &m.services {
                if let Some(Shared::Existing(name)) = &spec.shared {
                    reporter.info(format!(
                        "{name} (services.{}): a service you manage; never deleted by aiven-ephemeral",
                        spec.key
                    ));
                }
            }
            m.services
                .iter()
                .filter(|s| matches!(s.shared, Some(Shared::Managed)))
                .map(|s| s.service_name(&m.name_prefix, "x").map_err(Error::usage))
                .collect::<Result<_>>()?
        }
        _ => args.services.clone(),
    };
    if names.is_empty() {
        return Err(Error::usage_hint(
            format!(
                "{} has no `shared: true` service: nothing to delete",
                args.file.display()
            ),
            "name the services with --service NAME",
        ));
    }
    let project = settings::project(global, manifest.as_ref())?;
    let conn = if args.sandbox {
        let (_, state_dir) = crate::state::paths(args.state.state_file.as_deref());
        Connection::sandbox(global, &state_dir).await?
    } else {
        Connection::real(global, None).await?
    };
    let listed = conn.list_services(&project).await?;
    let now = conn
        .client
        .server_time()
        .unwrap_or_else(OffsetDateTime::now_utc);
    let mut targets = Vec::new();
    let (mut not_ours, mut leased) = (Vec::new(), Vec::new());
    for name in &names {
        let Some(svc) = listed.iter().find(|s| &s.service_name == name) else {
            reporter.info(format!(
                "{name}: not in project {project}; nothing to delete"
            ));
            continue;
        };
        if svc.tag(tags::TAG_SHARED).is_none() {
            not_ours.push(format!(
                "{name} is not a shared service aiven-ephemeral created (no {} tag); it is left alone",
                tags::TAG_SHARED
            ));
            continue;
        }
        let live = live_leases(svc, now);
        if !live.is_empty() && !args.force {
            leased.push(format!(
                "{name}: run(s) {} hold a live lease on it",
                live.join(", ")
            ));
            continue;
        }
        if !live.is_empty() {
            reporter.warn(format!(
                "{name}: --force: deleting it under run(s) {}, which lose everything in it",
                live.join(", ")
            ));
        }
        targets.push(Target::existing(name.clone()));
    }
    if !not_ours.is_empty() || !leased.is_empty() {
        conn.close().await;
        let hint = [
            (!not_ours.is_empty()).then_some(
                "a service you manage is yours to delete (the console, or `avn service terminate NAME`)",
            ),
            (!leased.is_empty()).then_some(
                "wait for those runs to end (`aiven-ephemeral reap` releases expired leases), or pass --force to delete it under them",
            ),
        ];
        return Err(Error::usage_hint(
            format!(
                "not deleting anything: {}",
                not_ours
                    .iter()
                    .chain(&leased)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            hint.into_iter().flatten().collect::<Vec<_>>().join("; "),
        ));
    }
    let options = Options {
        force: Force::No,
        owner: None,
        budget: settings::teardown_budget(&args.teardown),
        releases: Vec::new(),
    };
    let report = teardown::teardown(
        &conn.client,
        &project,
        targets,
        options,
        reporter,
        Some(signals),
    )
    .await;
    conn.close().await;
    if !report.complete() {
        return Err(Error::TeardownIncomplete {
            names: report.unconfirmed(),
            command: remove_command(
                &project,
                args.sandbox,
                &report
                    .unconfirmed()
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            ),
        });
    }
    reporter.info(format!(
        "deleted {} shared service(s) in project {project}",
        report.deleted.len()
    ));
    Ok(Status::Success)
}
