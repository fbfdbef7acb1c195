//! Create and wait: every create in flight at once (bounded), then one
//! `GET /project/{p}/service` per poll tick for the whole run, until each service is
//! ready: `RUNNING`, every node `running`, connection details present, on two polls in
//! a row. Then, per service: its credentials (one GET with secrets), the reachability
//! probe, and what the manifest asks inside it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::populate;
use super::request::{create_body, say_notifications};
use super::teardown::{Create, Target};
use crate::api::{ApiError, Client, CreateService, Service, ServiceState, Writes};
use crate::cache::Cache;
use crate::delivery::Created;
use crate::error::Error;
use crate::manifest::ServiceSpec;
use crate::probe::{self, TlsMaterial};
use crate::progress::Reporter;
use crate::state::{ServiceStatus, Store};
use crate::tags;

/// Creates in flight at once.
const CREATE_CONCURRENCY: usize = 8;
/// The first poll comes this soon after the creates; polls are never closer.
const FIRST_POLL: Duration = Duration::from_secs(1);
/// The interval grows with the time spent waiting: a tenth of it, up to the cap. The
/// ready moment is overshot by at most about a tenth, while a long wait costs few calls.
const GROWTH: f64 = 0.1;
/// A service that looked ready is confirmed this soon.
const CONFIRM_POLL: Duration = Duration::from_millis(500);
/// Polls in a row a service must look ready on.
const READY_POLLS: u32 = 2;

/// A service of the run: its manifest entry and its name.
#[derive(Debug, Clone)]
pub struct Planned {
    pub spec: ServiceSpec,
    pub name: String,
    /// Already created by an earlier `up` of this run (resumed): no create is sent.
    pub exists: bool,
}

/// A service that is ready for use.
#[derive(Debug)]
pub struct Ready {
    pub index: usize,
    /// With secrets.
    pub service: Service,
    pub created: Created,
    pub ready_in: Duration,
    /// On a shared service: the manifest entry as the run sees it (its own databases
    /// and topics).
    pub spec: Option<ServiceSpec>,
}

/// Tracks every create of this process, for teardown.
#[derive(Clone, Default)]
pub struct Tracker {
    creates: Arc<Mutex<BTreeMap<String, watch::Sender<Create>>>>,
    /// The API writes that make the run's tenancies in shared services: a release
    /// waits until none of them can still land.
    pub tenancy_writes: Writes,
}

impl Tracker {
    /// A tracker whose tenancy writes are recorded in the state file as they change, so
    /// that `down` in another process knows until when one may still land.
    pub fn recording(store: &Store) -> Self {
        let store = store.clone();
        let on_change = move |until: Option<Instant>| {
            let until = until.map(|u| {
                let left = u.saturating_duration_since(Instant::now());
                tags::rfc3339(time::OffsetDateTime::now_utc() + left)
            });
            if let Err(e) = store.update(|s| s.tenancy_writes_until = until) {
                tracing::warn!("{e}");
            }
        };
        Self {
            tenancy_writes: Writes::recorded(Arc::new(on_change)),
            ..Self::default()
        }
    }

    /// Marks a create as about to be sent. Returns `false` if the run was cancelled
    /// first: then it must not be sent (teardown has already collected its targets).
    fn start(&self, name: &str, cancel: &CancellationToken) -> bool {
        let mut creates = self.creates.lock().unwrap_or_else(|e| e.into_inner());
        if cancel.is_cancelled() {
            return false;
        }
        let (tx, _) = watch::channel(Create::InFlight);
        creates.insert(name.to_string(), tx);
        true
    }

    fn finish(&self, name: &str, outcome: Create) {
        let creates = self.creates.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = creates.get(name) {
            tx.send_replace(outcome);
        }
    }

