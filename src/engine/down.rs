//! Down: the teardown phase for a run this process did not bring up. Driven by the state
//! file when there is one (only services carrying the run's owner tag are deleted), else
//! by `--run-id` through the tags (every service tagged with that run). Idempotent: a
//! torn-down state file stays, and a second `down` is a no-op.

use std::time::{Duration, Instant};

use super::locate::{Found, Purpose, RunKey, find};
use super::teardown::{self, Force, Options, Target};
use super::tenancy::Release;
use super::{Engine, record_teardown};
use crate::api::{REQUEST_TIMEOUT, Service, Writes};
use crate::connection::Connection;
use crate::error::{Error, Result, Status};
use crate::progress::Reporter;
use crate::sandbox_process::Stopped;
use crate::settings;
use crate::signals::Signals;
use crate::state::{self, RunStatus, ServiceStatus, State, StateLock, Store, state_flag};
use crate::tags;

impl Engine {
    /// Deletes a run's services. Signals never stop it; each is answered with what is
    /// still being deleted.
    pub async fn down(&self, args: &settings::Down) -> Result<Status> {
        if let Some(services) = &args.shared {
            return super::down_shared::down_shared(
                &self.global,
                args,
                services,
                self.reporter,
                &self.signals,
            )
            .await;
        }
        let found = find(&args.run, Purpose::Down)?;
        let result = down(&self.global, args, &found, self.reporter, &self.signals).await;
        if args.comment {
            self.comment_closed(args, &found, &result).await;
        }
        result
    }

    /// `down --comment`: the pull request's comment says the run is deleted (or what is
    /// left), with its total cost. Only an existing comment is edited: a run that never
    /// commented gets none on its way out.
    async fn comment_closed(&self, args: &settings::Down, found: &Found, result: &Result<Status>) {
        let left = match result {
            Ok(_) => Vec::new(),
            Err(Error::TeardownIncomplete { names, .. }) => names.clone(),
            Err(_) => return,
        };
        let (run_id, project) = match found {
            Found::Recorded(s) => (s.run_id.clone(), s.project.clone()),
            Found::Tagged(run_id) => {
                let manifest = crate::manifest::load_if_present(&args.run.manifest)
                    .ok()
                    .flatten();
                match self.global.project(manifest.as_ref()) {
                    Ok(p) => (run_id.clone(), p),
                    Err(_) => return,
                }
            }
            Found::Nothing => return,
        };
        let report = crate::comment::Report::Closed {
            at: tags::rfc3339(time::OffsetDateTime::now_utc()),
            left,
        };
        crate::comment::publish(&run_id, &project, report, self.reporter).await;
    }
}

async fn down(
    global: &settings::Api,
    args: &settings::Down,
    found: &Found,
    reporter: &Reporter,
    signals: &Signals,
) -> Result<Status> {
    let budget = args.budget;
    let crate::state::StatePaths {
        file: state_file,
        dir: state_dir,
    } = &args.run.state;
    match found {
        Found::Tagged(id) => by_tag(global, args, id, reporter, signals, budget).await,
        Found::Recorded(_) => {
            from_state(
                global, args, state_file, state_dir, reporter, signals, budget,
            )
            .await
        }
        Found::Nothing => {
            // A damaged state directory: its sandbox process is still found and stopped
            // (unless another command uses it).
            let stopped = if args.run.backend.is_sandbox() {
                crate::sandbox_process::stop(state_dir).await
            } else {
                Stopped::NoneRunning
            };
            match stopped {
                Stopped::Yes => reporter.info(format!(
                    "no state file ({}): nothing to delete; stopped the sandbox process of {}",
                    state_file.display(),
                    state_dir.display()
                )),
                Stopped::InUse => reporter.info(format!(
                    "no state file ({}): nothing to delete; the sandbox process of {} is in use by another command, left running",
                    state_file.display(),
                    state_dir.display()
                )),
                Stopped::NoneRunning => return nothing_named(args, state_file, reporter),
            }
            Ok(Status::Success)
        }
    }
}

