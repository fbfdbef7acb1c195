//! `up`: the engine's phases up to a delivered run, then exit; `down` ends it.

use crate::cli::UpArgs;
use crate::engine::Engine;
use crate::error::{Result, Status};
use crate::progress::Reporter;
use crate::settings;

pub async fn up(
    global: &settings::Api,
    args: &UpArgs,
    reporter: &'static Reporter,
) -> Result<Status> {
    Engine::new(global, reporter)?.up(args).await
}
