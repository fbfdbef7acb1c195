//! A run's tenancy in a shared Kafka service: a user whose one ACL is readwrite on the
//! topics `<tenant>.*`, and the manifest's topics created under that prefix by this tool
//! (never by granting the run `admin`, which may create any topic).
//!
//! Consumer groups are not isolated: Aiven's ACLs give every user every group. Runs
//! should name their groups with the prefix too (docs).

use super::{Acquire, RELEASE_RETRY, Tenancy, as_tenant, gone_if_missing};
use crate::api::{Client, Service};
use crate::manifest::{AclSpec, ServiceSpec};
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
    run_spec.acls = vec![AclSpec {
        username: tenant.to_string(),
        topic: format!("{prefix}*"),
        permission: "readwrite".into(),
    }];
    // The service's own ACLs are not the run's to change.
    run_spec.default_acl = true;
    let report = |what: String| step(&what);
    let mut created = super::super::populate::populate(
        a.client,
        a.project,
        &svc.service_name,
        &run_spec,
        a.deadline,
        &report,
    )
    .await?;
    let user = created
        .users
        .remove(tenant)
        .ok_or_else(|| format!("the API gave no credentials for user {tenant}"))?;
    run_spec.users.clear();
    run_spec.acls.clear();
    Ok(Tenancy {
        service: as_tenant(svc.clone(), user),
        spec: run_spec,
        created,
    })
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
    let acls = client
        .list_acls(project, name)
        .await
        .map_err(|e| format!("listing ACLs: {e}"))?;
    for acl in acls.iter().filter(|a| a.username == tenant) {
        gone_if_missing(client.delete_acl(project, name, &acl.id).await)
            .await
            .map_err(|e| format!("deleting ACL {}: {e}", acl.id))?;
    }
    let topics = client
        .list_topics(project, name)
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
    if svc.user(tenant).is_some() {
        gone_if_missing(
            client
                .delete_user(project, name, tenant, RELEASE_RETRY)
                .await,
        )
        .await
        .map_err(|e| format!("deleting user {tenant}: {e}"))?;
    }
    Ok(())
}
