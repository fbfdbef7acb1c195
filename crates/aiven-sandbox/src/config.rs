//! Sandbox configuration: what the imitation API serves and which faults it injects.
//!
//! Read from YAML (or JSON) with the same strictness as the product's manifest: unknown
//! keys, duplicate keys and bad values are errors with a line and a column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::durations::{duration, duration_map};
use crate::faults::{FaultRule, ServiceFault};

/// Everything the sandbox can be told. `Default` is a usable sandbox: one project,
/// two-second provisioning, no faults.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The API token clients must send (`Authorization: aivenv1 <token>` or `Bearer`).
    pub token: String,
    /// Projects the token can see.
    pub projects: Vec<ProjectConfig>,
    /// Accept any project name the client uses, creating it on first sight. Convenient
    /// for `--sandbox` runs of arbitrary manifests; off by default, as in the real API.
    pub accept_any_project: bool,
    /// Time from create to `RUNNING` for every type without its own entry in `delays`.
    #[serde(with = "duration")]
    pub provisioning_delay: Duration,
    /// Per service type override of `provisioning_delay`.
    #[serde(with = "duration_map")]
    pub delays: BTreeMap<String, Duration>,
    /// Time from a power-on (`PUT .../service/{s}` with `powered: true`) to `RUNNING`.
    /// Powering on builds new nodes and restores from backup, so by default it takes
    /// twice the type's provisioning delay.
    #[serde(with = "crate::durations::opt_duration")]
    pub power_on_delay: Option<Duration>,
    /// Extra time between consecutive nodes reaching `running` (node 0 comes up with the
    /// service). Models clusters whose brokers join one by one.
    #[serde(with = "duration")]
    pub node_lag: Duration,
    /// How long a deleted service's name stays taken (409 "already in use").
    #[serde(with = "duration")]
    pub name_reservation: Duration,
    /// How long a deleted service stays visible in lists and GETs (as `POWEROFF`), for
    /// testing that teardown confirms with a list instead of trusting the DELETE.
    #[serde(with = "duration")]
    pub delete_lag: Duration,
    /// Time from a Kafka topic's create to `ACTIVE`.
    #[serde(with = "duration")]
    pub topic_activation: Duration,
    /// Time after a create during which sub-resource calls answer 404 "Service X does not
    /// exist", as the real API does right after a create.
    #[serde(with = "duration")]
    pub create_lag: Duration,
    /// Shift of the sandbox's clock against the machine's at start (`POST
    /// /_sandbox/clock` moves it forward later): `Date` headers, `create_time` and tags
    /// comparisons use it. Seconds, may be negative.
    pub clock_offset_secs: i64,
    /// A per-token rate limit, announced in `X-RateLimit-*` headers.
    pub rate_limit: Option<RateLimit>,
    /// Seed for probabilistic faults and generated secrets' order; fixed for replay.
    pub seed: u64,
    /// Request-level faults.
    pub faults: Vec<FaultRule>,
    /// Service-level behaviour, matched by service name.
    pub service_faults: Vec<ServiceFault>,
    /// Where to keep the world between processes (`up --sandbox` then `down --sandbox`).
    pub state_file: Option<PathBuf>,
    /// Put real PostgreSQL and Valkey/Redis servers behind pg and valkey services when
    /// their binaries exist: `auto` (default), `simulated` (never) or `required`.
    pub backends: BackendMode,
    /// Serve HTTPS with a certificate from the project CA (clients need `--ca-cert`).
    pub tls: bool,
    /// How long a sandbox process asked to stop keeps answering first, as a server
    /// draining its connections does (for testing commands that arrive meanwhile).
    #[serde(with = "duration")]
    pub stop_drain: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            token: "sandbox-token".into(),
            projects: vec![ProjectConfig::named("sandbox")],
            accept_any_project: false,
            provisioning_delay: Duration::from_secs(2),
            delays: BTreeMap::new(),
            power_on_delay: None,
            node_lag: Duration::ZERO,
            name_reservation: Duration::from_secs(60),
            delete_lag: Duration::ZERO,
            topic_activation: Duration::from_secs(1),
            create_lag: Duration::ZERO,
            clock_offset_secs: 0,
            rate_limit: None,
            seed: 0,
            faults: Vec::new(),
            service_faults: Vec::new(),
            state_file: None,
            backends: BackendMode::Auto,
            tls: false,
            stop_drain: Duration::ZERO,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendMode {
    #[default]
    Auto,
    Simulated,
    Required,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    pub name: String,
    #[serde(default = "default_cloud")]
    pub default_cloud: String,
    /// Project VPCs. A create in a cloud that has one, without `project_vpc_id` in the
    /// body, lands in the VPC: the trap the real API sets.
    #[serde(default)]
    pub vpcs: Vec<VpcConfig>,
}

