//! `up`: validate, create, wait, deliver. On any failure everything created is torn
//! down before the error is returned (unless `--keep-on-failure`). `run` uses
//! [`bring_up`] and then owns the live run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cli::{GlobalArgs, UpArgs};
use crate::error::{Error, Result, Status};
use crate::manifest::Manifest;
use crate::naming;
use crate::outputs::{self, Delivered, Handoff};
use crate::progress::Reporter;
use crate::provision::{Planned, Provision, Ready, Tracker};
use crate::settings::{self, Connection};
use crate::signals::Signals;
use crate::state::{self, DirLock, RunStatus, ServiceRecord, ServiceStatus, State, Store};
use crate::teardown::{self, Force, Target};

/// The TTL must leave at least this much beyond the timeout.
const TTL_MARGIN: Duration = Duration::from_secs(600);

/// A run that is up.
pub struct Live {
    pub conn: Connection,
    pub project: String,
    pub run_id: String,
    pub store: Store,
    pub tracker: Tracker,
    pub values: Vec<crate::exports::Value>,
    pub env_file: PathBuf,
    pub ttl: Duration,
    _lock: DirLock,
}

pub async fn up(global: &GlobalArgs, args: &UpArgs, reporter: &Reporter) -> Result<Status> {
    let signals = Signals::install().map_err(|e| Error::io("cannot install signal handlers", e))?;
    let live = bring_up(global, args, reporter, &signals).await?;
    reporter.info(format!(
        "run {} is up: {} service(s); env file {}",
        live.run_id,
        live.store.snapshot().services.len(),
        live.env_file.display()
    ));
    reporter.info(format!(
        "tear down with: aiven-ephemeral down{}",
        state_flag(live.store.path())
    ));
    live.conn.close().await;
    Ok(Status::Success)
}

/// ` --state-file X` when X is not the default.
pub fn state_flag(path: &std::path::Path) -> String {
    if path == state::default_state_file() {
        String::new()
    } else {
        format!(" --state-file {}", path.display())
    }
}

struct Resolved {
    manifest: Manifest,
    run_id: String,
    timeout: Duration,
    poll_cap: Duration,
    ttl: Duration,
    state_file: PathBuf,
    state_dir: PathBuf,
    env_file: PathBuf,
}

fn resolve(args: &UpArgs) -> Result<Resolved> {
    let manifest = crate::manifest::load(&args.manifest.file)?;
    let source = std::fs::read_to_string(&args.manifest.file).unwrap_or_default();
    crate::exports::check_names(&manifest, &source)?;
    let run_id = match &args.run_id {
        Some(id) => {
            naming::check_run_id(id).map_err(|e| Error::usage_hint(e, "omit --run-id for a fresh random one, or use e.g. $GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT-<leg>"))?;
            id.clone()
        }
        None => naming::new_run_id(),
    };
    for spec in &manifest.services {
        naming::service_name(&manifest.name_prefix, &spec.key, &run_id).map_err(Error::usage)?;
    }
    let timeout = settings::duration(&args.timeout, "--timeout")?;
    let poll_cap = settings::duration(&args.poll_interval, "--poll-interval")?;
    let ttl = manifest.ttl.unwrap_or(timeout + Duration::from_secs(3600));
    if ttl < timeout + TTL_MARGIN {
        let message = format!(
            "ttl {} is shorter than --timeout {} plus 10m: services could be reaped while `up` still waits for them",
            humantime::format_duration(ttl),
            humantime::format_duration(timeout)
        );
        return Err(crate::manifest::ManifestError::new(
            &manifest.path,
            &source,
            vec![crate::manifest::Problem {
                at: manifest.ttl_at,
                message,
                hint: Some("raise ttl, or lower --timeout".into()),
            }],
        )
        .into());
    }
    if let Some(path) = &args.dotenv_report {
        check_report_size(&manifest, path, args.dotenv_max_vars)?;
    }
    let (state_file, state_dir) = settings::state_paths(args.state_file.as_deref());
    let env_file = settings::absolute(
        &args
            .env_file
            .clone()
            .unwrap_or_else(|| state_dir.join("env")),
    );
    Ok(Resolved {
        manifest,
        run_id,
        timeout,
        poll_cap,
        ttl,
        state_file,
        state_dir,
        env_file,
    })
}

