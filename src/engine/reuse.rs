//! `up --reuse`: a run that lives for a pull request across pushes.
//!
//! Its owner is derived from the run id ([`identity::reuse_owner`]), so every push,
//! re-run and concurrent job of the pull request is the same owner, from any machine:
//! the services it finds are adopted, a create that loses a race (409) adopts the
//! winner's, and a run made without `--reuse` (a random owner) is refused. Each push
//! compares the manifest with what exists: what is new is created, what was removed is
//! deleted, a plan, cloud or `user_config` change is applied with one PUT, and a type
//! change is refused. Every kept service's expiry moves to now + ttl.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::provision::Planned;
use crate::api::{Client, Retry, Service};
use crate::error::{Error, Result};
use crate::{identity, tags};

/// `user_config` keys that only a create reads: never compared, never sent again.
const CREATE_ONLY: &[&str] = &[
    "service_to_fork_from",
    "project_to_fork_from",
    "recovery_target_time",
];

/// A change applied to a service that exists.
#[derive(Debug, Clone, Serialize)]
pub struct Update {
    pub name: String,
    pub key: String,
    /// For people: `plan startup-4 → startup-8`, `user_config.pg.max_connections`.
    pub what: Vec<String>,
    #[serde(skip)]
    pub body: Value,
}

/// What a push does to the run's services.
#[derive(Debug, Default, Serialize)]
pub struct Changes {
    /// Names to create.
    pub create: Vec<String>,
    /// Names that exist as the manifest says.
    pub keep: Vec<String>,
    pub update: Vec<Update>,
    /// Services of the run no longer in the manifest: (name, key).
    pub delete: Vec<(String, String)>,
}

impl Changes {
    /// Every service that exists and stays: its expiry moves.
    pub fn staying(&self) -> impl Iterator<Item = &str> {
        self.keep
            .iter()
            .map(String::as_str)
            .chain(self.update.iter().map(|u| u.name.as_str()))
    }
}

/// A run made without `--reuse` is never adopted: its services belong to a test run
/// that deletes them when it ends.
pub fn refuse_unreusable(existing: &[Service], run_id: &str, project: &str) -> Result<()> {
    let owner = identity::reuse_owner(run_id);
    let theirs: Vec<&str> = existing
        .iter()
        .filter(|s| {
            tags::is_ours(&s.tags)
                && s.tag(tags::TAG_RUN) == Some(run_id)
                && s.tag(tags::TAG_OWNER) != Some(owner.as_str())
        })
        .map(|s| s.service_name.as_str())
        .collect();
    if theirs.is_empty() {
        return Ok(());
    }
    Err(Error::usage_hint(
        format!(
            "run {run_id} in project {project} was made without --reuse (services {}): `up --reuse` adopts only runs made with --reuse, never a test run",
            theirs.join(", ")
        ),
        format!(
            "delete it with `aiven-ephemeral down --run-id {run_id}` first, or give the pull request's environment its own run id"
        ),
    ))
}

