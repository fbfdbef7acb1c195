//! The Service object as the API renders it, per type: `service_uri`,
//! `service_uri_params`, `connection_info`, `components`, `users`, `node_states`.
//! Without `include_secrets` passwords and private keys read `<redacted>`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::catalogue::catalogue;
use crate::rules::rfc3339;
use crate::world::{Acl, Component, Service, Topic, User};

pub const REDACTED: &str = "<redacted>";

/// Userinfo escaping as in avn's `format_uri` (everything but unreserved characters).
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, USERINFO).to_string()
}

fn secret(value: &str, include: bool) -> String {
    if include {
        value.to_string()
    } else {
        REDACTED.to_string()
    }
}

pub fn user_json(user: &User, include_secrets: bool) -> Value {
    let mut out = json!({
        "username": user.username,
        "password": secret(&user.password, include_secrets),
        "type": user.r#type,
        "password_updated_time": rfc3339(user.password_updated_time),
    });
    if let Some(auth) = &user.authentication {
        out["authentication"] = json!(auth);
    }
    if let Some(cert) = &user.access_cert {
        out["access_cert"] = json!(cert);
        out["access_cert_not_valid_after_time"] = json!(rfc3339(
            user.password_updated_time + time::Duration::days(825)
        ));
    }
    if let Some(key) = &user.access_key {
        out["access_key"] = json!(secret(key, include_secrets));
    }
    if let Some(ac) = &user.access_control {
        out["access_control"] = ac.clone();
    }
    out
}

pub fn topic_json(topic: &Topic, now: OffsetDateTime) -> Value {
    json!({
        "topic_name": topic.topic_name,
        "partitions": topic.partitions,
        "replication": topic.replication,
        "min_insync_replicas": topic.min_insync_replicas,
        "retention_bytes": topic.retention_bytes,
        "retention_hours": topic.retention_hours,
        "cleanup_policy": topic.cleanup_policy,
        "state": if now >= topic.active_at { "ACTIVE" } else { "CONFIGURING" },
        "tags": [],
        "topic_description": "",
        "owner_user_group_id": "",
        "remote_storage_enable": false,
    })
}

pub fn acl_json(acls: &[Acl]) -> Value {
    json!(acls
        .iter()
        .map(|a| json!({"id": a.id, "permission": a.permission, "topic": a.topic, "username": a.username}))
        .collect::<Vec<_>>())
}

fn component_json(c: &Component) -> Value {
    let mut out = json!({
        "component": c.component,
        "host": c.host,
        "port": c.port,
        "route": c.route,
        "usage": c.usage,
    });
    if let Some(ssl) = c.ssl {
        out["ssl"] = json!(ssl);
    }
    if let Some(m) = &c.kafka_authentication_method {
        out["kafka_authentication_method"] = json!(m);
    }
    if let Some(ca) = &c.kafka_ssl_ca {
        out["kafka_ssl_ca"] = json!(ca);
    }
    out
}

struct Uris {
    service_uri: String,
    params: Map<String, Value>,
    connection_info: Map<String, Value>,
}

fn https_uri(user: &str, password: &str, c: &Component) -> String {
    format!(
        "https://{}:{}@{}:{}",
        enc(user),
        enc(password),
        c.host,
        c.port
    )
}

