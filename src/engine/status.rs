//! `status`'s work with the API: the state file's run as the API sees it, and every
//! run of this tool in a project (`--all`). The command prints them.

use serde::Serialize;
use time::OffsetDateTime;

use crate::api::Service;
use crate::connection::Connection;
use crate::error::Result;
use crate::settings;
use crate::state::{self, ServiceRecord, State};
use crate::tags;

use super::tenancy::sweep;

#[derive(Serialize)]
pub struct Row {
    pub key: String,
    pub name: String,
    #[serde(rename = "type")]
    pub service_type: String,
    /// The service's plan as the API has it (the run's, when not listed).
    pub plan: String,
    /// The plan the run asked for, when the service has another (a shared service
    /// made by an earlier manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asked_plan: Option<String>,
    /// What this tool recorded: for a shared service, `released` once the run's
    /// tenancy is gone (the service itself keeps running).
    pub recorded: String,
    /// What the API says now (`null`: not listed, or not asked).
    pub state: Option<String>,
    /// Recorded as there, and not in the API's list: deleted outside this run.
    #[serde(skip)]
    pub gone: bool,
    pub nodes_running: Option<String>,
    /// A shared service: the run holds (or held) a tenancy in it.
    pub shared: bool,
    /// A shared service this tool created, running: it keeps costing after the run,
    /// until `reap` powers it off (RFC 3339, with the default --shared-idle of 24h, if
    /// no run uses it meanwhile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub powered_off_after: Option<String>,
}

#[derive(Serialize)]
pub struct Output {
    pub run_id: String,
    pub project: String,
    pub status: state::RunStatus,
    pub expires_at: Option<String>,
    pub sandbox: bool,
    /// The sandbox process serving the run, when it is in the sandbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_process: Option<String>,
    /// Whether `state` comes from the API (a token was available).
    pub live: bool,
    pub services: Vec<Row>,
    /// The API's clock when it answered: expiry is judged by it, as `reap` judges it.
    #[serde(skip)]
    pub api_now: Option<OffsetDateTime>,
}

/// The state file's run, with each service as the API lists it (when a token or the
/// sandbox lets us ask), and warnings about shared services whose plan drifted.
pub async fn view(args: &settings::Status) -> Result<(State, Output, Vec<String>)> {
    let run = super::locate::recorded(&args.run)?;
    let can_ask = run.sandbox || args.api.token()?.is_some();
    let mut sandbox_process = None;
    let mut api_now = None;
    // A run that held tenancies: its shared services keep running after it.
    let shared = run.services.iter().any(|s| s.tenant.is_some());
    let listed = if can_ask && (run.live() || shared) {
        let conn =
            Connection::for_state(&args.api, &run, args.run.backend, &args.run.state.dir).await?;
        sandbox_process = conn
            .sandbox_server()
            .map(|s| format!("process {} at {} ({})", s.pid, s.url, s.backends));
        let list = conn.list_services(&run.project).await;
        api_now = conn.client.server_time();
        conn.close().await;
        Some(list?)
    } else {
        None
    };
    let mut drifts = Vec::new();
    let rows: Vec<Row> = run
        .services
        .iter()
        .map(|r| row(r, listed.as_deref(), &run, &mut drifts))
        .collect();
    let out = Output {
        run_id: run.run_id.clone(),
        project: run.project.clone(),
        status: run.status,
        expires_at: run.expires_at.clone(),
        sandbox: run.sandbox,
        sandbox_process,
        live: listed.is_some(),
        services: rows,
        api_now,
    };
    Ok((run, out, drifts))
}

