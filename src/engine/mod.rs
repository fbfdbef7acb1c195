//! A run's lifecycle, in named phases, with one owner of cancellation.
//!
//! resolve → guard (lock, previous run, owner, project, cost) → provision (create, wait,
//! probe, populate) → deliver → hold (`run`'s command) → teardown.
//!
//! [`Engine`] installs the signal handlers before the first API call and is the only
//! thing that acts on them: each phase runs inside a `select!` against the first signal,
//! so whatever is in flight (a create, a poll, a credentials GET, a sub-resource call,
//! an expiry refresh, delivery of outputs) is abandoned, never awaited, and teardown
//! starts at once. Every stop reason cancels the run's `stop` token, which stops every
//! create from starting or retrying.

pub mod brokers;
pub mod cost;
mod down;
mod down_shared;
pub mod env;
pub mod extend;
mod hold;
pub mod locate;
pub mod plan;
pub mod populate;
pub mod provision;
pub mod reap;
pub mod request;
mod resolve;
pub mod reuse;
pub mod seed;
pub mod status;
pub mod teardown;
pub mod tenancy;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::api::{Client, Service};
use crate::connection::Connection;
use crate::delivery::{self, Delivered, Handoff};
use crate::error::{Error, Result, Status};
use crate::progress::Reporter;
use crate::settings;
use crate::signals::Signals;
use crate::state::{self, RunStatus, ServiceRecord, ServiceStatus, State, StateLock, Store};
use crate::{identity, tags};
use provision::{Planned, Provision, Ready, Tracker};
use teardown::{Force, Options, Target};

/// The disk cache's key for the project's default cloud.
const DEFAULT_CLOUD: &str = "default_cloud";

/// One command's engine: the settings it was given, where it reports, and the one
/// owner of its signals.
pub struct Engine {
    global: settings::Api,
    reporter: &'static Reporter,
    signals: Signals,
    /// Teardown released tenancies in shared services (which stay): the interruption
    /// message says so.
    released_tenancies: AtomicBool,
}

/// A run that is up.
pub struct Live {
    pub conn: Connection,
    pub project: String,
    pub run_id: String,
    pub owner: String,
    pub store: Store,
    pub tracker: Tracker,
    pub values: Vec<crate::delivery::values::Value>,
    pub env_file: PathBuf,
    pub ttl: Duration,
    pub teardown_budget: settings::TeardownBudget,
    /// Made with `up --reuse`: it outlives this command, and a failure leaves it be.
    pub reuse: bool,
    /// The run's expiry as its tags say.
    pub expires: String,
    _lock: StateLock,
}

impl Live {
    /// How this run is torn down: only what carries its owner, inside its budget, its
    /// shared tenancies released.
    fn teardown_options(&self) -> Options {
        Options {
            force: Force::No,
            owner: Some(self.owner.clone()),
            budget: self.teardown_budget,
            releases: releases(
                &self.store.snapshot(),
                Some(&self.owner),
                Some(&self.tracker.tenancy_writes),
            ),
        }
    }
}

/// What the guard phase hands to provisioning.
struct Guarded {
    live: Live,
    planned: Vec<Planned>,
    expires: String,
    project_ca: Option<String>,
    /// `--reuse`: what this push changes on the run's existing services.
    changes: Option<reuse::Changes>,
    /// Each planned service's hourly price.
    prices: Vec<cost::Price>,
}

impl Engine {
    /// Installs the signal handlers: call before the first API call.
    pub fn new(global: &settings::Api, reporter: &'static Reporter) -> Result<Self> {
        let signals =
            Signals::install().map_err(|e| Error::io("cannot install signal handlers", e))?;
        Ok(Self {
            global: global.clone(),
            reporter,
            signals,
            released_tenancies: AtomicBool::new(false),
        })
    }

    /// The error for the first signal, if one came (announcing it the first time).
    pub fn interrupted(&self) -> Option<Error> {
        self.signals.acted_on().map(|s| self.interrupted_by(s))
    }

