//! aiven-ephemeral: real Aiven services for every CI run and laptop, guaranteed to be
//! deleted afterwards.
//!
//! Layers, each depending only on those below it:
//! - `commands`: one module per command (`up`, `down`, `run`, ...);
//! - orchestration: `provision` (create + wait), `resources` (inside services),
//!   `probe`, `teardown`, `outputs`, `state`, `signals`, `progress`;
//! - the model: `manifest`, `naming`, `exports`, `settings`;
//! - `api`: the Aiven client, which knows nothing of manifests or CI.

pub mod api;
pub mod cli;
pub mod commands;
pub mod error;
pub mod exports;
pub mod manifest;
pub mod naming;
pub mod outputs;
pub mod probe;
pub mod progress;
pub mod provision;
pub mod resources;
pub mod secret;
pub mod settings;
pub mod signals;
pub mod state;
pub mod teardown;
