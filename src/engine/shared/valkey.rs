//! A run's tenancy in a shared Valkey service: one user through the API's
//! `access_control` (Aiven applies it with `ACL SETUSER`; the `ACL` command itself is
//! not open to clients), confined to the keys and channels `<tenant>:*`, without the
//! commands that key patterns cannot confine: FLUSHALL and FLUSHDB wipe every run,
//! KEYS, SCAN and RANDOMKEY reveal other runs' key names, SELECT, SWAPDB and MOVE reach
//! other databases; MONITOR, CLIENT LIST, CLIENT KILL and PUBSUB watch or end other
//! runs' connections and list their channels.

use serde_json::{Value, json};

use super::{Acquire, Tenancy, as_tenant};
use crate::api::Service;
use crate::manifest::ServiceSpec;
use crate::naming::key_prefix;
use crate::outputs::Created;

/// Commands a run's user may not run.
pub const DENIED: &[&str] = &[
    "flushall",
    "flushdb",
    "keys",
    "scan",
    "randomkey",
    "select",
    "swapdb",
    "move",
    "migrate",
    // Other runs' commands (keys and values with them) as they go, their connections,
    // their channels.
    "monitor",
    "client|list",
    "client|kill",
    "pubsub",
];

pub fn access_control(tenant: &str) -> Value {
    let pattern = format!("{}*", key_prefix(tenant));
    json!({
        "valkey_acl_keys": [pattern],
        // Without it every channel is allowed.
        "valkey_acl_channels": [pattern],
        "valkey_acl_categories": ["+@all"],
        "valkey_acl_commands": DENIED.iter().map(|c| format!("-{c}")).collect::<Vec<_>>(),
    })
}

pub(super) async fn create(
    a: &Acquire<'_>,
    spec: &ServiceSpec,
    svc: &Service,
    tenant: &str,
) -> Result<Tenancy, String> {
    let name = &svc.service_name;
    let ac = access_control(tenant);
    let user = match a
        .client
        .create_user_with(a.project, name, tenant, Some(&ac))
        .await
    {
        Ok(u) => u,
        // A resumed run (or our own create whose answer was lost): it is the run's.
        Err(e) if super::super::populate::already_exists(&e) => a
            .client
            .get_user(a.project, name, tenant)
            .await
            .map_err(|e| format!("reading user {tenant}: {e}"))?,
        Err(e) => return Err(format!("creating user {tenant}: {e}")),
    };
    Ok(Tenancy {
        service: as_tenant(svc.clone(), user),
        spec: spec.clone(),
        created: Created::default(),
    })
}