    /// Runs `work` unless a signal comes first; then it is dropped unfinished.
    pub async fn or_signal<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let token = self.signals.token();
        tokio::select! {
            biased;
            _ = token.cancelled() => Err(self.interrupted().unwrap_or(Error::Provision("cancelled".into()))),
            r = work => r,
        }
    }

    /// `up`: every phase to a delivered run. On any failure, and on a signal at any
    /// moment, everything created is torn down before the error is returned (unless
    /// `--keep-on-failure`).
    async fn bring_up(&self, args: &settings::Up) -> Result<Live> {
        let started = Instant::now();
        let r = resolve::resolve(args)?;
        // Nothing exists before the state file does: a signal simply ends the command.
        let Guarded {
            mut live,
            planned,
            expires,
            project_ca,
            changes,
            prices,
        } = self.or_signal(self.guard(&r, args)).await?;

        let stop = self.signals.token().child_token();
        let work = async {
            if let Some(changes) = &changes {
                self.push_changes(&live, changes, &expires).await?;
            }
            let ready = self
                .provision(&live, &planned, &expires, &project_ca, &stop, &r, started)
                .await?;
            let rows = comment_rows(&planned, &ready, &prices);
            let delivery = Delivery::new(&live, &planned, ready, project_ca.clone(), &r, args);
            let (reporter, stop) = (self.reporter, stop.clone());
            // Delivery writes files: off the runtime, so that a stuck write (a full disk,
            // a pipe nobody reads) cannot hold teardown back.
            let values = tokio::task::spawn_blocking(move || delivery.write(reporter, &stop))
                .await
                .map_err(|e| Error::Provision(format!("delivering the outputs failed: {e}")))??;
            Ok((values, rows))
        };
        let outcome = tokio::select! {
            biased;
            _ = stop.cancelled() => Err(Error::Provision("cancelled".into())),
            r = work => r,
        };
        // Whatever ended provisioning, no create of this run starts or retries now.
        stop.cancel();
        self.reporter.finish();
        // A signal that came while the last step finished still wins.
        let outcome = match self.interrupted() {
            Some(e) => Err(e),
            None => outcome,
        };
        // A run whose record cannot say it is up has failed like any other: torn down.
        let outcome = outcome.and_then(|values| {
            live.store.set_status(RunStatus::Up)?;
            Ok(values)
        });
        match outcome {
            Ok((values, rows)) => {
                live.values = values;
                tracing::info!(
                    "ready after {:.1}s and {} API requests",
                    started.elapsed().as_secs_f64(),
                    live.conn.client.request_count()
                );
                if args.preview.comment && live.reuse {
                    let report = crate::comment::Report::Up {
                        rows,
                        expires: live.expires.clone(),
                        failed: None,
                    };
                    crate::comment::publish(&live.run_id, &live.project, report, self.reporter)
                        .await;
                }
                Ok(live)
            }
            Err(e) => Err(self.fail(live, args, e).await),
        }
    }

    /// `--reuse`: this push's changes to services that exist, and the deletion of those
    /// no longer in the manifest. A deletion not confirmed is said, not fatal: the
    /// service keeps the run's tags and its old expiry, so the close or `reap` ends it.
    async fn push_changes(
        &self,
        live: &Live,
        changes: &reuse::Changes,
        expires: &str,
    ) -> Result<()> {
        let client = &live.conn.client;
        reuse::apply(client, &live.project, changes, expires).await?;
        if changes.delete.is_empty() {
            return Ok(());
        }
        let targets = changes
            .delete
            .iter()
            .map(|(name, _)| Target::existing(name.clone()))
            .collect();
        let options = Options {
            force: Force::No,
            owner: Some(live.owner.clone()),
            budget: live.teardown_budget,
            releases: Vec::new(),
        };
        let report = teardown::teardown(
            client,
            &live.project,
            targets,
            options,
            self.reporter,
            Some(&self.signals),
        )
        .await;
        for (name, why) in &report.failed {
            self.reporter.warn(format!(
                "{name}: no longer in the manifest, but not confirmed deleted: {why} (the pull request's close, or `reap` once it expires, deletes it)"
            ));
        }
        Ok(())
    }

    /// `up`: a delivered run, left live for later steps; `down` ends it.
    pub async fn up(&self, args: &settings::Up) -> Result<Status> {
        let live = self.bring_up(args).await?;
        // A signal that came as the run became ready still tears it down (a run made
        // with --reuse outlives every push).
        if let Some(e) = self.interrupted() {
            if !live.reuse {
                self.tear_down(live).await?;
            }
            return Err(e);
        }
        self.reporter.info(format!(
            "run {} is up: {} service(s); env file {} (in a shell: . {})",
            live.run_id,
            live.store.snapshot().services.len(),
            live.env_file.display(),
            delivery::shell_env_file(&live.env_file).display()
        ));
        if live.reuse {
            self.reporter.info(format!(
                "it stays for later pushes until {}; delete it with: aiven-ephemeral down --run-id {}{} (from any machine)",
                live.expires,
                live.run_id,
                if live.store.snapshot().sandbox { " --sandbox" } else { "" }
            ));
        } else {
            let services = &live.store.snapshot().services;
            // Shared services stay for other runs: `down` only gives this run's place back.
            let (what, note) = match services.iter().filter(|s| s.tenant.is_some()).count() {
                0 => ("tear down", ""),
                n if n == services.len() => {
                    ("release the shared services", " (they stay for other runs)")
                }
                _ => ("tear down", " (shared services are released, not deleted)"),
            };
            self.reporter.info(format!(
                "{what} with: aiven-ephemeral down{}{note}",
                state::state_flag(live.store.path())
            ));
        }
        live.conn.close().await;
        Ok(Status::Success)
    }

    /// Lock, previous run, connection, project, owner, cost; then the state file.
    async fn guard(&self, r: &resolve::Resolved, args: &settings::Up) -> Result<Guarded> {
        let global = &self.global;
        let reporter = self.reporter;
        let project = global.project(Some(&r.manifest))?;
        if !args.backend.is_sandbox() {
            global.require_token()?;
        }
        let lock = StateLock::acquire(&r.state_file, Duration::from_secs(2)).await?;
        let previous = state::read(&r.state_file)?.filter(State::live);
        let reuse = args.preview.reuse;
        if let Some(prev) = &previous {
            resumable(prev, r, args, &project)?;
        }
        let conn = self.connect(r, args, previous.as_ref()).await?;
        // A run made with --reuse has one owner wherever it is brought up.
        let owner = if reuse {
            identity::reuse_owner(&r.run_id)
        } else {
            previous
                .as_ref()
                .map(|p| p.owner.clone())
                .unwrap_or_else(identity::new_owner)
        };
        let client = conn.client.clone();
        reporter.info(format!(
            "run {}{} in project {project} ({} service(s))",
            r.run_id,
            r.shortened_from
                .as_ref()
                .map(|given| format!(
                    " (--run-id {given}, shortened: names and tags hold 20 characters)"
                ))
                .unwrap_or_default(),
            r.manifest.services.len()
        ));

        let (default_cloud, ca, existing) = project_facts(&client, &project, r).await?;
        if reuse {
            reuse::refuse_unreusable(&existing, &r.run_id, &project)?;
        }
        refuse_foreign(&existing, &r.run_id, &owner, &project)?;
        let project_ca = project_ca(ca)?;
        let prices = cost::cost_guard(
            &client,
            &project,
            &r.manifest,
            args.max_hourly_usd,
            &default_cloud,
            reporter,
        )
        .await?;
        // The API would refuse such a topic only after every service was created.
        let over = brokers::over_replicated(&client, &project, &r.manifest).await;
        if !over.is_empty() {
            return Err(r
                .manifest
                .problems(over.into_iter().map(|(_, p)| p).collect())
                .into());
        }

        let now = client
            .server_time()
            .unwrap_or_else(time::OffsetDateTime::now_utc);
        let expires = tags::rfc3339(now + r.ttl);
        let planned = plan_services(r, &existing, &owner)?;
        let changes = if reuse {
            let changes = reuse::changes(&planned, &existing, &owner, &default_cloud)?;
            for line in reuse::describe(&changes) {
                reporter.info(line);
            }
            Some(changes)
        } else {
            None
        };
        let record = new_state(r, args, &planned, &expires, &owner, &project, &conn);
        let store = Store::new(r.state_file.clone(), record)?;
        let tracker = Tracker::recording(&store);
        Ok(Guarded {
            live: Live {
                conn,
                project,
                run_id: r.run_id.clone(),
                owner,
                store,
                tracker,
                values: Vec::new(),
                env_file: r.env_file.clone(),
                ttl: r.ttl,
                teardown_budget: r.teardown_budget,
                reuse,
                expires: expires.clone(),
                _lock: lock,
            },
            planned,
            expires,
            project_ca,
            changes,
            prices,
        })
    }

    /// The run's API; a resumed run's must be the one it started against.
    async fn connect(
        &self,
        r: &resolve::Resolved,
        args: &settings::Up,
        previous: Option<&State>,
    ) -> Result<Connection> {
        let conn = Connection::open(&self.global, args.backend, &r.state_dir).await?;
        if let Some(prev) = previous
            && prev.api_url != conn.api_url
        {
            return Err(Error::usage(format!(
                "run {} was started against {}, not {}",
                prev.run_id, prev.api_url, conn.api_url
            )));
        }
        if let Some(backends) = conn.sandbox_backends() {
            self.reporter.info(format!("sandbox: {backends}"));
        }
        Ok(conn)
    }

    /// Create, wait, probe, populate.
    #[allow(clippy::too_many_arguments)]
    async fn provision(
        &self,
        live: &Live,
        planned: &[Planned],
        expires: &str,
        project_ca: &Option<String>,
        stop: &CancellationToken,
        r: &resolve::Resolved,
        started: Instant,
    ) -> Result<Vec<Ready>> {
        let ci = crate::ci::tag(&|k| std::env::var(k).ok());
        self.reporter.group(
            &match planned.iter().filter(|p| p.spec.shared.is_some()).count() {
                0 => format!("Creating {} service(s)", planned.len()),
                n if n == planned.len() => format!("Joining {n} shared service(s)"),
                n => format!(
                    "Creating {} service(s), joining {n} shared",
                    planned.len() - n
                ),
            },
        );
        let names: Vec<String> = planned.iter().map(|p| p.name.clone()).collect();
        self.reporter.begin(&names, started + r.timeout);
        let provision = Provision {
            client: live.conn.client.with_cancel(stop.clone()),
            project: &live.project,
            owner: &live.owner,
            run_id: &live.run_id,
            expires,
            ci_tag: ci.as_deref(),
            store: &live.store,
            reporter: self.reporter,
            tracker: live.tracker.clone(),
            cancel: stop.clone(),
            began: started,
            deadline: started + r.timeout,
            poll_cap: r.poll_cap,
            project_ca: project_ca.clone(),
            reuse: live.reuse,
            reset: r.reset,
        };
        let result = provision.run(planned).await;
        self.reporter.end_group();
        result
    }

    /// A failed `up`: tear down (or keep, loudly) and return the error to report. A run
    /// made with --reuse stays as it is: it is the pull request's, not this push's.
    async fn fail(&self, live: Live, args: &settings::Up, error: Error) -> Error {
        let error = self.interrupted().unwrap_or(error);
        if live.reuse {
            self.reporter.annotate_error(&error.to_string(), None);
            self.reporter.warn(format!(
                "--reuse: run {} is left as it is for the next push (it expires at {}); `aiven-ephemeral down --run-id {}` deletes it",
                live.run_id, live.expires, live.run_id
            ));
            if args.preview.comment {
                // What the push knows of each of the run's services: ready, or not.
                let rows = live
                    .store
                    .snapshot()
                    .services
                    .into_iter()
                    .filter(|s| {
                        s.tenant.is_none()
                            && !matches!(s.status, ServiceStatus::Rejected | ServiceStatus::Deleted)
                    })
                    .map(|s| crate::comment::Row {
                        ready: s.status == ServiceStatus::Ready,
                        name: s.name,
                        key: s.key,
                        service_type: s.service_type,
                        plan: s.plan,
                        usd_h: None,
                        created: None,
                        ready_secs: None,
                    })
                    .collect();
                let report = crate::comment::Report::Up {
                    rows,
                    expires: live.expires.clone(),
                    failed: Some(error.to_string()),
                };
                crate::comment::publish(&live.run_id, &live.project, report, self.reporter).await;
            }
            live.conn.close().await;
            return error;
        }
        if args.keep_on_failure && !matches!(error, Error::Interrupted { .. }) {
            live.store.update_or_warn(
                &format!(
                    "it does not say the run was kept: a plain `aiven-ephemeral down{}` deletes its services",
                    state::state_flag(live.store.path())
                ),
                |s| s.status = RunStatus::Kept,
            );
            self.reporter.warn(format!(
                "--keep-on-failure: the run's services (and its tenancies in shared services) were NOT deleted and keep costing money until `aiven-ephemeral down --force{}` (or `reap`) deletes them",
                state::state_flag(live.store.path())
            ));
            return error;
        }
        let outcome = match self.tear_down(live).await {
            // A signal during teardown still decides the exit code.
            Ok(()) => self.interrupted().unwrap_or(error),
            Err(incomplete) => incomplete,
        };
        // Said once the teardown is over: the error says what it did.
        self.reporter.annotate_error(&outcome.to_string(), None);
        outcome
    }

    /// The error for an interruption by `signal`, after teardown.
    pub fn interrupted_by(&self, signal: crate::signals::Signal) -> Error {
        Error::Interrupted {
            signal,
            shared: self.released_tenancies.load(Ordering::Relaxed),
        }
    }

    /// Tears a live run down; `Err` is exit 5.
    pub async fn tear_down(&self, live: Live) -> Result<()> {
        let tenancies: Vec<String> = live
            .store
            .snapshot()
            .services
            .iter()
            .filter(|s| s.tenant.is_some())
            .map(|s| s.name.clone())
            .collect();
        let targets = live.tracker.targets();
        let options = live.teardown_options();
        let torn = record_teardown(
            &live.conn.client,
            &live.project,
            &live.store,
            targets,
            options,
            self.reporter,
            Some(&self.signals),
        )
        .await;
        live.conn.close().await;
        // Shared services stay, unless this run created them and nobody used them.
        let removed = torn.as_ref().map_or(&[][..], Vec::as_slice);
        if tenancies.iter().any(|t| !removed.contains(t)) {
            self.released_tenancies.store(true, Ordering::Relaxed);
        }
        torn.map(|_| ())
    }
}

