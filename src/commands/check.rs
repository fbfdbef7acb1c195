//! `check`: every endpoint of a live run, reached with its protocol's TLS handshake.

use std::path::PathBuf;

use crate::cli::CheckArgs;
use crate::endpoints;
use crate::error::{Error, Result, Status};

pub async fn check(args: &CheckArgs) -> Result<Status> {
    let state_file = args
        .state_file
        .clone()
        .unwrap_or_else(crate::state::default_state_file);
    let state = crate::state::read(&state_file)?
        .filter(crate::state::State::live)
        .ok_or_else(|| {
            Error::usage_hint(
                format!("no live run in {}", state_file.display()),
                "run it after `aiven-ephemeral up`, or inside `aiven-ephemeral run -- aiven-ephemeral check`",
            )
        })?;
    let env_file: PathBuf = args
        .env_file
        .clone()
        .or_else(|| state.env_file.clone())
        .unwrap_or_else(|| state_file.with_file_name("env"));
    let env = endpoints::read_env(&env_file).map_err(|e| {
        Error::io(
            format!("cannot read the env file {}", env_file.display()),
            e,
        )
    })?;
    let endpoints = endpoints::endpoints(&state, &env);
    if endpoints.is_empty() {
        return Err(Error::usage(format!(
            "{} names no endpoint of run {}",
            env_file.display(),
            state.run_id
        )));
    }
    let total = endpoints.len();
    let checked = endpoints::check_all(endpoints, &env).await;
    let rows: Vec<Vec<String>> = checked
        .iter()
        .map(|c| {
            let e = &c.endpoint;
            vec![
                e.service.clone(),
                e.service_type.clone(),
                e.variable.clone(),
                format!("{}:{}", e.host, e.port),
                match &c.result {
                    Ok(took) => format!(
                        "ok: {} in {} ms",
                        e.handshake.describe(e.client_cert),
                        took.as_millis()
                    ),
                    Err(why) => format!("FAILED: {why}"),
                },
            ]
        })
        .collect();
    super::print_table(&["SERVICE", "TYPE", "FROM", "ENDPOINT", "RESULT"], &rows);
    let failed = checked.iter().filter(|c| c.result.is_err()).count();
    if failed > 0 {
        return Err(Error::Provision(format!(
            "{failed} of {total} endpoint(s) of run {} cannot be reached",
            state.run_id
        )));
    }
    Ok(Status::Success)
}
