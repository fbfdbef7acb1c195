//! The Aiven API client. It knows the API and nothing of manifests or CI.
//!
//! Every call goes through [`Client::send`]: authentication (`aivenv1`), pacing by the
//! `X-RateLimit-*` headers, bounded retries with backoff (honouring `Retry-After` and
//! the "try again in Ns" text of 429s), the server's `Date` recorded for expiry
//! computations, and a request counter. Bodies are never logged: they carry secrets.

mod error;
mod types;
mod writes;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use types::*;
pub use writes::Writes;

use crate::secret::Secret;

/// How long one request may take before it counts as lost. A create that timed out may
/// still have happened; teardown re-checks names for this long after such a create.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const TEARDOWN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the client waits because the API asked it to.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(60);
/// Processes that were told to wait spread their return over up to this much more, so
/// that they do not all come back at the same instant.
const MAX_SPREAD: Duration = Duration::from_secs(5);
/// How long an estimate of the project's spending holds at full weight, in seconds.
const FRESH: f64 = 2.0;
/// The most a poll interval is stretched when the project's budget runs low (past it,
/// the reserve for writes and teardown holds polls back until the window resets).
const MAX_SLOWDOWN: f64 = 30.0;

/// Path segments are escaped; names are usually safe, user and topic names may not be.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// How hard a call tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Up to 6 attempts, 0.5 s growing to 20 s between them, jittered.
    Standard,
    /// One attempt, paced: for callers that retry on their own terms (creates, which
    /// must know whether an attempt may have landed).
    Once,
    /// Teardown: one attempt with a short timeout and no pacing. Teardown retries on
    /// its own schedule, inside its own budget.
    Teardown,
}

pub struct ClientConfig {
    /// Base URL without `/v1`.
    pub api_url: String,
    pub token: Secret,
    pub ca_cert: Option<CaCert>,
}

/// `--ca-cert`: the file (for messages) and what it holds, read by the caller without
/// blocking the runtime (it may be a pipe, or on a slow disk).
pub struct CaCert {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// Once cancelled, calls stop retrying (the attempt in flight still completes).
    cancel: Option<CancellationToken>,
    /// Where this client's writes are counted until answered.
    writes: Option<Writes>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    token: Secret,
    pacer: Mutex<Pacer>,
    server_time: Mutex<Option<(OffsetDateTime, Instant)>>,
    requests: AtomicU64,
    /// Answers that were 429s.
    limited: AtomicU64,
    /// Whether the API has answered this client at all: until it has, a connection
    /// that cannot be made means a wrong address, not a blip, and is not retried.
    answered: AtomicBool,
}

/// What the API's answers say of the project's rate budget, which every process using
/// the token spends: the only signal processes on different machines share.
#[derive(Default)]
struct Pacer {
    limit: Option<u32>,
    remaining: Option<u32>,
    reset_at: Option<Instant>,
    /// A 429 asked to wait until then.
    blocked_until: Option<Instant>,
    /// The last count seen in this window, and when: how fast the project spends.
    seen: Option<(Instant, u32)>,
    /// Requests per second the project spends (every process using the token), smoothed.
    spending: f64,
}

/// What a request is for. When the budget runs low, reads (polls) hold back first and
/// writes next, so that what is left goes to teardown: every process applies the same
/// thresholds to the budget the headers announce, so a run that is tearing down gets
/// its DELETEs through while the others wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Read,
    Write,
    Teardown,
}

impl Class {
    /// Requests of the window left to the classes above this one.
    fn reserve(self, limit: u32) -> u32 {
        match self {
            Class::Read => (limit / 4).max(3),
            Class::Write => (limit / 10).max(2),
            Class::Teardown => 0,
        }
    }
}

