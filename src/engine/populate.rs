//! Inside a ready service: the manifest's databases, users, Kafka topics and ACLs.
//!
//! Each is created once and confirmed, through the answers the API gives for a while
//! after a service is new: 404 "Service X does not exist", 409 `not_powered`, 409
//! "Cluster only has N broker(s)", 501 and 503 (their sources beside [`settling`]). A 409 "already exists" (our own create
//! whose answer was lost, retried) counts as success. Topics are waited for until
//! `ACTIVE`. What each step waits on is reported as it goes (`databases 1/2`, `topics
//! 0/3 ACTIVE`, `ACLs`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use serde_json::json;

use crate::api::{ApiError, Client, Retry, Service, ServiceUser};
use crate::delivery::Created;
use crate::manifest::ServiceSpec;

/// The API's answers that mean "not yet" for sub-resources of a new service. Each is
/// keyed on a documented code where the spec lists one ("Errors": `error_code` is
/// optional), else on wording a client of the real API is seen to retry.
fn settling(e: &ApiError) -> bool {
    match e.status() {
        // A sub-resource call just after the create: aiven-go-client retries a 404
        // whose body matches `Service \S+ does not exist` (client.go, isServiceLagError).
        Some(404) => {
            matches!(
                e.error_code(),
                Some("service_not_found" | "service_does_not_exist")
            ) || service_lag(e.message())
        }
        // `not_powered`: the spec's example 409 "Database not powered on". A topic before
        // its brokers are up: 409 "Cluster only has 2 broker(s), cannot set replication
        // factor to 3", retried by terraform-provider-aiven (271b2c15, #1507).
        Some(409) => {
            e.error_code() == Some("not_powered")
                || e.message().contains("cannot set replication factor to")
        }
        Some(501 | 503) => true,
        _ => e.is_transient(),
    }
}

/// aiven-go-client's `Service \S+ does not exist`.
fn service_lag(message: &str) -> bool {
    message
        .strip_prefix("Service ")
        .and_then(|rest| rest.split_once(' '))
        .is_some_and(|(name, rest)| !name.is_empty() && rest.starts_with("does not exist"))
}

/// A create answered 409 "already exists" is done: our earlier attempt went through.
/// Topics are looked for ACTIVE this often.
const TOPIC_LOOK: Duration = Duration::from_millis(500);

pub(super) fn done_if_exists(result: Result<(), ApiError>) -> Result<(), ApiError> {
    match result {
        Err(e) if already_exists(&e) => Ok(()),
        other => other,
    }
}

pub(super) fn already_exists(e: &ApiError) -> bool {
    e.is_conflict() && e.message().to_ascii_lowercase().contains("already exists")
}

/// Retries `op` while the service is settling, until `deadline`.
pub(super) async fn patiently<T, F, Fut>(deadline: Instant, what: &str, op: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    patiently_while(deadline, what, settling, op).await
}

/// Retries `op` while `again` says its answer may still change, until `deadline`. A
/// timeout names the API's last answer: it is what the wait was for.
async fn patiently_while<T, F, Fut>(
    deadline: Instant,
    what: &str,
    again: impl Fn(&ApiError) -> bool,
    op: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(300))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(usize::MAX)
        .with_jitter();
    let last = Mutex::new(None::<String>);
    let attempt = op
        .retry(backoff)
        .when(|e| again(e) && Instant::now() < deadline)
        .notify(|e, wait| {
            tracing::debug!("{what}: {e}; again in {:.1}s", wait.as_secs_f64());
            *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        });
    match tokio::time::timeout_at(deadline.into(), attempt).await {
        Ok(r) => r.map_err(|e| format!("{what}: {e}")),
        Err(_) => Err(match last.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => format!("{what}: not done before the timeout; the API's last answer: {e}"),
            None => format!("{what}: not done before the timeout"),
        }),
    }
}

