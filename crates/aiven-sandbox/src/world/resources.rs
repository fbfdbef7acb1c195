//! Sub-resources of running services: databases, users, topics and ACLs (Aiven's and
//! Kafka-native).

use serde_json::Value;
use time::OffsetDateTime;

use super::World;
use super::ids::{generate_password, random_hex};
use super::model::{Acl, KafkaAcl, Service, Topic, User};
use super::shape::{default_access_control, has_databases};
use crate::error::{ApiError, ApiResult};

/// Aiven-managed services allow up to 50 users by default, except these types
/// (aiven-docs, platform/howto/create_new_service_user.md). The admin user counts.
pub const USER_LIMIT: usize = 50;

fn has_user_limit(service_type: &str) -> bool {
    !matches!(
        service_type,
        "alloydbomni" | "cassandra" | "redis" | "dragonfly" | "mysql" | "pg" | "valkey"
    )
}

/// The `access_control` a user of this type keeps, checked as the API checks it (each
/// list at most 256 strings, rules in Valkey's syntax). Of the key-value stores' fields
/// only the type's own are kept, and empty lists are left out, as the API leaves out
/// the ACLs it has no values for.
fn checked_access_control(service_type: &str, ac: &Value) -> ApiResult<Value> {
    let bad = |m: String| ApiError::new(400, m).code("bad_request");
    let object = ac
        .as_object()
        .ok_or_else(|| bad("Invalid access_control: must be an object".into()))?;
    let prefix = match service_type {
        "valkey" | "redis" | "dragonfly" => service_type,
        _ => {
            if let Some(v) = object.get("pg_allow_replication")
                && !v.is_boolean()
            {
                return Err(bad(
                    "Invalid access_control.pg_allow_replication: must be a boolean".into(),
                ));
            }
            return Ok(ac.clone());
        }
    };
    let mut out = serde_json::Map::new();
    for kind in ["categories", "channels", "commands", "keys"] {
        let name = format!("{prefix}_acl_{kind}");
        let Some(value) = object.get(&name) else {
            continue;
        };
        let items = value
            .as_array()
            .ok_or_else(|| bad(format!("Invalid access_control.{name}: must be a list")))?;
        if items.len() > 256 {
            return Err(bad(format!(
                "Invalid access_control.{name}: at most 256 items"
            )));
        }
        for item in items {
            let rule = item.as_str().ok_or_else(|| {
                bad(format!(
                    "Invalid access_control.{name}: {item} is not a string"
                ))
            })?;
            let ok = !rule.is_empty()
                && !rule.chars().any(char::is_whitespace)
                && match kind {
                    "categories" => {
                        (rule.starts_with("+@") || rule.starts_with("-@")) && rule.len() > 2
                    }
                    "commands" => {
                        (rule.starts_with('+') || rule.starts_with('-')) && rule.len() > 1
                    }
                    _ => true,
                };
            if !ok {
                return Err(bad(format!("Invalid access_control.{name}: '{rule}'")));
            }
        }
        if !items.is_empty() {
            out.insert(name, value.clone());
        }
    }
    Ok(Value::Object(out))
}

impl World {
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
            if has_user_limit(&svc.service_type) && svc.users.len() >= USER_LIMIT {
                return Err(ApiError::new(
                    409,
                    format!(
                        "Service user limit reached: service '{name}' already has the maximum of {USER_LIMIT} users. Create a support ticket to request an increase."
                    ),
                )
                .code("service_user_limit_reached"));
            }
            svc.service_type == "kafka"
        }
        .then(|| self.pki.issue_client(&username))
        .transpose()
        .map_err(|e| ApiError::new(500, format!("certificate issue failed: {e}")))?;
        let svc = self.running_service(project, name)?;
        let access_control = match body.get("access_control") {
            Some(ac) if !ac.is_null() => Some(checked_access_control(&svc.service_type, ac)?),
            _ => default_access_control(&svc.service_type),
        };
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
            access_control,
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
            .ok_or_else(|| no_such_user(username))
    }

    /// `set-access-control`: replaces the user's access control. Returns the user.
    pub fn set_access_control(
        &mut self,
        project: &str,
        name: &str,
        username: &str,
        ac: &Value,
    ) -> ApiResult<User> {
        let svc = self.running_service(project, name)?;
        let checked = checked_access_control(&svc.service_type, ac)?;
        let user = user_mut(svc, username)?;
        user.access_control = Some(checked);
        Ok(user.clone())
    }

    /// Puts a user back as it was (a change the server refused).
    pub fn restore_user(
        &mut self,
        project: &str,
        name: &str,
        previous: Option<User>,
        username: &str,
    ) {
        if let Some(svc) = self
            .projects
            .get_mut(project)
            .and_then(|p| p.services.get_mut(name))
        {
            svc.users.retain(|u| u.username != username);
            svc.users.extend(previous);
        }
    }

    /// Checks that a user may be deleted (it exists and is not the admin user).
    pub fn check_user_deletable(
        &mut self,
        project: &str,
        name: &str,
        username: &str,
    ) -> ApiResult<()> {
        deletable(self.running_service(project, name)?, username)
    }

    pub fn delete_user(&mut self, project: &str, name: &str, username: &str) -> ApiResult<()> {
        let svc = self.running_service(project, name)?;
        deletable(svc, username)?;
        svc.users.retain(|u| u.username != username);
        Ok(())
    }

    pub fn reset_user_password(
        &mut self,
        project: &str,
        name: &str,
        username: &str,
        new_password: Option<String>,
    ) -> ApiResult<User> {
        if let Some(p) = &new_password
            && !(8..=256).contains(&p.chars().count())
        {
            return Err(ApiError::new(400, "Invalid new_password: 8-256 characters"));
        }
        let now = self.now();
        let password = new_password.unwrap_or_else(|| generate_password(&mut self.rng));
        let svc = self.running_service(project, name)?;
        let user = user_mut(svc, username)?;
        user.password = password;
        user.password_updated_time = now;
        Ok(user.clone())
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
            // The wording terraform-provider-aiven retries on (271b2c15, #1507).
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
        for (what, value, max) in [("username", &username, 64), ("topic", &topic, 249)] {
            if !(1..=max).contains(&value.chars().count()) {
                return Err(
                    ApiError::new(400, format!("Invalid {what}: 1-{max} characters"))
                        .code("bad_request"),
                );
            }
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
            return Err(no_such_acl(id));
        }
        Ok(svc.acls.clone())
    }
}