pub async fn bring_up(
    global: &GlobalArgs,
    args: &UpArgs,
    reporter: &Reporter,
    signals: &Signals,
) -> Result<Live> {
    let started = Instant::now();
    let r = resolve(args)?;
    let project = settings::project(global, Some(&r.manifest))?;
    if !args.sandbox {
        settings::require_token(global)?;
    }
    let lock = DirLock::acquire(&r.state_dir, Duration::from_secs(2))?;
    let previous = state::read(&r.state_file)?.filter(State::live);
    if let Some(prev) = &previous {
        if prev.run_id != r.run_id || args.run_id.is_none() {
            return Err(Error::usage_hint(
                format!(
                    "{} holds live run {} (project {}); one state file holds one live run",
                    r.state_file.display(),
                    prev.run_id,
                    prev.project
                ),
                format!(
                    "tear it down with `aiven-ephemeral down{}`, resume it with --run-id {}, or give this run its own --state-file",
                    state_flag(&r.state_file),
                    prev.run_id
                ),
            ));
        }
        if prev.project != project || prev.sandbox != args.sandbox {
            return Err(Error::usage(format!(
                "run {} in {} was started in project {}{}; it cannot resume elsewhere",
                prev.run_id,
                r.state_file.display(),
                prev.project,
                if prev.sandbox { " (sandbox)" } else { "" }
            )));
        }
    }
    let conn = if args.sandbox {
        Connection::sandbox(global, &r.state_dir, &project).await?
    } else {
        Connection::real(global, None)?
    };
    if let Some(prev) = &previous
        && prev.api_url != conn.api_url
    {
        return Err(Error::usage(format!(
            "run {} was started against {}, not {}",
            prev.run_id, prev.api_url, conn.api_url
        )));
    }
    if let Some(backends) = conn.sandbox_backends() {
        reporter.info(format!("sandbox: {backends}"));
    }
    let owner = previous
        .as_ref()
        .map(|p| p.owner.clone())
        .unwrap_or_else(naming::new_owner);
    let client = conn.client.clone();
    reporter.info(format!(
        "run {} in project {project} ({} service(s))",
        r.run_id,
        r.manifest.services.len()
    ));

    // The token, the project, its CA and the clock: before anything is created.
    let (project_info, ca, existing) = tokio::join!(
        client.project(&project),
        client.project_ca(&project),
        client.list_services(&project)
    );
    let project_info =
        project_info.map_err(|e| Error::api(format!("reading project {project}"), e))?;
    let existing = existing
        .map_err(|e| Error::api(format!("listing the services of project {project}"), e))?;
    let foreign: Vec<&str> = existing
        .iter()
        .filter(|s| {
            s.tag(naming::TAG_RUN) == Some(r.run_id.as_str())
                && s.tag(naming::TAG_OWNER) != Some(owner.as_str())
        })
        .map(|s| s.service_name.as_str())
        .collect();
    if !foreign.is_empty() {
        return Err(Error::usage_hint(
            format!(
                "run id {} is already used by another run in project {project} (services {}); they are not this run's to adopt or delete",
                r.run_id,
                foreign.join(", ")
            ),
            "matrix legs and re-runs need distinct run ids: omit --run-id, or use $GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT-<leg>",
        ));
    }
    let project_ca = match ca {
        Ok(c) => Some(c),
        Err(e) if e.is_auth_or_permission() => return Err(Error::api("reading the project CA", e)),
        Err(e) => {
            tracing::warn!("cannot read the project CA: {e}");
            None
        }
    };
    crate::commands::plan::cost_guard(
        &client,
        &project,
        &r.manifest,
        args.max_hourly_usd,
        &project_info.default_cloud,
        reporter,
    )
    .await?;

    let now = client
        .server_time()
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    let expires = rfc3339(now + r.ttl);
    let ours_existing: Vec<&str> = existing
        .iter()
        .filter(|s| s.tag(naming::TAG_OWNER) == Some(owner.as_str()))
        .map(|s| s.service_name.as_str())
        .collect();
    let planned: Vec<Planned> = r
        .manifest
        .services
        .iter()
        .map(|spec| {
            let name = naming::service_name(&r.manifest.name_prefix, &spec.key, &r.run_id)
                .map_err(Error::usage)?;
            let exists = ours_existing.contains(&name.as_str());
            Ok(Planned {
                spec: spec.clone(),
                name,
                exists,
            })
        })
        .collect::<Result<_>>()?;
    let store = Store::new(
        r.state_file.clone(),
        State {
            version: state::STATE_VERSION,
            run_id: r.run_id.clone(),
            owner: owner.clone(),
            project: project.clone(),
            api_url: conn.api_url.clone(),
            sandbox: conn.is_sandbox(),
            status: RunStatus::Creating,
            started_at: rfc3339(time::OffsetDateTime::now_utc()),
            expires_at: Some(expires.clone()),
            manifest: Some(settings::absolute(&args.manifest.file)),
            env_file: Some(r.env_file.clone()),
            services: planned
                .iter()
                .map(|p| ServiceRecord {
                    key: p.spec.key.clone(),
                    name: p.name.clone(),
                    service_type: p.spec.service_type.clone(),
                    plan: p.spec.plan.clone(),
                    cloud: p.spec.cloud.clone().or_else(|| r.manifest.cloud.clone()),
                    status: if p.exists {
                        ServiceStatus::Created
                    } else {
                        ServiceStatus::Creating
                    },
                    create_sent_at: None,
                })
                .collect(),
        },
    )?;
    let ci = naming::ci_tag(&|k| std::env::var(k).ok());
    let mut live = Live {
        conn,
        project,
        run_id: r.run_id.clone(),
        store,
        tracker: Tracker::default(),
        values: Vec::new(),
        env_file: r.env_file.clone(),
        ttl: r.ttl,
        _lock: lock,
    };
    let planned: Vec<Planned> = planned
        .into_iter()
        .map(|mut p| {
            p.spec.cloud = p.spec.cloud.or_else(|| r.manifest.cloud.clone());
            p
        })
        .collect();
    reporter.group(&format!("Creating {} service(s)", planned.len()));
    let provision = Provision {
        client: client.with_cancel(signals.token()),
        project: &live.project,
        owner: &owner,
        run_id: &r.run_id,
        expires: &expires,
        ci_tag: ci.as_deref(),
        store: &live.store,
        reporter,
        tracker: live.tracker.clone(),
        cancel: signals.token(),
        deadline: started + r.timeout,
        poll_cap: r.poll_cap,
        project_ca: project_ca.clone(),
    };
    let result = provision.run(&planned).await;
    reporter.end_group();
    let delivered = result.and_then(|ready| {
        live.deliver(
            &planned,
            &ready,
            project_ca.as_deref(),
            &r.state_dir,
            args,
            reporter,
        )
    });
    match delivered {
        Ok(values) => {
            live.values = values;
            live.store.set_status(RunStatus::Up)?;
            reporter.finish();
            tracing::info!(
                "ready after {:.1}s and {} API requests",
                started.elapsed().as_secs_f64(),
                live.conn.client.request_count()
            );
            Ok(live)
        }
        Err(e) => {
            reporter.finish();
            Err(live.fail(args, reporter, signals, e).await)
        }
    }
}

