//! Settings resolved once, before any work: the token, the teardown budget, the
//! project.

use crate::cli::ApiArgs;
use crate::error::{Error, Result};
use crate::secret::Secret;

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
