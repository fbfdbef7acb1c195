//! Settings resolved once, before any work: the token, the teardown budget, the
//! project.

use std::time::Duration;

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

/// How long a teardown may take, by what started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeardownBudget {
    /// Nothing interrupted the run: `down`, a post step, `after_script`, `run` after its
    /// command, `up` after a failure.
    pub plain: Duration,
    /// A signal started it (or came during it): sized to GitHub's cancel window (SIGINT,
    /// 7.5 s, SIGTERM, 2.5 s, SIGKILL), so that the report is out before the kill.
    pub interrupted: Duration,
}

impl TeardownBudget {
    /// At least `at_least` when nothing interrupts (a lost write's window, say).
    pub fn plain_at_least(self, at_least: Duration) -> Self {
        Self {
            plain: self.plain.max(at_least),
            ..self
        }
    }
}

/// The teardown budgets, by what starts the teardown.
pub fn teardown_budget(args: &crate::cli::TeardownArgs) -> TeardownBudget {
    TeardownBudget {
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
