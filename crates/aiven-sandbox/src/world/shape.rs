//! What a new service of each type looks like: its components, admin user, nodes,
//! databases and ACLs.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::model::{Acl, Component, Node, Serve, User};
use crate::pki::Issued;

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
pub(super) fn default_access_control(service_type: &str) -> Option<Value> {
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

pub(super) fn has_databases(service_type: &str) -> bool {
    matches!(service_type, "pg" | "mysql" | "alloydbomni")
}

/// One node per plan node, in the cloud's zones; each comes up `node_lag` after the last.
pub(super) fn nodes(
    name: &str,
    cloud: &str,
    count: u32,
    ready_at: Option<OffsetDateTime>,
    node_lag: Duration,
) -> Vec<Node> {
    let zone = cloud.rsplit('-').next().unwrap_or("a");
    (0..count)
        .map(|i| Node {
            name: format!("{name}-{}", i + 1),
            availability_zone: format!("{zone}-{}", ["a", "b", "c"][i as usize % 3]),
            running_at: ready_at.map(|t| t + node_lag * i),
        })
        .collect()
}

/// The primary user; Kafka's carries a client certificate (`cert`).
pub(super) fn admin_user(
    service_type: &str,
    password: String,
    cert: Option<Issued>,
    now: OffsetDateTime,
) -> User {
    User {
        username: admin_username(service_type).to_string(),
        password,
        r#type: "primary".into(),
        authentication: (service_type == "mysql").then(|| "caching_sha2_password".into()),
        access_cert: cert.as_ref().map(|c| c.cert_pem.clone()),
        access_key: cert.map(|c| c.key_pem),
        access_control: default_access_control(service_type),
        password_updated_time: now,
    }
}

/// The components, each on a port from `port` (the caller's: the world binds nothing).
/// Inside a VPC they have a private address and route.
pub(super) fn components(
    service_type: &str,
    user_config: &Value,
    in_vpc: bool,
    mut port: impl FnMut() -> u16,
) -> Vec<Component> {
    let (host, route) = if in_vpc {
        ("10.1.0.10", "private")
    } else {
        ("localhost", "dynamic")
    };
    component_layout(service_type, user_config)
        .into_iter()
        .map(|(component, serve, auth)| Component {
            component: component.to_string(),
            host: host.to_string(),
            port: port(),
            route: route.to_string(),
            usage: "primary".to_string(),
            ssl: Some(true),
            kafka_authentication_method: auth.map(str::to_string),
            kafka_ssl_ca: (service_type == "kafka" && component == "kafka")
                .then(|| "project_ca".to_string()),
            serve,
        })
        .collect()
}

/// `defaultdb`, or a fork's databases, for types that have databases.
pub(super) fn databases(service_type: &str, forked: Option<Vec<String>>) -> Vec<String> {
    if has_databases(service_type) {
        forked.unwrap_or_else(|| vec!["defaultdb".to_string()])
    } else {
        Vec::new()
    }
}

/// A new Kafka service lets everyone do everything: the wildcard `default` ACL.
pub(super) fn default_acls(service_type: &str) -> Vec<Acl> {
    if service_type != "kafka" {
        return Vec::new();
    }
    vec![Acl {
        id: "default".into(),
        permission: "admin".into(),
        topic: "*".into(),
        username: "*".into(),
    }]
}
