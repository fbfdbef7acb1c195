//! `down`: the engine's teardown of a run found by its state file or its run id.

use crate::cli::DownArgs;
use crate::engine::Engine;
use crate::error::{Result, Status};
use crate::progress::Reporter;
use crate::settings;

pub async fn down(
    global: &settings::Api,
    args: &DownArgs,
    reporter: &'static Reporter,
) -> Result<Status> {
    Engine::new(global, reporter)?.down(args).await
}