/// A live run in the state file may only be resumed: same run id, asked for, in the
/// same place.
fn resumable(
    prev: &State,
    r: &resolve::Resolved,
    args: &settings::Up,
    project: &str,
) -> Result<()> {
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
                state::state_flag(&r.state_file),
                prev.run_id
            ),
        ));
    }
    let reuse_owner = identity::reuse_owner(&prev.run_id);
    if args.preview.reuse != (prev.owner == reuse_owner) {
        return Err(Error::usage_hint(
            format!(
                "{} holds run {}, made {} --reuse",
                r.state_file.display(),
                prev.run_id,
                if args.preview.reuse {
                    "without"
                } else {
                    "with"
                }
            ),
            if args.preview.reuse {
                "a test run is never adopted by `up --reuse`: tear it down first, or give this run its own --state-file"
            } else {
                "it is an environment per pull request: bring it up with `up --reuse`"
            },
        ));
    }
    if prev.project != project || prev.sandbox != args.backend.is_sandbox() {
        return Err(Error::usage(format!(
            "run {} in {} was started in project {}{}; it cannot resume elsewhere",
            prev.run_id,
            r.state_file.display(),
            prev.project,
            if prev.sandbox { " (sandbox)" } else { "" }
        )));
    }
    Ok(())
}

/// Services of this run id that another run owns (a matrix leg, a re-run) are neither
/// adopted nor deleted: refuse before anything is created.
fn refuse_foreign(existing: &[Service], run_id: &str, owner: &str, project: &str) -> Result<()> {
    // A lease of this run id under another owner counts as much as a service.
    let leased_elsewhere = |s: &Service| {
        tags::leases(&s.tags)
            .iter()
            .any(|l| l.run_id == run_id && l.owner != owner)
    };
    let foreign: Vec<&str> = existing
        .iter()
        .filter(|s| {
            (s.tag(tags::TAG_RUN) == Some(run_id) && s.tag(tags::TAG_OWNER) != Some(owner))
                || leased_elsewhere(s)
        })
        .map(|s| s.service_name.as_str())
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    let reused = existing.iter().any(|s| {
        foreign.contains(&s.service_name.as_str()) && s.tag(tags::TAG_REUSE) == Some("true")
    });
    if reused {
        return Err(Error::usage_hint(
            format!(
                "run {run_id} in project {project} is an environment per pull request, made with --reuse (services {})",
                foreign.join(", ")
            ),
            "bring it up with `up --reuse`, or give this run another run id",
        ));
    }
    Err(Error::run_id_taken(run_id, project, &foreign))
}

