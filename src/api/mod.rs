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
/// Requests kept in reserve when pacing, so that teardown is never the one that waits.
const PACING_RESERVE: u32 = 3;
/// The longest the client waits because the API asked it to.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(60);

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
    pub ca_cert: Option<PathBuf>,
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
    /// Whether the API has answered this client at all: until it has, a connection
    /// that cannot be made means a wrong address, not a blip, and is not retried.
    answered: AtomicBool,
}

#[derive(Default)]
struct Pacer {
    remaining: Option<u32>,
    reset_at: Option<Instant>,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("aiven-ephemeral/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // The API closes idle connections; recycle before it does (as avn does).
            .pool_idle_timeout(Duration::from_secs(50))
            .redirect(reqwest::redirect::Policy::limited(3));
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --ca-cert {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
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

    /// HTTP requests sent so far, retries included.
    pub fn request_count(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
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
            .adjust(|e, planned| match e.retry_after() {
                Some(asked) => Some(asked.min(MAX_SERVER_WAIT)),
                None => planned,
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
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Decode(format!("{method} {path}: {e}")))
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
        if retry != Retry::Teardown {
            self.pace().await;
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
        tracing::debug!(
            "{method} {path} -> {status} in {}ms",
            started.elapsed().as_millis()
        );
        if (200..300).contains(&status) {
            Ok(bytes.to_vec())
        } else {
            Err(ApiError::from_response(
                status,
                retry_after.as_deref(),
                &bytes,
            ))
        }
    }

    /// Waits when the rate-limit window is nearly spent, instead of hitting a 429.
    async fn pace(&self) {
        loop {
            let wait = {
                let mut p = self.inner.pacer.lock().unwrap_or_else(|e| e.into_inner());
                match (p.remaining, p.reset_at) {
                    (Some(r), Some(at)) if r <= PACING_RESERVE && Instant::now() < at => {
                        Some(at - Instant::now())
                    }
                    _ => {
                        if let Some(r) = p.remaining.as_mut() {
                            *r = r.saturating_sub(1);
                        }
                        None
                    }
                }
            };
            let Some(wait) = wait else { return };
            tracing::info!(
                "pacing: rate-limit window nearly spent, waiting {:.1}s",
                wait.as_secs_f64()
            );
            tokio::time::sleep(wait.min(MAX_SERVER_WAIT)).await;
            let mut p = self.inner.pacer.lock().unwrap_or_else(|e| e.into_inner());
            p.remaining = None;
            p.reset_at = None;
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
            // Reset is either seconds from now or a Unix time; tell them apart by size.
            let secs = if reset > 1_000_000_000 {
                reset.saturating_sub(OffsetDateTime::now_utc().unix_timestamp().max(0) as u64)
            } else {
                reset
            };
            let remaining = remaining.min(u32::MAX as u64) as u32;
            let reset_at = Instant::now() + Duration::from_secs(secs);
            let mut p = self.inner.pacer.lock().unwrap_or_else(|e| e.into_inner());
            // Answers to concurrent requests arrive in any order: within one window the
            // lowest count (and what was spent since) is the true one.
            p.remaining = match (p.remaining, p.reset_at) {
                (Some(known), Some(at)) if reset_at <= at + Duration::from_secs(1) => {
                    Some(known.min(remaining))
                }
                _ => Some(remaining),
            };
            p.reset_at = Some(p.reset_at.map_or(reset_at, |at| at.max(reset_at)));
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
        serde_json::from_value(value).map_err(|e| ApiError::Decode(format!("{method} {path}: {e}")))
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
        let query = if include_secrets {
            "?include_secrets=true"
        } else {
            ""
        };
        let path = Self::service_path(project, name, query);
        self.fetch(Method::GET, &path, None, "service", Retry::Standard)
            .await
    }

    /// A service without secrets, trying as hard as `retry` says.
    pub async fn get_service_with(
        &self,
        project: &str,
        name: &str,
        retry: Retry,
    ) -> Result<Service, ApiError> {
        let path = Self::service_path(project, name, "");
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

    /// Merges tags: `None` removes a key.
    pub async fn update_tags(
        &self,
        project: &str,
        name: &str,
        tags: &BTreeMap<String, Option<String>>,
    ) -> Result<(), ApiError> {
        let body = json!({ "tags": tags });
        let path = Self::service_path(project, name, "/tags");
        self.call(Method::PATCH, &path, Some(&body), Retry::Standard)
            .await
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
        let path = Self::service_path(project, service, &format!("/user/{}", seg(username)));
        self.call(Method::DELETE, &path, None, retry).await
    }

    pub async fn delete_topic(
        &self,
        project: &str,
        service: &str,
        topic: &str,
        retry: Retry,
    ) -> Result<(), ApiError> {
        let path = Self::service_path(project, service, &format!("/topic/{}", seg(topic)));
        self.call(Method::DELETE, &path, None, retry).await
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

    pub async fn list_topics(&self, project: &str, service: &str) -> Result<Vec<Topic>, ApiError> {
        let path = Self::service_path(project, service, "/topic");
        self.fetch(Method::GET, &path, None, "topics", Retry::Standard)
            .await
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

    pub async fn delete_acl(&self, project: &str, service: &str, id: &str) -> Result<(), ApiError> {
        let path = Self::service_path(project, service, &format!("/acl/{}", seg(id)));
        self.call(Method::DELETE, &path, None, Retry::Standard)
            .await
    }
}

fn transport(e: reqwest::Error) -> ApiError {
    ApiError::Transport {
        connect: e.is_connect(),
        message: chain(&e),
    }
}

/// An error with its causes, on one line: reqwest's own text rarely says what failed.
fn chain(e: &dyn std::error::Error) -> String {
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