impl Pacer {
    /// How long a request of `class` must wait now; `None`: go (and it is counted).
    fn wait(&mut self, class: Class, now: Instant) -> Option<Instant> {
        if class != Class::Teardown
            && let Some(until) = self.blocked_until.filter(|u| now < *u)
        {
            return Some(until);
        }
        match (self.remaining, self.reset_at) {
            (Some(r), Some(at)) if now < at => {
                if r <= class.reserve(self.limit.unwrap_or(r)) && class != Class::Teardown {
                    return Some(at);
                }
                self.remaining = Some(r.saturating_sub(1));
            }
            // The window is over: what it said no longer holds.
            (_, Some(_)) => {
                self.remaining = None;
                self.reset_at = None;
            }
            _ => {}
        }
        None
    }

    /// What an answer's headers said.
    fn observed(&mut self, limit: Option<u32>, remaining: u32, reset_at: Instant, now: Instant) {
        // Answers to concurrent requests arrive in any order: within one window the
        // lowest count (and what was spent since) is the true one.
        let same_window = self
            .reset_at
            .is_some_and(|at| reset_at <= at + Duration::from_secs(1));
        let known = self.remaining.filter(|_| same_window);
        self.remaining = Some(known.map_or(remaining, |k| k.min(remaining)));
        if same_window {
            if let Some((then, before)) = self.seen {
                let elapsed = now.saturating_duration_since(then).as_secs_f64();
                if elapsed >= 0.05 {
                    let rate = f64::from(before.saturating_sub(remaining)) / elapsed;
                    self.spending = (self.spending + rate) / 2.0;
                    self.seen = Some((now, remaining));
                }
            } else {
                self.seen = Some((now, remaining));
            }
        } else {
            self.seen = Some((now, remaining));
        }
        self.reset_at = Some(self.reset_at.map_or(reset_at, |at| at.max(reset_at)));
        self.limit = limit.or(self.limit);
    }

    /// A poll interval's stretch: 1 while the project spends its budget no faster than
    /// it lasts until the window resets; else as much slower as the project spends too
    /// fast (every process stretching alike brings the whole project back within it).
    fn slowdown(&self, now: Instant) -> f64 {
        match (self.remaining, self.reset_at) {
            (Some(r), Some(at)) if now < at => {
                let spendable =
                    f64::from(r.saturating_sub(Class::Read.reserve(self.limit.unwrap_or(r))))
                        .max(0.5);
                let lasts = spendable / at.saturating_duration_since(now).as_secs_f64().max(1.0);
                // What was seen long ago says less of how fast the project spends now.
                let age = self.seen.map_or(0.0, |(then, _)| {
                    now.saturating_duration_since(then).as_secs_f64()
                });
                let spending = self.spending * (FRESH / age.max(FRESH));
                (spending / lasts).clamp(1.0, MAX_SLOWDOWN)
            }
            _ => 1.0,
        }
    }
}

