//! Tenancies in shared services: one long-lived service that many runs use at once,
//! each through a tenancy of its own inside it, named from the run id
//! ([`crate::identity::tenant_of`]):
//!
//! - PostgreSQL ([`pg`]): a role and its databases, made over SQL by the admin user;
//!   CONNECT revoked from PUBLIC, a per-role connection limit that leaves the admin
//!   room, seeds cloned from a template database (see `docs/security.md`).
//! - Valkey ([`valkey`]): an ACL user through the API, on the key and channel prefix
//!   `<tenant>:`, without the commands that escape key patterns.
//! - Kafka ([`kafka`]): a user whose Kafka-native ACLs confine it to the prefix
//!   `<tenant>.` (topics, consumer groups, transactional ids), and the
//!   manifest's topics under that prefix.
//!
//! A run holds a **lease** on the service, a tag `aiven-ephemeral-lease-<run id>` =
//! `<expiry>/<owner>`, written before any of its objects exist and removed after they
//! are gone: `down --run-id` and `reap` find a run's tenancy from it without any state
//! file. The service itself is never deleted by `down`; `reap` powers it off (or deletes
//! it) when it has had no lease for a while.

pub mod kafka;
pub mod pg;
pub mod standing;
pub mod sweep;
pub mod valkey;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::api::{ApiError, Client, Retry, Service, ServiceState, ServiceUser, Writes};
use crate::catalogue::{self, Sharing};
use crate::delivery::Created;
use crate::error::Error;
use crate::manifest::{ServiceSpec, Shared};
use crate::progress::Reporter;
use crate::secret::Secret;
use crate::{identity, tags};

/// Aiven's default limit of service users on Kafka (support can raise it).
pub const KAFKA_MAX_USERS: usize = 50;

/// What acquiring a shared service needs.
/// Between attempts to create a shared service whose name a deletion still holds: a
/// few requests over the minute or so the API keeps it.
const NAME_RETRY_FIRST: Duration = Duration::from_secs(5);
const NAME_RETRY_MAX: Duration = Duration::from_secs(20);

pub struct Acquire<'a> {
    pub client: &'a Client,
    pub project: &'a str,
    pub run_id: &'a str,
    pub owner: &'a str,
    pub expires: &'a str,
    pub reporter: &'static Reporter,
    pub deadline: Instant,
    pub project_ca: Option<String>,
}

/// A run's tenancy, ready: the service as the run's exports see it (the run's user as
/// its only user) and the manifest entry as the run sees it (its own database names,
/// its prefixed topics).
pub struct Tenancy {
    pub service: Service,
    pub spec: ServiceSpec,
    pub created: Created,
}