    /// Services known to exist without a create of this process (resumed runs).
    pub fn adopt(&self, name: &str) {
        let (tx, _) = watch::channel(Create::Created);
        self.creates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), tx);
    }

    /// Everything teardown must delete: every create sent, answered or not, except the
    /// ones the API refused.
    pub fn targets(&self) -> Vec<Target> {
        let creates = self.creates.lock().unwrap_or_else(|e| e.into_inner());
        creates
            .iter()
            .filter_map(|(name, tx)| {
                let state = *tx.borrow();
                let target = match state {
                    Create::Rejected => return None,
                    Create::Created => Target::existing(name.clone()),
                    Create::InFlight => Target {
                        name: name.clone(),
                        exists: false,
                        recheck_until: None,
                        create: Some(tx.subscribe()),
                    },
                    Create::Lost(at) => Target {
                        name: name.clone(),
                        exists: false,
                        recheck_until: Some(at + crate::api::REQUEST_TIMEOUT),
                        create: None,
                    },
                };
                Some(target)
            })
            .collect()
    }
}

/// The disk cache's key for how long a service like this one took to be ready.
fn ready_key(spec: &ServiceSpec) -> String {
    format!(
        "ready/{}/{}/{}",
        spec.service_type,
        spec.plan,
        spec.cloud.as_deref().unwrap_or("-")
    )
}

/// Everything provisioning needs.
pub struct Provision<'a> {
    pub client: Client,
    pub project: &'a str,
    pub owner: &'a str,
    pub run_id: &'a str,
    pub expires: &'a str,
    pub ci_tag: Option<&'a str>,
    pub store: &'a Store,
    pub reporter: &'static Reporter,
    pub tracker: Tracker,
    pub cancel: CancellationToken,
    /// When `--timeout` started counting, and when it ends.
    pub began: Instant,
    pub deadline: Instant,
    pub poll_cap: Duration,
    pub project_ca: Option<String>,
    /// `up --reuse`: services are tagged as reusable.
    pub reuse: bool,
    /// `--reset`: the contents of services that exist go back to the seed's state.
    pub reset: bool,
}

enum Phase {
    Creating,
    Waiting {
        polls_ready: u32,
        secrets: Option<Box<Service>>,
        last: String,
    },
    Finishing,
    Done,
}