/// A service the state file records, as the API lists it (`listed`: when asked); a
/// shared service whose plan is not the run's adds a warning to `drifts`.
fn row(
    r: &ServiceRecord,
    listed: Option<&[Service]>,
    run: &State,
    drifts: &mut Vec<String>,
) -> Row {
    let api = listed.and_then(|l| {
        l.iter().find(|s| {
            s.service_name == r.name
                && (s.tag(crate::tags::TAG_OWNER) == Some(run.owner.as_str())
                    // A shared service: the run's lease on it.
                    || crate::tags::leases(&s.tags)
                        .iter()
                        .any(|l| l.run_id == run.run_id && l.owner == run.owner))
        })
    });
    // A shared service is shown as it is even once the run's lease is gone.
    let seen = api.or_else(|| {
        listed
            .filter(|_| r.tenant.is_some())
            .and_then(|l| l.iter().find(|s| s.service_name == r.name))
    });
    let plan = seen.map_or(r.plan.clone(), |s| s.plan.clone());
    if let Some(svc) = seen.filter(|_| r.tenant.is_some()) {
        drifts.extend(super::tenancy::plan_drift(&r.plan, svc));
    }
    Row {
        key: r.key.clone(),
        name: r.name.clone(),
        service_type: r.service_type.clone(),
        asked_plan: (plan != r.plan).then(|| r.plan.clone()),
        plan,
        recorded: match (r.tenant.is_some(), r.status) {
            (true, state::ServiceStatus::Deleted) => "released".into(),
            (_, status) => serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        },
        state: match (api, &r.tenant) {
            (Some(s), Some(t)) => Some(format!("{} (shared; tenancy {t})", s.state)),
            (Some(s), None) => Some(s.state.to_string()),
            // A shared service without this run's lease: released, still there.
            (None, Some(_)) => listed
                .and_then(|l| l.iter().find(|s| s.service_name == r.name))
                .map(|s| format!("{} (shared; no tenancy of this run)", s.state)),
            (None, None) => None,
        },
        gone: listed.is_some()
            && api.is_none()
            && r.tenant.is_none()
            && matches!(
                r.status,
                state::ServiceStatus::Created | state::ServiceStatus::Ready
            ),
        shared: r.tenant.is_some(),
        powered_off_after: seen
            .filter(|s| {
                r.tenant.is_some() && s.tag(tags::TAG_SHARED).is_some() && s.state.is_billed()
            })
            .and_then(|s| sweep::power_off_at(s, settings::DEFAULT_SHARED_IDLE)),
        nodes_running: api.map(|s| {
            let up = s
                .node_states
                .iter()
                .filter(|n| n.state == "running")
                .count();
            format!("{up}/{}", s.node_states.len())
        }),
    }
}

/// One run of this tool in the project, as its services' tags tell.
#[derive(Serialize)]
pub struct RunRow {
    pub run_id: String,
    /// Made with `up --reuse`: it lives across pushes.
    pub reuse: bool,
    /// Holds leases on shared services (its tenancies there cost nothing of their
    /// own; `services` names those too).
    pub shared: bool,
    pub services: Vec<String>,
    /// Since its first service was created.
    pub created: Option<String>,
    pub expires: Option<String>,
    pub hourly_usd: Option<f64>,
    /// Each service's price times its age, when every price is known.
    pub cost_so_far_usd: Option<f64>,
}

/// A shared service: billed while powered on, whether or not a run uses it.
#[derive(Serialize)]
pub struct SharedRow {
    pub name: String,
    /// Powered on (running, rebuilding, ...): billed.
    pub powered: bool,
    pub hourly_usd: Option<f64>,
    /// Live leases: the runs using it now.
    pub leases: usize,
}

/// What `status --all` shows.
pub struct Runs {
    pub project: String,
    /// The API's clock.
    pub now: OffsetDateTime,
    pub runs: Vec<RunRow>,
    pub shared: Vec<SharedRow>,
}

