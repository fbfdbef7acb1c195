//! Confirmed teardown inside a hard budget. Every service gets its own task at once: a
//! DELETE, retried with backoff on transient answers (never more than three in ten
//! seconds per service, a server-requested wait capped to the budget left), then
//! confirmation by a list shared by all tasks. A name whose create has not answered is
//! deleted only once a GET shows this run's owner tag on it (a matrix leg sharing the
//! run id may own that name), and watched until it provably cannot appear. A
//! termination-protected service is listed, not deleted, unless forced. Whatever is not
//! confirmed when the budget runs out is reported (exit 5); so is a task that died.
//!
//! The budget depends on what started the teardown: a signal gets the short one (a
//! platform's kill follows it), anything else the long one, which waits through the
//! API's own waits (a 429's "try again in 28s"). A signal during a long teardown cuts
//! what is left of it to the short budget.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::api::{ApiError, Client, REQUEST_TIMEOUT, Retry, Service, spread};
use crate::progress::Reporter;
use crate::settings::TeardownBudget;
use crate::signals::Signals;
use crate::tags;

/// When teardown must end; a signal brings it forward.
struct Deadline(watch::Sender<Instant>);

impl Deadline {
    fn at(&self) -> Instant {
        *self.0.borrow()
    }

    /// Once the deadline has passed, however often it is brought forward meanwhile.
    async fn passed(&self) {
        let mut changed = self.0.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(self.at().into()) => return,
                moved = changed.changed() => if moved.is_err() {
                    return tokio::time::sleep_until(self.at().into()).await;
                },
            }
        }
    }

    /// Brings the deadline forward to `at` (never later).
    fn shorten(&self, at: Instant) {
        self.0.send_if_modified(|d| {
            let sooner = at < *d;
            if sooner {
                *d = at;
            }
            sooner
        });
    }
}

/// Backoff between DELETEs of one service: 1.5 s doubling to 8 s keeps it to three in
/// any ten seconds.
const FIRST_BACKOFF: Duration = Duration::from_millis(1500);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// After a lost write's window closes, this long before the release is tried again.
const LANDED_MARGIN: Duration = Duration::from_millis(100);
/// A service whose DELETE was accepted but is still listed this long later is deleted
/// again.
const REDELETE_AFTER: Duration = Duration::from_secs(5);
/// Lists for confirmation are never closer than this.
const LIST_GAP: Duration = Duration::from_millis(500);
/// A name whose create may still land is looked up this often.
const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// Where a create stands, as far as this process knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// The request is out; no answer yet.
    InFlight,
    /// Answered: the service exists.
    Created,
    /// Answered: the service was never created.
    Rejected,
    /// No answer came (lost, timed out) at this instant: the API may still act on it.
    Lost(Instant),
}

/// A service to delete.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// Known to exist and to be ours (its create was answered, or it was listed with
    /// our tags): a 404 means gone.
    pub exists: bool,
    /// A create may still land until this instant.
    pub recheck_until: Option<Instant>,
    /// A create of this process that has not answered yet.
    pub create: Option<watch::Receiver<Create>>,
}

impl Target {
    pub fn existing(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            exists: true,
            recheck_until: None,
            create: None,
        }
    }
}

/// Which protected services `--force` may unprotect: those whose tags say this.
#[derive(Debug, Clone)]
pub enum Force {
    No,
    /// Services tagged with this owner nonce.
    Owner(String),
    /// Services tagged with this run id.
    Run(String),
    /// Any service carrying this tool's tags (`reap --force`).
    Ours,
}

impl Force {
    fn allows(&self, svc: &Service) -> bool {
        match self {
            Force::No => false,
            Force::Owner(o) => svc.tag(tags::TAG_OWNER) == Some(o),
            Force::Run(r) => svc.tag(tags::TAG_RUN) == Some(r),
            Force::Ours => tags::is_ours(&svc.tags),
        }
    }
}

/// How a teardown goes: who may be unprotected, whose names may be deleted unseen, and
/// how long it may take.
#[derive(Debug, Clone)]
pub struct Options {
    pub force: Force,
    /// The run's owner nonce: a name whose create never answered is deleted only if it
    /// carries it. `None` when every target is known to be ours.
    pub owner: Option<String>,
    pub budget: TeardownBudget,
    /// Run tenancies in shared services to release (the services stay).
    pub releases: Vec<super::tenancy::Release>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub deleted: Vec<String>,
    /// Protected against termination and not forced: left in place.
    pub protected: Vec<String>,
    /// Not confirmed deleted, with the last reason.
    pub failed: Vec<(String, String)>,
    /// Shared services this run created, deleted because nobody else used them.
    pub removed_shared: Vec<String>,
}