impl Provision<'_> {
    /// Provisions every planned service. On error the caller tears down.
    pub async fn run(&self, planned: &[Planned]) -> Result<Vec<Ready>, Error> {
        let started = Instant::now();
        // However this returns, no create starts afterwards: teardown collects its
        // targets next, and a create sent after that would be an orphan.
        let stop = self.cancel.child_token();
        let _stop_on_return = stop.clone().drop_guard();
        // The seed runs where this process created the service, or where --reset
        // emptied it: never again on data a previous push (or a concurrent job) made.
        let mut fresh: Vec<bool> = planned.iter().map(|p| !p.exists).collect();
        let mut phases = self.initial_phases(planned);
        // Creates in flight when this returns run on: teardown waits for their answers.
        let mut creates = self.spawn_creates(planned, &stop);
        let mut finishing = self.spawn_shared(planned, started);
        let mut ready: Vec<Ready> = Vec::new();
        let mut next_poll = Instant::now() + FIRST_POLL;
        let mut confirming = false;
        let cache = Cache::new(self.client.api_url(), self.project);
        let soonest = soonest(&cache, planned, started);
        let mut seen_ready: BTreeMap<String, f64> = BTreeMap::new();

        while ready.len() < planned.len() {
            let waiting = phases.iter().any(|p| matches!(p, Phase::Waiting { .. }));
            tokio::select! {
                _ = self.cancel.cancelled() => return Err(Error::Provision("cancelled".into())),
                _ = tokio::time::sleep_until(self.deadline.into()) => {
                    return Err(Error::Timeout(self.timeout_message(planned, &phases)));
                }
                Some(joined) = creates.0.join_next() => {
                    let (i, result) = joined.map_err(|e| Error::Provision(format!("create task failed: {e}")))?;
                    fresh[i] = result?;
                    phases[i] = Phase::Waiting { polls_ready: 0, secrets: None, last: String::new() };
                }
                Some(joined) = finishing.join_next() => {
                    let (i, result) = joined.map_err(|e| Error::Provision(format!("service task failed: {e}")))?;
                    let r = result?;
                    phases[i] = Phase::Done;
                    self.store.set_service(&planned[i].name, ServiceStatus::Ready)?;
                    self.reporter.service_done(&planned[i].name, "ready");
                    ready.push(r);
                }
                _ = tokio::time::sleep_until(next_poll.into()), if waiting => {
                    // While the project's budget is contended, no poll comes before the
                    // soonest this run could be ready: one that early only spends what
                    // creates and deletes (this run's and other jobs') need.
                    if let Some(soonest) = soonest
                        && !confirming
                        && Instant::now() < soonest
                        && self.client.contended()
                    {
                        next_poll = soonest;
                        continue;
                    }
                    confirming = self.poll(planned, &mut phases).await?;
                    for (i, phase) in phases.iter_mut().enumerate() {
                        if let Phase::Waiting { polls_ready, secrets, .. } = phase
                            && *polls_ready >= READY_POLLS
                            && let Some(svc) = secrets.take()
                        {
                            if !planned[i].exists {
                                let took = started.elapsed().as_secs_f64();
                                seen_ready
                                    .entry(ready_key(&planned[i].spec))
                                    .and_modify(|t| *t = t.min(took))
                                    .or_insert(took);
                            }
                            *phase = Phase::Finishing;
                            say_notifications(self.reporter, &planned[i].name, &svc);
                            self.reporter.service(&planned[i].name, "probing");
                            let job = self.finish_job(i, &planned[i], *svc, started, fresh[i]);
                            finishing.spawn(async move { (i, job.await) });
                        }
                    }
                    // Stretched when the project's rate budget runs low: other jobs
                    // spend it too, and creates and deletes need it more than a poll.
                    let interval = self.client.paced(
                        started
                            .elapsed()
                            .mul_f64(GROWTH)
                            .clamp(FIRST_POLL, self.poll_cap.max(FIRST_POLL)),
                    );
                    let wait = if confirming { CONFIRM_POLL } else { jitter(interval) };
                    next_poll = Instant::now() + wait;
                }
            }
        }
        // Only what is sooner than known is kept: a crowd's polls wait on the budget, and
        // what they saw would otherwise teach the next crowd to wait longer still (a
        // known time ends with its entry's 24 h).
        seen_ready.retain(|key, took| cache.get::<f64>(key).is_none_or(|known| *took < known));
        cache.put(seen_ready);
        ready.sort_by_key(|r| r.index);
        Ok(ready)
    }

    /// One tick: a list call for the services not yet seen ready, and for each one
    /// seen ready on the last tick, its GET with secrets, which is the confirming read
    /// (ready on two reads in a row, the credentials from the second). Returns whether a
    /// service awaits confirmation.
    async fn poll(&self, planned: &[Planned], phases: &mut [Phase]) -> Result<bool, Error> {
        let waiting: Vec<(usize, bool)> = phases
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Phase::Waiting { polls_ready, .. } => Some((i, *polls_ready > 0)),
                _ => None,
            })
            .collect();
        let list = if waiting.iter().all(|(_, seen)| *seen) {
            Vec::new()
        } else {
            self.client.list_services(self.project).await.map_err(|e| {
                Error::api(
                    format!("listing the services of project {}", self.project),
                    e,
                )
            })?
        };
        // Credentials: one GET with secrets per service seen ready, at once.
        let mut read = self.credentials(&waiting, planned).await?;
        let mut confirming = false;
        for (i, phase) in phases.iter_mut().enumerate() {
            let Phase::Waiting {
                polls_ready,
                secrets,
                last,
            } = phase
            else {
                continue;
            };
            let name = &planned[i].name;
            let (svc, with_secrets) = match read.remove(&i) {
                Some(svc) => (svc, true),
                None => match list.iter().find(|s| &s.service_name == name) {
                    Some(s) => (s.clone(), false),
                    // Missing from the list fails only after its own GET answers 404.
                    None => match self.client.get_service(self.project, name, false).await {
                        Ok(s) => (s, false),
                        Err(e) if e.is_not_found() => {
                            return Err(Error::Provision(format!(
                                "{name} ({}) disappeared: the API no longer knows it (404)",
                                planned[i].spec.key
                            )));
                        }
                        Err(e) => return Err(Error::api(format!("checking {name}"), e)),
                    },
                },
            };
            let (looks_ready, shown) = observe(&svc, name, &planned[i].spec.key)?;
            if *last != shown {
                self.reporter.service(name, &shown);
                *last = shown;
            }
            if !looks_ready {
                *polls_ready = 0;
                continue;
            }
            *polls_ready += 1;
            if with_secrets {
                *secrets = Some(Box::new(svc));
            } else if *polls_ready < READY_POLLS {
                confirming = true;
            }
        }
        Ok(confirming)
    }

    /// Where each service starts: a shared one at finding its tenancy, an existing one
    /// (adopted) at waiting, the rest at creating.
    fn initial_phases(&self, planned: &[Planned]) -> Vec<Phase> {
        planned
            .iter()
            .map(|p| {
                if p.spec.shared.is_some() {
                    Phase::Finishing
                } else if p.exists {
                    self.tracker.adopt(&p.name);
                    Phase::Waiting {
                        polls_ready: 0,
                        secrets: None,
                        last: String::new(),
                    }
                } else {
                    Phase::Creating
                }
            })
            .collect()
    }

    /// The creates, at most [`CREATE_CONCURRENCY`] at once.
    fn spawn_creates(
        &self,
        planned: &[Planned],
        stop: &CancellationToken,
    ) -> Detached<(usize, Result<bool, Error>)> {
        let permits = Arc::new(Semaphore::new(CREATE_CONCURRENCY));
        let mut creates = Detached(JoinSet::new());
        for (i, p) in planned
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.exists && p.spec.shared.is_none())
        {
            self.reporter.service(&p.name, "creating");
            let job = self.create_job(p, stop.clone());
            let permits = permits.clone();
            creates.0.spawn(async move {
                let _permit = permits.acquire_owned().await;
                (i, job.await)
            });
        }
        creates
    }

    /// A shared service is found (or made) and a tenancy taken inside it, on its own.
    fn spawn_shared(
        &self,
        planned: &[Planned],
        started: Instant,
    ) -> JoinSet<(usize, Result<Ready, Error>)> {
        let mut finishing: JoinSet<(usize, Result<Ready, Error>)> = JoinSet::new();
        // A shared service is found (or made) and a tenancy taken inside it, on its own.
        for (i, p) in planned
            .iter()
            .enumerate()
            .filter(|(_, p)| p.spec.shared.is_some())
        {
            self.reporter.service(&p.name, "shared: looking up");
            let job = self.shared_job(i, p, started);
            finishing.spawn(async move { (i, job.await) });
        }
        finishing
    }

    /// The services seen ready once before, read again with their secrets.
    async fn credentials(
        &self,
        waiting: &[(usize, bool)],
        planned: &[Planned],
    ) -> Result<BTreeMap<usize, Service>, Error> {
        let mut fetches = JoinSet::new();
        for &(i, _) in waiting.iter().filter(|(_, seen)| *seen) {
            let client = self.client.clone();
            let project = self.project.to_string();
            let name = planned[i].name.clone();
            fetches.spawn(async move { (i, client.get_service(&project, &name, true).await) });
        }
        let mut read: BTreeMap<usize, Service> = BTreeMap::new();
        while let Some(joined) = fetches.join_next().await {
            let Ok((i, result)) = joined else { continue };
            let svc = result.map_err(|e| {
                Error::api(format!("reading the credentials of {}", planned[i].name), e)
            })?;
            read.insert(i, svc);
        }
        Ok(read)
    }

    /// Creates one service; `Ok(true)` when this create made it, `Ok(false)` when it was
    /// already there with our owner tag (adopted).
    fn create_job(
        &self,
        planned: &Planned,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = Result<bool, Error>> + Send + 'static {
        let client = self.client.clone();
        let project = self.project.to_string();
        let owner = self.owner.to_string();
        let store = self.store.clone();
        let tracker = self.tracker.clone();
        let spec = planned.spec.clone();
        let name = planned.name.clone();
        let mut tags = spec.tags.clone();
        tags.extend(tags::ownership_tags(
            self.run_id,
            self.owner,
            &spec.key,
            self.expires,
            self.ci_tag,
        ));
        if self.reuse {
            tags.insert(tags::TAG_REUSE.to_string(), "true".to_string());
        }
        async move {
            if !tracker.start(&name, &stop) {
                return Err(Error::Provision("cancelled".into()));
            }
            // Recorded before the request is sent: `down` must know the name even if
            // this process dies with the request in flight.
            let now = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let recorded = store.update(|s| {
                if let Some(r) = s.record(&name) {
                    r.status = ServiceStatus::Creating;
                    r.create_sent_at = Some(now);
                }
            });
            if let Err(e) = recorded {
                tracker.finish(&name, Create::Rejected);
                return Err(e);
            }
            let body = create_body(&name, &spec, &tags);
            let (result, may_have_landed) = send_create(&client, &project, &body, &stop).await;
            let outcome = match result {
                Ok(_) => Ok(true),
                Err(e) if e.is_conflict() => adopt(&client, &project, &name, &owner, &e)
                    .await
                    .map(|()| false),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(made) => {
                    tracker.finish(&name, Create::Created);
                    store.set_service(&name, ServiceStatus::Created)?;
                    Ok(made)
                }
                Err(e) => {
                    match may_have_landed {
                        Some(at) => tracker.finish(&name, Create::Lost(at)),
                        None => {
                            tracker.finish(&name, Create::Rejected);
                            store.set_service(&name, ServiceStatus::Rejected)?;
                        }
                    }
                    Err(Error::api(
                        format!("creating {name} (services.{})", spec.key),
                        e,
                    ))
                }
            }
        }
    }

    fn finish_job(
        &self,
        index: usize,
        planned: &Planned,
        svc: Service,
        started: Instant,
        fresh: bool,
    ) -> impl std::future::Future<Output = Result<Ready, Error>> + Send + 'static {
        let reset = self.reset && planned.exists;
        let client = self.client.clone();
        let project = self.project.to_string();
        let spec = planned.spec.clone();
        let deadline = self.deadline;
        let reporter = self.reporter;
        let tls = TlsMaterial {
            ca_pem: self.project_ca.clone(),
            client: svc.admin().and_then(|u| {
                Some((
                    u.access_cert.clone()?,
                    u.access_key.as_ref()?.expose().to_string(),
                ))
            }),
        };
        async move {
            let mut svc = svc;
            let name = svc.service_name.clone();
            let primary = svc
                .primary_component(crate::catalogue::primary_component(&svc.service_type))
                .ok_or_else(|| Error::Provision(format!("{name} has no primary component")))?;
            let handshake = spec.kind.handshake;
            probe::wait_reachable(spec.probe, &primary.host, primary.port, handshake, &tls, deadline)
                .await
                .map_err(|e| {
                    Error::Timeout(format!(
                        "{name} ({}): the API reports it ready, but {}:{} is not reachable: {e}. \
                         Likely causes: this runner's egress rules, the service's ip_filter, or a project VPC \
                         (set `probe: none` to skip the check)",
                        spec.key, primary.host, primary.port
                    ))
                })?;
            let step = |what: String| reporter.service(&name, &what);
            if reset {
                step("reset".into());
                populate::reset(&client, &project, &mut svc, &spec, deadline)
                    .await
                    .map_err(|e| {
                        Error::Provision(format!("{name} (services.{}): {e}", spec.key))
                    })?;
            }
            let created = populate::populate(&client, &project, &svc, &spec, deadline, &step)
                .await
                .map_err(|e| Error::Provision(format!("{name} (services.{}): {e}", spec.key)))?;
            if !spec.seed.is_empty() && (fresh || reset) {
                // A dedicated service: the seed runs in its first database.
                step("seed".into());
                let admin = super::tenancy::pg::admin(&svc, tls.ca_pem.clone())
                    .map_err(|e| Error::Provision(format!("{name}: {e}")))?;
                let db = spec.databases.first().map_or("defaultdb", String::as_str);
                super::seed::apply(&admin, &spec, db).await.map_err(|e| {
                    Error::Provision(format!("{name} (services.{}): {e}", spec.key))
                })?;
            }
            Ok(Ready {
                index,
                service: svc,
                created,
                ready_in: started.elapsed(),
                spec: None,
            })
        }
    }

    fn shared_job(
        &self,
        index: usize,
        planned: &Planned,
        started: Instant,
    ) -> impl std::future::Future<Output = Result<Ready, Error>> + Send + 'static {
        let client = self.client.tracking(&self.tracker.tenancy_writes);
        let project = self.project.to_string();
        let run_id = self.run_id.to_string();
        let owner = self.owner.to_string();
        let expires = self.expires.to_string();
        let reporter = self.reporter;
        let deadline = self.deadline;
        let project_ca = self.project_ca.clone();
        let spec = planned.spec.clone();
        let name = planned.name.clone();
        let store = self.store.clone();
        async move {
            store.set_service(&name, ServiceStatus::Created)?;
            let acquire = super::tenancy::Acquire {
                client: &client,
                project: &project,
                run_id: &run_id,
                owner: &owner,
                expires: &expires,
                reporter,
                deadline,
                project_ca,
            };
            let t = acquire.run(&spec, &name).await?;
            Ok(Ready {
                index,
                service: t.service,
                created: t.created,
                ready_in: started.elapsed(),
                spec: Some(t.spec),
            })
        }
    }

    fn timeout_message(&self, planned: &[Planned], phases: &[Phase]) -> String {
        let waiting: Vec<String> = planned
            .iter()
            .zip(phases)
            .filter_map(|(p, phase)| match phase {
                Phase::Creating => Some(format!("{} (create not answered)", p.name)),
                Phase::Waiting { last, .. } => Some(format!(
                    "{} ({})",
                    p.name,
                    if last.is_empty() {
                        "not seen yet"
                    } else {
                        last
                    }
                )),
                Phase::Finishing => Some(format!("{} (probe or setup)", p.name)),
                Phase::Done => None,
            })
            .collect();
        format!(
            "timed out after {:.1}s waiting for: {}",
            self.began.elapsed().as_secs_f64(),
            waiting.join(", ")
        )
    }
}