/// `status --all`: every run of this tool in the project (long-lived pull-request runs
/// above all) and the shared services, from one list and the cached prices.
pub async fn runs(args: &settings::Status) -> Result<Runs> {
    let manifest = crate::manifest::load_if_present(&args.run.manifest)?;
    let project = match args.api.project(manifest.as_ref()) {
        Ok(project) => project,
        // Neither --project nor a manifest: the state file's run says which, as for
        // `reap`.
        Err(e) => state::read(&args.run.state.file)?
            .map(|s| s.project)
            .ok_or(e)?,
    };
    let conn = Connection::open(&args.api, args.run.backend, &args.run.state.dir).await?;
    let listed = conn.list_services(&project).await?;
    let now = conn
        .client
        .server_time()
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    let ours: Vec<&crate::api::Service> =
        listed.iter().filter(|s| tags::is_ours(&s.tags)).collect();
    let shared: Vec<&crate::api::Service> = listed
        .iter()
        .filter(|s| s.tag(tags::TAG_SHARED).is_some())
        .collect();
    let keys: Vec<(String, String, String)> = ours
        .iter()
        .chain(&shared)
        .map(|s| (s.service_type.clone(), s.plan.clone(), s.cloud_name.clone()))
        .collect();
    let mut prices = super::cost::prices_of(&conn.client, &project, &keys).await;
    conn.close().await;
    let shared_prices = prices.split_off(ours.len());
    let mut runs: Vec<RunRow> = Vec::new();
    for (svc, price) in ours.iter().zip(&prices) {
        let row = run_row(&mut runs, svc.tag(tags::TAG_RUN).unwrap_or_default());
        row.reuse |= svc.tag(tags::TAG_REUSE) == Some("true");
        row.services.push(svc.service_name.clone());
        earliest(&mut row.created, svc.create_time.as_deref());
        earliest(&mut row.expires, svc.tag(tags::TAG_EXPIRES));
        let age = svc
            .create_time
            .as_deref()
            .and_then(tags::parse_rfc3339)
            .map(|t| now - t);
        row.hourly_usd = row.hourly_usd.zip(price.usd).map(|(a, b)| a + b);
        row.cost_so_far_usd = match (row.cost_so_far_usd, price.usd, age) {
            (Some(sum), Some(usd), Some(age)) => {
                Some(sum + usd * age.as_seconds_f64().max(0.0) / 3600.0)
            }
            _ => None,
        };
    }
    // A run with tenancies: its leases say when it expires.
    let mut shared_rows = Vec::new();
    for (svc, price) in shared.iter().zip(&shared_prices) {
        let live: Vec<tags::Lease> = tags::leases(&svc.tags)
            .into_iter()
            .filter(|l| tags::parse_rfc3339(&l.expires).is_some_and(|t| t > now))
            .collect();
        for lease in &live {
            let row = run_row(&mut runs, &lease.run_id);
            row.shared = true;
            row.services.push(svc.service_name.clone());
            earliest(&mut row.expires, Some(&lease.expires));
        }
        shared_rows.push(SharedRow {
            name: svc.service_name.clone(),
            powered: svc.state.is_billed(),
            hourly_usd: price.usd,
            leases: live.len(),
        });
    }
    // The oldest first: long-lived runs are what this view is for.
    runs.sort_by(|a, b| (&a.created, &a.run_id).cmp(&(&b.created, &b.run_id)));
    Ok(Runs {
        project,
        now,
        runs,
        shared: shared_rows,
    })
}

/// The row of run `run_id`, added if it is not there yet.
fn run_row<'a>(runs: &'a mut Vec<RunRow>, run_id: &str) -> &'a mut RunRow {
    match runs.iter().position(|r| r.run_id == run_id) {
        Some(i) => &mut runs[i],
        None => {
            runs.push(RunRow {
                run_id: run_id.to_string(),
                reuse: false,
                shared: false,
                services: Vec::new(),
                created: None,
                expires: None,
                hourly_usd: Some(0.0),
                cost_so_far_usd: Some(0.0),
            });
            runs.last_mut().expect("just pushed")
        }
    }
}

/// Keeps the earlier of two RFC 3339 times (they order as text).
fn earliest(a: &mut Option<String>, b: Option<&str>) {
    if let Some(b) = b
        && a.as_deref().is_none_or(|a| b < a)
    {
        *a = Some(b.to_string());
    }
}
