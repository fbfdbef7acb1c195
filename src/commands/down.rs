//! `down`: the engine's teardown of a run found by its state file or its run id.

use crate::cli::{ApiArgs, DownArgs};
use crate::engine::Engine;
use crate::error::{Result, Status};
use crate::progress::Reporter;

pub async fn down(
    global: &ApiArgs,
    args: &DownArgs,
    reporter: &'static Reporter,
) -> Result<Status> {
    Engine::new(global, reporter)?.down(args).await
}