/// The token, the project, its CA and the clock: before anything is created. The
/// project's default cloud and CA rarely change: read from the disk cache while it is
/// fresh (the list proves the token and the project all the same). The CA's failure is
/// the caller's to judge.
async fn project_facts(
    client: &Client,
    project: &str,
    r: &resolve::Resolved,
) -> Result<(
    String,
    std::result::Result<String, crate::api::ApiError>,
    Vec<Service>,
)> {
    let cache = crate::cache::Cache::new(client.api_url(), project);
    let cached_cloud = cache.get::<String>(DEFAULT_CLOUD);
    // Stored only when read: storing a cached value again would keep it forever.
    let read_cloud = cached_cloud.is_none();
    let (default_cloud, ca, existing) = tokio::join!(
        async {
            match cached_cloud {
                Some(cloud) => Ok(cloud),
                None => client.project(project).await.map(|p| p.default_cloud),
            }
        },
        crate::cache::project_ca(client, project),
        async {
            // A run of shared services only creates no service: nothing to find
            // by name. Its lease on each service is checked where it is read.
            if r.manifest.services.iter().all(|s| s.shared.is_some()) {
                Ok(Vec::new())
            } else {
                client.list_services(project).await
            }
        }
    );
    let default_cloud =
        default_cloud.map_err(|e| Error::api(format!("reading project {project}"), e))?;
    let existing = existing
        .map_err(|e| Error::api(format!("listing the services of project {project}"), e))?;
    if read_cloud {
        cache.put([(DEFAULT_CLOUD.to_string(), &default_cloud)]);
    }
    Ok((default_cloud, ca, existing))
}

