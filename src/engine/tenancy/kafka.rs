//! A run's tenancy in a shared Kafka service: a user confined by Kafka-native ACLs to
//! the prefix `<tenant>.` (topics it may read and write, consumer groups, transactional
//! ids), and the manifest's topics created under that prefix by this tool (never by
//! granting the run `admin` or `Create`, which would let it make topics).
//!
//! The user has no Aiven ACL: Aiven ACLs give their users every consumer group
//! (aiven-docs `kafka/concepts/acl.md`), native ACLs only what they name.

use super::{Acquire, RELEASE_RETRY, Tenancy, as_tenant, gone_if_missing};
use crate::api::{Client, KafkaAcl, Retry, Service};
use crate::error::Error;
use crate::identity::topic_prefix;
use crate::manifest::{ServiceSpec, Shared};

pub(super) async fn create(
    a: &Acquire<'_>,
    spec: &ServiceSpec,
    svc: &Service,
    tenant: &str,
    step: &(dyn Fn(&str) + Sync),
) -> Result<Tenancy, String> {
    let prefix = topic_prefix(tenant);
    let mut run_spec = spec.clone();
    run_spec.users = vec![tenant.to_string()];
    for t in &mut run_spec.topics {
        t.name = format!("{prefix}{}", t.name);
    }
    // The service's own ACLs are not the run's to change.
    run_spec.default_acl = true;
    let report = |what: String| step(&what);
    let mut created =
        super::super::populate::populate(a.client, a.project, svc, &run_spec, a.deadline, &report)
            .await?;
    // The user is new: its ACLs are added without reading the service's (a retry that
    // finds one there already is fine). One call each, the fewest that confine it.
    step("ACLs");
    for acl in run_acls(tenant, &prefix) {
        super::super::populate::patiently(
            a.deadline,
            &format!(
                "adding ACL {} {} {} on {} in {}",
                acl.principal,
                acl.operation,
                acl.resource_type,
                acl.resource_name,
                svc.service_name
            ),
            || async {
                super::super::populate::done_if_exists(
                    a.client
                        .add_kafka_acl(a.project, &svc.service_name, &acl)
                        .await,
                )
            },
        )
        .await?;
    }
    let user = created
        .users
        .remove(tenant)
        .ok_or_else(|| format!("the API gave no credentials for user {tenant}"))?;
    run_spec.users.clear();
    Ok(Tenancy {
        service: as_tenant(svc.clone(), user),
        spec: run_spec,
        created,
    })
}

/// What a run's user may do, all on names that start with its prefix: read and write
/// topics (Describe comes with either), consume in groups, produce in transactions.
fn run_acls(tenant: &str, prefix: &str) -> Vec<KafkaAcl> {
    [
        ("Topic", "Read"),
        ("Topic", "Write"),
        ("Group", "Read"),
        ("TransactionalId", "Write"),
    ]
    .into_iter()
    .map(|(resource_type, operation)| KafkaAcl {
        id: String::new(),
        principal: principal(tenant),
        resource_type: resource_type.into(),
        resource_name: prefix.into(),
        pattern_type: "PREFIXED".into(),
        operation: operation.into(),
        permission_type: "ALLOW".into(),
        host: "*".into(),
    })
    .collect()
}

fn principal(user: &str) -> String {
    format!("User:{user}")
}

/// An ACL whose user pattern takes in the run's user would give it other runs' topics
/// (and, Aiven's, every group): Aiven's wildcard `default` ACL (`*`, `*`, admin) on a
/// service this tool created is removed (it is ours); any other such ACL, or native
/// ALLOW whose principal pattern takes the user in, is refused.
pub(super) async fn confine(
    a: &Acquire<'_>,
    shared: &Shared,
    svc: &Service,
    tenant: &str,
) -> Result<(), Error> {
    let name = &svc.service_name;
    for acl in svc
        .acl
        .iter()
        .filter(|x| x.username != tenant && glob(&x.username, tenant))
    {
        match shared {
            Shared::Managed if acl.username == "*" => {
                tracing::info!(
                    "{name}: removing the wildcard ACL {} ({} on {})",
                    acl.id,
                    acl.permission,
                    acl.topic
                );
                gone_if_missing(
                    a.client
                        .delete_acl(a.project, name, &acl.id, Retry::Standard)
                        .await,
                )
                .await
                .map_err(|e| {
                    Error::api(
                        format!("removing the wildcard ACL of shared service {name}"),
                        e,
                    )
                })?;
            }
            _ => {
                return Err(Error::Provision(format!(
                    "shared Kafka service {name} has ACL {} (user `{}`, topic `{}`, {}), which also applies to this run's user: runs on it would not be confined to their own topics. Nothing was written",
                    acl.id, acl.username, acl.topic, acl.permission
                )));
            }
        }
    }
    if let Some(acl) = svc.kafka_acl.iter().find(|x| {
        x.permission_type == "ALLOW"
            && x.principal != principal(tenant)
            && x.principal
                .strip_prefix("User:")
                .is_some_and(|user| glob(user, tenant))
    }) {
        return Err(Error::Provision(format!(
            "shared Kafka service {name} has Kafka-native ACL {} (ALLOW {} {} on {} `{}` {}), which also applies to this run's user: runs on it would not be confined to their own names. Nothing was written",
            acl.id,
            acl.principal,
            acl.operation,
            acl.resource_type,
            acl.resource_name,
            acl.pattern_type
        )));
    }
    Ok(())
}

/// Aiven's ACL patterns: `*` any run of characters, `?` one.
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// The run's ACLs, topics and user: only what carries its prefix or its name.
pub(super) async fn drop(
    client: &Client,
    project: &str,
    svc: &Service,
    tenant: &str,
) -> Result<(), String> {
    let name = &svc.service_name;
    let prefix = topic_prefix(tenant);
    // The service was read just now, its ACLs with it (an Aiven ACL is what runs of
    // earlier versions were given).
    let me = principal(tenant);
    let aiven = svc.acl.iter().filter(|a| a.username == tenant);
    let native = svc.kafka_acl.iter().filter(|a| a.principal == me);
    for (id, is_native) in aiven
        .map(|a| (&a.id, false))
        .chain(native.map(|a| (&a.id, true)))
    {
        let deleted = if is_native {
            client
                .delete_kafka_acl(project, name, id, RELEASE_RETRY)
                .await
        } else {
            client.delete_acl(project, name, id, RELEASE_RETRY).await
        };
        gone_if_missing(deleted)
            .await
            .map_err(|e| format!("deleting ACL {id}: {e}"))?;
    }
    let topics = client
        .list_topics(project, name, RELEASE_RETRY)
        .await
        .map_err(|e| format!("listing topics: {e}"))?;
    for topic in topics.iter().filter(|t| t.topic_name.starts_with(&prefix)) {
        gone_if_missing(
            client
                .delete_topic(project, name, &topic.topic_name, RELEASE_RETRY)
                .await,
        )
        .await
        .map_err(|e| format!("deleting topic {}: {e}", topic.topic_name))?;
    }
    super::delete_user(client, project, svc, tenant).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn acl_patterns_match_as_aiven_documents() {
        assert!(super::glob("*", "run-abc"));
        assert!(super::glob("run-*", "run-abc"));
        assert!(super::glob("run-a?c", "run-abc"));
        assert!(!super::glob("run-b*", "run-abc"));
        assert!(!super::glob("admin", "run-abc"));
    }
}
