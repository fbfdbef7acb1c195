//! `extend`'s work: move a run's expiry (its `aiven-ephemeral-expires` tags, and its
//! leases on shared services), from the API's clock.

use std::collections::BTreeMap;

use super::locate::RunRef;
use crate::api::Retry;
use crate::error::{Error, Result, Status};
use crate::manifest::TTL_MARGIN;
use crate::progress::Reporter;
use crate::settings;
use crate::tags;

pub async fn extend(args: &settings::Extend, reporter: &Reporter) -> Result<Status> {
    let ttl = args.ttl;
    let run = RunRef::open(&args.run, &args.api).await?;
    let services = run.services().await?;
    if services.is_empty() {
        return Err(Error::usage(format!(
            "run {} has no live services in project {}",
            run.key.run_id, run.project
        )));
    }
    let now = run
        .conn
        .client
        .server_time()
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    let expires = tags::rfc3339(now + ttl);
    for svc in &services {
        // On a shared service the run's expiry is its lease.
        let (key, value) = match run.key.lease_on(svc) {
            Some(lease) => tags::lease(&run.key.run_id, &expires, &lease.owner),
            None => (tags::TAG_EXPIRES.to_string(), expires.clone()),
        };
        let tags = BTreeMap::from([(key, Some(value))]);
        run.conn
            .client
            .update_tags(&run.project, &svc.service_name, &tags, Retry::Standard)
            .await
            .map_err(|e| Error::api(format!("moving the expiry of {}", svc.service_name), e))?;
        reporter.info(format!("{}: expires {expires}", svc.service_name));
    }
    // Shorter than the margin `up` demands over its timeout: a live run is warned.
    if ttl < TTL_MARGIN {
        let leased = services.iter().any(|s| run.key.lease_on(s).is_some());
        let owned = services.iter().any(|s| run.key.lease_on(s).is_none());
        let what = match (owned, leased) {
            (true, true) => "delete its services and release its tenancy in shared services",
            (false, true) => "release its tenancy in shared services",
            _ => "delete its services",
        };
        reporter.warn(format!(
            "run {} now expires in {}, at {expires}: from then on `reap` may {what} while they are in use",
            run.key.run_id,
            humantime::format_duration(ttl)
        ));
    }
    if run.recorded {
        let extension = crate::state::Extension {
            run_id: run.key.run_id.clone(),
            expires_at: expires.clone(),
            ttl_secs: ttl.as_secs(),
        };
        if !crate::state::record_extension(&run.state.file, &extension)? {
            reporter.info(format!(
                "run {} is held by another process (its `run`): it keeps the new ttl",
                run.key.run_id
            ));
        }
    }
    run.conn.close().await;
    Ok(Status::Success)
}
