//! `status`: the run in the state file, and its services as the API sees them.

use crate::engine::status::{Output, Runs, SharedRow, runs, view};
use crate::error::{Result, Status};
use crate::settings;
use crate::state;
use crate::tags::parse_rfc3339 as parse;

pub async fn status(args: &settings::Status) -> Result<Status> {
    if args.all {
        return all_runs(args).await;
    }
    let (run, out, drifts) = view(args).await?;
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
        // In words (`torn down`); --json keeps the state file's `torn_down`.
        serde_json::to_value(out.status)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
            .unwrap_or_default(),
        out.expires_at.as_deref().unwrap_or("-"),
        match (
            run.live() && expired(out.expires_at.as_deref(), out.api_now),
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
    notes(&out, &args.run.state.file);
    for drift in &drifts {
        crate::say!(out "warning: {drift}");
    }
    if !out.live && run.live() {
        crate::say!(out "(set AIVEN_TOKEN to see the API's view)");
    }
    Ok(Status::Success)
}

/// What the table alone does not say: shared services that outlive the run, and services
/// someone else deleted.
fn notes(out: &Output, state_file: &std::path::Path) {
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
    let gone: Vec<&str> = out
        .services
        .iter()
        .filter(|r| r.gone)
        .map(|r| r.name.as_str())
        .collect();
    if !gone.is_empty() {
        crate::say!(out
            "warning: the API does not list {}: deleted outside this run (by `reap`, a `down --run-id` elsewhere, or the console); `aiven-ephemeral down{}` deletes what is left and closes the run",
            gone.join(", "),
            state::state_flag(state_file)
        );
    }
}

/// Whether an expiry time (RFC 3339) has passed by the API's clock (`now`, as `reap`
/// judges it), or this machine's when the API was not asked.
fn expired(expires_at: Option<&str>, now: Option<time::OffsetDateTime>) -> bool {
    let now = now.unwrap_or_else(time::OffsetDateTime::now_utc);
    expires_at.and_then(parse).is_some_and(|t| t < now)
}

/// `status --all`: every run of this tool in the project (long-lived pull-request runs
/// above all), from one list and the cached prices.
async fn all_runs(args: &settings::Status) -> Result<Status> {
    let Runs {
        project,
        now,
        runs,
        shared,
    } = runs(args).await?;
    if args.json {
        crate::say!(out
            "{}",
            serde_json::to_string_pretty(&runs).expect("runs serialise")
        );
        return Ok(Status::Success);
    }
    say_shared(&shared);
    if runs.is_empty() {
        crate::say!(out "no runs of aiven-ephemeral in project {project}");
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
            // A run of tenancies only pays nothing of its own.
            let tenancies = r.shared && r.created.is_none();
            vec![
                r.run_id.clone(),
                match (r.reuse, tenancies) {
                    (true, _) => "reuse",
                    (false, true) => "shared",
                    (false, false) => "run",
                }
                .into(),
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
                if tenancies {
                    "-".into()
                } else {
                    usd(r.hourly_usd)
                },
                if tenancies {
                    "-".into()
                } else {
                    usd(r.cost_so_far_usd)
                },
            ]
        })
        .collect();
    super::print_table(
        &["RUN", "KIND", "SVCS", "AGE", "EXPIRES", "USD/H", "SO FAR"],
        &rows,
    );
    Ok(Status::Success)
}

/// The shared services, before the runs: billed whether or not a run uses them.
fn say_shared(shared: &[SharedRow]) {
    if shared.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = shared
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                match (s.powered, s.hourly_usd) {
                    (false, _) => "off".into(),
                    (true, Some(v)) => format!("{v:.3}"),
                    (true, None) => "?".into(),
                },
                s.leases.to_string(),
            ]
        })
        .collect();
    crate::say!(out "shared services (billed while powered on, used or not):");
    super::print_table(&["SERVICE", "USD/H", "RUNS"], &rows);
}
