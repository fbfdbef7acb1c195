//! A checked manifest turned into what a run uses: `version` and `fork_from` folded into
//! `user_config` (as the API takes them), the probe and env prefix defaulted. Runs only
//! after [`super::validate`] found nothing, so it does not check again.

use std::path::Path;

use serde_json::json;
use serde_saphyr::Spanned;

use super::raw::{Raw, RawFork, RawService, RawShared, RawTopic};
use super::{
    AclSpec, DEFAULT_PREFIX, DEFAULT_REPLICATION, Limits, Loc, Manifest, Probe, Seed, ServiceSpec,
    Shared, TopicSpec, env_name, parse_duration,
};
use crate::catalogue;

pub(super) fn manifest(raw: Raw, path: &Path, source: &str) -> Manifest {
    let limits = raw
        .limits
        .map(|l| Limits {
            max_hourly_usd: l.max_hourly_usd.map(|m| m.value),
            max_services: l.max_services.map(|m| m.value),
            allowed_plans: l.allowed_plans.map(|p| p.value),
        })
        .unwrap_or_default();
    Manifest {
        path: path.to_path_buf(),
        source: source.to_string(),
        project: raw.project.map(|p| p.value),
        cloud: raw.cloud.map(|p| p.value),
        name_prefix: raw
            .name_prefix
            .map_or_else(|| DEFAULT_PREFIX.to_string(), |p| p.value),
        ttl: raw.ttl.as_ref().and_then(|t| parse_duration(&t.value).ok()),
        ttl_at: raw.ttl.as_ref().map(Loc::of).unwrap_or_default(),
        services: raw
            .services
            .value
            .0
            .into_iter()
            .map(|(key, svc)| service(key, svc.value, path))
            .collect(),
        limits,
    }
}

fn service(key: Spanned<String>, svc: RawService, path: &Path) -> ServiceSpec {
    let kind = catalogue::get(&svc.service_type.value)
        .expect("the check phase refused types this tool does not know");
    let mut user_config = svc.user_config.map_or_else(|| json!({}), |u| u.value);
    if let Some(v) = svc.version {
        user_config[format!("{}_version", kind.name)] = json!(v.value);
    }
    if let Some(f) = svc.fork_from {
        fork_into(&mut user_config, f.value);
    }
    let project_vpc_id = svc.project_vpc_id.map(|v| v.value);
    let probe = match svc.probe {
        Some(p) => p.value,
        // Inside a VPC the runner usually cannot reach the service.
        None if project_vpc_id.is_some() => Probe::None,
        None => Probe::Tcp,
    };
    let (env_prefix, env_prefix_at) = match &svc.env_prefix {
        Some(p) => (env_name(&p.value), Some(Loc::of(p))),
        None => (env_name(&key.value), None),
    };
    let pairs = |m: Option<super::raw::Ordered<String>>| m.map(|m| m.0).unwrap_or_default();
    ServiceSpec {
        at: Loc::of(&key),
        key: key.value,
        service_type: kind.name.to_string(),
        kind,
        plan_at: Loc::of(&svc.plan),
        plan: svc.plan.value,
        cloud: svc.cloud.map(|c| c.value),
        user_config,
        databases: values(svc.databases),
        users: values(svc.users),
        topics: svc.topics.into_iter().map(|t| topic(t.value)).collect(),
        acls: svc
            .acls
            .into_iter()
            .map(|a| AclSpec {
                username: a.value.username.value,
                topic: a.value.topic.value,
                permission: a.value.permission.value,
            })
            .collect(),
        default_acl: svc.default_acl.is_none_or(|d| d.value),
        probe,
        env_prefix,
        env_prefix_at,
        aliases: pairs(svc.env)
            .into_iter()
            .map(|(name, field)| {
                let at = Loc::of(&field);
                (name.value, field.value, at)
            })
            .collect(),
        project_vpc_id,
        tags: pairs(svc.tags)
            .into_iter()
            .map(|(k, v)| (k.value, v.value))
            .collect(),
        shared: svc.shared.and_then(|s| match s.value {
            RawShared::Flag(true) => Some(Shared::Managed),
            RawShared::Flag(false) => None,
            RawShared::Existing(name) => Some(Shared::Existing(name.value)),
        }),
        seed: svc
            .seed
            .iter()
            .map(|f| Seed {
                path: path.parent().unwrap_or(Path::new(".")).join(&f.value),
                // `a.yaml`'s parent is "", which names no directory to canonicalize.
                root: path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf(),
                at: Loc::of(f),
            })
            .collect(),
    }
}

/// The API takes a fork in user_config, as avn sends it.
fn fork_into(user_config: &mut serde_json::Value, f: RawFork) {
    user_config["service_to_fork_from"] = json!(f.service.value);
    if let Some(p) = f.project {
        user_config["project_to_fork_from"] = json!(p.value);
    }
    if let Some(t) = f.recovery_target_time {
        user_config["recovery_target_time"] = json!(t.value);
    }
}

fn topic(t: RawTopic) -> TopicSpec {
    let replication_at = t.replication.as_ref().map_or(Loc::of(&t.name), Loc::of);
    TopicSpec {
        name: t.name.value,
        partitions: t.partitions,
        replication: t
            .replication
            .as_ref()
            .map_or(DEFAULT_REPLICATION, |r| r.value),
        replication_at,
        min_insync_replicas: t.min_insync_replicas,
        retention_hours: t.retention_hours,
        cleanup_policy: t.cleanup_policy.map(|p| p.value),
        config: t.config,
    }
}

fn values(list: Vec<Spanned<String>>) -> Vec<String> {
    list.into_iter().map(|v| v.value).collect()
}
