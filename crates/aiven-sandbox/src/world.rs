//! The sandbox's world: projects, services and their sub-resources, with the real API's
//! validation rules and lifecycle. Pure state; the HTTP layer is in `routes`, the ports
//! that services listen on are in `endpoints`.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::catalogue::{self, catalogue};
use crate::config::Config;
use crate::pki::Pki;

/// An error answered in the API's own shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub error_code: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            error_code: None,
        }
    }

    pub fn code(mut self, code: &str) -> Self {
        self.error_code = Some(code.to_string());
        self
    }

    pub fn body(&self) -> Value {
        let mut error = json!({"message": self.message, "status": self.status});
        if let Some(code) = &self.error_code {
            error["error_code"] = json!(code);
        }
        json!({"errors": [error], "message": self.message})
    }

    pub fn service_not_found(name: &str) -> Self {
        Self::new(404, format!("Service {name} does not exist")).code("service_not_found")
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub const TERMINATION_PROTECTED: &str =
    "Service is protected against termination and shutdown. Remove termination protection first.";

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
    /// Set once endpoints are being started, so that the ticker starts them once.
    #[serde(default)]
    pub starting: bool,
    /// Falls to `POWEROFF` this long after `RUNNING` (a fault).
    #[serde(with = "crate::config::opt_duration", default)]
    pub poweroff_after: Option<Duration>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub poweroff_at: Option<OffsetDateTime>,
    /// Why the real server behind the service could not start (it is then `POWEROFF`).
    #[serde(default)]
    pub failure: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub deleted_at: Option<OffsetDateTime>,
    pub unreachable: bool,
    pub nodes: Vec<Node>,
    pub users: Vec<User>,
    pub databases: Vec<String>,
    pub topics: Vec<Topic>,
    pub acls: Vec<Acl>,
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
}

pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn valid_tag_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphabetic()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

pub fn check_tags(tags: &BTreeMap<String, String>) -> ApiResult<()> {
    for (key, value) in tags {
        if !valid_tag_key(key) {
            return Err(ApiError::new(
                400,
                format!("Invalid tag key '{key}': keys must be 1-64 characters of letters, digits, '_' or '-', starting with a letter"),
            ).code("bad_request"));
        }
        if value.chars().count() > 64 {
            return Err(ApiError::new(
                400,
                format!("Invalid value for tag '{key}': at most 64 characters"),
            )
            .code("bad_request"));
        }
    }
    Ok(())
}

/// Aiven's generated passwords look like `AVNS_` followed by 19 characters.
pub fn generate_password(rng: &mut StdRng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let tail: String = (0..19)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("AVNS_{tail}")
}