/// Sends a create, retrying transient failures (0.5 s growing to 20 s, five times, the
/// API's requested wait honoured up to a minute) until `stop`. Also returns when the
/// last attempt that may have landed without an answer was sent: a dropped connection,
/// a timeout, or a 500/502/504 may have created the service; a refused connection, a
/// 429 or a 503 did not.
async fn send_create(
    client: &Client,
    project: &str,
    body: &CreateService<'_>,
    stop: &CancellationToken,
) -> (Result<Service, ApiError>, Option<Instant>) {
    use backon::BackoffBuilder;
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(20))
        .with_max_times(5)
        .with_jitter()
        .build();
    let mut may_have_landed = None;
    loop {
        if stop.is_cancelled() {
            return (Err(ApiError::Cancelled), may_have_landed);
        }
        let sent = Instant::now();
        let e = match client.create_service(project, body).await {
            Ok(svc) => return (Ok(svc), may_have_landed),
            Err(e) => e,
        };
        let unanswered = match &e {
            ApiError::Transport { connect, .. } => !connect,
            ApiError::Status { status, .. } => matches!(status, 500 | 502 | 504),
            _ => false,
        };
        if unanswered {
            may_have_landed = Some(sent);
        }
        let wait = match (e.is_transient(), delays.next()) {
            (true, Some(planned)) => e
                .retry_after()
                .map_or(planned, |asked| asked.min(Duration::from_secs(60))),
            _ => return (Err(e), may_have_landed),
        };
        tracing::warn!(
            "creating {}: {e}; retrying in {:.1}s",
            body.service_name,
            wait.as_secs_f64()
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return (Err(e), may_have_landed),
        }
    }
}