/// The enums of a Kafka-native ACL's fields, as the OpenAPI description lists them.
const OPERATIONS: &[&str] = &[
    "All",
    "Alter",
    "AlterConfigs",
    "ClusterAction",
    "Create",
    "CreateTokens",
    "Delete",
    "Describe",
    "DescribeConfigs",
    "DescribeTokens",
    "IdempotentWrite",
    "Read",
    "Write",
];
const RESOURCE_TYPES: &[&str] = &[
    "Cluster",
    "DelegationToken",
    "Group",
    "Topic",
    "TransactionalId",
    "User",
];

impl World {
    /// Adds a Kafka-native ACL. An identical entry is not added twice: the existing one
    /// is the answer, as Kafka's own `CreateAcls` treats a binding it has.
    pub fn add_kafka_acl(
        &mut self,
        project: &str,
        name: &str,
        body: &Value,
    ) -> ApiResult<KafkaAcl> {
        let text = |k: &str, required: bool| -> ApiResult<Option<String>> {
            match body.get(k) {
                None | Some(Value::Null) if !required => Ok(None),
                Some(Value::String(v)) if v.chars().count() <= 256 => Ok(Some(v.clone())),
                Some(Value::String(_)) => Err(ApiError::new(
                    400,
                    format!("Invalid {k}: at most 256 characters"),
                )
                .code("bad_request")),
                _ => Err(ApiError::new(400, format!("Missing required field '{k}'"))),
            }
        };
        let one_of = |k: &str, allowed: &[&str]| -> ApiResult<String> {
            let value = text(k, true)?.unwrap_or_default();
            if allowed.contains(&value.as_str()) {
                Ok(value)
            } else {
                Err(ApiError::new(400, format!("Invalid {k} '{value}'")))
            }
        };
        let acl = KafkaAcl {
            id: format!("acl{}", random_hex(&mut self.rng, 12)),
            host: text("host", false)?.unwrap_or_else(|| "*".to_string()),
            operation: one_of("operation", OPERATIONS)?,
            pattern_type: one_of("pattern_type", &["LITERAL", "PREFIXED"])?,
            permission_type: one_of("permission_type", &["ALLOW", "DENY"])?,
            principal: text("principal", true)?.unwrap_or_default(),
            resource_name: text("resource_name", true)?.unwrap_or_default(),
            resource_type: one_of("resource_type", RESOURCE_TYPES)?,
        };
        let svc = self.running_service(project, name)?;
        if svc.service_type != "kafka" {
            return Err(ApiError::new(
                409,
                "Kafka-native ACLs are only supported by Kafka services",
            )
            .code("kafka_acl_not_supported"));
        }
        let same = |a: &KafkaAcl| {
            KafkaAcl {
                id: acl.id.clone(),
                ..a.clone()
            } == acl
        };
        if let Some(existing) = svc.kafka_acls.iter().find(|a| same(a)) {
            return Ok(existing.clone());
        }
        svc.kafka_acls.push(acl.clone());
        Ok(acl)
    }

    /// Both kinds of ACL, as `GET .../kafka/acl` lists them.
    pub fn list_kafka_acls(
        &mut self,
        project: &str,
        name: &str,
    ) -> ApiResult<(Vec<Acl>, Vec<KafkaAcl>)> {
        let svc = self.running_service(project, name)?;
        Ok((svc.acls.clone(), svc.kafka_acls.clone()))
    }

    pub fn get_kafka_acl(&mut self, project: &str, name: &str, id: &str) -> ApiResult<KafkaAcl> {
        let svc = self.running_service(project, name)?;
        svc.kafka_acls
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .ok_or_else(|| no_such_acl(id))
    }

    pub fn delete_kafka_acl(&mut self, project: &str, name: &str, id: &str) -> ApiResult<()> {
        let svc = self.running_service(project, name)?;
        let before = svc.kafka_acls.len();
        svc.kafka_acls.retain(|a| a.id != id);
        if before == svc.kafka_acls.len() {
            return Err(no_such_acl(id));
        }
        Ok(())
    }
}

fn no_such_acl(id: &str) -> ApiError {
    ApiError::new(404, format!("ACL entry '{id}' does not exist")).code("service_acl_not_found")
}

fn no_such_user(username: &str) -> ApiError {
    ApiError::new(404, format!("Service user '{username}' does not exist")).code("user_not_found")
}

fn user_mut<'a>(svc: &'a mut Service, username: &str) -> ApiResult<&'a mut User> {
    svc.users
        .iter_mut()
        .find(|u| u.username == username)
        .ok_or_else(|| no_such_user(username))
}

/// A user may be deleted if it exists and is not the admin user.
fn deletable(svc: &Service, username: &str) -> ApiResult<()> {
    match svc.users.iter().find(|u| u.username == username) {
        Some(u) if u.r#type == "primary" => {
            Err(ApiError::new(400, "Cannot delete the primary service user"))
        }
        Some(_) => Ok(()),
        None => Err(no_such_user(username)),
    }
}
