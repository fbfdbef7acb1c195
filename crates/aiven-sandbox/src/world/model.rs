//! The world's data: projects, services and their sub-resources, as saved between
//! processes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::pki::Pki;
use crate::rules::rfc3339;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceState {
    Rebuilding,
    Running,
    Rebalancing,
    Poweroff,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Project {
    pub name: String,
    pub default_cloud: String,
    pub vpcs: Vec<Vpc>,
    pub services: BTreeMap<String, Service>,
    /// Names of deleted services and when they become free again.
    #[serde(with = "time_map")]
    pub reserved_names: BTreeMap<String, OffsetDateTime>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Vpc {
    pub project_vpc_id: String,
    pub cloud_name: String,
    pub network_cidr: String,
    #[serde(with = "time::serde::rfc3339")]
    pub create_time: OffsetDateTime,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub service_type: String,
    pub plan: String,
    pub cloud: String,
    pub project_vpc_id: Option<String>,
    pub user_config: Value,
    pub tags: BTreeMap<String, String>,
    pub termination_protection: bool,
    pub disk_space_mb: u64,
    pub state: ServiceState,
    #[serde(with = "time::serde::rfc3339")]
    pub create_time: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub update_time: OffsetDateTime,
    /// When the service reaches `RUNNING`; `None` never (a fault, or powered off).
    #[serde(with = "time::serde::rfc3339::option")]
    pub ready_at: Option<OffsetDateTime>,
    /// Set once endpoints are being started, so that the ticker starts them once. Not
    /// saved: a new sandbox process has no server starting, whatever the last one was
    /// doing when it stopped (saved, it kept the service REBUILDING for good).
    #[serde(skip)]
    pub starting: bool,
    /// Falls to `POWEROFF` this long after `RUNNING` (a fault).
    #[serde(with = "crate::durations::opt_duration", default)]
    pub poweroff_after: Option<Duration>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub poweroff_at: Option<OffsetDateTime>,
    /// Why the real server behind the service could not start (it is then `POWEROFF`).
    #[serde(default)]
    pub failure: Option<String>,
    /// What the sandbox must tell about the server behind it (a version it lacks).
    #[serde(default)]
    pub notice: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub deleted_at: Option<OffsetDateTime>,
    pub unreachable: bool,
    pub nodes: Vec<Node>,
    pub users: Vec<User>,
    pub databases: Vec<String>,
    pub topics: Vec<Topic>,
    pub acls: Vec<Acl>,
    /// Kafka-native ACLs (`.../kafka/acl`); absent from worlds saved before them.
    #[serde(default)]
    pub kafka_acls: Vec<KafkaAcl>,
    pub components: Vec<Component>,
    pub service_integrations: Vec<Value>,
    pub maintenance: Value,
    pub tech_emails: Vec<Value>,
    pub backups: Vec<Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub availability_zone: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub running_at: Option<OffsetDateTime>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub password: String,
    /// `primary` for the admin user, `regular` for the others.
    pub r#type: String,
    pub authentication: Option<String>,
    pub access_cert: Option<String>,
    pub access_key: Option<String>,
    pub access_control: Option<Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub password_updated_time: OffsetDateTime,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("type", &self.r#type)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Topic {
    pub topic_name: String,
    pub partitions: u64,
    pub replication: u64,
    pub min_insync_replicas: u64,
    pub retention_bytes: i64,
    pub retention_hours: i64,
    pub cleanup_policy: String,
    #[serde(with = "time::serde::rfc3339")]
    pub active_at: OffsetDateTime,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Acl {
    pub id: String,
    pub permission: String,
    pub topic: String,
    pub username: String,
}

/// A Kafka-native ACL entry, serialised as the API renders it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KafkaAcl {
    pub id: String,
    pub host: String,
    pub operation: String,
    pub pattern_type: String,
    pub permission_type: String,
    pub principal: String,
    pub resource_name: String,
    pub resource_type: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Component {
    pub component: String,
    pub host: String,
    pub port: u16,
    pub route: String,
    pub usage: String,
    pub ssl: Option<bool>,
    pub kafka_authentication_method: Option<String>,
    pub kafka_ssl_ca: Option<String>,
    /// How the simulated endpoint speaks (a real server behind the service replaces it).
    pub serve: Serve,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Serve {
    /// TLS from the first byte: HTTPS, Valkey, Kafka's SASL listener.
    Tls,
    /// Kafka's certificate listener: TLS with client certificates from the project CA.
    MutualTls,
    /// PostgreSQL's protocol: the client's SSLRequest, then TLS.
    PgTls,
    /// MySQL's protocol: the server's greeting and the client's SSL request, then TLS.
    MysqlTls,
}

/// What the sandbox persists between processes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Persisted {
    pub pki: Pki,
    pub projects: BTreeMap<String, Project>,
    /// How far `POST /_sandbox/clock` moved the clock: the world's times stay in order
    /// in the next process.
    #[serde(default, with = "crate::durations::duration")]
    pub clock_advanced: Duration,
}

impl Service {
    pub fn visible(&self, now: OffsetDateTime, lag: Duration) -> bool {
        self.deleted_at.is_none_or(|d| now < d + lag)
    }

    pub fn admin(&self) -> Option<&User> {
        self.users.iter().find(|u| u.r#type == "primary")
    }

    pub fn primary(&self) -> Option<&Component> {
        self.components.first()
    }

    pub fn running_nodes(&self, now: OffsetDateTime) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.running_at.is_some_and(|t| now >= t))
            .count()
    }

    pub fn node_state(&self, node: &Node, now: OffsetDateTime) -> &'static str {
        match (self.state, node.running_at) {
            (ServiceState::Poweroff, _) => "leaving",
            (_, Some(t)) if now >= t => "running",
            _ if now
                >= self.create_time + (self.ready_at.unwrap_or(now) - self.create_time) / 2 =>
            {
                "syncing_data"
            }
            _ => "setting_up_vm",
        }
    }
}

mod time_map {
    use super::*;

    pub fn serialize<S: serde::Serializer>(
        map: &BTreeMap<String, OffsetDateTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let text: BTreeMap<&String, String> = map.iter().map(|(k, v)| (k, rfc3339(*v))).collect();
        text.serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, OffsetDateTime>, D::Error> {
        let text = BTreeMap::<String, String>::deserialize(d)?;
        text.into_iter()
            .map(|(k, v)| {
                OffsetDateTime::parse(&v, &time::format_description::well_known::Rfc3339)
                    .map(|t| (k, t))
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}