/// The API's 409 "Cluster only has N broker(s), cannot set replication factor to R"
/// while brokers join a new cluster; once all `nodes` of the service answer, it is
/// final: no wait makes more brokers.
fn short_of_brokers_for_good(e: &ApiError, nodes: usize) -> bool {
    if e.status() != Some(409) {
        return false;
    }
    let has = e
        .message()
        .split("only has ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok());
    has.is_some_and(|n| nodes > 0 && n >= nodes)
}

pub async fn populate(
    client: &Client,
    project: &str,
    svc: &Service,
    spec: &ServiceSpec,
    deadline: Instant,
    step: &(dyn Fn(String) + Sync),
) -> Result<Created, String> {
    let progress = Progress {
        step,
        done: Mutex::new((0, 0)),
    };
    let inside = Inside {
        client,
        project,
        name: &svc.service_name,
        nodes: svc.node_states.len(),
        known_databases: &svc.databases,
        known_users: &svc.users,
        spec,
        deadline,
        progress: &progress,
    };
    inside.progress.databases_and_users(spec, 0, 0);
    let (dbs, users) = tokio::join!(inside.databases(), inside.users());
    dbs?;
    let users = users?;
    // What the type has inside, as the catalogue says (the manifest checks agree).
    if spec.kind.kafka {
        inside.topics().await?;
        inside.acls().await?;
    }
    Ok(Created { users })
}

/// `up --reuse --reset`: the manifest's databases and Kafka topics of a service that
/// exists are deleted through the API (its data with them), so that `populate` makes
/// them again, empty, and the seed runs on them. Users and ACLs stay: they hold no data.
pub async fn reset(
    client: &Client,
    project: &str,
    svc: &mut Service,
    spec: &ServiceSpec,
    deadline: Instant,
) -> Result<(), String> {
    let name = svc.service_name.clone();
    // The service was just seen ready: a 404 is about the database or topic, gone.
    let gone = |r: Result<(), ApiError>| match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    };
    if spec.kind.databases {
        for db in &spec.databases {
            let what = format!("deleting database `{db}` of {name} (--reset)");
            patiently(deadline, &what, || async {
                gone(
                    client
                        .delete_database(project, &name, db, Retry::Standard)
                        .await,
                )
            })
            .await?;
        }
        svc.databases.retain(|d| !spec.databases.contains(d));
    }
    if spec.kind.kafka && !spec.topics.is_empty() {
        for topic in &spec.topics {
            let what = format!("deleting topic `{}` of {name} (--reset)", topic.name);
            patiently(deadline, &what, || async {
                gone(
                    client
                        .delete_topic(project, &name, &topic.name, Retry::Standard)
                        .await,
                )
            })
            .await?;
        }
        // Kafka deletes a topic in the background: a create before it is gone would
        // find the old one "already exists", data and all.
        loop {
            let listed = patiently(deadline, &format!("listing topics of {name}"), || {
                client.list_topics(project, &name, Retry::Standard)
            })
            .await?;
            if !listed
                .iter()
                .any(|t| spec.topics.iter().any(|s| s.name == t.topic_name))
            {
                break;
            }
            if Instant::now() + TOPIC_LOOK > deadline {
                return Err("the reset's topics were not gone before the timeout".into());
            }
            tokio::time::sleep(TOPIC_LOOK).await;
        }
    }
    Ok(())
}

/// One service's contents, being created.
#[derive(Clone, Copy)]
struct Inside<'a> {
    client: &'a Client,
    project: &'a str,
    name: &'a str,
    /// The nodes the ready service has (Kafka: its brokers); 0 when not told.
    nodes: usize,
    /// The databases the service's read named: no list is needed before creating.
    known_databases: &'a [String],
    /// The users the service's read (with secrets) named, credentials and all: a
    /// service adopted by a later push has them, and needs no create (409) and read.
    known_users: &'a [ServiceUser],
    spec: &'a ServiceSpec,
    deadline: Instant,
    progress: &'a Progress<'a>,
}

/// What a service's contents wait on, told as they go. Databases and users are made at
/// the same time, so their counts share one line.
struct Progress<'a> {
    step: &'a (dyn Fn(String) + Sync),
    /// Databases and users done.
    done: Mutex<(usize, usize)>,
}

