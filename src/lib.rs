//! aiven-ephemeral: real Aiven services for every CI run and laptop, guaranteed to be
//! deleted afterwards.
//!
//! Layers, each depending on those below it (docs/layout.md maps every module;
//! `scripts/layout-check` checks the rules):
//! - `cli` (the command line, clap only) and `settings` (each command's flags resolved
//!   once into typed settings), then `commands`: one module per command, thin;
//! - `engine`: a run's lifecycle in named phases (resolve, guard, provision, deliver,
//!   hold, teardown) with the one owner of cancellation, and each command's work with
//!   the API (`locate` finds a run; `tenancy` is a run's share of a shared service);
//! - what the engine uses: `connection` (the API, or the sandbox process of
//!   `sandbox_process`), `probe`, `endpoints`, `delivery`, `state`, `signals`,
//!   `progress`, `ci`, `sql` (SQL on PostgreSQL services, for shared-service tenancy and
//!   seeds), `cache` (what the API rarely changes, on disk), `comment` (the one comment
//!   on a pull or merge request of a run made with `up --reuse`);
//! - the model: `catalogue` (the service types), `manifest` (with `exports`, the env
//!   names), `identity`, `tags`, `error`;
//! - `api`: the Aiven client, which knows nothing of manifests or CI; `secret`.

// Clippy counts code lines only; `scripts/layout-check` (all lines) is the authority.
#![warn(clippy::too_many_lines)]

/// The version this binary reports: the release's (`AIVEN_EPHEMERAL_VERSION`, set by the
/// release workflow's build, which does not edit Cargo.toml), else the crate's.
pub const VERSION: &str = match option_env!("AIVEN_EPHEMERAL_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// `eprintln!` (or, with `out`, `println!`) that never panics: a reader that went away
/// must not stop a run halfway through creating or deleting.
#[macro_export]
macro_rules! say {
    (out $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod api;
pub mod cache;
pub mod catalogue;
pub mod ci;
pub mod cli;
pub mod commands;
pub mod comment;
pub mod connection;
pub mod delivery;
pub mod endpoints;
pub mod engine;
pub mod error;
pub mod identity;
pub mod manifest;
pub mod probe;
pub mod progress;
pub mod sandbox_process;
pub mod secret;
pub mod settings;
pub mod signals;
pub mod sql;
pub mod state;
pub mod tags;