/// The project's CA: a refusal (authentication, permission) stops the run, any other
/// failure only warns.
fn project_ca(ca: std::result::Result<String, crate::api::ApiError>) -> Result<Option<String>> {
    Ok(match ca {
        Ok(c) => Some(c),
        Err(e) if e.is_auth_or_permission() => {
            return Err(Error::api("reading the project CA", e));
        }
        Err(e) => {
            tracing::warn!("cannot read the project CA: {e}");
            None
        }
    })
}

/// Each service's name, its manifest entry with the cloud resolved, and whether an
/// earlier `up` of this run already created it.
fn plan_services(r: &resolve::Resolved, existing: &[Service], owner: &str) -> Result<Vec<Planned>> {
    let ours_existing: Vec<&str> = existing
        .iter()
        .filter(|s| s.tag(tags::TAG_OWNER) == Some(owner))
        .map(|s| s.service_name.as_str())
        .collect();
    r.manifest
        .services
        .iter()
        .map(|spec| {
            let name = spec
                .service_name(&r.manifest.name_prefix, &r.run_id)
                .map_err(Error::usage)?;
            let exists = spec.shared.is_none() && ours_existing.contains(&name.as_str());
            let mut spec = spec.clone();
            spec.cloud = spec.cloud.or_else(|| r.manifest.cloud.clone());
            Ok(Planned { spec, name, exists })
        })
        .collect()
}