fn uris(svc: &Service, include_secrets: bool) -> Uris {
    let admin = svc.admin();
    let user = admin.map(|u| u.username.as_str()).unwrap_or("avnadmin");
    let password = admin
        .map(|u| secret(&u.password, include_secrets))
        .unwrap_or_default();
    let primary = svc.primary().cloned().unwrap_or(Component {
        component: svc.service_type.clone(),
        host: "localhost".into(),
        port: 0,
        route: "dynamic".into(),
        usage: "primary".into(),
        ssl: Some(true),
        kafka_authentication_method: None,
        kafka_ssl_ca: None,
        serve: crate::world::Serve::Tls,
    });
    let find = |name: &str| svc.components.iter().find(|c| c.component == name);
    let host = primary.host.clone();
    let port = primary.port.to_string();
    let mut params = Map::new();
    let mut info = Map::new();
    let service_uri = match svc.service_type.as_str() {
        "pg" | "alloydbomni" => {
            let uri = format!(
                "postgres://{}:{}@{host}:{port}/defaultdb?sslmode=require",
                enc(user),
                enc(&password)
            );
            params = json!({"host": host, "port": port, "user": user, "password": password,
                            "dbname": "defaultdb", "sslmode": "require"})
            .as_object()
            .cloned()
            .unwrap_or_default();
            info.insert("pg".into(), json!([uri]));
            info.insert("pg_params".into(), json!([params]));
            info.insert("pg_standby".into(), json!([]));
            info.insert("pg_syncing".into(), json!([]));
            uri
        }
        "mysql" => {
            let uri = format!(
                "mysql://{}:{}@{host}:{port}/defaultdb?ssl-mode=REQUIRED",
                enc(user),
                enc(&password)
            );
            params = json!({"host": host, "port": port, "user": user, "password": password,
                            "dbname": "defaultdb", "ssl-mode": "REQUIRED"})
            .as_object()
            .cloned()
            .unwrap_or_default();
            info.insert("mysql".into(), json!([uri]));
            info.insert("mysql_params".into(), json!([params]));
            info.insert("mysql_standby".into(), json!([]));
            uri
        }
        "kafka" => {
            let bootstrap = format!("{host}:{port}");
            params.insert("host".into(), json!(host));
            params.insert("port".into(), json!(port));
            info.insert("kafka".into(), json!([bootstrap]));
            if let Some(admin) = admin {
                if let Some(cert) = &admin.access_cert {
                    info.insert("kafka_access_cert".into(), json!(cert));
                }
                if let Some(key) = &admin.access_key {
                    info.insert(
                        "kafka_access_key".into(),
                        json!(secret(key, include_secrets)),
                    );
                }
            }
            for (component, key) in [
                ("kafka_rest", "kafka_rest_uri"),
                ("schema_registry", "schema_registry_uri"),
                ("kafka_connect", "kafka_connect_uri"),
            ] {
                if let Some(c) = find(component) {
                    info.insert(key.into(), json!(https_uri(user, &password, c)));
                }
            }
            bootstrap
        }
        "valkey" | "dragonfly" => {
            let uri = format!("rediss://{}:{}@{host}:{port}", enc(user), enc(&password));
            params = json!({"host": host, "port": port, "user": user, "password": password, "ssl": "require"})
                .as_object()
                .cloned()
                .unwrap_or_default();
            let ty = svc.service_type.as_str();
            info.insert(ty.into(), json!([uri]));
            info.insert(format!("{ty}_password"), json!(password));
            info.insert(format!("{ty}_slave"), json!([]));
            uri
        }
        ty => {
            let uri = https_uri(user, &password, &primary);
            params = json!({"host": host, "port": port, "user": user, "password": password})
                .as_object()
                .cloned()
                .unwrap_or_default();
            info.insert(ty.into(), json!([uri]));
            if ty == "opensearch" {
                info.insert("opensearch_username".into(), json!(user));
                info.insert("opensearch_password".into(), json!(password));
                if let Some(c) = find("opensearch_dashboards") {
                    info.insert(
                        "opensearch_dashboards_uri".into(),
                        json!(https_uri(user, &password, c)),
                    );
                }
            }
            uri
        }
    };
    Uris {
        service_uri,
        params,
        connection_info: info,
    }
}

