//! What a run costs per hour, and the guard `up` runs before creating anything.

use crate::api::Client;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::progress::Reporter;

/// Prices every service: `(hourly, problem)` per service, in manifest order.
pub async fn prices(
    client: &Client,
    project: &str,
    manifest: &Manifest,
    default_cloud: &str,
) -> Vec<(Option<f64>, Option<String>)> {
    let mut jobs = tokio::task::JoinSet::new();
    for (i, spec) in manifest.services.iter().enumerate() {
        let client = client.clone();
        let project = project.to_string();
        let ty = spec.service_type.clone();
        let plan = spec.plan.clone();
        let cloud = spec
            .cloud
            .clone()
            .or_else(|| manifest.cloud.clone())
            .unwrap_or_else(|| default_cloud.to_string());
        jobs.spawn(async move {
            let result = match client.price(&project, &ty, &plan, &cloud).await {
                Ok(p) => match p.base_price_usd.trim().parse::<f64>() {
                    Ok(v) => (Some(v), None),
                    Err(_) => (
                        None,
                        Some(format!("unreadable price `{}`", p.base_price_usd)),
                    ),
                },
                Err(e) if e.is_not_found() => (
                    None,
                    Some(format!(
                        "plan {plan} of {ty} is not available in {cloud}: {}",
                        e.message()
                    )),
                ),
                Err(e) => (None, Some(e.to_string())),
            };
            (i, result)
        });
    }
    let mut out = vec![(None, None); manifest.services.len()];
    while let Some(Ok((i, r))) = jobs.join_next().await {
        out[i] = r;
    }
    out
}

/// Refuses (exit 2, zero writes) a run whose hourly price exceeds the manifest's
/// `limits.max_hourly_usd` or `--max-hourly-usd`, whichever is lower.
pub async fn cost_guard(
    client: &Client,
    project: &str,
    manifest: &Manifest,
    flag: Option<f64>,
    default_cloud: &str,
    reporter: &Reporter,
) -> Result<()> {
    let limit = match (manifest.limits.max_hourly_usd, flag) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => match a.or(b) {
            Some(l) => l,
            None => return Ok(()),
        },
    };
    let prices = prices(client, project, manifest, default_cloud).await;
    let mut lines = Vec::new();
    let mut total = 0.0;
    for (spec, (price, problem)) in manifest.services.iter().zip(&prices) {
        match (price, problem) {
            (Some(p), _) => {
                total += p;
                lines.push(format!(
                    "  {:<24} {:<12} {:<14} {p:>8.3} USD/h",
                    spec.key, spec.service_type, spec.plan
                ));
            }
            (None, problem) => {
                return Err(Error::usage_hint(
                    format!(
                        "cannot check the cost limit: no price for services.{} ({})",
                        spec.key,
                        problem.as_deref().unwrap_or("unknown")
                    ),
                    "check the plan and cloud, or remove the cost limit",
                ));
            }
        }
    }
    if total > limit {
        return Err(Error::usage_hint(
            format!(
                "this run would cost {total:.3} USD/h, over the limit of {limit:.3} USD/h:\n{}",
                lines.join("\n")
            ),
            "choose smaller plans, or raise limits.max_hourly_usd / --max-hourly-usd",
        ));
    }
    reporter.info(format!("cost: {total:.3} USD/h (limit {limit:.3})"));
    Ok(())
}
