//! What `reap` does to shared services: release the tenancy of runs whose lease expired
//! (their process died, or nobody ran `down`), power off (or delete) a service this
//! tool created that has had no lease for a while, and drop seed templates nobody
//! clones any more.

use std::time::Duration;

use time::OffsetDateTime;

use super::{Release, pg};
use crate::api::{Client, Service, ServiceState};
use crate::engine::seed;
use crate::tags;

/// A run's lease on a shared service, as `reap` finds it.
pub struct Lease {
    pub service: String,
    pub run_id: String,
    pub expires: String,
    /// Its expiry passed on the API's clock (an unreadable expiry counts as live).
    pub expired: bool,
}

/// Every lease on the listed services.
pub fn leases(listed: &[Service], now: OffsetDateTime) -> Vec<Lease> {
    listed
        .iter()
        .flat_map(|s| {
            tags::leases(&s.tags).into_iter().map(move |l| Lease {
                service: s.service_name.clone(),
                expired: tags::parse_rfc3339(&l.expires).is_some_and(|t| t <= now),
                run_id: l.run_id,
                expires: l.expires,
            })
        })
        .collect()
}

/// What releases an expired lease (whoever holds it: it is expired).
pub fn release_of(service: &str, run_id: &str) -> Release {
    Release {
        service: service.to_string(),
        run_id: run_id.to_string(),
        owner: None,
        // Expired: whatever wrote it is long over.
        writes: None,
        created_by: None,
    }
}

/// Shared services this tool created (and nobody tagged `aiven-ephemeral-keep=true`),
/// running, without a live lease, and unused for
/// `idle_for`: (name, last used). Leases that expired count as none (they are being
/// released in the same sweep).
pub fn idle(listed: &[Service], now: OffsetDateTime, idle_for: Duration) -> Vec<Idle> {
    listed
        .iter()
        .filter(|s| s.tag(tags::TAG_SHARED).is_some())
        .filter(|s| s.tag(tags::TAG_KEEP) != Some("true"))
        .filter(|s| s.state.is_billed())
        .filter(|s| unleased(s, now))
        .filter_map(|s| {
            let used = s.tag(tags::TAG_USED).or(s.create_time.as_deref())?;
            let since = tags::parse_rfc3339(used)?;
            (since + idle_for <= now).then(|| Idle {
                name: s.service_name.clone(),
                service_type: s.service_type.clone(),
                since: used.to_string(),
            })
        })
        .collect()
}

/// Shared services this tool created that run, without a live lease, and are not idle
/// yet, with when `reap`
/// would power them off (last used + `idle_for`, if no run leases them by then):
/// they keep costing until then.
pub fn standing(
    listed: &[Service],
    now: OffsetDateTime,
    idle_for: Duration,
) -> Vec<(String, Option<String>)> {
    let idle: Vec<String> = idle(listed, now, idle_for)
        .into_iter()
        .map(|i| i.name)
        .collect();
    listed
        .iter()
        .filter(|s| s.tag(tags::TAG_SHARED).is_some())
        .filter(|s| s.state.is_billed())
        .filter(|s| !idle.contains(&s.service_name))
        // One a run holds a lease on is listed with that lease.
        .filter(|s| unleased(s, now))
        .map(|s| (s.service_name.clone(), power_off_at(s, idle_for)))
        .collect()
}

/// When `reap --shared-idle idle_for` powers a shared service off if no run uses it
/// meanwhile; `None` when it never does (tagged to keep) or the tags do not say.
pub fn power_off_at(svc: &Service, idle_for: Duration) -> Option<String> {
    if svc.tag(tags::TAG_KEEP) == Some("true") {
        return None;
    }
    let used = tags::parse_rfc3339(svc.tag(tags::TAG_USED).or(svc.create_time.as_deref())?)?;
    Some(tags::rfc3339(used + idle_for))
}

/// A shared service nobody has used for a while.
pub struct Idle {
    pub name: String,
    pub service_type: String,
    /// Last used (RFC 3339).
    pub since: String,
}

impl Idle {
    /// What a power-off costs this service, in Aiven's terms.
    pub fn loses(&self) -> &'static str {
        crate::catalogue::after_power_on(&self.service_type)
    }
}

/// No run holds a live lease on it (an unreadable expiry counts as live).
fn unleased(svc: &Service, now: OffsetDateTime) -> bool {
    tags::leases(&svc.tags)
        .iter()
        .all(|l| tags::parse_rfc3339(&l.expires).is_some_and(|t| t <= now))
}

/// What `reap` drops of seed templates on one service.
pub struct Templates {
    /// Templates not cloned for `unused_for`.
    pub unused: Vec<String>,
    /// What failed builds left: unfinished templates nobody builds, seed roles.
    pub failed: Vec<String>,
}

/// The seed templates on a shared PostgreSQL service not cloned for `unused_for` (the
/// most recently used one always stays), and what failed builds left. Dropped unless
/// `dry_run`.
pub async fn templates(
    client: &Client,
    project: &str,
    name: &str,
    now: OffsetDateTime,
    unused_for: Duration,
    dry_run: bool,
) -> Result<Templates, String> {
    let svc = client
        .get_service(project, name, true)
        .await
        .map_err(|e| format!("reading {name}: {e}"))?;
    if svc.state != ServiceState::Running {
        return Ok(Templates {
            unused: Vec::new(),
            failed: Vec::new(),
        });
    }
    let target = pg::admin(&svc, crate::cache::project_ca(client, project).await.ok())?;
    let admin = pg::admin_session(&target, "aiven-ephemeral:reap").await?;
    let failed = seed::leftovers(&admin, dry_run).await?;
    let mut all = seed::list(&admin).await?;
    all.sort_by_key(|t| t.used);
    let newest = all.pop();
    let mut dropped = Vec::new();
    for t in all {
        // One without its ready mark is being built, or is a failed build's (above).
        let stale = t.used.is_some_and(|u| u + unused_for <= now);
        if !stale {
            continue;
        }
        if !dry_run {
            seed::drop_template(&admin, &t.name).await?;
        }
        dropped.push(t.name);
    }
    drop(newest);
    Ok(Templates {
        unused: dropped,
        failed,
    })
}
