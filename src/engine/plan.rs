//! `plan`'s work: everything `up` would do, without doing it; with a token also whether
//! each plan exists in its cloud and what it costs per hour. The command prints it.

use serde::Serialize;

use super::brokers;
use super::cost::{prices, prices_of};
use super::provision::Planned;
use super::reuse;
use super::tenancy;
use crate::api::{Client, ServiceState};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::manifest::exports;
use crate::manifest::{Manifest, ServiceSpec, Shared};
use crate::settings;
use crate::{identity, tags};

#[derive(Debug, Serialize)]
pub struct PlannedService {
    pub key: String,
    pub name: String,
    #[serde(rename = "type")]
    pub service_type: String,
    pub plan: String,
    pub cloud: Option<String>,
    pub env: Vec<String>,
    /// Hourly price in USD, when known.
    pub hourly_usd: Option<f64>,
    /// Why the price is unknown (the plan does not exist in that cloud, say).
    pub problem: Option<String>,
    /// A shared service: `this_tool` (created by this tool on first use, kept) or `yours`
    /// (one you manage, named by `shared: {service: NAME}`). It
    /// outlives the run and is billed while powered on.
    pub shared: Option<&'static str>,
    /// On a shared service: what the run gets inside it.
    pub tenancy: Option<String>,
    /// On a shared service, with a token: what `up` would find (there, powered off,
    /// not there yet).
    pub now: Option<String>,
    /// On a shared service whose plan is not the manifest's: that, and what to do.
    /// `plan` and `hourly_usd` are then the service's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PlanOutput {
    pub run_id: String,
    pub project: Option<String>,
    pub services: Vec<PlannedService>,
    pub total_hourly_usd: Option<f64>,
    pub limits: Limits,
    /// `--reuse`: what `up --reuse` would do to the run's services now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuse: Option<reuse::Changes>,
}

#[derive(Debug, Serialize)]
pub struct Limits {
    pub max_hourly_usd: Option<f64>,
    pub max_services: Option<u32>,
    pub allowed_plans: Option<Vec<String>>,
}

/// What `up` would do, and whether the API was asked (a token, or the sandbox).
pub async fn plan(args: &settings::Plan) -> Result<(PlanOutput, bool)> {
    let manifest = crate::manifest::load(&args.manifest)?;
    let run_id = match &args.run_id {
        Some(id) => identity::run_id(id).map_err(Error::usage)?,
        None => "xxxxxxxx".to_string(),
    };
    let project = args.api.project(Some(&manifest)).ok();
    let mut services = planned(&manifest, &run_id, args.backend.is_sandbox())?;
    let online = args.backend.is_sandbox() || args.api.token()?.is_some();
    if args.reuse && (!online || project.is_none()) {
        return Err(Error::usage_hint(
            "plan --reuse compares the manifest with the run's services: it needs the API and a project",
            "set AIVEN_TOKEN (or use --sandbox) and `project:` or --project",
        ));
    }
    let mut total = None;
    let mut changes = None;
    if online && let Some(project) = &project {
        let state_dir = crate::state::StatePaths::of(None).dir;
        let conn = Connection::open(&args.api, args.backend, &state_dir).await?;
        let info = conn
            .client
            .project(project)
            .await
            .map_err(|e| Error::api(format!("reading project {project}"), e));
        let result = match info {
            Ok(info) => {
                let prices = prices(&conn.client, project, &manifest, &info.default_cloud).await;
                for (svc, price) in services.iter_mut().zip(prices) {
                    svc.hourly_usd = price.usd;
                    svc.problem = price.problem;
                    if svc.cloud.is_none() {
                        svc.cloud = Some(info.default_cloud.clone());
                    }
                }
                for (i, p) in brokers::over_replicated(&conn.client, project, &manifest).await {
                    let text = format!(
                        "{}:{}:{}: {}; {}",
                        manifest.path.display(),
                        p.at.line,
                        p.at.column,
                        p.message,
                        p.hint.unwrap_or_default()
                    );
                    let svc = &mut services[i];
                    svc.problem = Some(match svc.problem.take() {
                        Some(before) => format!("{before}; {text}"),
                        None => text,
                    });
                }
                for (planned, spec) in services.iter_mut().zip(&manifest.services) {
                    if let Some(how) = &spec.shared {
                        look(&conn.client, project, spec, how, planned).await;
                    }
                }
                if args.reuse {
                    changes = Some(
                        push(
                            &conn.client,
                            project,
                            &manifest,
                            &services,
                            &run_id,
                            &info.default_cloud,
                        )
                        .await?,
                    );
                }
                Ok(())
            }
            Err(e) => Err(e),
        };
        conn.close().await;
        result?;
        total = services.iter().map(|s| s.hourly_usd).sum::<Option<f64>>();
    }
    let output = PlanOutput {
        run_id,
        project,
        total_hourly_usd: total,
        reuse: changes,
        limits: Limits {
            max_hourly_usd: manifest.limits.max_hourly_usd,
            max_services: manifest.limits.max_services,
            allowed_plans: manifest.limits.allowed_plans.clone(),
        },
        services,
    };
    Ok((output, online))
}