/// Compares the manifest (`planned`, clouds resolved) with the run's services that
/// exist (`existing`: the project's list). `default_cloud` is where a service without a
/// cloud goes.
pub fn changes(
    planned: &[Planned],
    existing: &[Service],
    owner: &str,
    default_cloud: &str,
) -> Result<Changes> {
    let mut changes = Changes::default();
    let ours: Vec<&Service> = existing
        .iter()
        .filter(|s| s.tag(tags::TAG_OWNER) == Some(owner))
        .collect();
    for p in planned.iter().filter(|p| p.spec.shared.is_none()) {
        let Some(svc) = ours.iter().find(|s| s.service_name == p.name) else {
            changes.create.push(p.name.clone());
            continue;
        };
        if svc.service_type != p.spec.service_type {
            return Err(Error::usage_hint(
                format!(
                    "services.{}: {} is a {} service, and the manifest now says {}: a service cannot change its type",
                    p.spec.key, p.name, svc.service_type, p.spec.service_type
                ),
                "give the new service another key (the old one is then deleted on this push)",
            ));
        }
        let mut what = Vec::new();
        let mut body = Map::new();
        if svc.plan != p.spec.plan {
            what.push(format!("plan {} → {}", svc.plan, p.spec.plan));
            body.insert("plan".into(), Value::String(p.spec.plan.clone()));
        }
        let cloud = p.spec.cloud.as_deref().unwrap_or(default_cloud);
        if svc.cloud_name != cloud {
            what.push(format!("cloud {} → {cloud}", svc.cloud_name));
            body.insert("cloud".into(), Value::String(cloud.to_string()));
        }
        let mut config = Map::new();
        if let Some(want) = p.spec.user_config.as_object() {
            for (k, v) in want {
                if CREATE_ONLY.contains(&k.as_str()) {
                    continue;
                }
                if !svc.user_config.get(k).is_some_and(|have| contains(have, v)) {
                    what.push(format!("user_config.{k}"));
                    config.insert(k.clone(), v.clone());
                }
            }
        }
        if !config.is_empty() {
            body.insert("user_config".into(), Value::Object(config));
        }
        if what.is_empty() {
            changes.keep.push(p.name.clone());
        } else {
            changes.update.push(Update {
                name: p.name.clone(),
                key: p.spec.key.clone(),
                what,
                body: Value::Object(body),
            });
        }
    }
    for svc in ours {
        if !planned.iter().any(|p| p.name == svc.service_name) {
            changes.delete.push((
                svc.service_name.clone(),
                svc.tag(tags::TAG_KEY).unwrap_or("?").to_string(),
            ));
        }
    }
    Ok(changes)
}

/// Whether `have` holds everything `want` says (the API answers with every setting,
/// defaults included; the manifest names a few).
fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| contains(hv, v))),
        (Value::Number(h), Value::Number(w)) => h.as_f64() == w.as_f64(),
        _ => have == want,
    }
}

/// Applies what changed on services that stay, and moves their expiry, all at once.
/// Deleting the removed ones is teardown's.
pub async fn apply(client: &Client, project: &str, changes: &Changes, expires: &str) -> Result<()> {
    let mut jobs = tokio::task::JoinSet::new();
    for u in &changes.update {
        let (client, project, u) = (client.clone(), project.to_string(), u.clone());
        jobs.spawn(async move {
            client
                .update_service(&project, &u.name, &u.body)
                .await
                .map_err(|e| {
                    Error::api(
                        format!(
                            "changing {} (services.{}: {})",
                            u.name,
                            u.key,
                            u.what.join(", ")
                        ),
                        e,
                    )
                })
        });
    }
    for name in changes.staying() {
        let (client, project, name) = (client.clone(), project.to_string(), name.to_string());
        let tags = BTreeMap::from([(tags::TAG_EXPIRES.to_string(), Some(expires.to_string()))]);
        jobs.spawn(async move {
            client
                .update_tags(&project, &name, &tags, Retry::Standard)
                .await
                .map_err(|e| Error::api(format!("moving the expiry of {name}"), e))
        });
    }
    while let Some(joined) = jobs.join_next().await {
        joined.map_err(|e| Error::Provision(format!("a reuse task failed: {e}")))??;
    }
    Ok(())
}

/// The lines `plan --reuse` and `up --reuse` print.
pub fn describe(changes: &Changes) -> Vec<String> {
    let mut lines = Vec::new();
    for name in &changes.create {
        lines.push(format!("create  {name}"));
    }
    for name in &changes.keep {
        lines.push(format!("keep    {name}"));
    }
    for u in &changes.update {
        lines.push(format!("change  {}: {}", u.name, u.what.join(", ")));
    }
    for (name, key) in &changes.delete {
        lines.push(format!(
            "delete  {name} (services.{key} is no longer in the manifest)"
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_subset_of_the_settings_is_no_change() {
        let have = json!({"pg": {"max_connections": 100, "work_mem": 4}, "pg_version": "16"});
        assert!(contains(&have, &json!({"pg": {"max_connections": 100}})));
        assert!(contains(&have["pg_version"], &json!("16")));
        assert!(!contains(&have, &json!({"pg": {"max_connections": 200}})));
        assert!(contains(&json!(1.0), &json!(1)));
    }
}