/// The run's record before any create: every service `creating`, none sent yet.
fn new_state(
    r: &resolve::Resolved,
    args: &settings::Up,
    planned: &[Planned],
    expires: &str,
    owner: &str,
    project: &str,
    conn: &Connection,
) -> State {
    State {
        version: state::STATE_VERSION,
        run_id: r.run_id.clone(),
        owner: owner.to_string(),
        project: project.to_string(),
        api_url: conn.api_url.clone(),
        sandbox: conn.is_sandbox(),
        status: RunStatus::Creating,
        started_at: tags::rfc3339(time::OffsetDateTime::now_utc()),
        expires_at: Some(expires.to_string()),
        manifest: Some(crate::state::absolute(&args.manifest)),
        env_file: Some(r.env_file.clone()),
        tenancy_writes_until: None,
        extended_ttl_secs: None,
        services: planned
            .iter()
            .map(|p| ServiceRecord {
                key: p.spec.key.clone(),
                name: p.name.clone(),
                service_type: p.spec.service_type.clone(),
                plan: p.spec.plan.clone(),
                cloud: p.spec.cloud.clone(),
                status: if p.exists {
                    ServiceStatus::Created
                } else {
                    ServiceStatus::Creating
                },
                create_sent_at: None,
                tenant: p
                    .spec
                    .shared
                    .as_ref()
                    .map(|_| identity::tenant_of(&r.run_id)),
            })
            .collect(),
    }
}