/// Each manifest service as `up` would make it, offline: names, env names, tenancy.
fn planned(manifest: &Manifest, run_id: &str, sandbox: bool) -> Result<Vec<PlannedService>> {
    manifest
        .services
        .iter()
        .map(|spec| {
            Ok(PlannedService {
                key: spec.key.clone(),
                name: spec
                    .service_name(&manifest.name_prefix, run_id)
                    .map_err(Error::usage)?,
                shared: spec.shared.as_ref().map(|s| match s {
                    Shared::Managed => "this_tool",
                    Shared::Existing(_) => "yours",
                }),
                tenancy: spec.shared.as_ref().map(|_| tenancy::tenancy(spec, run_id)),
                now: None,
                drift: None,
                service_type: spec.service_type.clone(),
                plan: spec.plan.clone(),
                cloud: spec.cloud.clone().or_else(|| manifest.cloud.clone()),
                env: exports::exports(spec, sandbox)
                    .into_iter()
                    .map(|e| e.name)
                    .collect(),
                hourly_usd: None,
                problem: None,
            })
        })
        .collect()
}

/// What `up --reuse` would do now: the run's services as listed, against the manifest.
async fn push(
    client: &Client,
    project: &str,
    manifest: &crate::manifest::Manifest,
    services: &[PlannedService],
    run_id: &str,
    default_cloud: &str,
) -> Result<reuse::Changes> {
    let listed = client
        .list_services(project)
        .await
        .map_err(|e| Error::api(format!("listing the services of project {project}"), e))?;
    reuse::refuse_unreusable(&listed, run_id, project)?;
    let owner = identity::reuse_owner(run_id);
    let planned: Vec<Planned> = manifest
        .services
        .iter()
        .zip(services)
        .map(|(spec, s)| {
            let mut spec = spec.clone();
            spec.cloud = spec.cloud.or_else(|| manifest.cloud.clone());
            Planned {
                exists: listed.iter().any(|l| {
                    l.service_name == s.name && l.tag(tags::TAG_OWNER) == Some(owner.as_str())
                }),
                name: s.name.clone(),
                spec,
            }
        })
        .collect();
    reuse::changes(&planned, &listed, &owner, default_cloud)
}

/// What `up` would find of a shared service: `now`, or a `problem` that would stop it.
async fn look(
    client: &Client,
    project: &str,
    spec: &ServiceSpec,
    how: &Shared,
    planned: &mut PlannedService,
) {
    let name = &planned.name;
    let found = match client.get_service(project, name, false).await {
        Ok(svc) => svc,
        Err(e) if e.is_not_found() => {
            match how {
                Shared::Managed => {
                    planned.now =
                        Some("not there yet: the first `up` creates it (minutes on Aiven)".into())
                }
                Shared::Existing(_) => {
                    planned.problem = Some(tenancy::missing_yours(spec, name, project))
                }
            }
            return;
        }
        Err(e) => {
            planned.now = Some(format!("cannot tell: {e}"));
            return;
        }
    };
    if let Some(why) = tenancy::refusal(spec, &found, how, project) {
        planned.problem = Some(why);
        return;
    }
    // Billed for the plan it has: shown with that plan's price.
    if let Some(drift) = tenancy::plan_drift(&spec.plan, &found) {
        let key = (
            found.service_type.clone(),
            found.plan.clone(),
            found.cloud_name.clone(),
        );
        let price = prices_of(client, project, &[key]).await.remove(0);
        planned.plan = found.plan.clone();
        planned.cloud = Some(found.cloud_name.clone());
        planned.hourly_usd = price.usd;
        planned.drift = Some(drift);
    }
    let now = tags::rfc3339(
        client
            .server_time()
            .unwrap_or_else(time::OffsetDateTime::now_utc),
    );
    let leases = tags::leases(&found.tags)
        .iter()
        .filter(|l| l.expires > now)
        .count();
    planned.now = Some(match (&found.state, how) {
        (ServiceState::Running, _) => format!("running; {leases} run(s) hold a lease"),
        (ServiceState::Poweroff, Shared::Managed) => {
            "powered off while idle: `up` powers it on (minutes on Aiven)".into()
        }
        (ServiceState::Poweroff, Shared::Existing(_)) => {
            planned.problem = Some(tenancy::powered_off_yours(spec, name));
            "powered off".into()
        }
        (state, _) => format!("{state}: `up` waits until it runs"),
    });
}
