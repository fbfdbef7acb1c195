//! What a run costs per hour, and the guard `up` runs before creating anything: every
//! plan must exist in its cloud, and the total must stay under the limit if one is set.

use std::collections::BTreeMap;

use crate::api::Client;
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::progress::Reporter;

/// What the API says a service costs.
#[derive(Debug, Clone, Default)]
pub struct Price {
    /// Hourly, in USD, when known.
    pub usd: Option<f64>,
    /// Why it is not known.
    pub problem: Option<String>,
    /// The plan does not exist in that cloud (the API's 404): a create would be refused.
    pub unavailable: bool,
}

/// Prices every service, in manifest order: each (type, plan, cloud) read once, and
/// from the disk cache while it is fresh.
pub async fn prices(
    client: &Client,
    project: &str,
    manifest: &Manifest,
    default_cloud: &str,
) -> Vec<Price> {
    let keys: Vec<(String, String, String)> = manifest
        .services
        .iter()
        .map(|spec| {
            let cloud = spec
                .cloud
                .clone()
                .or_else(|| manifest.cloud.clone())
                .unwrap_or_else(|| default_cloud.to_string());
            (spec.service_type.clone(), spec.plan.clone(), cloud)
        })
        .collect();
    prices_of(client, project, &keys).await
}

/// Prices each (type, plan, cloud), in order: each read once, and from the disk cache
/// while it is fresh.
pub async fn prices_of(
    client: &Client,
    project: &str,
    keys: &[(String, String, String)],
) -> Vec<Price> {
    let cache = Cache::new(client.api_url(), project);
    let cache_key =
        |(ty, plan, cloud): &(String, String, String)| format!("price/{ty}/{plan}/{cloud}");
    let mut known: BTreeMap<&(String, String, String), Price> = BTreeMap::new();
    let mut jobs = tokio::task::JoinSet::new();
    for key in keys {
        if known.contains_key(key) {
            continue;
        }
        if let Some(usd) = cache.get::<f64>(&cache_key(key)).filter(|v| v.is_finite()) {
            known.insert(
                key,
                Price {
                    usd: Some(usd),
                    ..Price::default()
                },
            );
            continue;
        }
        known.insert(key, Price::default());
        let client = client.clone();
        let project = project.to_string();
        let (ty, plan, cloud) = key.clone();
        jobs.spawn(async move {
            let problem = |text: String| Price {
                problem: Some(text),
                ..Price::default()
            };
            let result = match client.price(&project, &ty, &plan, &cloud).await {
                Ok(p) => match p.base_price_usd.trim().parse::<f64>() {
                    // "NaN" and "inf" parse, and would pass any limit.
                    Ok(v) if v.is_finite() && v >= 0.0 => Price {
                        usd: Some(v),
                        ..Price::default()
                    },
                    _ => problem(format!("unreadable price `{}`", p.base_price_usd)),
                },
                Err(e) if e.is_not_found() => Price {
                    unavailable: true,
                    ..problem(format!(
                        "plan {plan} of {ty} is not available in {cloud}: {}",
                        e.message()
                    ))
                },
                Err(e) => problem(e.to_string()),
            };
            ((ty, plan, cloud), result)
        });
    }
    let mut fresh = Vec::new();
    while let Some(Ok((key, price))) = jobs.join_next().await {
        if let Some(usd) = price.usd.filter(|v| v.is_finite()) {
            fresh.push((cache_key(&key), usd));
        }
        if let Some(slot) = known.iter_mut().find(|(k, _)| ***k == key) {
            *slot.1 = price;
        }
    }
    cache.put(fresh);
    keys.iter()
        .map(|k| known.get(k).cloned().unwrap_or_default())
        .collect()
}

/// Refuses (exit 2, zero writes) a run with a plan that does not exist in its cloud,
/// or whose hourly price exceeds the manifest's `limits.max_hourly_usd` or
/// `--max-hourly-usd`, whichever is lower. Returns each service's price.
pub async fn cost_guard(
    client: &Client,
    project: &str,
    manifest: &Manifest,
    flag: Option<f64>,
    default_cloud: &str,
    reporter: &Reporter,
) -> Result<Vec<Price>> {
    let limit = match (manifest.limits.max_hourly_usd, flag) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let prices = prices(client, project, manifest, default_cloud).await;
    // A plan that does not exist would be refused after its siblings were created.
    if let Some((spec, price)) = manifest
        .services
        .iter()
        .zip(&prices)
        .find(|(_, p)| p.unavailable)
    {
        return Err(Error::usage_hint(
            format!(
                "services.{}: {}",
                spec.key,
                price.problem.as_deref().unwrap_or_default()
            ),
            "choose a plan of that type that exists in that cloud (`aiven-ephemeral plan` shows each service's plan, cloud and price)",
        ));
    }
    let Some(limit) = limit else {
        for (spec, price) in manifest.services.iter().zip(&prices) {
            if let Some(problem) = &price.problem {
                tracing::warn!("services.{}: cannot read its price: {problem}", spec.key);
            }
        }
        return Ok(prices);
    };
    let mut lines = Vec::new();
    let mut total = 0.0;
    for (spec, price) in manifest.services.iter().zip(&prices) {
        let Some(p) = price.usd else {
            return Err(Error::usage_hint(
                format!(
                    "cannot check the cost limit: no price for services.{} ({})",
                    spec.key,
                    price.problem.as_deref().unwrap_or("unknown")
                ),
                "try again: without prices the limit cannot be checked, and nothing was created",
            ));
        };
        total += p;
        lines.push(format!(
            "  {:<24} {:<12} {:<14} {p:>8.3} USD/h",
            spec.key, spec.service_type, spec.plan
        ));
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
    Ok(prices)
}