/// No state file and no run id.
fn nothing_named(
    args: &settings::Down,
    state_file: &std::path::Path,
    reporter: &Reporter,
) -> Result<Status> {
    if args.missing_ok {
        reporter.info(format!(
            "no state file ({}) and no run id: nothing to delete",
            state_file.display()
        ));
        return Ok(Status::Success);
    }
    Err(Error::usage_hint(
        format!(
            "no state file at {} and no --run-id: nothing says what to delete",
            state_file.display()
        ),
        "pass --state-file, or --run-id to delete a run's services by tag (--missing-ok makes this a no-op)",
    ))
}

/// How long `down` waits for the process that holds a run's state file.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// The state file's lock. The run's own `up` or `run` (or another `down`) may hold it:
/// then the wait is said, and a signal ends it.
async fn lock(
    state_file: &std::path::Path,
    reporter: &Reporter,
    signals: &Signals,
) -> Result<StateLock> {
    if let Some(lock) = StateLock::try_acquire(state_file)? {
        return Ok(lock);
    }
    reporter.info(format!(
        "waiting up to {}s for the command that holds {} (this run's up or run, or another down) to finish",
        LOCK_WAIT.as_secs(),
        state_file.display()
    ));
    let stop = signals.token();
    tokio::select! {
        lock = StateLock::acquire(state_file, LOCK_WAIT) => lock.map_err(|_| Error::usage_hint(
            format!("{} is still held after {}s", state_file.display(), LOCK_WAIT.as_secs()),
            "it is this run's `up` or `run` at work: Ctrl-C it in its terminal (it deletes what it made), or run `down` again once it has finished",
        )),
        _ = stop.cancelled() => Err(Error::InterruptedWaiting {
            signal: signals.received().unwrap_or(crate::signals::Signal::Int),
            waiting: format!("waiting for {}", state_file.display()),
        }),
    }
}

async fn from_state(
    global: &settings::Api,
    args: &settings::Down,
    state_file: &std::path::Path,
    state_dir: &std::path::Path,
    reporter: &Reporter,
    signals: &Signals,
    budget: settings::TeardownBudget,
) -> Result<Status> {
    let _lock = lock(state_file, reporter, signals).await?;
    // Re-read under the lock: a concurrent `down` may have finished meanwhile.
    let state =
        state::read(state_file)?.ok_or_else(|| Error::usage("the state file disappeared"))?;
    if let Some(done) = settled_or_kept(&state, args, state_file, state_dir, reporter).await {
        return Ok(done);
    }
    let conn = Connection::for_state(global, &state, args.run.backend, state_dir).await?;
    if let Some(p) = &global.project
        && p != &state.project
    {
        return Err(Error::usage(format!(
            "--project {p} conflicts with the state file's project {}",
            state.project
        )));
    }
    let project = state.project.clone();
    let owner = state.owner.clone();
    let store = Store::new(state_file.to_path_buf(), state)?;
    // The list tells which names exist and whose they are; a run whose every create
    // answered (or that only holds tenancies) knows that already: its DELETEs' 404s
    // confirm, and requests are the project's scarce resource.
    let uncertain = store
        .snapshot()
        .services
        .iter()
        .any(|r| r.tenant.is_none() && matches!(r.status, ServiceStatus::Creating));
    let listed = if uncertain {
        conn.list_services(&project).await?
    } else {
        Vec::new()
    };
    let targets = targets(&store, &listed, &owner, reporter)?;
    // A write that makes the run's tenancies may still land until then (its process
    // recorded it, and is gone).
    let writes_until = store
        .snapshot()
        .tenancy_writes_until
        .as_deref()
        .and_then(|t| instant_of(t, Duration::ZERO))
        .filter(|until| *until > Instant::now());
    let budget = stretched(budget, &targets, writes_until);
    let force = if args.force {
        Force::Owner(owner.clone())
    } else {
        Force::No
    };
    let options = Options {
        force,
        releases: super::releases(
            &store.snapshot(),
            Some(&owner),
            writes_until.map(Writes::lost_until).as_ref(),
        ),
        owner: Some(owner),
        budget,
    };
    let result = record_teardown(
        &conn.client,
        &project,
        &store,
        targets,
        options,
        reporter,
        Some(signals),
    )
    .await;
    let removed = match result {
        Ok(removed) => removed,
        Err(e) => {
            conn.close().await;
            return Err(e);
        }
    };
    reporter.info(format!("run {} torn down", store.snapshot().run_id));
    say_kept_running(&conn, &project, &store, &removed, reporter).await;
    conn.close().await;
    Ok(Status::Success)
}

