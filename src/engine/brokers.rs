//! Kafka topics against the brokers of their plan. The API refuses a replication above
//! the cluster's broker count only once the service runs (409 "Cluster only has N
//! broker(s)"): minutes and a bill later, its siblings created. The count is the plan's
//! `node_count`, read from the API (one request per type and plan, kept in the disk
//! cache as prices are); plan names do not state it, so nothing is checked offline, and
//! a count that cannot be read checks nothing.

use std::collections::BTreeMap;

use crate::api::Client;
use crate::cache::Cache;
use crate::manifest::{Manifest, Problem, ServiceSpec};

/// Every topic whose replication is above its plan's broker count: (service index,
/// problem at its `replication:`).
pub async fn over_replicated(
    client: &Client,
    project: &str,
    manifest: &Manifest,
) -> Vec<(usize, Problem)> {
    let kafka: Vec<&ServiceSpec> = manifest
        .services
        .iter()
        .filter(|s| s.kind.kafka && !s.topics.is_empty())
        .collect();
    let Some(first) = kafka.first() else {
        return Vec::new();
    };
    let plans: Vec<&str> = kafka.iter().map(|s| s.plan.as_str()).collect();
    let nodes = node_counts(client, project, &first.service_type, &plans).await;
    let mut found = Vec::new();
    for (i, spec) in manifest.services.iter().enumerate() {
        let Some(&brokers) = nodes.get(spec.plan.as_str()) else {
            continue;
        };
        if !spec.kind.kafka {
            continue;
        }
        for t in spec.topics.iter().filter(|t| t.replication > brokers) {
            found.push((
                i,
                Problem {
                    at: t.replication_at,
                    message: format!(
                        "topic `{}`: replication {} is more than the {brokers} brokers of kafka plan {}",
                        t.name, t.replication, spec.plan
                    ),
                    hint: Some(format!(
                        "set replication to at most {brokers}, or choose a plan with more nodes"
                    )),
                },
            ));
        }
    }
    found
}

/// The node count of each plan of `service_type` the API tells, from the disk cache
/// while it is fresh.
async fn node_counts<'a>(
    client: &Client,
    project: &str,
    service_type: &str,
    plans: &[&'a str],
) -> BTreeMap<&'a str, u32> {
    let cache = Cache::new(client.api_url(), project);
    let key = |plan: &str| format!("nodes/{service_type}/{plan}");
    let mut known = BTreeMap::new();
    let mut fresh = Vec::new();
    for &plan in plans {
        if known.contains_key(plan) {
            continue;
        }
        if let Some(n) = cache.get::<u32>(&key(plan)) {
            known.insert(plan, n);
            continue;
        }
        match client.plan_specs(project, service_type, plan).await {
            Ok(specs) => {
                known.insert(plan, specs.node_count);
                fresh.push((key(plan), specs.node_count));
            }
            // A plan that does not exist is the price check's to report.
            Err(e) => {
                tracing::debug!("cannot read the node count of {service_type} plan {plan}: {e}")
            }
        }
    }
    cache.put(fresh);
    known
}