pub fn service_json(svc: &Service, now: OffsetDateTime, include_secrets: bool) -> Value {
    let cat = catalogue();
    let ty = cat.service_type(&svc.service_type);
    let plan = ty.and_then(|t| t.plan(&svc.plan));
    let cloud = cat.cloud(&svc.cloud);
    let uris = uris(svc, include_secrets);
    let node_states: Vec<Value> = svc
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut node = json!({
                "name": n.name,
                "state": svc.node_state(n, now),
                "availability_zone": n.availability_zone,
                // Restore/sync phases; none while nodes are built from scratch or run.
                "progress_updates": [],
            });
            if matches!(svc.service_type.as_str(), "pg" | "mysql" | "alloydbomni") {
                node["role"] = json!(if i == 0 { "master" } else { "standby" });
            }
            node
        })
        .collect();
    let state = if svc.deleted_at.is_some() {
        "POWEROFF"
    } else {
        state_name(svc)
    };
    let mut out = json!({
        "service_name": svc.name,
        "service_type": svc.service_type,
        "service_type_description": ty.map(|t| t.description.as_str()).unwrap_or(""),
        "plan": svc.plan,
        "cloud_name": svc.cloud,
        "cloud_description": cloud.map(|c| c.cloud_description.as_str()).unwrap_or(""),
        "project_vpc_id": svc.project_vpc_id,
        "state": state,
        "termination_protection": svc.termination_protection,
        "create_time": rfc3339(svc.create_time),
        "update_time": rfc3339(svc.update_time),
        "group_list": ["default"],
        "node_count": svc.nodes.len(),
        "node_cpu_count": plan.map(|p| p.node_cpu_count).unwrap_or(1),
        "node_memory_mb": plan.map(|p| p.node_memory_mb).unwrap_or(1024),
        "disk_space_mb": svc.disk_space_mb,
        "node_states": node_states,
        "service_uri": uris.service_uri,
        "service_uri_params": uris.params,
        "connection_info": uris.connection_info,
        "components": svc.components.iter().map(component_json).collect::<Vec<_>>(),
        "users": svc.users.iter().map(|u| user_json(u, include_secrets)).collect::<Vec<_>>(),
        "user_config": svc.user_config,
        "tags": svc.tags,
        "service_integrations": [],
        "service_notifications": svc.failure.as_deref().map(failure_notification).into_iter()
            .chain(svc.notice.as_deref().map(version_notification))
            .collect::<Vec<_>>(),
        "maintenance": svc.maintenance,
        "metadata": {},
        "features": {},
        "tech_emails": svc.tech_emails,
        "backups": svc.backups,
    });
    if matches!(svc.service_type.as_str(), "pg" | "mysql" | "alloydbomni") {
        out["databases"] = json!(svc.databases);
    }
    if matches!(svc.service_type.as_str(), "pg" | "alloydbomni") {
        out["connection_pools"] = json!([]);
    }
    if svc.service_type == "kafka" {
        out["acl"] = acl_json(&svc.acls);
        out["kafka_acl"] = json!(svc.kafka_acls);
        out["topics"] = json!(
            svc.topics
                .iter()
                .map(|t| topic_json(t, now))
                .collect::<Vec<_>>()
        );
        out["schema_registry_acl"] = json!([
            {"id": "default-sr-admin-config", "permission": "schema_registry_write", "resource": "Config:", "username": "avnadmin"},
            {"id": "default-sr-admin-subject", "permission": "schema_registry_write", "resource": "Subject:*", "username": "avnadmin"},
        ]);
    }
    out
}

/// The spec's notification shape; its types are end-of-life and the removal of
/// powered-off services, the nearer of which this is.
fn failure_notification(cause: &str) -> Value {
    let message = format!("The sandbox could not start this service's server: {cause}");
    json!({
        "level": "warning",
        "message": message.chars().take(1024).collect::<String>(),
        "metadata": {},
        "type": "service_powered_off_removal",
    })
}

/// A version other than the one asked for; the spec's nearest type is end-of-life.
fn version_notification(note: &str) -> Value {
    json!({
        "level": "notice",
        "message": note.chars().take(1024).collect::<String>(),
        "metadata": {},
        "type": "service_end_of_life",
    })
}

fn state_name(svc: &Service) -> &'static str {
    match svc.state {
        crate::world::ServiceState::Rebuilding => "REBUILDING",
        crate::world::ServiceState::Running => "RUNNING",
        crate::world::ServiceState::Rebalancing => "REBALANCING",
        crate::world::ServiceState::Poweroff => "POWEROFF",
    }
}