/// A 409 on create: ours if it carries our owner tag (our earlier attempt's answer was
/// lost, or this is a resumed run); anyone else's is never touched.
async fn adopt(
    client: &Client,
    project: &str,
    name: &str,
    owner: &str,
    conflict: &ApiError,
) -> Result<(), ApiError> {
    match client.get_service(project, name, false).await {
        Ok(existing) if existing.tag(tags::TAG_OWNER) == Some(owner) => {
            tracing::info!("{name}: already exists with our owner tag; adopting it");
            Ok(())
        }
        Ok(_) => Err(ApiError::Status {
            status: 409,
            message: format!(
                "{}; the existing service belongs to someone else (its owner tag is not this run's), so it is left alone",
                conflict.message()
            ),
            error_code: None,
            retry_after: None,
        }),
        Err(e) if e.is_not_found() => Err(ApiError::Status {
            status: 409,
            message: format!(
                "{}; the name was used by a recently deleted service and is still reserved: use another run id",
                conflict.message()
            ),
            error_code: None,
            retry_after: None,
        }),
        Err(e) => Err(e),
    }
}

/// What a listed service says: whether it looks ready (running, every node, connection
/// details), and its state in words; a powered-off one fails the run.
fn observe(svc: &Service, name: &str, key: &str) -> Result<(bool, String), Error> {
    if svc.state == ServiceState::Poweroff {
        let why: String = svc
            .service_notifications
            .iter()
            .map(|n| format!(": {}", n.message))
            .collect();
        return Err(Error::Provision(format!(
            "{name} ({}) is powered off (state POWEROFF){why}",
            key
        )));
    }
    if let ServiceState::Other(s) = &svc.state {
        tracing::warn!("{name}: unknown state {s}; treating it as not ready");
    }
    let running_nodes = svc
        .node_states
        .iter()
        .filter(|n| n.state == "running")
        .count();
    let looks_ready = svc.state == ServiceState::Running
        && svc.nodes_running()
        && svc.has_connection_details(crate::catalogue::primary_component(&svc.service_type));
    let shown = if svc.node_states.len() > 1
        && svc.state == ServiceState::Running
        && !svc.nodes_running()
    {
        format!("nodes {running_nodes}/{}", svc.node_states.len())
    } else {
        svc.state.to_string()
    };
    Ok((looks_ready, shown))
}

/// The soonest any of this run's services could be ready, as earlier runs saw.
fn soonest(cache: &Cache, planned: &[Planned], started: Instant) -> Option<Instant> {
    planned
        .iter()
        .filter(|p| !p.exists && p.spec.shared.is_none())
        .map(|p| cache.get::<f64>(&ready_key(&p.spec)))
        .collect::<Option<Vec<f64>>>()
        .and_then(|seen| seen.into_iter().reduce(f64::min))
        // What was seen includes the poll schedule's overshoot: a poll then finds
        // it ready, not one just before.
        .map(|secs| started + Duration::from_secs_f64(secs))
}

/// A JoinSet whose tasks outlive it: dropping it detaches them instead of aborting.
struct Detached<T: 'static>(JoinSet<T>);

impl<T: 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        self.0.detach_all();
    }
}

/// ±20 % (never below the first poll's second), so that many jobs sharing one token
/// do not poll in lockstep.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.8..1.2))
        .max(FIRST_POLL.min(d))
}
