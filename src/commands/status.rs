//! `status`: the run in the state file, and its services as the API sees them.

use serde::Serialize;

use crate::connection::Connection;
use crate::engine::tenancy::sweep;
use crate::error::{Error, Result, Status};
use crate::settings;
use crate::state;
use crate::tags;

#[derive(Serialize)]
struct Row {
    key: String,
    name: String,
    #[serde(rename = "type")]
    service_type: String,
    /// The service's plan as the API has it (the run's, when not listed).
    plan: String,
    /// The plan the run asked for, when the service has another (a shared service
    /// made by an earlier manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    asked_plan: Option<String>,
    /// What this tool recorded: for a shared service, `released` once the run's
    /// tenancy is gone (the service itself keeps running).
    recorded: String,
    /// What the API says now (`null`: not listed, or not asked).
    state: Option<String>,
    nodes_running: Option<String>,
    /// A shared service: the run holds (or held) a tenancy in it.
    shared: bool,
    /// A shared service this tool created, running: it keeps costing after the run,
    /// until `reap` powers it off (RFC 3339, with the default --shared-idle of 24h, if
    /// no run uses it meanwhile).
    #[serde(skip_serializing_if = "Option::is_none")]
    powered_off_after: Option<String>,
}

#[derive(Serialize)]
struct Output {
    run_id: String,
    project: String,
    status: state::RunStatus,
    expires_at: Option<String>,
    sandbox: bool,
    /// The sandbox process serving the run, when it is in the sandbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    sandbox_process: Option<String>,
    /// Whether `state` comes from the API (a token was available).
    live: bool,
    services: Vec<Row>,
}

pub async fn status(args: &settings::Status) -> Result<Status> {
    if args.all {
        return all_runs(args).await;
    }
    let run = crate::engine::locate::recorded(&args.run)?;
    let can_ask = run.sandbox || args.api.token()?.is_some();
    let mut sandbox_process = None;
    // A run that held tenancies: its shared services keep running after it.
    let shared = run.services.iter().any(|s| s.tenant.is_some());
    let listed = if can_ask && (run.live() || shared) {
        let conn =
            Connection::for_state(&args.api, &run, args.run.backend, &args.run.state.dir).await?;
        sandbox_process = conn
            .sandbox_server()
            .map(|s| format!("process {} at {} ({})", s.pid, s.url, s.backends));
        let list = conn.client.list_services(&run.project).await.map_err(|e| {
            Error::api(
                format!("listing the services of project {}", run.project),
                e,
            )
        });
        conn.close().await;
        Some(list?)
    } else {
        None
    };
    let mut drifts = Vec::new();
    let rows: Vec<Row> = run
        .services
        .iter()
        .map(|r| {
            let api = listed.as_ref().and_then(|l| {
                l.iter().find(|s| {
                    s.service_name == r.name
                        && (s.tag(crate::tags::TAG_OWNER) == Some(run.owner.as_str())
                            // A shared service: the run's lease on it.
                            || crate::tags::leases(&s.tags)
                                .iter()
                                .any(|(id, _, o)| *id == run.run_id && *o == run.owner))
                })
            });
            // A shared service is shown as it is even once the run's lease is gone.
            let seen = api.or_else(|| {
                listed
                    .as_ref()
                    .filter(|_| r.tenant.is_some())
                    .and_then(|l| l.iter().find(|s| s.service_name == r.name))
            });
            let plan = seen.map_or(r.plan.clone(), |s| s.plan.clone());
            if let Some(svc) = seen.filter(|_| r.tenant.is_some()) {
                drifts.extend(crate::engine::tenancy::plan_drift(&r.plan, svc));
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
                        .as_ref()
                        .and_then(|l| l.iter().find(|s| s.service_name == r.name))
                        .map(|s| format!("{} (shared; no tenancy of this run)", s.state)),
                    (None, None) => None,
                },
                shared: r.tenant.is_some(),
                powered_off_after: seen
                    .filter(|s| {
                        r.tenant.is_some()
                            && s.tag(tags::TAG_SHARED).is_some()
                            && s.state.is_billed()
                    })
                    .and_then(|s| sweep::power_off_at(s, crate::cli::DEFAULT_SHARED_IDLE)),
                nodes_running: api.map(|s| {
                    let up = s
                        .node_states
                        .iter()
                        .filter(|n| n.state == "running")
                        .count();
                    format!("{up}/{}", s.node_states.len())
                }),
            }
        })
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
    };
    if args.json {
        crate::say!(out
            "{}",
            serde_json::to_string_pretty(&out).expect("status serialises")
        );
        return Ok(Status::Success);
    }
    crate::say!(out
        "run {} in project {}{}: {}, expires {}{}",
        out.run_id,
        out.project,
        if out.sandbox { " (sandbox)" } else { "" },
        serde_json::to_value(out.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        out.expires_at.as_deref().unwrap_or("-"),
        match (
            run.live() && expired(out.expires_at.as_deref()),
            run.services.iter().any(|s| s.tenant.is_some()),
        ) {
            (true, false) => " (passed: `reap` may delete it; `extend` moves it)",
            (true, true) =>
                " (passed: `reap` may delete its services and release its tenancy in shared services; `extend` moves it)",
            (false, _) => "",
        }
    );
    if let Some(p) = &out.sandbox_process {
        crate::say!(out "sandbox {p}");
    }
    let rows: Vec<Vec<String>> = out
        .services
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.key.clone(),
                r.service_type.clone(),
                r.plan.clone(),
                r.recorded.clone(),
                match (&r.state, out.live) {
                    (Some(s), _) => s.clone(),
                    (None, true) => "not listed".into(),
                    (None, false) => "-".into(),
                },
                r.nodes_running.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    super::print_table(
        &[
            "SERVICE",
            "KEY",
            "TYPE",
            "PLAN",
            "RECORDED",
            "API STATE",
            "NODES",
        ],
        &rows,
    );
    // Once the run is over: while it holds its tenancies, the services are its.
    for r in out
        .services
        .iter()
        .filter(|_| out.status == state::RunStatus::TornDown)
    {
        if let Some(at) = &r.powered_off_after {
            crate::say!(out
                "{}: keeps running (and costing) after this run; `reap` powers it off after {at} if no run uses it (--shared-idle 24h); `{}` deletes it",
                r.name,
                crate::engine::tenancy::standing::remove_command(
                    &out.project,
                    out.sandbox,
                    &[&r.name]
                )
            );
        }
    }
    for drift in &drifts {
        crate::say!(out "warning: {drift}");
    }
    if !out.live && run.live() {
        crate::say!(out "(set AIVEN_TOKEN to see the API's view)");
    }
    Ok(Status::Success)
}