impl Live {
    /// Writes the certificates, the env file and the CI outputs.
    fn deliver(
        &self,
        planned: &[Planned],
        ready: &[Ready],
        project_ca: Option<&str>,
        state_dir: &std::path::Path,
        args: &UpArgs,
        reporter: &Reporter,
    ) -> Result<Vec<crate::exports::Value>> {
        let delivered: Vec<Delivered> = ready
            .iter()
            .map(|rd| Delivered {
                spec: &planned[rd.index].spec,
                service: &rd.service,
                created: &rd.created,
            })
            .collect();
        let (values, secrets) = outputs::materialise(
            &delivered,
            project_ca,
            &state_dir.join("certs"),
            self.conn.is_sandbox(),
        )?;
        let handoff = Handoff {
            run_id: &self.run_id,
            project: &self.project,
            env_file: &self.env_file,
            state_file: &settings::absolute(self.store.path()),
            github_env: args.github_env,
            dotenv_report: args
                .dotenv_report
                .clone()
                .map(|p| (p, args.dotenv_max_vars)),
            summary: ready
                .iter()
                .map(|rd| {
                    let p = &planned[rd.index];
                    (
                        p.name.clone(),
                        p.spec.service_type.clone(),
                        p.spec.plan.clone(),
                        rd.service.cloud_name.clone(),
                        rd.ready_in.as_secs(),
                    )
                })
                .collect(),
        };
        outputs::deliver(&values, &secrets, &handoff, reporter)?;
        Ok(values)
    }