/// `wait` plus a random part of it (at most [`MAX_SPREAD`]): processes told the same
/// wait come back spread out.
pub fn spread(wait: Duration) -> Duration {
    let most = (wait / 2).min(MAX_SPREAD);
    wait + most.mul_f64(rand::random::<f64>())
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .user_agent(format!("aiven-ephemeral/{}", crate::VERSION))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // The API closes idle connections; recycle before it does (as avn does).
            .pool_idle_timeout(Duration::from_secs(50))
            .redirect(reqwest::redirect::Policy::limited(3));
        if let Some(CaCert { path, pem }) = &config.ca_cert {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("--ca-cert {} is not a PEM bundle: {e}", path.display()))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot set up the HTTPS client: {}", chain(&e)))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: config
                    .api_url
                    .trim_end_matches('/')
                    .trim_end_matches("/v1")
                    .to_string(),
                token: config.token,
                pacer: Mutex::new(Pacer::default()),
                server_time: Mutex::new(None),
                requests: AtomicU64::new(0),
                limited: AtomicU64::new(0),
                answered: AtomicBool::new(false),
            }),
            cancel: None,
            writes: None,
        })
    }

    /// A client whose calls give up retrying once `cancel` fires. Teardown uses the
    /// plain client: it must never be cut short.
    pub fn with_cancel(&self, cancel: CancellationToken) -> Self {
        Self {
            cancel: Some(cancel),
            ..self.clone()
        }
    }

    /// A client whose writes (every request but a GET) are counted in `writes` until
    /// answered, and are sent from a task of their own: a caller dropped by a signal
    /// does not abandon a request the API may apply anyway, so its answer still comes.
    pub fn tracking(&self, writes: &Writes) -> Self {
        Self {
            writes: Some(writes.clone()),
            ..self.clone()
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// The API's base URL (without `/v1`).
    pub fn api_url(&self) -> &str {
        &self.inner.base
    }

    /// HTTP requests sent so far, retries included.
    pub fn request_count(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// What is left of the wait a 429 asked of this process, if any.
    pub fn asked_to_wait(&self) -> Option<Duration> {
        let p = self.inner.pacer.lock().unwrap_or_else(|e| e.into_inner());
        p.blocked_until
            .map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero())
    }

    /// Whether the project spends its rate budget faster than it lasts (every process
    /// using the token spends it).
    pub fn contended(&self) -> bool {
        self.inner
            .pacer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .slowdown(Instant::now())
            > 1.0
    }

    /// A poll interval, stretched as much as the project spends its budget too fast,
    /// but never past the window's end (a new window brings a whole budget).
    pub fn paced(&self, interval: Duration) -> Duration {
        let p = self.inner.pacer.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let stretched = interval.mul_f64(p.slowdown(now));
        match p.reset_at {
            Some(at) if stretched > interval => {
                stretched.min(interval.max(at.saturating_duration_since(now) + MAX_SPREAD / 5))
            }
            _ => stretched,
        }
    }

    /// The API's clock, from the `Date` of its last answer, advanced by the time since.
    pub fn server_time(&self) -> Option<OffsetDateTime> {
        let guard = self
            .inner
            .server_time
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        guard.map(|(date, at)| date + at.elapsed())
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<T, ApiError> {
        let attempt = || self.send_once(method.clone(), path, body, retry);
        let backoff = match retry {
            Retry::Standard => ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(20))
                .with_max_times(5)
                .with_jitter(),
            Retry::Once | Retry::Teardown => ExponentialBuilder::default().with_max_times(0),
        };
        let cancel = self.cancel.clone();
        let sleep = move |wait: Duration| {
            let cancel = cancel.clone();
            async move {
                match cancel {
                    Some(c) => tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = c.cancelled() => {}
                    },
                    None => tokio::time::sleep(wait).await,
                }
            }
        };
        let bytes = attempt
            .retry(backoff)
            .sleep(sleep)
            .when(|e| e.is_transient() && !self.cancelled() && !self.unreachable(e))
            // The API's asked wait replaces a planned one; it never adds a retry that the
            // mode does not have (a teardown's DELETE retries on teardown's schedule).
            .adjust(|e, planned| {
                planned.map(|p| {
                    e.retry_after()
                        .map_or(p, |asked| spread(asked.min(MAX_SERVER_WAIT)))
                })
            })
            .notify(|e, wait| {
                tracing::warn!(
                    "{} {}: {e}; retrying in {:.1}s",
                    method,
                    path,
                    wait.as_secs_f64()
                )
            })
            .await?;
        if bytes.is_empty() {
            return serde_json::from_value(json!({})).map_err(|e| ApiError::Decode(e.to_string()));
        }
        let mut json = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut json)
            .map_err(|e| ApiError::Decode(format!("{method} {path}: {}", undecodable("", e))))
    }

    /// A connection refused (or unresolvable) before the API ever answered.
    fn unreachable(&self, e: &ApiError) -> bool {
        matches!(e, ApiError::Transport { connect: true, .. })
            && !self.inner.answered.load(Ordering::Relaxed)
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Vec<u8>, ApiError> {
        if self.cancelled() {
            return Err(ApiError::Cancelled);
        }
        self.pace(match (retry, &method) {
            (Retry::Teardown, _) => Class::Teardown,
            (_, &Method::GET) => Class::Read,
            _ => Class::Write,
        })
        .await;
        if self.cancelled() {
            return Err(ApiError::Cancelled);
        }
        let url = format!("{}/v1{}", self.inner.base, path);
        let mut request = self.inner.http.request(method.clone(), &url).header(
            reqwest::header::AUTHORIZATION,
            format!("aivenv1 {}", self.inner.token.expose()),
        );
        if retry == Retry::Teardown {
            request = request.timeout(TEARDOWN_REQUEST_TIMEOUT);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = Instant::now();
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let response = match &self.writes {
            Some(writes) if method != Method::GET => {
                writes.sent();
                let writes = writes.clone();
                tokio::spawn(async move {
                    let sent = request.send().await;
                    writes.done(sent.as_ref().is_err_and(|e| !e.is_connect()));
                    sent
                })
                .await
                .map_err(|e| ApiError::Transport {
                    connect: false,
                    message: format!("the request's task ended: {e}"),
                })?
            }
            _ => request.send().await,
        }
        .map_err(transport)?;
        self.inner.answered.store(true, Ordering::Relaxed);
        let status = response.status().as_u16();
        self.observe(response.headers());
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response.bytes().await.map_err(transport)?;
        if status == 429 {
            self.inner.limited.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(
            "{method} {path} -> {status} in {}ms",
            started.elapsed().as_millis()
        );
        if (200..300).contains(&status) {
            return Ok(bytes.to_vec());
        }
        let error = ApiError::from_response(status, retry_after.as_deref(), &bytes);
        if status == 429
            && let Some(wait) = error.retry_after()
        {
            // Nothing else of this process goes out before the API said it may.
            let until = Instant::now() + wait.min(MAX_SERVER_WAIT);
            let mut p = self.inner.pacer.lock().unwrap_or_else(|e| e.into_inner());
            p.blocked_until = Some(p.blocked_until.map_or(until, |b| b.max(until)));
        }
        Err(error)
    }

    /// Waits while the project's budget is kept for more urgent requests than this
    /// one, or a 429 asked this process to wait; then a moment more, at random, so that
    /// processes waiting for the same instant spread out.
    async fn pace(&self, class: Class) {
        loop {
            let until = self
                .inner
                .pacer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .wait(class, Instant::now());
            let Some(until) = until else { return };
            let wait = spread(until.saturating_duration_since(Instant::now())).min(MAX_SERVER_WAIT);
            tracing::info!(
                "pacing: the project's rate budget is low, waiting {:.1}s",
                wait.as_secs_f64()
            );
            let cancel = self.cancel.clone();
            match cancel {
                Some(c) => tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = c.cancelled() => return,
                },
                None => tokio::time::sleep(wait).await,
            }
        }
    }

    fn observe(&self, headers: &reqwest::header::HeaderMap) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(remaining), Some(reset)) =
            (number("x-ratelimit-remaining"), number("x-ratelimit-reset"))
        {
            let limit = number("x-ratelimit-limit").map(|l| l.min(u32::MAX as u64) as u32);
            // Reset is either seconds from now or a Unix time; tell them apart by size.
            let secs = if reset > 1_000_000_000 {
                reset.saturating_sub(OffsetDateTime::now_utc().unix_timestamp().max(0) as u64)
            } else {
                reset
            };
            let remaining = remaining.min(u32::MAX as u64) as u32;
            let now = Instant::now();
            self.inner
                .pacer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .observed(limit, remaining, now + Duration::from_secs(secs), now);
        }
        if let Some(date) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
        {
            let date = OffsetDateTime::from(date);
            *self
                .inner
                .server_time
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some((date, Instant::now()));
        }
    }

    /// A call whose answer's body does not matter (success is the status).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<(), ApiError> {
        self.send::<Value>(method, path, body, retry)
            .await
            .map(|_| ())
    }

    /// A call whose answer carries the result under one key (`{"service": {...}}`).
    async fn fetch<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: &str,
        retry: Retry,
    ) -> Result<T, ApiError> {
        let mut answer: Value = self.send(method.clone(), path, body, retry).await?;
        let value = answer.get_mut(key).map(Value::take).ok_or_else(|| {
            ApiError::Decode(format!("{method} {path}: no `{key}` in the answer"))
        })?;
        serde_path_to_error::deserialize(value)
            .map_err(|e| ApiError::Decode(format!("{method} {path}: {}", undecodable(key, e))))
    }

    /// Deletes one object inside a service (`/user/`, `/topic/`, `/acl/`, ...).
    async fn delete_inside(
        &self,
        project: &str,
        service: &str,
        kind: &str,
        id: &str,
        retry: Retry,
    ) -> Result<(), ApiError> {
        let path = Self::service_path(project, service, &format!("{kind}{}", seg(id)));
        self.call(Method::DELETE, &path, None, retry).await
    }

    fn project_path(project: &str, rest: &str) -> String {
        format!("/project/{}{rest}", seg(project))
    }

    fn service_path(project: &str, service: &str, rest: &str) -> String {
        format!("/project/{}/service/{}{rest}", seg(project), seg(service))
    }

    // -----------------------------------------------------------------------------------
    // Projects and catalogue

    pub async fn project(&self, project: &str) -> Result<Project, ApiError> {
        let path = Self::project_path(project, "");
        self.fetch(Method::GET, &path, None, "project", Retry::Standard)
            .await
    }

    pub async fn project_ca(&self, project: &str) -> Result<String, ApiError> {
        let path = Self::project_path(project, "/kms/ca");
        self.fetch(Method::GET, &path, None, "certificate", Retry::Standard)
            .await
    }

    pub async fn price(
        &self,
        project: &str,
        service_type: &str,
        plan: &str,
        cloud: &str,
    ) -> Result<Price, ApiError> {
        let rest = format!(
            "/pricing/service-types/{}/plans/{}/clouds/{}",
            seg(service_type),
            seg(plan),
            seg(cloud)
        );
        self.send(
            Method::GET,
            &Self::project_path(project, &rest),
            None,
            Retry::Standard,
        )
        .await
    }

    pub async fn plan_specs(
        &self,
        project: &str,
        service_type: &str,
        plan: &str,
    ) -> Result<PlanSpecs, ApiError> {
        let rest = format!("/service-types/{}/plans/{}", seg(service_type), seg(plan));
        self.send(
            Method::GET,
            &Self::project_path(project, &rest),
            None,
            Retry::Standard,
        )
        .await
    }

    // -----------------------------------------------------------------------------------
    // Services

    /// Every service of the project, without secrets (they belong to other teams too).
    pub async fn list_services(&self, project: &str) -> Result<Vec<Service>, ApiError> {
        self.list_services_with(project, Retry::Standard).await
    }

    pub async fn list_services_with(
        &self,
        project: &str,
        retry: Retry,
    ) -> Result<Vec<Service>, ApiError> {
        self.fetch(
            Method::GET,
            &Self::project_path(project, "/service"),
            None,
            "services",
            retry,
        )
        .await
    }

    pub async fn get_service(
        &self,
        project: &str,
        name: &str,
        include_secrets: bool,
    ) -> Result<Service, ApiError> {
        self.get_service_with(project, name, include_secrets, Retry::Standard)
            .await
    }

    /// A service, trying as hard as `retry` says.
    pub async fn get_service_with(
        &self,
        project: &str,
        name: &str,
        include_secrets: bool,
        retry: Retry,
    ) -> Result<Service, ApiError> {
        let query = if include_secrets {
            "?include_secrets=true"
        } else {
            ""
        };
        let path = Self::service_path(project, name, query);
        self.fetch(Method::GET, &path, None, "service", retry).await
    }

    /// Sends a create once: the caller decides about retries.
    pub async fn create_service(
        &self,
        project: &str,
        body: &CreateService<'_>,
    ) -> Result<Service, ApiError> {
        let body = serde_json::to_value(body).map_err(|e| ApiError::Decode(e.to_string()))?;
        let path = Self::project_path(project, "/service");
        self.fetch(Method::POST, &path, Some(&body), "service", Retry::Once)
            .await
    }

    pub async fn delete_service(
        &self,
        project: &str,
        name: &str,
        retry: Retry,
    ) -> Result<(), ApiError> {
        self.call(
            Method::DELETE,
            &Self::service_path(project, name, ""),
            None,
            retry,
        )
        .await
    }

    pub async fn set_termination_protection(
        &self,
        project: &str,
        name: &str,
        protected: bool,
    ) -> Result<(), ApiError> {
        let body = json!({"termination_protection": protected});
        self.call(
            Method::PUT,
            &Self::service_path(project, name, ""),
            Some(&body),
            Retry::Teardown,
        )
        .await
    }

    /// Powers a service on (built anew, restored from backup: minutes) or off (its VMs
    /// are deleted; billing stops).
    pub async fn set_powered(&self, project: &str, name: &str, on: bool) -> Result<(), ApiError> {
        let body = json!({ "powered": on });
        self.call(
            Method::PUT,
            &Self::service_path(project, name, ""),
            Some(&body),
            Retry::Standard,
        )
        .await
    }

    /// Changes a service's plan, cloud or `user_config` (the API merges `user_config`
    /// key by key). A plan or cloud change rebuilds its nodes; the data stays.
    pub async fn update_service(
        &self,
        project: &str,
        name: &str,
        body: &Value,
    ) -> Result<(), ApiError> {
        self.call(
            Method::PUT,
            &Self::service_path(project, name, ""),
            Some(body),
            Retry::Standard,
        )
        .await
    }

    /// Merges tags: `None` removes a key.
    pub async fn update_tags(
        &self,
        project: &str,
        name: &str,
        tags: &BTreeMap<String, Option<String>>,
        retry: Retry,
    ) -> Result<(), ApiError> {
        let body = json!({ "tags": tags });
        let path = Self::service_path(project, name, "/tags");
        self.call(Method::PATCH, &path, Some(&body), retry).await
    }

    // -----------------------------------------------------------------------------------
    // Inside services

    pub async fn create_database(
        &self,
        project: &str,
        service: &str,
        database: &str,
    ) -> Result<(), ApiError> {
        let body = json!({ "database": database });
        let path = Self::service_path(project, service, "/db");
        self.call(Method::POST, &path, Some(&body), Retry::Standard)
            .await
    }

    pub async fn list_databases(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Vec<String>, ApiError> {
        #[derive(serde::Deserialize)]
        struct Db {
            database_name: String,
        }
        let path = Self::service_path(project, service, "/db");
        let dbs: Vec<Db> = self
            .fetch(Method::GET, &path, None, "databases", Retry::Standard)
            .await?;
        Ok(dbs.into_iter().map(|d| d.database_name).collect())
    }

    /// The answer carries the new user's credentials in plaintext.
    pub async fn create_user(
        &self,
        project: &str,
        service: &str,
        username: &str,
    ) -> Result<ServiceUser, ApiError> {
        self.create_user_with(project, service, username, None)
            .await
    }

    /// A user with the type's `access_control` (Valkey's key, channel and command
    /// rules, say).
    pub async fn create_user_with(
        &self,
        project: &str,
        service: &str,
        username: &str,
        access_control: Option<&Value>,
    ) -> Result<ServiceUser, ApiError> {
        let mut body = json!({ "username": username });
        if let Some(ac) = access_control {
            body["access_control"] = ac.clone();
        }
        let path = Self::service_path(project, service, "/user");
        self.fetch(Method::POST, &path, Some(&body), "user", Retry::Standard)
            .await
    }

    pub async fn get_user(
        &self,
        project: &str,
        service: &str,
        username: &str,
    ) -> Result<ServiceUser, ApiError> {
        let rest = format!("/user/{}?include_secrets=true", seg(username));
        let path = Self::service_path(project, service, &rest);
        self.fetch(Method::GET, &path, None, "user", Retry::Standard)
            .await
    }

    pub async fn delete_user(
        &self,
        project: &str,
        service: &str,
        username: &str,
        retry: Retry,
    ) -> Result<(), ApiError> {
        self.delete_inside(project, service, "/user/", username, retry)
            .await
    }

    pub async fn delete_database(
        &self,
        project: &str,
        service: &str,
        database: &str,
        retry: Retry,
    ) -> Result<(), ApiError> {
        self.delete_inside(project, service, "/db/", database, retry)
            .await
    }

    pub async fn delete_topic(
        &self,
        project: &str,
        service: &str,
        topic: &str,
        retry: Retry,
    ) -> Result<(), ApiError> {
        self.delete_inside(project, service, "/topic/", topic, retry)
            .await
    }

    pub async fn create_topic(
        &self,
        project: &str,
        service: &str,
        body: &Value,
    ) -> Result<(), ApiError> {
        let path = Self::service_path(project, service, "/topic");
        self.call(Method::POST, &path, Some(body), Retry::Standard)
            .await
    }

    pub async fn list_topics(
        &self,
        project: &str,
        service: &str,
        retry: Retry,
    ) -> Result<Vec<Topic>, ApiError> {
        let path = Self::service_path(project, service, "/topic");
        self.fetch(Method::GET, &path, None, "topics", retry).await
    }

    pub async fn add_acl(
        &self,
        project: &str,
        service: &str,
        permission: &str,
        topic: &str,
        username: &str,
    ) -> Result<(), ApiError> {
        let body = json!({"permission": permission, "topic": topic, "username": username});
        let path = Self::service_path(project, service, "/acl");
        self.call(Method::POST, &path, Some(&body), Retry::Standard)
            .await
    }

    pub async fn list_acls(&self, project: &str, service: &str) -> Result<Vec<Acl>, ApiError> {
        let path = Self::service_path(project, service, "/acl");
        self.fetch(Method::GET, &path, None, "acl", Retry::Standard)
            .await
    }

    pub async fn delete_acl(
        &self,
        project: &str,
        service: &str,
        id: &str,
        retry: Retry,
    ) -> Result<(), ApiError> {
        self.delete_inside(project, service, "/acl/", id, retry)
            .await
    }

    pub async fn add_kafka_acl(
        &self,
        project: &str,
        service: &str,
        acl: &KafkaAcl,
    ) -> Result<(), ApiError> {
        let body = json!({
            "principal": acl.principal,
            "resource_type": acl.resource_type,
            "resource_name": acl.resource_name,
            "pattern_type": acl.pattern_type,
            "operation": acl.operation,
            "permission_type": acl.permission_type,
            "host": acl.host,
        });
        let path = Self::service_path(project, service, "/kafka/acl");
        self.call(Method::POST, &path, Some(&body), Retry::Standard)
            .await
    }

    pub async fn delete_kafka_acl(
        &self,
        project: &str,
        service: &str,
        id: &str,
        retry: Retry,
    ) -> Result<(), ApiError> {
        self.delete_inside(project, service, "/kafka/acl/", id, retry)
            .await
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let requests = self.requests.load(Ordering::Relaxed);
        if requests > 0 {
            tracing::info!(
                "{requests} API requests, {} rate-limited",
                self.limited.load(Ordering::Relaxed)
            );
        }
    }
}