fn random_hex(rng: &mut StdRng, len: usize) -> String {
    (0..len)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

fn random_uuid(rng: &mut StdRng) -> String {
    let h = random_hex(rng, 32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A free local port: bound, read, released. The service listens on it once running.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

pub fn admin_username(service_type: &str) -> &'static str {
    match service_type {
        "valkey" | "redis" | "dragonfly" => "default",
        _ => "avnadmin",
    }
}

/// Which components a type has, in the API's naming. The first is primary.
fn component_layout(
    service_type: &str,
    user_config: &Value,
) -> Vec<(&'static str, Serve, Option<&'static str>)> {
    let flag = |k: &str| user_config.get(k).and_then(Value::as_bool).unwrap_or(false);
    match service_type {
        "pg" | "alloydbomni" => vec![
            ("pg", Serve::PgTls, None),
            ("pgbouncer", Serve::PgTls, None),
        ],
        "mysql" => vec![
            ("mysql", Serve::MysqlTls, None),
            ("mysqlx", Serve::Tls, None),
        ],
        "kafka" => {
            let mut out = vec![("kafka", Serve::MutualTls, Some("certificate"))];
            let sasl = user_config
                .pointer("/kafka_authentication_methods/sasl")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if sasl {
                out.push(("kafka", Serve::Tls, Some("sasl")));
            }
            if flag("kafka_rest") {
                out.push(("kafka_rest", Serve::Tls, None));
            }
            if flag("schema_registry") {
                out.push(("schema_registry", Serve::Tls, None));
            }
            if flag("kafka_connect") {
                out.push(("kafka_connect", Serve::Tls, None));
            }
            out
        }
        "valkey" => vec![("valkey", Serve::Tls, None)],
        "dragonfly" => vec![("dragonfly", Serve::Tls, None)],
        "opensearch" => {
            let dashboards = user_config
                .pointer("/opensearch_dashboards/enabled")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let mut out = vec![("opensearch", Serve::Tls, None)];
            if dashboards {
                out.push(("opensearch_dashboards", Serve::Tls, None));
            }
            out
        }
        "clickhouse" => vec![
            ("clickhouse_https", Serve::Tls, None),
            ("clickhouse", Serve::Tls, None),
            ("clickhouse_mysql", Serve::MysqlTls, None),
        ],
        "grafana" => vec![("grafana", Serve::Tls, None)],
        "cassandra" => vec![("cassandra", Serve::Tls, None)],
        "flink" => vec![("flink", Serve::Tls, None)],
        "kafka_connect" => vec![("kafka_connect", Serve::Tls, None)],
        "thanos" => vec![
            ("query_frontend", Serve::Tls, None),
            ("query", Serve::Tls, None),
        ],
        _ => vec![("main", Serve::Tls, None)],
    }
}

/// Key-value stores show every user's ACL, by default everything (avn's `user-list`
/// reads these fields).
fn default_access_control(service_type: &str) -> Option<Value> {
    let prefix = match service_type {
        "valkey" | "redis" | "dragonfly" => service_type,
        _ => return None,
    };
    let mut acl = json!({
        format!("{prefix}_acl_categories"): ["+@all"],
        format!("{prefix}_acl_commands"): [],
        format!("{prefix}_acl_keys"): ["*"],
    });
    // Dragonfly has no pub/sub channel rules.
    if prefix != "dragonfly" {
        acl[format!("{prefix}_acl_channels")] = json!(["*"]);
    }
    Some(acl)
}

fn has_databases(service_type: &str) -> bool {
    matches!(service_type, "pg" | "mysql" | "alloydbomni")
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

pub struct World {
    pub config: Config,
    pub pki: Pki,
    pub projects: BTreeMap<String, Project>,
    pub rng: StdRng,
}

impl World {
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.config.clock_offset_secs)
    }

    pub fn project(&mut self, name: &str) -> ApiResult<&mut Project> {
        if !self.projects.contains_key(name) && self.config.accept_any_project && valid_name(name) {
            let now = self.now();
            let project = new_project(
                &crate::config::ProjectConfig::named(name),
                &mut self.rng,
                now,
            );
            self.projects.insert(name.to_string(), project);
        }
        self.projects.get_mut(name).ok_or_else(|| {
            ApiError::new(404, format!("Project {name} does not exist")).code("project_not_found")
        })
    }

    /// A visible service, or the API's 404.
    pub fn service(&mut self, project: &str, name: &str) -> ApiResult<&mut Service> {
        let now = self.now();
        let lag = self.config.delete_lag;
        self.project(project)?
            .services
            .get_mut(name)
            .filter(|s| s.visible(now, lag))
            .ok_or_else(|| ApiError::service_not_found(name))
    }

    /// A service that sub-resource calls may act on: not deleted, past the create lag.
    fn live_service(&mut self, project: &str, name: &str) -> ApiResult<&mut Service> {
        let now = self.now();
        let create_lag = self.config.create_lag;
        let svc = self.service(project, name)?;
        if svc.deleted_at.is_some() || now < svc.create_time + create_lag {
            return Err(ApiError::service_not_found(name));
        }
        Ok(svc)
    }

    fn running_service(&mut self, project: &str, name: &str) -> ApiResult<&mut Service> {
        let svc = self.live_service(project, name)?;
        match svc.state {
            ServiceState::Running | ServiceState::Rebalancing => Ok(svc),
            ServiceState::Poweroff => {
                Err(ApiError::new(409, "Service not powered on").code("not_powered"))
            }
            ServiceState::Rebuilding => Err(ApiError::new(
                409,
                format!("Service {name} is not running yet, try again later"),
            )),
        }
    }

    pub fn create_service(&mut self, project: &str, body: &Value) -> ApiResult<String> {
        let now = self.now();
        let str_field = |key: &str| body.get(key).and_then(Value::as_str);
        let name = str_field("service_name")
            .ok_or_else(|| {
                ApiError::new(400, "Missing required field 'service_name'").code("bad_request")
            })?
            .to_string();
        let service_type = str_field("service_type")
            .ok_or_else(|| {
                ApiError::new(400, "Missing required field 'service_type'").code("bad_request")
            })?
            .to_string();
        let plan_name = str_field("plan")
            .ok_or_else(|| ApiError::new(400, "Missing required field 'plan'").code("bad_request"))?
            .to_string();
        if !valid_name(&name) {
            return Err(ApiError::new(
                400,
                "Service name must consist of 1-64 alphanumerical characters (lowercase letters, digits and '-'), starting with a letter",
            )
            .code("bad_request"));
        }
        let Some(ty) = catalogue().service_type(&service_type) else {
            return Err(
                ApiError::new(400, format!("Invalid service type '{service_type}'"))
                    .code("invalid_service_type"),
            );
        };
        let Some(plan) = ty.plan(&plan_name) else {
            return Err(ApiError::new(
                400,
                format!(
                    "Invalid plan '{plan_name}' for service type '{service_type}'. Available plans: {}",
                    ty.plan_names().join(", ")
                ),
            )
            .code("bad_request"));
        };
        let project_ref = self.project(project)?;
        let cloud = match body.get("cloud") {
            None | Some(Value::Null) => project_ref.default_cloud.clone(),
            Some(Value::String(c)) => c.clone(),
            Some(other) => {
                return Err(
                    ApiError::new(400, format!("Invalid cloud {other}")).code("bad_request")
                );
            }
        };
        if catalogue().cloud(&cloud).is_none() {
            return Err(ApiError::new(400, format!("Invalid cloud '{cloud}'")).code("bad_request"));
        }
        // The VPC trap: an absent key means "the project's VPC in this cloud, if any".
        let project_vpc_id = match body.get("project_vpc_id") {
            Some(Value::Null) => None,
            None => project_ref
                .vpcs
                .iter()
                .find(|v| v.cloud_name == cloud)
                .map(|v| v.project_vpc_id.clone()),
            Some(Value::String(id)) => {
                let vpc = project_ref
                    .vpcs
                    .iter()
                    .find(|v| &v.project_vpc_id == id)
                    .ok_or_else(|| {
                        ApiError::new(400, format!("Project VPC {id} does not exist"))
                            .code("bad_request")
                    })?;
                if vpc.cloud_name != cloud {
                    return Err(ApiError::new(
                        400,
                        format!(
                            "Project VPC {id} is in cloud {}, not {cloud}",
                            vpc.cloud_name
                        ),
                    ));
                }
                Some(id.clone())
            }
            Some(other) => {
                return Err(ApiError::new(
                    400,
                    format!("Invalid project_vpc_id {other}"),
                ));
            }
        };
        let tags: BTreeMap<String, String> = match body.get("tags") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(t) => serde_json::from_value(t.clone()).map_err(|_| {
                ApiError::new(400, "Invalid input for tags: must be an object of strings")
            })?,
        };
        check_tags(&tags)?;
        let user_config = match body.get("user_config") {
            None | Some(Value::Null) => json!({}),
            Some(c) => c.clone(),
        };
        catalogue::check_user_config(
            &ty.user_config_schema(&service_type),
            &user_config,
            "user_config",
        )
        .map_err(|m| ApiError::new(400, m).code("bad_request"))?;
        if let Some(time) = user_config
            .get("recovery_target_time")
            .and_then(Value::as_str)
        {
            let parsed =
                OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .or_else(|| {
                        let fmt = time::macros::format_description!(
                            "[year]-[month]-[day] [hour]:[minute]:[second]"
                        );
                        time::PrimitiveDateTime::parse(time, &fmt)
                            .ok()
                            .map(|p| p.assume_utc())
                    });
            if parsed.is_none() {
                return Err(
                    ApiError::new(400, format!("Invalid recovery_target_time '{time}'"))
                        .code("invalid_date_format"),
                );
            }
        }
        let termination_protection = body
            .get("termination_protection")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let disk_space_mb = body
            .get("disk_space_mb")
            .and_then(Value::as_u64)
            .unwrap_or(plan.disk_space_mb);

        let fault = self
            .config
            .service_faults
            .iter()
            .find(|f| f.matches(&name))
            .cloned()
            .unwrap_or_default();
        if let Some(reject) = &fault.reject {
            return Err(ApiError::new(reject.status, reject.message.clone()));
        }

        let forked_databases = match user_config
            .get("service_to_fork_from")
            .and_then(Value::as_str)
        {
            Some(source) if !source.is_empty() => {
                let source_project = user_config
                    .get("project_to_fork_from")
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
                    .unwrap_or(project)
                    .to_string();
                let src = self
                    .projects
                    .get(&source_project)
                    .and_then(|p| p.services.get(source))
                    .filter(|s| s.deleted_at.is_none())
                    .ok_or_else(|| {
                        ApiError::new(400, format!("Cannot fork: Service {source} does not exist in project {source_project}"))
                    })?;
                if src.service_type != service_type {
                    return Err(ApiError::new(
                        400,
                        format!(
                            "Cannot fork a {} service from a {} service",
                            service_type, src.service_type
                        ),
                    ));
                }
                Some(src.databases.clone())
            }
            _ => None,
        };

        let project_ref = self.project(project)?;
        project_ref.reserved_names.retain(|_, until| *until > now);
        if project_ref.services.contains_key(&name)
            || project_ref.reserved_names.contains_key(&name)
        {
            return Err(
                ApiError::new(409, "Service name is already in use in this project")
                    .code("bad_request"),
            );
        }

        let delay = fault
            .ready_after
            .unwrap_or_else(|| self.config.delay_for(&service_type));
        let ready_at = (!fault.never_ready).then(|| now + delay);
        let node_lag = self.config.node_lag;
        let zone = cloud.rsplit('-').next().unwrap_or("a").to_string();
        let nodes = (0..plan.node_count)
            .map(|i| Node {
                name: format!("{name}-{}", i + 1),
                availability_zone: format!("{zone}-{}", ["a", "b", "c"][i as usize % 3]),
                running_at: ready_at.map(|t| t + node_lag * i),
            })
            .collect();
        let admin = admin_username(&service_type);
        let mut admin_user = User {
            username: admin.to_string(),
            password: generate_password(&mut self.rng),
            r#type: "primary".into(),
            authentication: (service_type == "mysql").then(|| "caching_sha2_password".into()),
            access_cert: None,
            access_key: None,
            access_control: default_access_control(&service_type),
            password_updated_time: now,
        };
        if service_type == "kafka" {
            let issued = self
                .pki
                .issue_client(admin)
                .map_err(|e| ApiError::new(500, format!("certificate issue failed: {e}")))?;
            admin_user.access_cert = Some(issued.cert_pem);
            admin_user.access_key = Some(issued.key_pem);
        }
        let host = if project_vpc_id.is_some() {
            "10.1.0.10"
        } else {
            "localhost"
        };
        let components = component_layout(&service_type, &user_config)
            .into_iter()
            .map(|(component, serve, auth)| Component {
                component: component.to_string(),
                host: host.to_string(),
                port: free_port(),
                route: if project_vpc_id.is_some() {
                    "private"
                } else {
                    "dynamic"
                }
                .to_string(),
                usage: "primary".to_string(),
                ssl: Some(true),
                kafka_authentication_method: auth.map(str::to_string),
                kafka_ssl_ca: (service_type == "kafka" && component == "kafka")
                    .then(|| "project_ca".to_string()),
                serve,
            })
            .collect();
        let databases = if has_databases(&service_type) {
            forked_databases.unwrap_or_else(|| vec!["defaultdb".to_string()])
        } else {
            Vec::new()
        };
        let acls = if service_type == "kafka" {
            vec![Acl {
                id: "default".into(),
                permission: "admin".into(),
                topic: "*".into(),
                username: "*".into(),
            }]
        } else {
            Vec::new()
        };
        let service = Service {
            name: name.clone(),
            service_type: service_type.clone(),
            plan: plan_name,
            cloud,
            project_vpc_id,
            user_config,
            tags,
            termination_protection,
            disk_space_mb,
            state: ServiceState::Rebuilding,
            create_time: now,
            update_time: now,
            ready_at,
            starting: false,
            failure: None,
            poweroff_after: fault.poweroff_after,
            poweroff_at: None,
            deleted_at: None,
            unreachable: fault.unreachable,
            nodes,
            users: vec![admin_user],
            databases,
            topics: Vec::new(),
            acls,
            components,
            service_integrations: body
                .get("service_integrations")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            maintenance: json!({"dow": "sunday", "time": "04:00:00", "updates": []}),
            tech_emails: body
                .get("tech_emails")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            backups: Vec::new(),
        };
        self.project(project)?
            .services
            .insert(name.clone(), service);
        Ok(name)
    }

    /// Deletes a service. Returns whether it was live (endpoints must be stopped).
    pub fn delete_service(&mut self, project: &str, name: &str) -> ApiResult<bool> {
        let now = self.now();
        let reservation = self.config.name_reservation;
        let svc = self.service(project, name)?;
        if svc.deleted_at.is_some() {
            return Ok(false);
        }
        if svc.termination_protection {
            return Err(ApiError::new(403, TERMINATION_PROTECTED));
        }
        svc.deleted_at = Some(now);
        let project_ref = self.project(project)?;
        project_ref
            .reserved_names
            .insert(name.to_string(), now + reservation);
        Ok(true)
    }

    /// Partial update. Returns whether the service stopped running (stop its endpoints).
    pub fn update_service(&mut self, project: &str, name: &str, body: &Value) -> ApiResult<bool> {
        let now = self.now();
        let svc = self.live_service(project, name)?;
        let ty = catalogue()
            .service_type(&svc.service_type)
            .expect("created with a known type");
        let delay_for_type = |config: &Config, t: &str| config.delay_for(t);
        let mut rebuild = false;
        let mut stopped = false;
        if let Some(plan) = body.get("plan").and_then(Value::as_str)
            && plan != svc.plan
        {
            if ty.plan(plan).is_none() {
                return Err(ApiError::new(
                    400,
                    format!(
                        "Invalid plan '{plan}' for service type '{}'",
                        svc.service_type
                    ),
                ));
            }
            svc.plan = plan.to_string();
            rebuild = true;
        }
        if let Some(cloud) = body.get("cloud").and_then(Value::as_str)
            && cloud != svc.cloud
        {
            if catalogue().cloud(cloud).is_none() {
                return Err(ApiError::new(400, format!("Invalid cloud '{cloud}'")));
            }
            svc.cloud = cloud.to_string();
            rebuild = true;
        }
        if let Some(uc) = body.get("user_config").and_then(Value::as_object) {
            let mut merged = svc.user_config.as_object().cloned().unwrap_or_default();
            merged.extend(uc.clone());
            let merged = Value::Object(merged);
            catalogue::check_user_config(
                &ty.user_config_schema(&svc.service_type),
                &merged,
                "user_config",
            )
            .map_err(|m| ApiError::new(400, m).code("bad_request"))?;
            svc.user_config = merged;
        }
        if let Some(tp) = body.get("termination_protection").and_then(Value::as_bool) {
            svc.termination_protection = tp;
        }
        if let Some(powered) = body.get("powered").and_then(Value::as_bool) {
            if !powered && svc.state != ServiceState::Poweroff {
                if svc.termination_protection {
                    return Err(ApiError::new(403, TERMINATION_PROTECTED));
                }
                svc.state = ServiceState::Poweroff;
                svc.ready_at = None;
                svc.starting = false;
                stopped = true;
            } else if powered && svc.state == ServiceState::Poweroff {
                rebuild = true;
            }
        }
        if rebuild {
            let service_type = svc.service_type.clone();
            let delay = delay_for_type(&self.config, &service_type);
            let svc = self.live_service(project, name)?;
            stopped |= matches!(svc.state, ServiceState::Running | ServiceState::Rebalancing);
            svc.state = ServiceState::Rebuilding;
            svc.ready_at = Some(now + delay);
            svc.starting = false;
            svc.poweroff_at = None;
            svc.failure = None;
            for node in &mut svc.nodes {
                node.running_at = Some(now + delay);
            }
        }
        self.live_service(project, name)?.update_time = now;
        Ok(stopped)
    }

    pub fn replace_tags(
        &mut self,
        project: &str,
        name: &str,
        tags: BTreeMap<String, String>,
    ) -> ApiResult<()> {
        check_tags(&tags)?;
        let svc = self.live_service(project, name)?;
        svc.tags = tags;
        Ok(())
    }

    pub fn update_tags(
        &mut self,
        project: &str,
        name: &str,
        changes: BTreeMap<String, Option<String>>,
    ) -> ApiResult<()> {
        let svc = self.live_service(project, name)?;
        let mut tags = svc.tags.clone();
        for (k, v) in changes {
            match v {
                Some(v) => tags.insert(k, v),
                None => tags.remove(&k),
            };
        }
        check_tags(&tags)?;
        self.live_service(project, name)?.tags = tags;
        Ok(())
    }

    pub fn create_database(&mut self, project: &str, name: &str, database: &str) -> ApiResult<()> {
        let svc = self.running_service(project, name)?;
        if !has_databases(&svc.service_type) {
            return Err(ApiError::new(
                400,
                format!(
                    "Service type '{}' does not support databases",
                    svc.service_type
                ),
            ));
        }
        if database.is_empty() || database.chars().count() > 40 {
            return Err(
                ApiError::new(400, "Invalid database name: 1-40 characters").code("bad_request")
            );
        }
        if svc.databases.iter().any(|d| d == database) {
            return Err(ApiError::new(
                409,
                format!("Database '{database}' already exists"),
            ));
        }
        svc.databases.push(database.to_string());
        Ok(())
    }

    pub fn delete_database(&mut self, project: &str, name: &str, database: &str) -> ApiResult<()> {
        let svc = self.running_service(project, name)?;
        let before = svc.databases.len();
        svc.databases.retain(|d| d != database);
        if svc.databases.len() == before {
            return Err(ApiError::new(
                404,
                format!("Database '{database}' does not exist"),
            ));
        }
        Ok(())
    }

    pub fn list_databases(&mut self, project: &str, name: &str) -> ApiResult<Vec<String>> {
        Ok(self.live_service(project, name)?.databases.clone())
    }

    pub fn create_user(&mut self, project: &str, name: &str, body: &Value) -> ApiResult<User> {
        let now = self.now();
        let username = body
            .get("username")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::new(400, "Missing required field 'username'"))?
            .to_string();
        if username.is_empty() || username.chars().count() > 64 {
            return Err(ApiError::new(400, "Invalid username: 1-64 characters").code("bad_request"));
        }
        let password = generate_password(&mut self.rng);
        let issued = {
            let svc = self.running_service(project, name)?;
            if svc.users.iter().any(|u| u.username == username) {
                return Err(ApiError::new(
                    409,
                    format!("User '{username}' already exists"),
                ));
            }
            svc.service_type == "kafka"
        }
        .then(|| self.pki.issue_client(&username))
        .transpose()
        .map_err(|e| ApiError::new(500, format!("certificate issue failed: {e}")))?;
        let svc = self.running_service(project, name)?;
        let user = User {
            username,
            password,
            r#type: "regular".into(),
            authentication: (svc.service_type == "mysql").then(|| {
                body.get("authentication")
                    .and_then(Value::as_str)
                    .unwrap_or("caching_sha2_password")
                    .to_string()
            }),
            access_cert: issued.as_ref().map(|i| i.cert_pem.clone()),
            access_key: issued.map(|i| i.key_pem),
            access_control: body
                .get("access_control")
                .cloned()
                .or_else(|| default_access_control(&svc.service_type)),
            password_updated_time: now,
        };
        svc.users.push(user.clone());
        Ok(user)
    }

    pub fn get_user(&mut self, project: &str, name: &str, username: &str) -> ApiResult<User> {
        self.live_service(project, name)?
            .users
            .iter()
            .find(|u| u.username == username)
            .cloned()
            .ok_or_else(|| {
                ApiError::new(404, format!("Service user '{username}' does not exist"))
                    .code("user_not_found")
            })
    }

    pub fn delete_user(&mut self, project: &str, name: &str, username: &str) -> ApiResult<()> {
        let svc = self.running_service(project, name)?;
        if svc
            .users
            .iter()
            .any(|u| u.username == username && u.r#type == "primary")
        {
            return Err(ApiError::new(400, "Cannot delete the primary service user"));
        }
        let before = svc.users.len();
        svc.users.retain(|u| u.username != username);
        if svc.users.len() == before {
            return Err(
                ApiError::new(404, format!("Service user '{username}' does not exist"))
                    .code("user_not_found"),
            );
        }
        Ok(())
    }

    pub fn reset_user_password(
        &mut self,
        project: &str,
        name: &str,
        username: &str,
        new_password: Option<String>,
    ) -> ApiResult<()> {
        if let Some(p) = &new_password
            && !(8..=256).contains(&p.chars().count())
        {
            return Err(ApiError::new(400, "Invalid new_password: 8-256 characters"));
        }
        let now = self.now();
        let password = new_password.unwrap_or_else(|| generate_password(&mut self.rng));
        let svc = self.running_service(project, name)?;
        let user = svc
            .users
            .iter_mut()
            .find(|u| u.username == username)
            .ok_or_else(|| {
                ApiError::new(404, format!("Service user '{username}' does not exist"))
                    .code("user_not_found")
            })?;
        user.password = password;
        user.password_updated_time = now;
        Ok(())
    }

    pub fn create_topic(&mut self, project: &str, name: &str, body: &Value) -> ApiResult<()> {
        let now = self.now();
        let activation = self.config.topic_activation;
        let topic_name = body
            .get("topic_name")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::new(400, "Missing required field 'topic_name'"))?
            .to_string();
        if topic_name.is_empty()
            || topic_name.len() > 249
            || !topic_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(
                ApiError::new(400, format!("Invalid topic name '{topic_name}'"))
                    .code("bad_request"),
            );
        }
        let int =
            |key: &str, default: i64| body.get(key).and_then(Value::as_i64).unwrap_or(default);
        let svc = self.running_service(project, name)?;
        if svc.service_type != "kafka" {
            return Err(ApiError::new(
                400,
                "Topics are only supported by Kafka services",
            ));
        }
        let replication = int("replication", 2.min(svc.nodes.len() as i64)).max(1) as u64;
        let running = svc.running_nodes(now);
        if replication as usize > running {
            return Err(ApiError::new(
                409,
                format!(
                    "Cluster only has {running} broker(s), cannot set replication factor to {replication}"
                ),
            ));
        }
        if svc.topics.iter().any(|t| t.topic_name == topic_name) {
            return Err(
                ApiError::new(409, format!("Topic '{topic_name}' already exists"))
                    .code("kafka_topic_already_exists"),
            );
        }
        svc.topics.push(Topic {
            topic_name,
            partitions: int("partitions", 1).max(1) as u64,
            replication,
            min_insync_replicas: int("min_insync_replicas", 1).max(1) as u64,
            retention_bytes: int("retention_bytes", -1),
            retention_hours: int("retention_hours", 168),
            cleanup_policy: body
                .get("cleanup_policy")
                .and_then(Value::as_str)
                .unwrap_or("delete")
                .to_string(),
            active_at: now + activation,
        });
        Ok(())
    }

    pub fn list_topics(
        &mut self,
        project: &str,
        name: &str,
    ) -> ApiResult<(Vec<Topic>, OffsetDateTime)> {
        let now = self.now();
        let svc = self.running_service(project, name)?;
        Ok((svc.topics.clone(), now))
    }

    pub fn delete_topic(&mut self, project: &str, name: &str, topic: &str) -> ApiResult<()> {
        let svc = self.running_service(project, name)?;
        let before = svc.topics.len();
        svc.topics.retain(|t| t.topic_name != topic);
        if before == svc.topics.len() {
            return Err(
                ApiError::new(404, format!("Topic '{topic}' does not exist"))
                    .code("kafka_topic_not_found"),
            );
        }
        Ok(())
    }

    pub fn add_acl(&mut self, project: &str, name: &str, body: &Value) -> ApiResult<Vec<Acl>> {
        let field = |k: &str| -> ApiResult<String> {
            body.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ApiError::new(400, format!("Missing required field '{k}'")))
        };
        let (permission, topic, username) =
            (field("permission")?, field("topic")?, field("username")?);
        if !["admin", "read", "readwrite", "write"].contains(&permission.as_str()) {
            return Err(ApiError::new(
                400,
                format!("Invalid permission '{permission}'"),
            ));
        }
        let id = format!("acl{}", random_hex(&mut self.rng, 12));
        let svc = self.running_service(project, name)?;
        if svc.service_type != "kafka" {
            return Err(
                ApiError::new(400, "ACLs are only supported by Kafka services")
                    .code("kafka_acl_not_supported"),
            );
        }
        if let Some(existing) = svc
            .acls
            .iter()
            .find(|a| a.permission == permission && a.topic == topic && a.username == username)
        {
            return Err(ApiError::new(
                409,
                format!("Identical ACL entry already exists: {}", existing.id),
            ));
        }
        svc.acls.push(Acl {
            id,
            permission,
            topic,
            username,
        });
        Ok(svc.acls.clone())
    }

    pub fn list_acls(&mut self, project: &str, name: &str) -> ApiResult<Vec<Acl>> {
        Ok(self.running_service(project, name)?.acls.clone())
    }

    pub fn delete_acl(&mut self, project: &str, name: &str, id: &str) -> ApiResult<Vec<Acl>> {
        let svc = self.running_service(project, name)?;
        let before = svc.acls.len();
        svc.acls.retain(|a| a.id != id);
        if before == svc.acls.len() {
            return Err(
                ApiError::new(404, format!("ACL entry '{id}' does not exist"))
                    .code("service_acl_not_found"),
            );
        }
        Ok(svc.acls.clone())
    }

    /// Services whose endpoints are due to start, marked as starting.
    pub fn due_to_start(&mut self) -> Vec<(String, Service)> {
        let now = self.now();
        let mut due = Vec::new();
        for (project, p) in &mut self.projects {
            for svc in p.services.values_mut() {
                if svc.deleted_at.is_none()
                    && svc.state == ServiceState::Rebuilding
                    && !svc.starting
                    && svc.ready_at.is_some_and(|t| now >= t)
                {
                    svc.starting = true;
                    due.push((project.clone(), svc.clone()));
                }
            }
        }
        due
    }

    /// Marks a service running once its endpoints listen. The ports may have moved.
    pub fn mark_running(&mut self, project: &str, name: &str, ports: &[u16]) {
        let now = self.now();
        if let Some(svc) = self
            .projects
            .get_mut(project)
            .and_then(|p| p.services.get_mut(name))
            && svc.starting
            && svc.deleted_at.is_none()
        {
            svc.state = ServiceState::Running;
            svc.starting = false;
            svc.update_time = now;
            svc.poweroff_at = svc.poweroff_after.map(|d| now + d);
            for (component, port) in svc.components.iter_mut().zip(ports) {
                component.port = *port;
            }
            // Nodes that were due before the endpoints were up come up now.
            for node in &mut svc.nodes {
                if let Some(t) = node.running_at
                    && t < now
                {
                    node.running_at = Some(now);
                }
            }
            if svc.service_type == "pg" || svc.service_type == "mysql" {
                svc.backups = vec![json!({
                    "backup_name": format!("{}-basebackup-1", svc.name),
                    "backup_time": rfc3339(now),
                    "data_size": 33554432,
                    "storage_location": "sandbox",
                })];
            }
        }
    }

    /// A service whose server could not start stops, as the API's only terminal state
    /// (`POWEROFF`) says, and keeps the cause for its notifications.
    pub fn mark_failed(&mut self, project: &str, name: &str, cause: &str) {
        let now = self.now();
        if let Some(svc) = self
            .projects
            .get_mut(project)
            .and_then(|p| p.services.get_mut(name))
            && svc.starting
        {
            svc.state = ServiceState::Poweroff;
            svc.starting = false;
            svc.ready_at = None;
            svc.update_time = now;
            svc.failure = Some(cause.to_string());
        }
    }

    /// Applies time-driven transitions. Returns the services whose endpoints must stop.
    pub fn advance(&mut self) -> Vec<(String, String)> {
        let now = self.now();
        let lag = self.config.delete_lag;
        let mut stop = Vec::new();
        for (project, p) in &mut self.projects {
            p.reserved_names.retain(|_, until| *until > now);
            p.services.retain(|name, svc| {
                if svc.deleted_at.is_some() {
                    return svc.visible(now, lag);
                }
                if svc.state == ServiceState::Running && svc.poweroff_at.is_some_and(|t| now >= t) {
                    svc.state = ServiceState::Poweroff;
                    svc.ready_at = None;
                    svc.update_time = now;
                    stop.push((project.clone(), name.clone()));
                }
                true
            });
        }
        stop
    }

    pub fn snapshot(&self) -> Persisted {
        Persisted {
            pki: self.pki.clone(),
            projects: self.projects.clone(),
        }
    }
}

pub fn new_project(
    config: &crate::config::ProjectConfig,
    rng: &mut StdRng,
    now: OffsetDateTime,
) -> Project {
    Project {
        name: config.name.clone(),
        default_cloud: config.default_cloud.clone(),
        vpcs: config
            .vpcs
            .iter()
            .map(|v| Vpc {
                project_vpc_id: random_uuid(rng),
                cloud_name: v.cloud.clone(),
                network_cidr: v.network_cidr.clone(),
                create_time: now,
            })
            .collect(),
        services: BTreeMap::new(),
        reserved_names: BTreeMap::new(),
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
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
