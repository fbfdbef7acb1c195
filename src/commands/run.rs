//! `run -- COMMAND`: `up`, the command with the services' environment, then teardown,
//! whatever happens (the engine's hold phase).

use crate::engine::Engine;
use crate::error::{Result, Status};
use crate::progress::Reporter;
use crate::settings;

pub async fn run(s: &settings::Run, reporter: &'static Reporter) -> Result<Status> {
    Engine::new(&s.up.api, reporter)?.run(s).await
}