    /// A failed `up`: tear down (or keep, loudly) and return the error to report.
    async fn fail(
        self,
        args: &UpArgs,
        reporter: &Reporter,
        signals: &Signals,
        error: Error,
    ) -> Error {
        let error = match signals.received() {
            Some(sig) => Error::Interrupted(sig),
            None => error,
        };
        if args.keep_on_failure && !matches!(error, Error::Interrupted(_)) {
            let _ = self.store.set_status(RunStatus::Kept);
            reporter.warn(format!(
                "--keep-on-failure: the run's services were NOT deleted and keep costing money until `aiven-ephemeral down --force{}` (or `reap`) deletes them",
                state_flag(self.store.path())
            ));
            return error;
        }
        reporter.annotate_error(&error.to_string(), None);
        let targets = self.tracker.targets();
        let torn = tear_down(
            &self.conn.client,
            &self.project,
            &self.store,
            targets,
            Force::No,
            reporter,
            Some(signals),
        )
        .await;
        self.conn.close().await;
        match torn {
            Ok(()) => error,
            Err(incomplete) => incomplete,
        }
    }
}

/// Tears the run down and records the result in the state file. `Err` is exit 5.
pub async fn tear_down(
    client: &crate::api::Client,
    project: &str,
    store: &Store,
    targets: Vec<Target>,
    force: Force,
    reporter: &Reporter,
    signals: Option<&Signals>,
) -> Result<()> {
    let _ = store.set_status(RunStatus::TearingDown);
    let report = teardown::teardown(client, project, targets, force, reporter, signals).await;
    let run_id = store.snapshot().run_id;
    if outputs::github::active() {
        let _ = outputs::github::write_summary(&outputs::summary_teardown(&run_id, &report));
    }
    store.update(|s| {
        for name in &report.deleted {
            if let Some(r) = s.record(name) {
                r.status = ServiceStatus::Deleted;
            }
        }
    })?;
    if report.complete() {
        store.set_status(RunStatus::TornDown)?;
        Ok(())
    } else {
        for (name, why) in &report.failed {
            reporter.warn(format!("{name}: not confirmed deleted: {why}"));
        }
        Err(Error::TeardownIncomplete {
            names: report.unconfirmed(),
            command: format!(
                "aiven-ephemeral down{}{} (or `aiven-ephemeral reap --project {project}` once they expire)",
                state_flag(store.path()),
                if report.protected.is_empty() {
                    ""
                } else {
                    " --force"
                }
            ),
        })
    }
}

/// The dotenv report's variables are known before anything is created: too many is a
/// usage error then, not a failure after the services exist.
fn check_report_size(manifest: &Manifest, path: &std::path::Path, max: usize) -> Result<()> {
    let names: Vec<String> = [
        "AIVEN_EPHEMERAL_RUN_ID".to_string(),
        "AIVEN_PROJECT".to_string(),
    ]
    .into_iter()
    .chain(manifest.services.iter().flat_map(|spec| {
        crate::exports::exports(spec, false)
            .into_iter()
            .filter(|e| !e.field.is_secret() && !e.field.is_file())
            .map(|e| e.name)
    }))
    .collect();
    if names.len() > max {
        return Err(Error::usage_hint(
            format!(
                "the dotenv report {} would hold {} variables, more than --dotenv-max-vars {max}; these do not fit: {}",
                path.display(),
                names.len(),
                names[max..].join(", ")
            ),
            "raise --dotenv-max-vars (GitLab's own limit allowing), or use `aiven-ephemeral env` in later jobs",
        ));
    }
    Ok(())
}

pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
