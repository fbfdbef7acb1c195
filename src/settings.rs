//! Settings resolved once, before any work: the token, the API URL, durations, paths,
//! the project.

use std::path::{Path, PathBuf};

use crate::cli::ApiArgs;
use crate::error::{Error, Result};
use crate::secret::Secret;

pub const DEFAULT_API_URL: &str = "https://api.aiven.io";
/// Recorded as the API URL of runs against the sandbox (its process may change).
pub const SANDBOX_API_URL: &str = "sandbox";

/// The token: `--token-file`, else `AIVEN_TOKEN`, else `AIVEN_AUTH_TOKEN`. Never taken
/// as a plain command-line value.
pub fn token(global: &ApiArgs) -> Result<Option<Secret>> {
    if let Some(path) = &global.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::usage(format!("cannot read --token-file {}: {e}", path.display()))
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(Error::usage(format!(
                "--token-file {} is empty",
                path.display()
            )));
        }
        return Ok(Some(Secret::new(token)));
    }
    Ok(["AIVEN_TOKEN", "AIVEN_AUTH_TOKEN"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .map(|t| t.trim().to_string())
        .find(|t| !t.is_empty())
        .map(Secret::new))
}

pub fn require_token(global: &ApiArgs) -> Result<Secret> {
    token(global)?.ok_or_else(|| {
        Error::usage_hint(
            "no Aiven API token: set AIVEN_TOKEN (or AIVEN_AUTH_TOKEN, or pass --token-file)",
            "create a token in the Aiven console (User profile > Tokens), or try the manifest with --sandbox, which needs none",
        )
    })
}

/// The teardown budgets, by what starts the teardown.
pub fn teardown_budget(args: &crate::cli::TeardownArgs) -> crate::engine::teardown::Budget {
    crate::engine::teardown::Budget {
        plain: args.teardown_timeout,
        interrupted: args.signal_teardown_timeout,
    }
}

/// The state file, and the directory it lives in (lock, `.gitignore`, certs).
pub fn state_paths(state_file: Option<&Path>) -> (PathBuf, PathBuf) {
    let file = state_file
        .map(Path::to_path_buf)
        .unwrap_or_else(crate::state::default_state_file);
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    (file, dir)
}

/// A run's default output beside its state file: `name` for the default `state.json`,
/// `<stem>.<name>` for any other (`b.json`: `b.env`, `b.certs`), so that runs whose
/// state files share a directory never share an env file or a certificate.
pub fn beside_state(state_file: &Path, name: &str) -> PathBuf {
    let (file, dir) = state_paths(Some(state_file));
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("state") | None => dir.join(name),
        Some(stem) => dir.join(format!("{stem}.{name}")),
    }
}

/// An absolute path (for env files and certificates used by later steps).
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// The project: `--project`/`AIVEN_PROJECT`, else the manifest's.
pub fn project(global: &ApiArgs, manifest: Option<&crate::manifest::Manifest>) -> Result<String> {
    global
        .project
        .clone()
        .or_else(|| manifest.and_then(|m| m.project.clone()))
        .ok_or_else(|| {
            Error::usage_hint(
                "no Aiven project given",
                "set `project:` in the manifest, or pass --project / AIVEN_PROJECT",
            )
        })
}
