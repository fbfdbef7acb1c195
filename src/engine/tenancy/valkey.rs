//! A run's tenancy in a shared Valkey service: one user through the API's
//! `access_control` (Aiven applies it with `ACL SETUSER`; the `ACL` command itself is
//! not open to clients), confined to the keys and channels `<tenant>:*`, with the least
//! set of commands that works: every category but `@admin` and `@dangerous` (replication
//! streams, `SLOWLOG`, `CLIENT PAUSE|KILL|LIST|UNBLOCK`, `MONITOR`, `DEBUG`, ...), a few
//! of theirs given back because key patterns confine them, and the commands key
//! patterns cannot confine taken away by name: the categories that hold them also hold
//! what runs need (`EVAL` and `FCALL` share `@scripting` with `FUNCTION LOAD`, `AUTH`
//! shares `@connection` with `CLIENT TRACKING`). Checked with `ACL DRYRUN` on Redis
//! 7.0, whose commands and categories Valkey 7.2 and 8 keep.

use serde_json::{Value, json};

use super::{Acquire, Tenancy, as_tenant};
use crate::api::Service;
use crate::delivery::Created;
use crate::identity::key_prefix;
use crate::manifest::ServiceSpec;

/// The categories a run's user has: all but the server's administration and what may
/// reach past a key pattern.
pub const CATEGORIES: &[&str] = &["+@all", "-@admin", "-@dangerous"];

/// `@dangerous` commands given back: key patterns confine them. (`SORT ... BY|GET` is
/// refused to a user with key patterns; `INFO` is read by client libraries, and shows
/// counters, not keys or values.)
pub const ALLOWED: &[&str] = &["info", "sort", "sort_ro"];

/// Commands a run's user may not run, beyond the denied categories.
pub const DENIED: &[&str] = &[
    // Keyless: wipe every run, reveal other runs' key names, reach other databases.
    "flushall",
    "flushdb",
    "keys",
    "scan",
    "randomkey",
    "select",
    "swapdb",
    "move",
    "migrate",
    // Other runs' commands, connections and channels.
    "monitor",
    "client|list",
    "client|kill",
    "client|pause",
    "client|unpause",
    "client|unblock",
    // BCAST tracking with a prefix reports every key written under it, any run's.
    "client|tracking",
    "pubsub",
    "slowlog",
    // The replication stream: every key, then every write.
    "sync",
    "psync",
    "replconf",
    // Functions and the script cache are the server's, not a run's: a library loaded
    // by one run would run when another calls it, and stay after every `down`.
    "function|load",
    "function|delete",
    "function|flush",
    "function|restore",
    "function|kill",
    "script|flush",
    "script|kill",
];

pub fn access_control(tenant: &str) -> Value {
    let pattern = format!("{}*", key_prefix(tenant));
    let commands: Vec<String> = ALLOWED
        .iter()
        .map(|c| format!("+{c}"))
        .chain(DENIED.iter().map(|c| format!("-{c}")))
        .collect();
    json!({
        "valkey_acl_keys": [pattern],
        // Without it every channel is allowed.
        "valkey_acl_channels": [pattern],
        "valkey_acl_categories": CATEGORIES,
        "valkey_acl_commands": commands,
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