/// A run already torn down (its sandbox process stopped all the same), or kept on
/// failure without `--force`: nothing to delete.
async fn settled_or_kept(
    state: &State,
    args: &settings::Down,
    state_file: &std::path::Path,
    state_dir: &std::path::Path,
    reporter: &Reporter,
) -> Option<Status> {
    if state.status == RunStatus::TornDown {
        reporter.info(format!(
            "run {} is already torn down: nothing to do",
            state.run_id
        ));
        // A sandbox process left by a command that died early is stopped all the same.
        if state.sandbox
            && !state::any_live(state_dir)
            && crate::sandbox_process::stop(state_dir).await == Stopped::Yes
        {
            reporter.info(format!(
                "stopped the sandbox process of {}",
                state_dir.display()
            ));
        }
        return Some(Status::Success);
    }
    if state.status == RunStatus::Kept && !args.force {
        reporter.warn(format!(
            "run {} was kept on failure (--keep-on-failure); not deleting it. `aiven-ephemeral down --force{}` deletes it",
            state.run_id,
            state_flag(state_file)
        ));
        return Some(Status::Success);
    }
    None
}

/// What to delete of a run its state file records: each record the list shows with the
/// run's owner tag (or does not show: a DELETE's 404 confirms), each create that may
/// still land, and anything else with the owner tag.
fn targets(
    store: &Store,
    listed: &[Service],
    owner: &str,
    reporter: &Reporter,
) -> Result<Vec<Target>> {
    let mut targets = Vec::new();
    for record in store.snapshot().services {
        if matches!(
            record.status,
            ServiceStatus::Rejected | ServiceStatus::Deleted
        ) || record.tenant.is_some()
        {
            // A shared service stays; its tenancy is released below.
            continue;
        }
        match listed.iter().find(|s| s.service_name == record.name) {
            Some(svc) if svc.tag(tags::TAG_OWNER) == Some(owner) => {
                targets.push(Target::existing(record.name.clone()));
            }
            Some(_) => reporter.warn(format!(
                "{}: exists but does not carry this run's owner tag; it is not this run's and is left alone",
                record.name
            )),
            None => match record.status {
                // A create that may not have answered: re-check until it could no longer land.
                ServiceStatus::Creating if record.create_sent_at.is_some() => {
                    let recheck_until = record
                        .create_sent_at
                        .as_deref()
                        .and_then(|t| instant_of(t, REQUEST_TIMEOUT))
                        .unwrap_or(Instant::now() + REQUEST_TIMEOUT);
                    targets.push(Target {
                        name: record.name.clone(),
                        exists: false,
                        recheck_until: Some(recheck_until),
                        create: None,
                    });
                }
                // Never sent: nothing to delete.
                ServiceStatus::Creating => {
                    store.set_service(&record.name, ServiceStatus::Deleted)?;
                }
                // Created but not listed: the list may lag a fresh create. A DELETE is
                // cheap, and its 404 confirms.
                _ => targets.push(Target::existing(record.name.clone())),
            },
        }
    }
    // Anything else tagged with this run's owner (belt and braces).
    for svc in listed {
        if svc.tag(tags::TAG_OWNER) == Some(owner)
            && !targets.iter().any(|t| t.name == svc.service_name)
        {
            targets.push(Target::existing(svc.service_name.clone()));
        }
    }
    Ok(targets)
}

/// Asked to finish a run, `down` waits out any create or write that may still land,
/// however short the budget: exiting 5 only to be run again would help nobody.
fn stretched(
    budget: settings::TeardownBudget,
    targets: &[Target],
    writes_until: Option<Instant>,
) -> settings::TeardownBudget {
    targets
        .iter()
        .filter_map(|t| t.recheck_until)
        .chain(writes_until)
        .max()
        .map_or(budget, |until| {
            budget.plain_at_least(
                until.saturating_duration_since(Instant::now()) + Duration::from_secs(3),
            )
        })
}