/// The tenancies a run holds in shared services, to release; `writes` are the run's
/// writes that made them.
pub fn releases(
    state: &State,
    owner: Option<&str>,
    writes: Option<&crate::api::Writes>,
) -> Vec<tenancy::Release> {
    state
        .services
        .iter()
        .filter(|s| s.tenant.is_some() && s.status != ServiceStatus::Deleted)
        .map(|s| tenancy::Release {
            service: s.name.clone(),
            run_id: state.run_id.clone(),
            owner: owner.map(str::to_string),
            writes: writes.cloned(),
            // A run that never got up leaves no shared service it made for nobody.
            created_by: (state.status == RunStatus::Creating).then(|| state.owner.clone()),
        })
        .collect()
}

/// Runs teardown and records the result in the state file. `Err` is exit 5; `Ok` has
/// the shared services this run created and deleted (nobody else used them).
pub async fn record_teardown(
    client: &Client,
    project: &str,
    store: &Store,
    targets: Vec<Target>,
    options: Options,
    reporter: &Reporter,
    signals: Option<&Signals>,
) -> Result<Vec<String>> {
    // Written beside the DELETEs, not before them: a slow disk must not hold them back.
    let marking = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            store.update_or_warn(
                "it does not say teardown started; `down` finds the run's services all the same",
                |s| s.status = RunStatus::TearingDown,
            )
        })
    };
    let force_flag = !matches!(options.force, Force::No);
    let report = teardown::teardown(client, project, targets, options, reporter, signals).await;
    // The last record comes after this one.
    let _ = marking.await;
    let run_id = store.snapshot().run_id;
    if crate::ci::github() {
        let _ = delivery::github::write_summary(&delivery::summary_teardown(
            &run_id,
            &report.deleted,
            &report.protected,
            &report.failed,
        ));
    }
    let complete = report.complete();
    // The services are gone whether or not the record can say so; the env file with
    // their credentials goes all the same.
    store.update_or_warn(
        "it does not say which services were deleted; `down` finds them gone",
        |s| {
            for name in &report.deleted {
                if let Some(r) = s.record(name) {
                    r.status = ServiceStatus::Deleted;
                }
            }
            if complete {
                s.status = RunStatus::TornDown;
            }
        },
    );
    if complete {
        if let Some(env_file) = store.snapshot().env_file {
            remove_outputs(env_file, store.path().to_path_buf(), reporter).await;
        }
        return Ok(report.removed_shared);
    }
    for (name, why) in &report.failed {
        reporter.warn(format!("{name}: not confirmed deleted: {why}"));
    }
    Err(Error::TeardownIncomplete {
        names: report.unconfirmed(),
        command: format!(
            "aiven-ephemeral down{}{} (or `aiven-ephemeral reap --project {project}` once they expire)",
            state::state_flag(store.path()),
            if report.protected.is_empty() || force_flag {
                ""
            } else {
                " --force"
            }
        ),
    })
}

/// What the pull request's comment shows of each service this run owns (shared
/// services are not the run's to pay for).
fn comment_rows(
    planned: &[Planned],
    ready: &[Ready],
    prices: &[cost::Price],
) -> Vec<crate::comment::Row> {
    ready
        .iter()
        .filter(|rd| planned[rd.index].spec.shared.is_none())
        .map(|rd| {
            let p = &planned[rd.index];
            crate::comment::Row {
                name: p.name.clone(),
                key: p.spec.key.clone(),
                service_type: p.spec.service_type.clone(),
                plan: rd.service.plan.clone(),
                usd_h: prices.get(rd.index).and_then(|pr| pr.usd),
                created: rd.service.create_time.clone(),
                ready_secs: Some(rd.ready_in.as_secs()),
                ready: true,
            }
        })
        .collect()
}

