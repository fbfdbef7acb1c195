//! Shared services as a whole: what keeps running (and costs) once a run is gone, and
//! the command that removes them (`down --shared`, in [`crate::engine::down_shared`]).

use time::OffsetDateTime;

use super::sweep;
use crate::api::{Client, Service, ServiceState};
use crate::engine::cost;
use crate::progress::Reporter;

/// A shared service as the API shows it: its real plan, and that plan's price.
pub struct Standing {
    pub name: String,
    pub service_type: String,
    pub plan: String,
    pub state: ServiceState,
    pub hourly_usd: Option<f64>,
    /// Runs holding a live lease on it.
    pub live_leases: Vec<String>,
}

/// The listed services among `names`, with their prices (from the disk cache while
/// it is fresh).
pub async fn standing(
    client: &Client,
    project: &str,
    listed: &[Service],
    names: &[String],
) -> Vec<Standing> {
    let now = client.server_time().unwrap_or_else(OffsetDateTime::now_utc);
    let found: Vec<&Service> = names
        .iter()
        .filter_map(|n| listed.iter().find(|s| &s.service_name == n))
        .collect();
    let keys: Vec<(String, String, String)> = found
        .iter()
        .map(|s| (s.service_type.clone(), s.plan.clone(), s.cloud_name.clone()))
        .collect();
    let prices = cost::prices_of(client, project, &keys).await;
    found
        .into_iter()
        .zip(prices)
        .map(|(s, price)| Standing {
            name: s.service_name.clone(),
            service_type: s.service_type.clone(),
            plan: s.plan.clone(),
            state: s.state.clone(),
            hourly_usd: price.usd,
            live_leases: live_leases(s, now),
        })
        .collect()
}

/// The runs whose lease on `svc` has not expired on the API's clock.
pub fn live_leases(svc: &Service, now: OffsetDateTime) -> Vec<String> {
    let listed = std::slice::from_ref(svc);
    sweep::leases(listed, now)
        .into_iter()
        .filter(|l| !l.expired)
        .map(|l| l.run_id)
        .collect()
}

/// After `down`: the shared services that keep running, what they cost, and how to
/// stop them.
pub fn say_standing(standing: &[Standing], project: &str, sandbox: bool, reporter: &Reporter) {
    let running: Vec<&Standing> = standing.iter().filter(|s| s.state.is_billed()).collect();
    if running.is_empty() {
        return;
    }
    let mut lines = vec![
        "shared services keep running after this run, billed while powered on whether or not a run uses them:".to_string(),
    ];
    for s in &running {
        lines.push(format!(
            "  {} ({} {}): {}, {}",
            s.name,
            s.service_type,
            s.plan,
            s.hourly_usd
                .map_or("price unknown".to_string(), |p| format!("{p:.3} USD/h")),
            match s.live_leases.len() {
                0 => "no run holds a lease".to_string(),
                n => format!("{n} run(s) hold a lease"),
            }
        ));
    }
    if let Some(total) = running.iter().map(|s| s.hourly_usd).sum::<Option<f64>>() {
        lines.push(format!(
            "  together {total:.3} USD/h, {:.2} USD per day",
            total * 24.0
        ));
    }
    lines.push(format!(
        "  `aiven-ephemeral reap{} --project {project}` powers them off once no run has used them for --shared-idle (24h); `{}` deletes them now",
        if sandbox { " --sandbox" } else { "" },
        remove_command(
            project,
            sandbox,
            &running.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
        )
    ));
    reporter.info(lines.join("\n"));
}

/// The command that deletes these shared services.
pub fn remove_command(project: &str, sandbox: bool, names: &[&str]) -> String {
    format!(
        "aiven-ephemeral down --shared{} --project {project}{}",
        if sandbox { " --sandbox" } else { "" },
        names
            .iter()
            .map(|n| format!(" --service {n}"))
            .collect::<String>()
    )
}