fn transport(e: reqwest::Error) -> ApiError {
    ApiError::Transport {
        connect: e.is_connect(),
        message: chain(&e),
    }
}

/// An error with its causes, on one line: reqwest's own text rarely says what failed.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Why an answer did not decode: where, and what was expected, never the value found
/// (serde quotes it, and a field whose type changed may hold a password or a key).
fn undecodable(key: &str, e: serde_path_to_error::Error<serde_json::Error>) -> String {
    let at = match (key, e.path().to_string()) {
        ("", path) => path,
        (key, path) if path == "." => key.to_string(),
        (key, path) if path.starts_with('[') => format!("{key}{path}"),
        (key, path) => format!("{key}.{path}"),
    };
    let inner = e.into_inner();
    if !inner.is_data() {
        // Syntax: serde_json says where, not what it read.
        return format!("the answer is not JSON ({inner})");
    }
    let message = inner.to_string();
    let message = match inner.line() {
        0 => message.as_str(),
        line => message
            .strip_suffix(&format!(" at line {line} column {}", inner.column()))
            .unwrap_or(&message),
    };
    let why = match message.split_once(", expected ") {
        Some((_, expected)) => format!("expected {expected}"),
        // These name fields and types, never a value.
        None if message.starts_with("missing field")
            || message.starts_with("data did not match") =>
        {
            message.to_string()
        }
        None => "a value it cannot read".to_string(),
    };
    format!("`{at}`: {why} (the value is not shown: it may be a secret)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(limit: u32, remaining: u32, now: Instant) -> Pacer {
        let mut p = Pacer::default();
        p.observed(Some(limit), remaining, now + Duration::from_secs(30), now);
        p
    }

    #[test]
    fn as_the_budget_runs_low_polls_hold_back_first_then_writes_never_teardown() {
        let now = Instant::now();
        let reset = now + Duration::from_secs(30);
        // 120 a window: reads keep 30 back, writes 12, teardown nothing.
        let mut p = pacer(120, 31, now);
        assert_eq!(p.wait(Class::Read, now), None, "31 left: a poll goes");
        assert_eq!(p.wait(Class::Read, now), Some(reset), "30 left: polls wait");
        let mut p = pacer(120, 13, now);
        assert_eq!(p.wait(Class::Write, now), None);
        assert_eq!(p.wait(Class::Write, now), Some(reset));
        let mut p = pacer(120, 0, now);
        assert_eq!(p.wait(Class::Teardown, now), None, "a DELETE is never held");
        // Once the window is over, what it said no longer holds.
        assert_eq!(p.wait(Class::Read, reset), None);
    }

    #[test]
    fn after_a_429_nothing_but_teardown_goes_before_the_asked_wait() {
        let now = Instant::now();
        let until = now + Duration::from_secs(10);
        let mut p = Pacer {
            blocked_until: Some(until),
            ..Pacer::default()
        };
        assert_eq!(p.wait(Class::Read, now), Some(until));
        assert_eq!(p.wait(Class::Write, now), Some(until));
        assert_eq!(p.wait(Class::Teardown, now), None);
        assert_eq!(p.wait(Class::Read, until), None);
    }

    #[test]
    fn polls_stretch_as_much_as_the_project_spends_too_fast() {
        let now = Instant::now();
        let reset = now + Duration::from_secs(30);
        let mut p = Pacer::default();
        p.observed(Some(120), 120, reset, now);
        assert_eq!(p.slowdown(now), 1.0, "nothing spent yet");
        // 60 spent in one second by the whole project: 30 spendable (above the reads'
        // reserve of 30) in 29 s left is 1 a second; spending 30 a second (the mean
        // with the earlier 0) is 30 times too fast.
        let later = now + Duration::from_secs(1);
        p.observed(Some(120), 60, reset, later);
        let slow = p.slowdown(later);
        assert!((28.9..=MAX_SLOWDOWN).contains(&slow), "{slow}");
        // A project that spends slowly is not slowed down.
        let mut p = Pacer::default();
        p.observed(Some(120), 120, reset, now);
        p.observed(Some(120), 119, reset, now + Duration::from_secs(10));
        assert_eq!(p.slowdown(now + Duration::from_secs(10)), 1.0);
        // Nor one that announces no budget.
        assert_eq!(Pacer::default().slowdown(now), 1.0);
    }

    #[test]
    fn a_wait_is_spread_by_up_to_half_of_it_and_at_most_five_seconds() {
        for _ in 0..100 {
            let w = spread(Duration::from_secs(4));
            assert!((Duration::from_secs(4)..=Duration::from_secs(6)).contains(&w));
            let w = spread(Duration::from_secs(40));
            assert!((Duration::from_secs(40)..=Duration::from_secs(45)).contains(&w));
        }
    }
}