/// How long the removal of a run's outputs waits for a delivery step that is writing.
const REMOVAL_WAIT: Duration = Duration::from_secs(10);

/// Removes a torn-down run's env files and certificates, off the runtime: it waits for
/// a delivery step still writing them (a slow disk must not stall other tasks).
async fn remove_outputs(env_file: PathBuf, state_file: PathBuf, reporter: &Reporter) {
    let shown = env_file.display().to_string();
    let removal = tokio::task::spawn_blocking(move || delivery::remove(&env_file, &state_file));
    if tokio::time::timeout(REMOVAL_WAIT, removal).await.is_err() {
        reporter.warn(format!(
            "{shown}: a write of it did not end within {}s; it is removed once that write ends, if this process still runs",
            REMOVAL_WAIT.as_secs()
        ));
    }
}

/// Everything delivery needs, owned, so that it can run off the runtime.
struct Delivery {
    services: Vec<(crate::manifest::ServiceSpec, String, Ready)>,
    project_ca: Option<String>,
    certs_dir: PathBuf,
    sandbox: bool,
    run_id: String,
    project: String,
    env_file: PathBuf,
    state_file: PathBuf,
    github_env: delivery::github::GithubEnv,
    dotenv_report: Option<(PathBuf, usize)>,
}

impl Delivery {
    fn new(
        live: &Live,
        planned: &[Planned],
        ready: Vec<Ready>,
        project_ca: Option<String>,
        r: &resolve::Resolved,
        args: &settings::Up,
    ) -> Self {
        Self {
            services: ready
                .into_iter()
                .map(|mut rd| {
                    let p = &planned[rd.index];
                    // A shared service's run sees its own databases and topics.
                    let spec = rd.spec.take().unwrap_or_else(|| p.spec.clone());
                    (spec, p.name.clone(), rd)
                })
                .collect(),
            project_ca,
            certs_dir: crate::state::StatePaths::of(Some(&r.state_file)).beside("certs"),
            sandbox: live.conn.is_sandbox(),
            run_id: live.run_id.clone(),
            project: live.project.clone(),
            env_file: live.env_file.clone(),
            state_file: crate::state::absolute(live.store.path()),
            github_env: args.github_env,
            dotenv_report: args.dotenv_report.clone(),
        }
    }

    /// Writes the certificates, the env file and the CI outputs.
    /// Stops between steps once the run has stopped: an abandoned delivery must not
    /// write credentials after teardown removed them.
    fn write(
        self,
        reporter: &Reporter,
        stop: &CancellationToken,
    ) -> Result<Vec<crate::delivery::values::Value>> {
        let stopped = || Error::Provision("cancelled".into());
        if stop.is_cancelled() {
            return Err(stopped());
        }
        let delivered: Vec<Delivered> = self
            .services
            .iter()
            .map(|(spec, _, rd)| Delivered {
                spec,
                service: &rd.service,
                created: &rd.created,
            })
            .collect();
        let (values, secrets) = delivery::fenced(|| {
            delivery::materialise(
                &delivered,
                self.project_ca.as_deref(),
                &self.certs_dir,
                self.sandbox,
            )
        })?;
        if stop.is_cancelled() {
            return Err(stopped());
        }
        let handoff = Handoff {
            run_id: &self.run_id,
            project: &self.project,
            env_file: &self.env_file,
            state_file: &self.state_file,
            github_env: self.github_env,
            dotenv_report: self.dotenv_report.clone(),
            summary: self
                .services
                .iter()
                .map(|(spec, name, rd)| {
                    (
                        name.clone(),
                        spec.service_type.clone(),
                        spec.plan.clone(),
                        rd.service.cloud_name.clone(),
                        rd.ready_in.as_secs(),
                    )
                })
                .collect(),
        };
        delivery::deliver(&values, &secrets, &handoff, reporter)?;
        Ok(values)
    }
}