impl Acquire<'_> {
    /// The shared service, running, with this run's lease on it and its tenancy inside.
    pub async fn run(&self, spec: &ServiceSpec, name: &str) -> Result<Tenancy, Error> {
        let shared = spec
            .shared
            .as_ref()
            .ok_or_else(|| Error::Provision(format!("{name} is not shared")))?;
        let step = |what: &str| self.reporter.service(name, what);
        let found = self.ensure(spec, shared, name).await?;
        let svc = self.running(spec, shared, name, found).await?;
        // The guard listed no service for a run of shared services only: a lease of
        // this run id under another owner is found here.
        if tags::leases(&svc.tags)
            .iter()
            .any(|l| l.run_id == self.run_id && l.owner != self.owner)
        {
            return Err(Error::run_id_taken(self.run_id, self.project, &[name]));
        }
        super::request::say_notifications(self.reporter, name, &svc);
        if let Some(drift) = plan_drift(&spec.plan, &svc) {
            self.reporter.warn(drift);
        }
        let tenant = identity::tenant_of(self.run_id);
        if spec.kind.kafka {
            self.kafka_room(&svc, &tenant)?;
            kafka::confine(self, shared, &svc, &tenant).await?;
        }
        // The lease first: whatever exists of the run inside the service from here on
        // can be found and released without this process.
        step("lease");
        let (key, value) = tags::lease(self.run_id, self.expires, self.owner);
        let tags = BTreeMap::from([
            (key, Some(value)),
            (tags::TAG_USED.to_string(), Some(self.now())),
        ]);
        self.client
            .update_tags(self.project, name, &tags, crate::api::Retry::Standard)
            .await
            .map_err(|e| {
                Error::api(
                    format!("writing the lease of run {} on {name}", self.run_id),
                    e,
                )
            })?;
        let what = format!("{name} (services.{})", spec.key);
        let made = match spec.kind.sharing {
            Some(Sharing::Postgres) => pg::create(self, spec, &svc, &tenant, &step).await,
            Some(Sharing::Valkey) => valkey::create(self, spec, &svc, &tenant).await,
            Some(Sharing::Kafka) => kafka::create(self, spec, &svc, &tenant, &step).await,
            None => Err(format!("{} services cannot be shared", spec.kind.name)),
        }
        .map_err(|e| Error::Provision(format!("{what}: {e}")))?;
        Ok(made)
    }

    fn now(&self) -> String {
        tags::rfc3339(
            self.client
                .server_time()
                .unwrap_or_else(time::OffsetDateTime::now_utc),
        )
    }

    /// The service exists: found, created on first use (`shared: true`), or adopted
    /// when another run created it a moment ago.
    /// Returns it as read (with secrets: a shared service's admin credentials are
    /// needed anyway), or `None` when it was just created.
    async fn ensure(
        &self,
        spec: &ServiceSpec,
        shared: &Shared,
        name: &str,
    ) -> Result<Option<Service>, Error> {
        match self.client.get_service(self.project, name, true).await {
            Ok(svc) => return self.ours_to_share(spec, &svc, shared).map(|()| Some(svc)),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(Error::api(format!("looking up shared service {name}"), e)),
        }
        if let Shared::Existing(_) = shared {
            return Err(Error::Provision(missing_yours(spec, name, self.project)));
        }
        self.reporter.warn(format!(
            "creating shared service {name} ({} {}): it outlives this run and is billed while powered on, until `aiven-ephemeral reap` powers it off when idle",
            spec.service_type, spec.plan
        ));
        let mut tags = spec.tags.clone();
        tags.insert(tags::TAG_SHARED.to_string(), spec.key.clone());
        tags.insert(tags::TAG_USED.to_string(), self.now());
        tags.insert(tags::TAG_CREATED_BY.to_string(), self.owner.to_string());
        let body = super::request::create_body(name, spec, &tags);
        let mut wait = NAME_RETRY_FIRST;
        loop {
            match self.client.create_service(self.project, &body).await {
                Ok(_) => return Ok(None),
                // Another run created it first: one service, both use it.
                Err(e) if e.is_conflict() => {
                    match self.client.get_service(self.project, name, false).await {
                        Ok(svc) => return self.ours_to_share(spec, &svc, shared).map(|()| None),
                        // Taken, yet not there: the name of a service deleted moments
                        // ago, which the API keeps for a while (research/aiven-api.md):
                        // a re-run right after a cancel waits it out within --timeout.
                        Err(e) if e.is_not_found() => {}
                        Err(e) => {
                            return Err(Error::api(format!("looking up shared service {name}"), e));
                        }
                    }
                }
                Err(e) => return Err(Error::api(format!("creating shared service {name}"), e)),
            }
            if Instant::now() + wait >= self.deadline {
                return Err(Error::Provision(format!(
                    "shared service {name} (services.{}) cannot be created yet: its name belongs to a service deleted moments ago, and Aiven keeps a deleted service's name for a while; run again in a minute",
                    spec.key
                )));
            }
            self.reporter.service(
                name,
                &format!(
                    "the name is still held by a service deleted moments ago; trying again in {}s",
                    wait.as_secs()
                ),
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(NAME_RETRY_MAX);
        }
    }

    /// A `shared: true` name in use by a service this tool did not create as shared is
    /// not adopted: it is someone's. Nor is one of another type.
    fn ours_to_share(
        &self,
        spec: &ServiceSpec,
        svc: &Service,
        shared: &Shared,
    ) -> Result<(), Error> {
        match refusal(spec, svc, shared, self.project) {
            Some(why) => Err(Error::Provision(why)),
            None => Ok(()),
        }
    }

    /// Waits until the service is usable (and returns it with secrets); powers a
    /// managed one on if it was idle. The wait grows with the time waited.
    async fn running(
        &self,
        spec: &ServiceSpec,
        shared: &Shared,
        name: &str,
        mut found: Option<Service>,
    ) -> Result<Service, Error> {
        let started = Instant::now();
        let mut powered_on = false;
        let mut last = None;
        loop {
            // While it is not running, polls go without secrets; once it is, one read
            // with them (unless the first read, which had them, found it running).
            let (svc, with_secrets) = match found.take() {
                Some(svc) => (svc, true),
                None => (
                    self.client
                        .get_service(self.project, name, false)
                        .await
                        .map_err(|e| {
                            if e.is_not_found() {
                                // Its creator ended before any run held a lease on it.
                                Error::Provision(format!(
                                    "shared service {name} was deleted while this run waited for it (the run that created it ended before any run used it); run again to create it anew"
                                ))
                            } else {
                                Error::api(format!("checking shared service {name}"), e)
                            }
                        })?,
                    false,
                ),
            };
            if svc.state == ServiceState::Running
                && svc.nodes_running()
                && svc.has_connection_details(catalogue::primary_component(&svc.service_type))
            {
                if with_secrets {
                    return Ok(svc);
                }
                return self
                    .client
                    .get_service(self.project, name, true)
                    .await
                    .map_err(|e| {
                        Error::api(format!("reading the admin credentials of {name}"), e)
                    });
            }
            if svc.state == ServiceState::Poweroff && !powered_on {
                // Why it is off, when the API says (a failure rather than reap, say).
                super::request::say_notifications(self.reporter, name, &svc);
                if let Shared::Existing(_) = shared {
                    return Err(Error::Provision(powered_off_yours(spec, name)));
                }
                self.reporter.warn(format!(
                    "shared service {name} is powered off (`reap` powers idle ones off); powering it on. This takes minutes on Aiven: it is rebuilt, and {}",
                    catalogue::after_power_on(&spec.service_type)
                ));
                self.client
                    .set_powered(self.project, name, true)
                    .await
                    .map_err(|e| Error::api(format!("powering on shared service {name}"), e))?;
                powered_on = true;
            }
            if last.as_ref() != Some(&svc.state) {
                self.reporter.service(name, &svc.state.to_string());
                last = Some(svc.state.clone());
            }
            // A fifth of the time waited, 1 s to 10 s: a few dozen reads for a
            // service that takes minutes, and the moment it is ready overshot by little.
            let wait = self.client.paced(
                started
                    .elapsed()
                    .mul_f64(0.2)
                    .clamp(Duration::from_secs(1), Duration::from_secs(10)),
            );
            if Instant::now() + wait > self.deadline {
                return Err(Error::Timeout(format!(
                    "shared service {name} is not running before the timeout (state {})",
                    svc.state
                )));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Aiven allows 50 users per Kafka service by default: refused before any write.
    fn kafka_room(&self, svc: &Service, tenant: &str) -> Result<(), Error> {
        let users = svc.users.iter().filter(|u| u.username != tenant).count();
        if users >= KAFKA_MAX_USERS {
            return Err(Error::Provision(format!(
                "shared Kafka service {} has {users} users (avnadmin included), Aiven's default limit is {KAFKA_MAX_USERS}: no room for this run's user. Nothing was written. Wait for other runs to end, run `aiven-ephemeral reap` to release expired ones, or ask Aiven support to raise the limit",
                svc.service_name
            )));
        }
        Ok(())
    }
}

/// The service as a run's exports see it: the run's user is its only (primary) user.
pub(crate) fn as_tenant(mut svc: Service, user: ServiceUser) -> Service {
    svc.users = vec![ServiceUser {
        kind: "primary".into(),
        ..user
    }];
    svc
}

pub(crate) fn user(username: &str, password: Secret) -> ServiceUser {
    ServiceUser {
        username: username.to_string(),
        password: Some(password),
        kind: "normal".into(),
        access_cert: None,
        access_key: None,
    }
}

/// Why a run may not use `svc` as the manifest's shared service, if it may not.
pub fn refusal(
    spec: &ServiceSpec,
    svc: &Service,
    shared: &Shared,
    project: &str,
) -> Option<String> {
    if svc.service_type != spec.service_type {
        return Some(format!(
            "shared service {} (services.{}) is a {} service, and the manifest says {}",
            svc.service_name, spec.key, svc.service_type, spec.service_type
        ));
    }
    if matches!(shared, Shared::Managed) && svc.tag(tags::TAG_SHARED).is_none() {
        return Some(format!(
            "a service named {} exists in project {project} but is not a shared service of aiven-ephemeral (no {} tag); it is left alone. Use `shared: {{service: {}}}` to share a service you manage, or another name_prefix",
            svc.service_name,
            tags::TAG_SHARED,
            svc.service_name
        ));
    }
    None
}

/// A shared service whose plan is not the manifest's: the manifest only matters when
/// the first run creates it, and the service is billed for the plan it has.
pub fn plan_drift(asked: &str, svc: &Service) -> Option<String> {
    let (name, real) = (&svc.service_name, &svc.plan);
    (real != asked).then(|| {
        format!(
            "shared service {name} has plan {real}, not the manifest's {asked} (the manifest only matters when the first run creates it); `avn service update {name} --plan {asked}` changes the service (Aiven rebuilds its nodes), or write `plan: {real}` in the manifest"
        )
    })
}

/// A service you manage (`shared: {service: NAME}`) that is not there.
pub fn missing_yours(spec: &ServiceSpec, name: &str, project: &str) -> String {
    format!(
        "shared service {name} (services.{}) does not exist in project {project}; `shared: {{service: {name}}}` uses a service you manage. Create it, or write `shared: true` to let aiven-ephemeral create and keep one",
        spec.key
    )
}

/// A service you manage that is powered off: not this tool's to power on.
pub fn powered_off_yours(spec: &ServiceSpec, name: &str) -> String {
    format!(
        "shared service {name} (services.{}) is powered off; it is yours to power on (`avn service update --power-on {name}`)",
        spec.key
    )
}

/// What a run gets inside a shared service, in words.
pub fn tenancy(spec: &ServiceSpec, run_id: &str) -> String {
    let tenant = identity::tenant_of(run_id);
    match spec.kind.sharing {
        Some(Sharing::Postgres) => format!(
            "role {tenant} owning database(s) {}",
            pg::databases(spec, &tenant).join(", ")
        ),
        Some(Sharing::Valkey) => format!(
            "user {tenant}, keys and channels {}*",
            identity::key_prefix(&tenant)
        ),
        Some(Sharing::Kafka) => format!(
            "user {tenant}, topics {}*{}",
            identity::topic_prefix(&tenant),
            if spec.topics.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    spec.topics
                        .iter()
                        .map(|t| format!("{}{}", identity::topic_prefix(&tenant), t.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        None => tenant,
    }
}

/// A run's tenancy to release.
#[derive(Debug, Clone)]
pub struct Release {
    pub service: String,
    pub run_id: String,
    /// Only objects (and a lease) of this owner are released; `None` for `down --run-id`
    /// and `reap`, which release whatever the run id names.
    pub owner: Option<String>,
    /// The run's writes that made its tenancies: until none can land any more, the
    /// release is not finished (an object created after it would have no lease).
    pub writes: Option<Writes>,
    /// The run never got up (it failed or was interrupted): the shared service is
    /// deleted too if its tags say this owner created it and no run holds a lease on
    /// it, so that nobody pays for a service nobody uses.
    pub created_by: Option<String>,
}

/// How a release ended.
pub enum Released {
    /// Nothing of the run is left, and its lease is gone.
    Done,
    /// The run never held a lease there: nothing of it was ever made.
    Nothing,
    /// The lease names another owner: not this run's to touch.
    NotOurs,
    /// Not finished: a write of the run may still land (why), so the lease stays.
    Unsettled(String),
}

/// Drops a run's objects inside a shared service, then its lease. Each object is
/// checked to be the run's before it is dropped. `Err` leaves the lease in place, so
/// that `reap` can finish later.
pub async fn release(
    client: &Client,
    project: &str,
    r: &Release,
    deadline: Instant,
) -> Result<Released, String> {
    // Taken before the service is read: a write answered by now shows in what is read.
    let unsettled = r.writes.as_ref().and_then(Writes::unsettled);
    let finished = |released: Released| match &unsettled {
        Some(why) => Ok(Released::Unsettled(why.clone())),
        None => Ok(released),
    };
    // A release is teardown: its calls are never held back for the budget, and retry
    // on teardown's own schedule.
    let svc = match client
        .get_service_with(project, &r.service, true, RELEASE_RETRY)
        .await
    {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return finished(Released::Nothing),
        Err(e) => return Err(format!("reading {}: {e}", r.service)),
    };
    let lease = tags::leases(&svc.tags)
        .into_iter()
        .find(|l| l.run_id == r.run_id);
    let Some(tags::Lease {
        owner: leased_to, ..
    }) = &lease
    else {
        // The lease is written before anything of the run exists inside: without it
        // there is nothing to release (unless the lease's own write may still land).
        return finished(Released::Nothing);
    };
    if r.owner.as_ref().is_some_and(|owner| owner != leased_to) {
        return Ok(Released::NotOurs);
    }
    let tenant = identity::tenant_of(&r.run_id);
    match catalogue::get(&svc.service_type).and_then(|t| t.sharing) {
        Some(Sharing::Postgres) => pg::drop(client, project, &svc, r, &tenant, deadline).await?,
        Some(Sharing::Valkey) => delete_user(client, project, &svc, &tenant).await?,
        Some(Sharing::Kafka) => kafka::drop(client, project, &svc, &tenant).await?,
        None => {}
    }
    if let Some(why) = unsettled {
        return Ok(Released::Unsettled(why));
    }
    let mut tags = BTreeMap::from([(format!("{}{}", tags::TAG_LEASE, r.run_id), None::<String>)]);
    tags.insert(
        tags::TAG_USED.to_string(),
        Some(tags::rfc3339(
            client
                .server_time()
                .unwrap_or_else(time::OffsetDateTime::now_utc),
        )),
    );
    client
        .update_tags(project, &r.service, &tags, RELEASE_RETRY)
        .await
        .map_err(|e| format!("removing the lease of run {}: {e}", r.run_id))?;
    Ok(Released::Done)
}

/// Deletes the run's user, if the service has it.
pub(crate) async fn delete_user(
    client: &Client,
    project: &str,
    svc: &Service,
    tenant: &str,
) -> Result<(), String> {
    if svc.user(tenant).is_none() {
        return Ok(());
    }
    gone_if_missing(
        client
            .delete_user(project, &svc.service_name, tenant, RELEASE_RETRY)
            .await,
    )
    .await
    .map_err(|e| format!("deleting user {tenant}: {e}"))
}

/// A call that treats 404 as done: the object is gone.
pub(crate) async fn gone_if_missing(result: Result<(), ApiError>) -> Result<(), ApiError> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// The retry mode of release calls: teardown retries on its own schedule.
pub(crate) const RELEASE_RETRY: Retry = Retry::Teardown;
