//! The first phase: everything a run is, worked out from the manifest and the flags
//! before anything is sent.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::identity;
use crate::manifest::Manifest;
use crate::settings;

pub struct Resolved {
    pub manifest: Manifest,
    pub run_id: String,
    /// The `--run-id` given, when it was over 20 characters and `run_id` is its short form.
    pub shortened_from: Option<String>,
    pub timeout: Duration,
    pub poll_cap: Duration,
    pub ttl: Duration,
    pub teardown_budget: crate::settings::TeardownBudget,
    pub state_file: PathBuf,
    pub state_dir: PathBuf,
    pub env_file: PathBuf,
    /// `up --reuse --reset`: the services' contents go back to the seed's state.
    pub reset: bool,
}

pub fn resolve(args: &settings::Up) -> Result<Resolved> {
    let manifest = crate::manifest::load(&args.manifest)?;
    let run_id = match &args.run_id {
        Some(id) => identity::run_id(id).map_err(|e| Error::usage_hint(e, "omit --run-id for a fresh random one, or use e.g. $GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT-<leg>"))?,
        None => identity::new_run_id(),
    };
    let shortened_from = args.run_id.clone().filter(|given| *given != run_id);
    for spec in &manifest.services {
        identity::service_name(&manifest.name_prefix, &spec.key, &run_id).map_err(Error::usage)?;
    }
    let timeout = args.timeout;
    let poll_cap = args.poll_interval;
    let teardown_budget = args.budget;
    let ttl = manifest.ttl_for(timeout)?;
    if args.preview.reuse {
        refuse_shared(&manifest)?;
    }
    if args.preview.reset {
        check_reset(&manifest)?;
    }
    if let Some((path, max_vars)) = &args.dotenv_report {
        check_report_size(&manifest, path, *max_vars)?;
    }
    let crate::state::StatePaths {
        file: state_file,
        dir: state_dir,
    } = args.state.clone();
    let env_file = crate::state::absolute(
        &args
            .env_file
            .clone()
            .unwrap_or_else(|| args.state.beside("env")),
    );
    Ok(Resolved {
        manifest,
        run_id,
        shortened_from,
        timeout,
        poll_cap,
        ttl,
        teardown_budget,
        state_file,
        state_dir,
        env_file,
        reset: args.preview.reset,
    })
}

/// A tenancy in a shared service (lease, user, database or template copy) is made for
/// one run and released by its teardown; nothing adopts it from a later push, renews
/// its lease on each push or releases it on close. Refused before any call rather than
/// half-kept: a pull request's environment gets dedicated services.
fn refuse_shared(manifest: &Manifest) -> Result<()> {
    let Some(spec) = manifest.services.iter().find(|s| s.shared.is_some()) else {
        return Ok(());
    };
    Err(Error::usage_hint(
        format!(
            "services.{}: --reuse does not keep a tenancy in a shared service across pushes (it is made for one run, and no later push adopts it)",
            spec.key
        ),
        "give the pull request a dedicated service (remove `shared:`), or run the shared services in a job without --reuse",
    ))
}

/// `--reset` brings back what it can recreate through the API: the manifest's databases
/// (then its seed) and Kafka topics. Anything else is refused before a call is sent.
fn check_reset(manifest: &Manifest) -> Result<()> {
    for spec in &manifest.services {
        let problem = if spec.kind.databases && spec.databases.is_empty() {
            Some(format!(
                "--reset recreates the manifest's `databases:`, and this {} service lists none (its default database cannot be dropped)",
                spec.service_type
            ))
        } else if !spec.kind.databases && !spec.kind.kafka {
            Some(format!(
                "--reset cannot empty a {} service through the API (it recreates databases and Kafka topics only)",
                spec.service_type
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(Error::usage_hint(
                format!("services.{}: {problem}", spec.key),
                "to start it afresh, remove the service from the manifest for one push (it is deleted), then add it back",
            ));
        }
    }
    Ok(())
}

/// The dotenv report's variables are known before anything is created: too many is a
/// usage error then, not a failure after the services exist.
fn check_report_size(manifest: &Manifest, path: &std::path::Path, max: usize) -> Result<()> {
    let names: Vec<String> = [
        "AIVEN_EPHEMERAL_RUN_ID".to_string(),
        "AIVEN_PROJECT".to_string(),
    ]
    .into_iter()
    .chain(manifest.services.iter().flat_map(|spec| {
        crate::manifest::exports::exports(spec, false)
            .into_iter()
            .filter(|e| !e.field.is_secret() && !e.field.is_file())
            .map(|e| e.name)
    }))
    .collect();
    if names.len() > max {
        return Err(Error::usage_hint(
            format!(
                "the dotenv report {} would hold {} variables, more than --dotenv-max-vars {max}; these do not fit: {}",
                path.display(),
                names.len(),
                names[max..].join(", ")
            ),
            "raise --dotenv-max-vars (GitLab's own limit allowing), or use `aiven-ephemeral env` in later jobs",
        ));
    }
    Ok(())
}