/// What a torn-down run leaves billed: the shared services it used, as the API has them.
async fn say_kept_running(
    conn: &Connection,
    project: &str,
    store: &Store,
    removed: &[String],
    reporter: &Reporter,
) {
    let kept: Vec<String> = store
        .snapshot()
        .services
        .iter()
        .filter(|s| s.tenant.is_some() && !removed.contains(&s.name))
        .map(|s| s.name.clone())
        .collect();
    if !kept.is_empty() {
        match conn.client.list_services(project).await {
            Ok(listed) => {
                let standing =
                    super::tenancy::standing::standing(&conn.client, project, &listed, &kept).await;
                super::tenancy::standing::say_standing(
                    &standing,
                    project,
                    conn.is_sandbox(),
                    reporter,
                );
            }
            Err(e) => reporter.warn(format!(
                "cannot tell what the shared services {} cost: {e}",
                kept.join(", ")
            )),
        }
    }
}

async fn by_tag(
    global: &settings::Api,
    args: &settings::Down,
    run_id: &str,
    reporter: &Reporter,
    signals: &Signals,
    budget: settings::TeardownBudget,
) -> Result<Status> {
    let manifest = crate::manifest::load_if_present(&args.run.manifest)?;
    let project = global.project(manifest.as_ref())?;
    let state_dir = &args.run.state.dir;
    let conn = Connection::open(global, args.run.backend, state_dir).await?;
    let listed = conn.list_services(&project).await?;
    // Found by its tags only: any owner's.
    let key = RunKey {
        run_id: run_id.to_string(),
        owner: None,
    };
    let targets: Vec<Target> = listed
        .iter()
        .filter(|s| key.owns(s))
        .map(|s| Target::existing(s.service_name.clone()))
        .collect();
    // The run's leases on shared services: its tenancy there is released.
    let releases: Vec<Release> = listed
        .iter()
        .filter(|s| key.lease_on(s).is_some())
        .map(|s| Release {
            service: s.service_name.clone(),
            run_id: run_id.to_string(),
            owner: None,
            // Nothing records this run's writes here: after a SIGKILL, one sent just
            // before it could land after this release (see the README).
            writes: None,
            // Which owner created a shared service is not known here.
            created_by: None,
        })
        .collect();
    if targets.is_empty() && releases.is_empty() {
        reporter.info(format!(
            "no service tagged with run {run_id} in project {project}: nothing to delete{}",
            if args.run.backend.is_sandbox() {
                // Each state directory's sandbox is a world of its own.
                format!(
                    " in the sandbox of {} (a run made with --sandbox elsewhere is in that directory's sandbox: run this there, or give its --state-file)",
                    state_dir.display()
                )
            } else {
                String::new()
            }
        ));
        conn.close().await;
        return Ok(Status::Success);
    }
    let force = if args.force {
        Force::Run(run_id.to_string())
    } else {
        Force::No
    };
    let options = Options {
        force,
        owner: None,
        budget,
        releases,
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
    if report.complete() {
        reporter.info(format!(
            "run {run_id}: {} service(s) deleted or released",
            report.deleted.len()
        ));
        Ok(Status::Success)
    } else {
        Err(Error::TeardownIncomplete {
            names: report.unconfirmed(),
            command: format!(
                "aiven-ephemeral down --run-id {run_id} --project {project}{}",
                if report.protected.is_empty() {
                    ""
                } else {
                    " --force"
                }
            ),
        })
    }
}

/// The instant `after` past an RFC 3339 time of this machine's clock; `None` when it
/// does not parse.
fn instant_of(t: &str, after: Duration) -> Option<Instant> {
    let t = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()?;
    let left = (t + after - time::OffsetDateTime::now_utc()).max(time::Duration::ZERO);
    Some(Instant::now() + Duration::try_from(left).unwrap_or_default())
}