impl Report {
    pub fn complete(&self) -> bool {
        self.protected.is_empty() && self.failed.is_empty()
    }

    pub fn unconfirmed(&self) -> Vec<String> {
        let mut names: Vec<String> = self.protected.clone();
        names.extend(self.failed.iter().map(|(n, _)| n.clone()));
        names.sort();
        names
    }
}

enum Outcome {
    /// Confirmed gone.
    Gone,
    /// A run's tenancy in a shared service: its objects and lease confirmed gone.
    Released,
    /// A shared service this run created and nobody leased: confirmed gone.
    CreatedRemoved,
    /// Its create was refused, or can no longer land: there was nothing to delete.
    NeverCreated,
    /// The name exists with another owner's tags: left alone.
    NotOurs,
    Protected,
    Failed(String),
}

/// What one task tells the view while it works.
enum Event {
    Deleting(String),
    Releasing(String),
    /// A shared service this run created stays: why.
    Kept(String, String),
}

/// Everything the tasks share.
struct Ctx {
    client: Client,
    project: String,
    options: Options,
    deadline: Arc<Deadline>,
    lister: Lister,
    events: mpsc::UnboundedSender<Event>,
}

impl Ctx {
    /// Releases a run's tenancy in a shared service, tried until the budget ends.
    async fn release(&self, r: super::tenancy::Release) -> Outcome {
        let _ = self.events.send(Event::Releasing(r.service.clone()));
        let mut wait = FIRST_BACKOFF;
        loop {
            let deadline = self.deadline.at();
            let attempt = tokio::time::timeout_at(
                deadline.into(),
                super::tenancy::release(&self.client, &self.project, &r, deadline),
            )
            .await;
            let (why, unsettled) = match attempt {
                Ok(Ok(super::tenancy::Released::Done)) => {
                    return self.remove_created(&r, Outcome::Released).await;
                }
                Ok(Ok(super::tenancy::Released::Nothing)) => {
                    return self.remove_created(&r, Outcome::NeverCreated).await;
                }
                Ok(Ok(super::tenancy::Released::NotOurs)) => return Outcome::NotOurs,
                Ok(Ok(super::tenancy::Released::Unsettled(why))) => {
                    (format!("{why}; the lease stays until it cannot"), true)
                }
                Ok(Err(why)) => (why, false),
                Err(_) => (
                    "not released before the teardown budget ran out".to_string(),
                    false,
                ),
            };
            // Tried again as soon as a write of the run in flight answers (at once if it
            // just did), or once a lost one can no longer land.
            if unsettled
                && r.writes
                    .as_ref()
                    .is_some_and(|w| w.may_land_until().is_none())
            {
                continue;
            }
            let answer = r.writes.as_ref().filter(|w| w.in_flight());
            if answer.is_none()
                && let Some(until) = r.writes.as_ref().and_then(|w| w.may_land_until())
            {
                wait = until.saturating_duration_since(Instant::now()) + LANDED_MARGIN;
            }
            // A 429 asked this process to wait: trying sooner only spends the budget.
            if let Some(asked) = self.client.asked_to_wait() {
                wait = wait.max(spread(asked));
            }
            if self.left().is_zero() || (self.left() <= wait && answer.is_none()) {
                return Outcome::Failed(format!("run {}'s tenancy: {why}", r.run_id));
            }
            // Waiting for a write's answer is the design, not a problem.
            if unsettled && answer.is_some() {
                tracing::debug!("{}: releasing run {}: {why}", r.service, r.run_id);
            } else {
                tracing::warn!(
                    "{}: releasing run {}: {why}; trying again",
                    r.service,
                    r.run_id
                );
            }
            match answer {
                Some(writes) => tokio::select! {
                    _ = self.pause(wait) => {}
                    _ = writes.answered() => {}
                },
                None => self.pause(wait).await,
            }
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }

    /// After the release of a run that never got up: deletes the shared service if
    /// this run created it and no run holds a lease on it; `kept` otherwise. The tags
    /// are read again right before each DELETE. What remains racy: a run that reads the
    /// service as running may write its lease between that read and the DELETE (one
    /// round trip); it then fails naming the service, as if it had been deleted a moment
    /// earlier. A run leases a service only once it is running, so while the first run's
    /// service is still being built (where an interruption usually finds it) nobody can.
    async fn remove_created(&self, r: &super::tenancy::Release, kept: Outcome) -> Outcome {
        let Some(creator) = &r.created_by else {
            return kept;
        };
        let name = r.service.as_str();
        let mut backoff = FIRST_BACKOFF;
        // Gone before any DELETE of ours: this attempt never made it (a retry of the run
        // whose name the API still reserves), or someone else removed it.
        let mut deleted = false;
        loop {
            let why = match self.get(name).await {
                Err(e) if e.is_not_found() => {
                    return if deleted {
                        Outcome::CreatedRemoved
                    } else {
                        kept
                    };
                }
                Err(e) => e.to_string(),
                Ok(svc) if svc.tag(tags::TAG_CREATED_BY) != Some(creator.as_str()) => {
                    return kept;
                }
                Ok(svc) => {
                    let leases: Vec<String> = tags::leases(&svc.tags)
                        .into_iter()
                        .map(|l| l.run_id)
                        .collect();
                    if !leases.is_empty() {
                        let _ = self.events.send(Event::Kept(
                            name.to_string(),
                            format!(
                                "this run created it, and run(s) {} now hold a lease on it: it stays for them",
                                leases.join(", ")
                            ),
                        ));
                        return kept;
                    }
                    match self.delete(name).await {
                        Ok(()) => {
                            deleted = true;
                            let _ = self.events.send(Event::Deleting(name.to_string()));
                            if self.confirm(name, Instant::now()).await {
                                return Outcome::CreatedRemoved;
                            }
                            "still listed after DELETE".to_string()
                        }
                        Err(e) if e.is_not_found() => return Outcome::CreatedRemoved,
                        Err(e) if !e.is_transient() => {
                            return Outcome::Failed(left_running(name, &e.to_string()));
                        }
                        Err(e) => {
                            self.pause(e.retry_after().map_or(backoff, spread)).await;
                            e.to_string()
                        }
                    }
                }
            };
            if self.left() <= backoff {
                return Outcome::Failed(left_running(name, &why));
            }
            tracing::warn!(
                "{name}: deleting the shared service this run created: {why}; trying again"
            );
            self.pause(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn left(&self) -> Duration {
        self.deadline.at().saturating_duration_since(Instant::now())
    }

    /// Sleeps `wait`, or until the budget is spent (a signal may shorten it meanwhile).
    async fn pause(&self, wait: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.deadline.passed() => {}
        }
    }

    /// One attempt, cut off when the budget is (a signal may shorten it meanwhile).
    async fn once<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        tokio::select! {
            r = call => r,
            _ = self.deadline.passed() => Err(ApiError::Transport {
                message: "no answer before the teardown budget ran out".into(),
                connect: false,
            }),
        }
    }

    async fn get(&self, name: &str) -> Result<Service, ApiError> {
        self.once(
            self.client
                .get_service_with(&self.project, name, false, Retry::Teardown),
        )
        .await
    }

    async fn delete(&self, name: &str) -> Result<(), ApiError> {
        self.once(
            self.client
                .delete_service(&self.project, name, Retry::Teardown),
        )
        .await
    }

    /// Waits for a list sent after `accepted` to leave the name out. `false`: still
    /// listed after [`REDELETE_AFTER`] (or the budget ran out).
    async fn confirm(&self, name: &str, accepted: Instant) -> bool {
        let until = (accepted + REDELETE_AFTER).min(self.deadline.at());
        let mut after = accepted;
        while Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            let listed = self.lister.since(after, &self.client, &self.project);
            match tokio::time::timeout(left, listed).await {
                Ok(Ok((_, names))) if !names.contains(name) => return true,
                // Still listed: only a later list can say otherwise.
                Ok(Ok((sent, _))) => after = sent + Duration::from_nanos(1),
                Ok(Err(e)) => {
                    tracing::warn!("confirming teardown: {e}; retrying");
                    tokio::time::sleep(LIST_GAP.min(left)).await;
                }
                Err(_) => break,
            }
        }
        false
    }

    /// Deletes one target and confirms it is gone.
    async fn settle(&self, mut t: Target) -> Outcome {
        let mut backoff = FIRST_BACKOFF;
        let mut last: Option<String> = None;
        loop {
            if self.left().is_zero() {
                return Outcome::Failed(
                    last.unwrap_or_else(|| "the teardown budget ran out".into()),
                );
            }
            if !t.exists {
                match self.unseen(&mut t).await {
                    Ok(Unseen::Ours) => t.exists = true,
                    Ok(Unseen::NotOurs) => return Outcome::NotOurs,
                    Ok(Unseen::Never) => return Outcome::NeverCreated,
                    Ok(Unseen::Maybe(why)) => {
                        last = Some(why);
                        self.pause(RECHECK_EVERY).await;
                        continue;
                    }
                    Err(e) => {
                        last = Some(e.to_string());
                        self.pause(e.retry_after().map_or(backoff, spread)).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            match self.delete(&t.name).await {
                Ok(()) => {
                    let _ = self.events.send(Event::Deleting(t.name.clone()));
                    if self.confirm(&t.name, Instant::now()).await {
                        return Outcome::Gone;
                    }
                    last = Some("still listed after DELETE".into());
                }
                Err(e) if e.is_not_found() => return Outcome::Gone,
                // A 403 may be termination protection: the service's documented field
                // says so, not the wording of the refusal.
                Err(e) if e.status() == Some(403) && !e.is_auth() => {
                    match self.get(&t.name).await {
                        Ok(svc) if svc.termination_protection => match self.unprotect(&svc).await {
                            Ok(true) => {}
                            Ok(false) => return Outcome::Protected,
                            Err(e) => {
                                last = Some(format!("clearing termination protection: {e}"));
                                self.pause(backoff).await;
                                backoff = (backoff * 2).min(MAX_BACKOFF);
                            }
                        },
                        Ok(_) => return Outcome::Failed(e.to_string()),
                        Err(read) => {
                            last = Some(format!(
                                "{e}; reading whether it is termination-protected: {read}"
                            ));
                            self.pause(backoff).await;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
                // Asked to wait past the budget: waiting for the end would change nothing.
                Err(e) if e.retry_after().is_some_and(|asked| asked > self.left()) => {
                    return Outcome::Failed(format!(
                        "{e} (past what is left of the teardown budget)"
                    ));
                }
                Err(e) if e.is_transient() => {
                    last = Some(e.to_string());
                    self.pause(e.retry_after().map_or(backoff, spread)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Outcome::Failed(e.to_string()),
            }
        }
    }

    /// A name not known to exist: is it there, and ours?
    async fn unseen(&self, t: &mut Target) -> Result<Unseen, ApiError> {
        match self.get(&t.name).await {
            Ok(svc) => {
                let ours = match &self.options.owner {
                    Some(owner) => svc.tag(tags::TAG_OWNER) == Some(owner.as_str()),
                    None => true,
                };
                Ok(if ours { Unseen::Ours } else { Unseen::NotOurs })
            }
            Err(e) if e.is_not_found() => Ok(self.absent(t).await),
            Err(e) => Err(e),
        }
    }

    /// The name is not there (yet): can its create still land?
    async fn absent(&self, t: &mut Target) -> Unseen {
        if let Some(create) = &mut t.create {
            let answered = create.wait_for(|c| *c != Create::InFlight);
            match tokio::time::timeout(self.left(), answered).await {
                Ok(Ok(state)) => match *state {
                    Create::Rejected => return Unseen::Never,
                    // Answered yes: it is there now, and ours (our create made it).
                    Create::Created => return Unseen::Ours,
                    Create::Lost(at) => {
                        t.recheck_until = t.recheck_until.max(Some(at + REQUEST_TIMEOUT))
                    }
                    Create::InFlight => {}
                },
                // The task that sent it is gone: it may have landed.
                Ok(Err(_)) => {
                    t.recheck_until = t.recheck_until.max(Some(Instant::now() + REQUEST_TIMEOUT))
                }
                Err(_) => return Unseen::Maybe("its create has not answered".into()),
            }
            t.create = None;
        }
        match t.recheck_until {
            Some(until) if Instant::now() < until => Unseen::Maybe(format!(
                "its create never answered and may still land for {}s",
                until.saturating_duration_since(Instant::now()).as_secs() + 1
            )),
            _ => Unseen::Never,
        }
    }

    /// `Ok(true)`: protection cleared, delete again. `Ok(false)`: leave it.
    async fn unprotect(&self, svc: &Service) -> Result<bool, ApiError> {
        if matches!(self.options.force, Force::No) || !self.options.force.allows(svc) {
            return Ok(false);
        }
        let name = svc.service_name.as_str();
        tracing::warn!("{name}: clearing termination protection (--force)");
        self.once(
            self.client
                .set_termination_protection(&self.project, name, false),
        )
        .await?;
        Ok(true)
    }
}

/// Why a shared service this run created and nobody uses is still there, and the
/// command that deletes it.
fn left_running(name: &str, why: &str) -> String {
    format!(
        "this run created the shared service and no run uses it, but it was not deleted: {why}; `aiven-ephemeral down --shared --service {name}` deletes it"
    )
}

enum Unseen {
    Ours,
    NotOurs,
    Never,
    /// Not there now, but may still appear: look again.
    Maybe(String),
}

/// One list at a time for every task waiting for confirmation.
#[derive(Default)]
struct Lister {
    listing: tokio::sync::Mutex<Option<(Instant, Arc<BTreeSet<String>>)>>,
}

impl Lister {
    /// The names listed by a list sent at or after `at`, and when it was sent.
    async fn since(
        &self,
        at: Instant,
        client: &Client,
        project: &str,
    ) -> Result<(Instant, Arc<BTreeSet<String>>), ApiError> {
        let mut last = self.listing.lock().await;
        if let Some((sent, names)) = &*last {
            if *sent >= at {
                return Ok((*sent, names.clone()));
            }
            // Further apart as the project's rate budget runs low (DELETEs need it
            // more), but always inside the wait for a DELETE to show.
            let gap = client.paced(LIST_GAP).min(REDELETE_AFTER / 4);
            tokio::time::sleep_until((*sent + gap).into()).await;
        }
        let sent = Instant::now();
        let list = client.list_services_with(project, Retry::Teardown).await?;
        let names: Arc<BTreeSet<String>> =
            Arc::new(list.into_iter().map(|s| s.service_name).collect());
        *last = Some((sent, names.clone()));
        Ok((sent, names))
    }
}

fn show(reporter: &Reporter, event: Event) {
    match event {
        Event::Deleting(name) => reporter.service(&name, "deleting"),
        Event::Releasing(name) => reporter.service(&name, "releasing the run's tenancy"),
        Event::Kept(name, why) => reporter.info(format!("{name}: {why}")),
    }
}

impl Report {
    /// One task's outcome, said and counted.
    fn record(
        &mut self,
        name: String,
        outcome: Outcome,
        releasing: &BTreeMap<String, bool>,
        reporter: &Reporter,
    ) {
        match outcome {
            Outcome::Gone => {
                reporter.service_done(&name, "deleted");
                self.deleted.push(name);
            }
            Outcome::Released => {
                reporter.service_done(&name, "released (the shared service stays)");
                self.deleted.push(name);
            }
            Outcome::CreatedRemoved => {
                reporter.service_done(
                    &name,
                    "deleted (this run created the shared service and no run holds a lease on it)",
                );
                self.removed_shared.push(name.clone());
                self.deleted.push(name);
            }
            Outcome::NeverCreated => {
                // A release row ends with a verdict too: the run had not got that
                // far, or its tenancy went already (a `down --run-id` elsewhere).
                match releasing.get(&name) {
                    Some(true) => reporter.service_done(&name, "nothing of this run there yet"),
                    Some(false) => reporter.service_done(&name, "released already"),
                    None => {}
                }
                self.deleted.push(name);
            }
            Outcome::NotOurs => reporter.warn(format!(
                "{name}: exists but does not carry this run's owner tag; it is not this run's and is left alone"
            )),
            Outcome::Protected => {
                reporter.warn(format!(
                    "{name}: termination protection is on; not deleted (someone set it on purpose; `down --force` clears it)"
                ));
                self.protected.push(name);
            }
            Outcome::Failed(why) if releasing.contains_key(&name) => self.failed.push((
                format!("{name} (this run's tenancy in it; the shared service stays)"),
                why,
            )),
            Outcome::Failed(why) => self.failed.push((name, why)),
        }
    }
}

/// The budget by what started the teardown: a signal already received, or nothing.
fn budget_now(budget: TeardownBudget, signals: Option<&Signals>) -> Duration {
    if signals.is_some_and(|s| s.received().is_some()) {
        budget.interrupted
    } else {
        budget.plain
    }
}

/// Later signals never stop teardown; they are told what it is still doing, and what
/// is left of it shrinks to the short budget.
fn watch_signals(
    signals: &Signals,
    still: Arc<Mutex<BTreeSet<String>>>,
    deadline: Arc<Deadline>,
    short: Duration,
) -> tokio::task::JoinHandle<()> {
    let mut rx = signals.subscribe();
    tokio::spawn(async move {
        while let Ok(sig) = rx.recv().await {
            deadline.shorten(Instant::now() + short);
            let pending: Vec<String> = still
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect();
            tracing::warn!(
                "received {sig} during teardown; still deleting: {} (teardown is not interrupted)",
                pending.join(", ")
            );
        }
    })
}

/// Deletes every target and confirms it is gone, within the budget.
pub async fn teardown(
    client: &Client,
    project: &str,
    targets: Vec<Target>,
    mut options: Options,
    reporter: &Reporter,
    signals: Option<&Signals>,
) -> Report {
    // The releases become tasks of their own; the tasks share the rest of the options.
    let releases = std::mem::take(&mut options.releases);
    if targets.is_empty() && releases.is_empty() {
        return Report::default();
    }
    reporter.group(&match (targets.len(), releases.len()) {
        (n, 0) => format!("Deleting {n} service(s)"),
        (0, m) => format!("Releasing {m} shared service tenancy(ies)"),
        (n, m) => format!("Deleting {n} service(s), releasing {m} shared tenancy(ies)"),
    });
    let names: Vec<String> = targets
        .iter()
        .map(|t| t.name.clone())
        .chain(releases.iter().map(|r| r.service.clone()))
        .collect();
    reporter.align(&names);
    let still = Arc::new(Mutex::new(names.into_iter().collect::<BTreeSet<String>>()));
    let budget = budget_now(options.budget, signals);
    let (deadline, _) = watch::channel(Instant::now() + budget);
    let deadline = Arc::new(Deadline(deadline));
    let watcher = signals.map(|s| {
        watch_signals(
            s,
            still.clone(),
            deadline.clone(),
            options.budget.interrupted,
        )
    });

    let (events, mut event_rx) = mpsc::unbounded_channel();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        project: project.to_string(),
        deadline,
        options,
        lister: Lister::default(),
        events,
    });
    let mut tasks = JoinSet::new();
    let mut names = BTreeMap::new();
    for t in targets {
        let name = t.name.clone();
        let ctx = ctx.clone();
        let handle = tasks.spawn(async move { ctx.settle(t).await });
        names.insert(handle.id(), name);
    }
    // Each release's service, and whether its run never got up.
    let releasing: BTreeMap<String, bool> = releases
        .iter()
        .map(|r| (r.service.clone(), r.created_by.is_some()))
        .collect();
    for r in releases {
        let name = r.service.clone();
        let ctx = ctx.clone();
        let handle = tasks.spawn(async move { ctx.release(r).await });
        names.insert(handle.id(), name);
    }
    drop(ctx);

    let mut report = Report::default();
    loop {
        tokio::select! {
            biased;
            Some(event) = event_rx.recv() => show(reporter, event),
            joined = tasks.join_next_with_id() => {
                let Some(joined) = joined else { break };
                // What a task said before it ended is shown before its end.
                while let Ok(event) = event_rx.try_recv() {
                    show(reporter, event);
                }
                let (name, outcome) = match joined {
                    Ok((id, outcome)) => (names.remove(&id).unwrap_or_default(), outcome),
                    // A task that died proves nothing: its service is not confirmed.
                    Err(e) => (
                        names.remove(&e.id()).unwrap_or_default(),
                        Outcome::Failed(format!("its teardown task failed: {e}")),
                    ),
                };
                still.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
                report.record(name, outcome, &releasing, reporter);
            }
        }
    }
    if let Some(w) = watcher {
        w.abort();
    }
    reporter.end_group();
    report.deleted.sort();
    report.failed.sort();
    report
}