impl ProjectConfig {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            default_cloud: default_cloud(),
            vpcs: Vec::new(),
        }
    }
}

fn default_cloud() -> String {
    "google-europe-west1".into()
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VpcConfig {
    pub cloud: String,
    #[serde(default = "default_cidr")]
    pub network_cidr: String,
}

fn default_cidr() -> String {
    "10.1.0.0/24".into()
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub requests: u32,
    /// Window length.
    #[serde(with = "duration")]
    pub per: Duration,
    /// Whether the 429 carries `Retry-After` (the real API's habit is unverified).
    #[serde(default)]
    pub retry_after_header: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read sandbox config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{rendered}")]
    Parse { rendered: String },
    #[error("sandbox config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Loads a config file, rendering parse errors with the file name, line and column.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = serde_saphyr::from_str(text).map_err(|err| {
            let name = path.display().to_string();
            let rendered = err.render_with_options(serde_saphyr::render_options! {
                formatter: &serde_saphyr::UserMessageFormatter,
                source_name: Some(&name),
            });
            // The caller says `error: ` once; the snippet names the file.
            let rendered = rendered.strip_prefix("error: ").unwrap_or(&rendered);
            ConfigError::Parse {
                rendered: format!("invalid sandbox config: {rendered}"),
            }
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// Checks what serde cannot: references between fields and value ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.token.is_empty() {
            return Err("`token` must not be empty".into());
        }
        if self.projects.is_empty() && !self.accept_any_project {
            return Err("no `projects` and `accept_any_project: false`: nothing to serve".into());
        }
        for project in &self.projects {
            if !crate::rules::valid_project_name(&project.name) {
                return Err(format!(
                    "project name `{}` must match ^[a-z][-a-z0-9]{{0,62}}$",
                    project.name
                ));
            }
            let clouds = crate::catalogue::catalogue();
            for cloud in
                std::iter::once(&project.default_cloud).chain(project.vpcs.iter().map(|v| &v.cloud))
            {
                if clouds.cloud(cloud).is_none() {
                    return Err(format!(
                        "project `{}`: unknown cloud `{cloud}`; known clouds: {}",
                        project.name,
                        clouds.cloud_names().join(", ")
                    ));
                }
            }
        }
        for ty in self.delays.keys() {
            if crate::catalogue::catalogue().service_type(ty).is_none() {
                return Err(format!("`delays`: unknown service type `{ty}`"));
            }
        }
        if let Some(limit) = &self.rate_limit
            && (limit.requests == 0 || limit.per.is_zero())
        {
            return Err("`rate_limit` needs `requests` > 0 and a non-zero `per`".into());
        }
        for (i, rule) in self.faults.iter().enumerate() {
            rule.validate().map_err(|e| format!("faults[{i}]: {e}"))?;
        }
        for (i, fault) in self.service_faults.iter().enumerate() {
            fault
                .validate()
                .map_err(|e| format!("service_faults[{i}]: {e}"))?;
        }
        Ok(())
    }

    pub fn delay_for(&self, service_type: &str) -> Duration {
        self.delays
            .get(service_type)
            .copied()
            .unwrap_or(self.provisioning_delay)
    }

    /// REBUILDING -> RUNNING after a power-on: `power_on_delay`, else twice the type's
    /// provisioning delay (new nodes, then a restore from backup).
    pub fn power_on_delay_for(&self, service_type: &str) -> Duration {
        self.power_on_delay
            .unwrap_or_else(|| self.delay_for(service_type) * 2)
    }
}
