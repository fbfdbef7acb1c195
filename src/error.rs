//! Errors as the user sees them, and their exit codes (DESIGN.md, "Exit codes"). Every
//! failure of every command ends in one of these; `main` prints it and exits with
//! [`Error::exit_code`].

use std::fmt;

use crate::api::ApiError;
use crate::manifest::ManifestError;
use crate::signals::Signal;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command line, settings or state (exit 2). Nothing was created.
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// The manifest is invalid (exit 2). Rendered with file, line and column.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// An API call failed. Authentication problems exit 3, the rest 1.
    #[error("{context}: {source}")]
    Api {
        context: String,
        #[source]
        source: ApiError,
    },
    /// A service failed or was rejected (exit 1); teardown has run.
    #[error("{0}")]
    Provision(String),
    /// Readiness did not come in time (exit 4); teardown has run.
    #[error("{0}")]
    Timeout(String),
    /// Interrupted by a signal (exit 128 + N); teardown has run. `shared`: the run had
    /// tenancies in shared services, which stay.
    #[error(
        "interrupted by {signal}; everything this run created was deleted{}",
        if *shared { ", except shared services (they stay; its tenancy in them was released)" } else { "" }
    )]
    Interrupted { signal: Signal, shared: bool },
    /// Interrupted (exit 128 + N) while waiting, before anything was done.
    #[error("interrupted by {signal} while {waiting}; nothing was changed")]
    InterruptedWaiting { signal: Signal, waiting: String },
    /// `run`'s command cannot be started (127 not found, 126 not executable, as shells
    /// say). Found before anything is created.
    #[error("{message}")]
    Command { message: String, code: u8 },
    /// Some services could not be confirmed deleted (exit 5).
    #[error("{}", teardown_message(.names, .command))]
    TeardownIncomplete { names: Vec<String>, command: String },
    /// A local I/O problem (exit 1).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn teardown_message(names: &[String], command: &str) -> String {
    format!(
        "teardown incomplete: {} service(s) could not be confirmed deleted: {}\n  finish it with: {command}",
        names.len(),
        names.join(", ")
    )
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage {
            message: message.into(),
            hint: None,
        }
    }

    pub fn usage_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Usage {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// The run id names services (or leases) of another run.
    pub fn run_id_taken(run_id: &str, project: &str, services: &[&str]) -> Self {
        Self::usage_hint(
            format!(
                "run id {} is already used by another run in project {project} (services {}); they are not this run's to adopt or delete",
                run_id,
                services.join(", ")
            ),
            "matrix legs and re-runs need distinct run ids: omit --run-id, or use $GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT-<leg>",
        )
    }

    pub fn api(context: impl Into<String>, source: ApiError) -> Self {
        Self::Api {
            context: context.into(),
            source,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage { .. } | Error::Manifest(_) => 2,
            Error::Api { source, .. } if source.is_auth_or_permission() => 3,
            Error::Api { .. } | Error::Provision(_) | Error::Io { .. } => 1,
            Error::Timeout(_) => 4,
            Error::Interrupted { signal, .. } | Error::InterruptedWaiting { signal, .. } => {
                signal.exit_code()
            }
            Error::TeardownIncomplete { .. } => 5,
            Error::Command { code, .. } => *code,
        }
    }

    /// A line of advice printed under the error, when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Usage { hint, .. } => hint.clone(),
            Error::Manifest(_) => None,
            Error::Api { source, .. } => source.hint(),
            Error::Timeout(_) => Some(
                "raise --timeout, or check the service in the Aiven console; everything created was deleted"
                    .into(),
            ),
            Error::Command { code: 127, .. } => Some(
                "nothing was created; check the name, give its path, or install it".into(),
            ),
            Error::Command { .. } => {
                Some("nothing was created; make it executable (chmod +x)".into())
            }
            _ => None,
        }
    }
}

/// The outcome of a command that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    /// `run` passes its child's exit code through.
    Code(u8),
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Success => 0,
            Status::Code(c) => c,
        }
    }
}

/// Prints an error the way every command does: `error: ...`, then its hint.
pub struct Report<'a>(pub &'a Error);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            // Already rendered with its own `error:` header and snippet.
            Error::Manifest(e) => write!(f, "{e}"),
            e => {
                write!(f, "error: {e}")?;
                if let Some(hint) = e.hint() {
                    write!(f, "\n  hint: {hint}")?;
                }
                Ok(())
            }
        }
    }
}