impl Progress<'_> {
    fn databases_and_users(&self, spec: &ServiceSpec, databases: usize, users: usize) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.0 += databases;
        done.1 += users;
        let parts: Vec<String> = [
            ("databases", done.0, spec.databases.len()),
            ("users", done.1, spec.users.len()),
        ]
        .into_iter()
        .filter(|(_, _, n)| *n > 0)
        .map(|(what, k, n)| format!("{what} {k}/{n}"))
        .collect();
        if !parts.is_empty() {
            (self.step)(parts.join(", "));
        }
    }
}

impl Inside<'_> {
    async fn databases(&self) -> Result<(), String> {
        let Inside {
            client,
            project,
            name,
            known_databases,
            spec,
            deadline,
            progress,
            ..
        } = *self;
        if spec.databases.is_empty() || !spec.kind.databases {
            return Ok(());
        }
        // A database service always has one: an empty list means the read had none.
        let existing = if known_databases.is_empty() {
            patiently(deadline, &format!("listing databases of {name}"), || {
                client.list_databases(project, name)
            })
            .await?
        } else {
            known_databases.to_vec()
        };
        let (there, missing): (Vec<&String>, Vec<&String>) =
            spec.databases.iter().partition(|d| existing.contains(d));
        if !there.is_empty() {
            progress.databases_and_users(spec, there.len(), 0);
        }
        for db in missing {
            let what = format!("creating database `{db}` in {name}");
            patiently(deadline, &what, || async {
                done_if_exists(client.create_database(project, name, db).await)
            })
            .await?;
            progress.databases_and_users(spec, 1, 0);
        }
        // The create's 200 (or 409 "already exists") is the API's word that it is there,
        // as for users and ACLs: a list to see it again would only spend the budget.
        Ok(())
    }

    async fn users(&self) -> Result<BTreeMap<String, ServiceUser>, String> {
        let Inside {
            client,
            project,
            name,
            spec,
            deadline,
            progress,
            known_users,
            ..
        } = *self;
        let mut out = BTreeMap::new();
        for user in &spec.users {
            if let Some(known) = known_users
                .iter()
                .find(|u| &u.username == user && (u.password.is_some() || u.access_key.is_some()))
            {
                out.insert(user.clone(), known.clone());
                progress.databases_and_users(spec, 0, 1);
                continue;
            }
            let what = format!("creating user `{user}` in {name}");
            let created = patiently(deadline, &what, || async {
                match client.create_user(project, name, user).await {
                    // Our earlier attempt went through; its answer was lost. Read it back.
                    Err(e) if already_exists(&e) => client.get_user(project, name, user).await,
                    other => other,
                }
            })
            .await?;
            if created.password.is_none() && created.access_key.is_none() {
                return Err(format!("{what}: the API returned no credentials"));
            }
            out.insert(user.clone(), created);
            progress.databases_and_users(spec, 0, 1);
        }
        Ok(out)
    }

    async fn topics(&self) -> Result<(), String> {
        let Inside {
            client,
            project,
            name,
            nodes,
            spec,
            deadline,
            progress,
            ..
        } = *self;
        if spec.topics.is_empty() {
            return Ok(());
        }
        let waiting = |active: usize| {
            (progress.step)(format!("topics {active}/{} ACTIVE", spec.topics.len()));
        };
        waiting(0);
        for topic in &spec.topics {
            let mut body = json!({
                "topic_name": topic.name,
                "partitions": topic.partitions,
                "replication": topic.replication,
            });
            if let Some(m) = topic.min_insync_replicas {
                body["min_insync_replicas"] = json!(m);
            }
            if let Some(r) = topic.retention_hours {
                body["retention_hours"] = json!(r);
            }
            if let Some(p) = &topic.cleanup_policy {
                body["cleanup_policy"] = json!(p);
            }
            if !topic.config.is_empty() {
                body["config"] = json!(topic.config);
            }
            let what = format!("creating topic `{}` in {name}", topic.name);
            let again = |e: &ApiError| settling(e) && !short_of_brokers_for_good(e, nodes);
            patiently_while(deadline, &what, again, || async {
                done_if_exists(client.create_topic(project, name, &body).await)
            })
            .await?;
        }
        // The topic list is cached and lags; wait until every topic shows ACTIVE. A
        // topic is never ACTIVE the instant it is created: the first look waits too.
        let mut shown = 0;
        loop {
            tokio::time::sleep(client.paced(TOPIC_LOOK)).await;
            let listed = patiently(deadline, &format!("listing topics of {name}"), || {
                client.list_topics(project, name, Retry::Standard)
            })
            .await?;
            let pending: Vec<&str> = spec
                .topics
                .iter()
                .filter(|t| {
                    !listed
                        .iter()
                        .any(|l| l.topic_name == t.name && l.state == "ACTIVE")
                })
                .map(|t| t.name.as_str())
                .collect();
            // Told when the count moves, not on every look.
            let active = spec.topics.len() - pending.len();
            if active != shown {
                waiting(active);
                shown = active;
            }
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() + TOPIC_LOOK >= deadline {
                return Err(format!(
                    "topics of {name} not ACTIVE before the timeout: {}",
                    pending.join(", ")
                ));
            }
        }
    }

    async fn acls(&self) -> Result<(), String> {
        let Inside {
            client,
            project,
            name,
            spec,
            deadline,
            progress,
            ..
        } = *self;
        if spec.acls.is_empty() && spec.default_acl {
            return Ok(());
        }
        (progress.step)("ACLs".to_string());
        let existing = patiently(deadline, &format!("listing ACLs of {name}"), || {
            client.list_acls(project, name)
        })
        .await?;
        for acl in &spec.acls {
            if existing.iter().any(|e| {
                e.username == acl.username && e.topic == acl.topic && e.permission == acl.permission
            }) {
                continue;
            }
            let what = format!(
                "adding ACL {} {} {} in {name}",
                acl.username, acl.permission, acl.topic
            );
            patiently(deadline, &what, || async {
                done_if_exists(
                    client
                        .add_acl(project, name, &acl.permission, &acl.topic, &acl.username)
                        .await,
                )
            })
            .await?;
        }
        if !spec.default_acl && existing.iter().any(|a| a.id == "default") {
            patiently(
                deadline,
                &format!("removing the default ACL of {name}"),
                || async {
                    match client
                        .delete_acl(project, name, "default", Retry::Standard)
                        .await
                    {
                        Err(e) if e.is_not_found() => Ok(()),
                        other => other,
                    }
                },
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_brokers_is_final_only_once_every_node_answers() {
        let e = |m: &str| {
            ApiError::from_response(409, None, format!(r#"{{"message":"{m}"}}"#).as_bytes())
        };
        let said = e("Cluster only has 3 broker(s), cannot set replication factor to 5");
        assert!(short_of_brokers_for_good(&said, 3));
        assert!(
            !short_of_brokers_for_good(&said, 6),
            "brokers still joining"
        );
        assert!(!short_of_brokers_for_good(&said, 0), "nodes not told");
        assert!(!short_of_brokers_for_good(&e("Service not running yet"), 3));
    }

    #[test]
    fn settling_answers_are_the_sourced_ones() {
        let e = |status: u16, body: &str| ApiError::from_response(status, None, body.as_bytes());
        // aiven-go-client's own test bodies (client_test.go).
        assert!(settling(&e(
            404,
            r#"{"message":"Service 'test-foo' does not exist"}"#
        )));
        assert!(settling(&e(
            404,
            r#"{"message":"Service lol does not exist"}"#
        )));
        assert!(!settling(&e(
            404,
            r#"{"message":"User 'test-foo' does not exist"}"#
        )));
        assert!(settling(&e(
            404,
            r#"{"message":"x","errors":[{"message":"x","status":404,"error_code":"service_not_found"}]}"#
        )));
        assert!(!settling(&e(
            404,
            r#"{"message":"x","errors":[{"message":"x","status":404,"error_code":"project_not_found"}]}"#
        )));
        // The spec's example.
        assert!(settling(&e(
            409,
            r#"{"errors":[{"error_code":"not_powered","message":"Database not powered on","status":409}],"message":"Database not powered on"}"#
        )));
        assert!(settling(&e(
            409,
            r#"{"message":"Cluster only has 2 broker(s), cannot set replication factor to 3"}"#
        )));
        assert!(!settling(&e(
            409,
            r#"{"message":"Service name is already in use in this project"}"#
        )));
    }
}
