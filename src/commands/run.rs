//! `run -- COMMAND`: `up`, the command with the services' environment, then teardown,
//! whatever happens (the engine's hold phase).

use crate::cli::RunArgs;
use crate::engine::Engine;
use crate::error::{Result, Status};
use crate::progress::Reporter;
use crate::settings;

pub async fn run(
    global: &settings::Api,
    args: &RunArgs,
    reporter: &'static Reporter,
) -> Result<Status> {
    Engine::new(global, reporter)?.run(args).await
}
