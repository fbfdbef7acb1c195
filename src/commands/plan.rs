//! `plan`: everything `up` would do, without doing it; with a token also whether each
//! plan exists in its cloud and what it costs per hour.

use crate::engine::plan::{PlanOutput, PlannedService};
use crate::engine::{self, reuse};
use crate::error::{Error, Result, Status};
use crate::settings;

pub async fn plan(args: &settings::Plan) -> Result<Status> {
    let (output, online) = engine::plan::plan(args).await?;
    if args.json {
        crate::say!(out
            "{}",
            serde_json::to_string_pretty(&output).expect("plan serialises")
        );
    } else {
        print_table(&output, online);
    }
    match (output.total_hourly_usd, output.limits.max_hourly_usd) {
        (Some(t), Some(l)) if t > l => Err(Error::usage(format!(
            "this run would cost {t:.3} USD/h, over limits.max_hourly_usd {l:.3}"
        ))),
        _ if output.services.iter().any(|s| s.problem.is_some()) => Err(Error::usage(
            "some services cannot be created or used as planned (see above)",
        )),
        _ => Ok(Status::Success),
    }
}

fn print_table(p: &PlanOutput, online: bool) {
    crate::say!(out
        "run id {}, project {}",
        p.run_id,
        p.project
            .as_deref()
            .unwrap_or("(none: set `project:` or --project)")
    );
    let (shared, own): (Vec<&PlannedService>, Vec<&PlannedService>) =
        p.services.iter().partition(|s| s.shared.is_some());
    if !own.is_empty() {
        if !shared.is_empty() {
            crate::say!(out "this run's own services (deleted by `down`):");
        }
        rows(&own);
    }
    if !shared.is_empty() {
        // Prose lines fit 80 columns; the table is as wide as it must be.
        crate::say!(out
            "shared services: they outlive the run and are billed per hour while powered on,\n\
             whether or not a run uses them; the run gets its own tenancy inside:"
        );
        rows(&shared);
        if shared
            .iter()
            .any(|s| crate::catalogue::get(&s.service_type).is_some_and(|t| t.kafka))
        {
            crate::say!(out
                "  note: `reap` powers idle shared services off; Kafka topic data does not\n\
                 \x20 survive power-off (PostgreSQL data comes back from backups)"
            );
        }
    }
    match p.total_hourly_usd {
        Some(t) => {
            let standing: f64 = shared.iter().filter_map(|s| s.hourly_usd).sum();
            if shared.is_empty() {
                crate::say!(out
                    "total: {t:.3} USD/h ({:.2} USD per 8h working day)",
                    t * 8.0
                );
            } else {
                // Shared services are billed around the clock, the run's own while it lives.
                let own_usd = t - standing;
                crate::say!(out "total: {t:.3} USD/h");
                if !own.is_empty() {
                    crate::say!(out
                        "  this run's own services: {own_usd:.3} USD/h ({:.2} USD per 8h working day)",
                        own_usd * 8.0
                    );
                }
                crate::say!(out
                    "  shared services: {standing:.3} USD/h, billed around the clock while powered\n  on: {:.2} USD per day",
                    standing * 24.0
                );
            }
        }
        None if !online => {
            crate::say!(out "prices: set AIVEN_TOKEN (or use --sandbox) to check plans and prices")
        }
        None => crate::say!(out "total: unknown (see the problems above)"),
    }
    if let Some(changes) = &p.reuse {
        crate::say!(out "up --reuse would:");
        for line in reuse::describe(changes) {
            crate::say!(out "  {line}");
        }
    }
}

/// The width `plan` fits its lines to: a terminal's, or anything it is piped into.
const WIDTH: usize = 80;

fn rows(services: &[&PlannedService]) {
    let cells: Vec<[String; 6]> = services
        .iter()
        .map(|s| {
            let price = match (s.hourly_usd, &s.problem) {
                (Some(v), _) => format!("{v:.3}"),
                (None, Some(_)) => "n/a".to_string(),
                (None, None) => "-".to_string(),
            };
            [
                s.key.clone(),
                s.name.clone(),
                s.service_type.clone(),
                s.plan.clone(),
                s.cloud
                    .clone()
                    .unwrap_or_else(|| "(project default)".into()),
                price,
            ]
        })
        .collect();
    let headers = ["KEY", "NAME", "TYPE", "PLAN", "CLOUD", "USD/H"];
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Columns as wide as their widest cell, two spaces apart; the price right-aligned.
    let line = |row: [&str; 6]| {
        let [k, n, t, p, c, usd] = row;
        let [wk, wn, wt, wp, wc, wu] = widths;
        crate::say!(out "{k:<wk$}  {n:<wn$}  {t:<wt$}  {p:<wp$}  {c:<wc$}  {usd:>wu$}");
    };
    line(headers);
    for (s, row) in services.iter().zip(&cells) {
        line(row.each_ref().map(String::as_str));
        if let Some(problem) = &s.problem {
            crate::say!(out "{}", wrapped("problem", problem));
        }
        if let Some(tenancy) = &s.tenancy {
            crate::say!(out "{}", wrapped("this run", tenancy));
        }
        if let Some(now) = &s.now {
            crate::say!(out "{}", wrapped("now", now));
        }
        if let Some(drift) = &s.drift {
            crate::say!(out "{}", wrapped("warning", drift));
        }
        crate::say!(out "{}", wrapped("env", &s.env.join(" ")));
    }
}

/// `  label: text`, its words wrapped at [`WIDTH`] under the text's first column.
fn wrapped(label: &str, text: &str) -> String {
    let indent = format!("  {label}: ");
    let mut out = indent.clone();
    let mut column = indent.len();
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 && column + 1 + word.chars().count() > WIDTH {
            out.push('\n');
            out.push_str(&" ".repeat(indent.len()));
            column = indent.len();
        } else if i > 0 {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += word.chars().count();
    }
    out
}
