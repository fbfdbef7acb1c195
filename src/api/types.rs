//! The API's objects, deserialised leniently (unknown fields ignored, unknown enum values
//! kept): the spec is older than the API. `Debug` is written by hand wherever a value
//! can hold a secret.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::Secret;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceState {
    Rebuilding,
    Running,
    Rebalancing,
    Poweroff,
    Other(String),
}

impl ServiceState {
    /// Powered on, and so billed: Aiven bills a service while it is rebuilding or
    /// rebalancing as well as running; only a powered-off one costs nothing.
    pub fn is_billed(&self) -> bool {
        matches!(self, Self::Running | Self::Rebuilding | Self::Rebalancing)
    }
}

impl From<String> for ServiceState {
    fn from(s: String) -> Self {
        match s.as_str() {
            "REBUILDING" => Self::Rebuilding,
            "RUNNING" => Self::Running,
            "REBALANCING" => Self::Rebalancing,
            "POWEROFF" => Self::Poweroff,
            _ => Self::Other(s),
        }
    }
}

impl<'de> Deserialize<'de> for ServiceState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::from)
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rebuilding => "REBUILDING",
            Self::Running => "RUNNING",
            Self::Rebalancing => "REBALANCING",
            Self::Poweroff => "POWEROFF",
            Self::Other(s) => s,
        })
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub state: String,
}

/// What the API says about a service beyond its state (end of life; the sandbox's
/// cause of a server that could not start).
#[derive(Clone, Debug, Deserialize)]
pub struct Notification {
    pub message: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Component {
    pub component: String,
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub route: String,
    #[serde(default)]
    pub usage: String,
    #[serde(default)]
    pub kafka_authentication_method: Option<String>,
    #[serde(default)]
    pub kafka_ssl_ca: Option<String>,
}

#[derive(Clone, Deserialize)]
pub struct ServiceUser {
    pub username: String,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub access_cert: Option<String>,
    #[serde(default)]
    pub access_key: Option<Secret>,
}

impl std::fmt::Debug for ServiceUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceUser")
            .field("username", &self.username)
            .field("type", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A service as `GET /project/{p}/service[/{name}]` returns it.
#[derive(Clone, Deserialize)]
pub struct Service {
    pub service_name: String,
    pub service_type: String,
    #[serde(default)]
    pub plan: String,
    #[serde(default)]
    pub cloud_name: String,
    pub state: ServiceState,
    /// Embeds the admin password: never logged.
    #[serde(default)]
    pub service_uri: Option<Secret>,
    #[serde(default)]
    pub components: Vec<Component>,
    #[serde(default)]
    pub users: Vec<ServiceUser>,
    #[serde(default)]
    pub node_states: Vec<NodeState>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub termination_protection: bool,
    #[serde(default)]
    pub create_time: Option<String>,
    #[serde(default)]
    pub user_config: Value,
    #[serde(default)]
    pub project_vpc_id: Option<String>,
    /// Holds URIs with passwords and private keys: never logged.
    #[serde(default)]
    pub connection_info: Value,
    #[serde(default)]
    pub service_notifications: Vec<Notification>,
    /// Kafka's ACL entries (the same as `GET .../acl`), so that a service read once
    /// needs no second read for them.
    #[serde(default)]
    pub acl: Vec<Acl>,
    /// Kafka's Kafka-native ACL entries (`GET .../kafka/acl` lists them too).
    #[serde(default)]
    pub kafka_acl: Vec<KafkaAcl>,
    /// The databases of a PostgreSQL or MySQL service (`defaultdb` at least).
    #[serde(default)]
    pub databases: Vec<String>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("service_name", &self.service_name)
            .field("service_type", &self.service_type)
            .field("plan", &self.plan)
            .field("cloud_name", &self.cloud_name)
            .field("state", &self.state)
            .field("components", &self.components)
            .field("users", &self.users)
            .field("node_states", &self.node_states)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl Service {
    pub fn nodes_running(&self) -> bool {
        self.node_states.iter().all(|n| n.state == "running")
    }

    /// The component clients connect to: primary, on the default route, for Kafka the
    /// certificate listener. `named`: its name where the type's own is not it (the
    /// catalogue knows which; the client knows nothing of types).
    pub fn primary_component(&self, named: Option<&str>) -> Option<&Component> {
        let name = named.unwrap_or_else(|| self.primary_component_name());
        self.components
            .iter()
            .filter(|c| c.component == name)
            .filter(|c| c.usage.is_empty() || c.usage == "primary")
            .filter(|c| c.kafka_authentication_method.as_deref() != Some("sasl"))
            .min_by_key(|c| if c.route == "dynamic" { 0 } else { 1 })
    }

    fn primary_component_name(&self) -> &str {
        let own = self.service_type.as_str();
        self.components
            .iter()
            .find(|c| c.component == own)
            .map(|c| c.component.as_str())
            .or_else(|| self.components.first().map(|c| c.component.as_str()))
            .unwrap_or(own)
    }

    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| {
            c.component == name && c.kafka_authentication_method.as_deref() != Some("sasl")
        })
    }

    pub fn sasl_component(&self) -> Option<&Component> {
        self.components
            .iter()
            .find(|c| c.kafka_authentication_method.as_deref() == Some("sasl"))
    }

    /// "Connection details present": a URI and a primary component with host and port
    /// (`named` as for [`Service::primary_component`]).
    pub fn has_connection_details(&self, named: Option<&str>) -> bool {
        self.service_uri.as_ref().is_some_and(|u| !u.is_empty())
            && self
                .primary_component(named)
                .is_some_and(|c| !c.host.is_empty() && c.port != 0)
    }

    pub fn admin(&self) -> Option<&ServiceUser> {
        self.users
            .iter()
            .find(|u| u.kind == "primary")
            .or_else(|| self.users.first())
    }

    pub fn user(&self, name: &str) -> Option<&ServiceUser> {
        self.users.iter().find(|u| u.username == name)
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

/// The create request body. `project_vpc_id` is always sent: `null` keeps the service
/// out of a project VPC the cloud may have (the API's trap).
#[derive(Serialize)]
pub struct CreateService<'a> {
    pub service_name: &'a str,
    pub service_type: &'a str,
    pub plan: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<&'a str>,
    pub project_vpc_id: Option<&'a str>,
    pub termination_protection: bool,
    pub tags: &'a BTreeMap<String, String>,
    pub user_config: &'a Value,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Project {
    pub project_name: String,
    #[serde(default)]
    pub default_cloud: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Topic {
    pub topic_name: String,
    #[serde(default)]
    pub state: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Acl {
    #[serde(default)]
    pub id: String,
    pub permission: String,
    pub topic: String,
    pub username: String,
}

/// A Kafka-native ACL entry; `id` is the API's (unused in a request).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct KafkaAcl {
    #[serde(default)]
    pub id: String,
    pub principal: String,
    pub resource_type: String,
    pub resource_name: String,
    pub pattern_type: String,
    pub operation: String,
    pub permission_type: String,
    #[serde(default)]
    pub host: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Price {
    pub base_price_usd: String,
}

/// A plan's specification (`ProjectServicePlanSpecsGet`): what this tool reads of it.
#[derive(Clone, Debug, Deserialize)]
pub struct PlanSpecs {
    /// Required, at least 1: a Kafka plan's node count is its broker count.
    pub node_count: u32,
}
