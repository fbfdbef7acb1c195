//! `extend`: move a run's expiry (its `aiven-ephemeral-expires` tags), from the API's
//! clock.

use std::collections::BTreeMap;

use crate::cli::{ExtendArgs, GlobalArgs};
use crate::error::{Error, Result, Status};
use crate::naming;
use crate::progress::Reporter;

pub async fn extend(global: &GlobalArgs, args: &ExtendArgs, reporter: &Reporter) -> Result<Status> {
    let ttl = crate::settings::duration(&args.ttl, "--ttl")?;
    let run = super::RunRef::locate(
        global,
        args.run_id.as_deref(),
        args.state_file.as_deref(),
        &args.file,
    )
    .await?;
    let services = run.services().await?;
    if services.is_empty() {
        return Err(Error::usage(format!(
            "run {} has no live services in project {}",
            run.run_id, run.project
        )));
    }
    let now = run
        .conn
        .client
        .server_time()
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    let expires = naming::rfc3339(now + ttl);
    let tags = BTreeMap::from([(naming::TAG_EXPIRES.to_string(), Some(expires.clone()))]);
    for svc in &services {
        run.conn
            .client
            .update_tags(&run.project, &svc.service_name, &tags)
            .await
            .map_err(|e| Error::api(format!("moving the expiry of {}", svc.service_name), e))?;
        reporter.info(format!("{}: expires {expires}", svc.service_name));
    }
    if let Some(store) = &run.store {
        store.update(|s| s.expires_at = Some(expires.clone()))?;
    }
    run.conn.close().await;
    Ok(Status::Success)
}
