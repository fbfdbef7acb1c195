//! A run's tenancy in a shared Kafka service: a user whose one ACL is readwrite on the
//! topics `<tenant>.*`, and the manifest's topics created under that prefix by this tool
//! (never by granting the run `admin`, which may create any topic).
//!
//! Consumer groups are not isolated: Aiven's ACLs give every user every group. Runs
//! should name their groups with the prefix too (docs).

use super::{Acquire, RELEASE_RETRY, Tenancy, as_tenant, gone_if_missing};
use crate::api::{Client, Retry, Service};
use crate::error::Error;
use crate::manifest::{AclSpec, ServiceSpec, Shared};
use crate::naming::topic_prefix;

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
    // The user is new: its one ACL is added without reading the service's ACLs (a
    // retry that finds it there already is fine).
    let acl = AclSpec {
        username: tenant.to_string(),
        topic: format!("{prefix}*"),
        permission: "readwrite".into(),
    };
    step("ACLs");
    super::super::populate::patiently(
        a.deadline,
        &format!(
            "adding ACL {tenant} readwrite {} in {}",
            acl.topic, svc.service_name
        ),
        || async {
            super::super::populate::done_if_exists(
                a.client
                    .add_acl(
                        a.project,
                        &svc.service_name,
                        &acl.permission,
                        &acl.topic,
                        tenant,
                    )
                    .await,
            )
        },
    )
    .await?;
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

/// An ACL whose user pattern takes in the run's user would give it other runs' topics:
/// Aiven's wildcard `default` ACL (`*`, `*`, admin) on a service this tool created is
/// removed (it is ours); on a service the user manages any such ACL is refused.
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
    // The service was read just now, its ACLs with it.
    for acl in svc.acl.iter().filter(|a| a.username == tenant) {
        gone_if_missing(
            client
                .delete_acl(project, name, &acl.id, RELEASE_RETRY)
                .await,
        )
        .await
        .map_err(|e| format!("deleting ACL {}: {e}", acl.id))?;
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
