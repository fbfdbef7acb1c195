//! `reap`: the backstop for runs nothing tore down (SIGKILL, a lost runner): the
//! engine's sweep, its table (before anything changes), then the engine acts.

use crate::engine::reap::{self, Row};
use crate::error::{Result, Status};
use crate::progress::Reporter;
use crate::settings;

pub async fn reap(args: &settings::Reap, reporter: &Reporter) -> Result<Status> {
    let (reaping, sweep) = reap::sweep(args, reporter).await?;
    print(&sweep.rows, &reaping.project, args.json);
    reap::act(reaping, sweep, args, reporter).await
}

/// The sweep's rows: a table, or JSON on stdout.
fn print(rows: &[Row], project: &str, json: bool) {
    if json {
        crate::say!(out
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialise")
        );
    } else if rows.is_empty() {
        crate::say!(out "no services of aiven-ephemeral in project {project}");
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let verdict = serde_json::to_value(r.verdict)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                vec![r.name.clone(), r.run.clone(), r.expires.clone(), verdict]
            })
            .collect();
        super::print_table(&["SERVICE", "RUN", "EXPIRES", "VERDICT"], &table);
    }
}