/// Whether an expiry time (RFC 3339) has passed by this machine's clock.
fn expired(expires_at: Option<&str>) -> bool {
    expires_at
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .is_some_and(|t| t < time::OffsetDateTime::now_utc())
}

/// One run of this tool in the project, as its services' tags tell.
#[derive(Serialize)]
struct RunRow {
    run_id: String,
    /// Made with `up --reuse`: it lives across pushes.
    reuse: bool,
    services: Vec<String>,
    /// Since its first service was created.
    created: Option<String>,
    expires: Option<String>,
    hourly_usd: Option<f64>,
    /// Each service's price times its age, when every price is known.
    cost_so_far_usd: Option<f64>,
}

/// `status --all`: every run of this tool in the project (long-lived pull-request runs
/// above all), from one list and the cached prices.
async fn all_runs(args: &settings::Status) -> Result<Status> {
    let manifest = crate::manifest::load_if_present(&args.run.manifest)?;
    let project = args.api.project(manifest.as_ref())?;
    let conn = Connection::open(&args.api, args.run.backend, &args.run.state.dir).await?;
    let listed = conn.list_services(&project).await?;
    let now = conn
        .client
        .server_time()
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    let ours: Vec<&crate::api::Service> =
        listed.iter().filter(|s| tags::is_ours(&s.tags)).collect();
    let keys: Vec<(String, String, String)> = ours
        .iter()
        .map(|s| (s.service_type.clone(), s.plan.clone(), s.cloud_name.clone()))
        .collect();
    let prices = crate::engine::cost::prices_of(&conn.client, &project, &keys).await;
    conn.close().await;
    let mut runs: Vec<RunRow> = Vec::new();
    for (svc, price) in ours.iter().zip(&prices) {
        let run_id = svc.tag(tags::TAG_RUN).unwrap_or_default().to_string();
        let row = match runs.iter_mut().position(|r| r.run_id == run_id) {
            Some(i) => &mut runs[i],
            None => {
                runs.push(RunRow {
                    run_id,
                    reuse: svc.tag(tags::TAG_REUSE) == Some("true"),
                    services: Vec::new(),
                    created: None,
                    expires: None,
                    hourly_usd: Some(0.0),
                    cost_so_far_usd: Some(0.0),
                });
                runs.last_mut().expect("just pushed")
            }
        };
        row.services.push(svc.service_name.clone());
        let earliest = |a: &mut Option<String>, b: Option<&str>| {
            if let Some(b) = b
                && a.as_deref().is_none_or(|a| b < a)
            {
                *a = Some(b.to_string());
            }
        };
        earliest(&mut row.created, svc.create_time.as_deref());
        earliest(&mut row.expires, svc.tag(tags::TAG_EXPIRES));
        let age = svc.create_time.as_deref().and_then(parse).map(|t| now - t);
        row.hourly_usd = row.hourly_usd.zip(price.usd).map(|(a, b)| a + b);
        row.cost_so_far_usd = match (row.cost_so_far_usd, price.usd, age) {
            (Some(sum), Some(usd), Some(age)) => {
                Some(sum + usd * age.as_seconds_f64().max(0.0) / 3600.0)
            }
            _ => None,
        };
    }
    // The oldest first: long-lived runs are what this view is for.
    runs.sort_by(|a, b| (&a.created, &a.run_id).cmp(&(&b.created, &b.run_id)));
    if args.json {
        crate::say!(out
            "{}",
            serde_json::to_string_pretty(&runs).expect("runs serialise")
        );
        return Ok(Status::Success);
    }
    crate::say!(out "runs of aiven-ephemeral in project {project}:");
    let usd = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.3}"));
    // Ages and expiries relative to the API's clock, compact, so that a row fits 80
    // columns (the exact times are in --json).
    let span = |d: time::Duration| {
        crate::progress::compact(std::time::Duration::from_secs(
            d.whole_seconds().max(0) as u64
        ))
    };
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.run_id.clone(),
                if r.reuse { "reuse" } else { "run" }.into(),
                r.services.len().to_string(),
                r.created
                    .as_deref()
                    .and_then(parse)
                    .map_or("-".into(), |t| span(now - t)),
                match r.expires.as_deref().and_then(parse) {
                    Some(t) if t <= now => "passed".into(),
                    Some(t) => format!("in {}", span(t - now)),
                    None => "-".into(),
                },
                usd(r.hourly_usd),
                usd(r.cost_so_far_usd),
            ]
        })
        .collect();
    super::print_table(
        &["RUN", "KIND", "SVCS", "AGE", "EXPIRES", "USD/H", "SO FAR"],
        &rows,
    );
    Ok(Status::Success)
}

fn parse(t: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
}
