//! `down`: the engine's teardown of a run found by its state file or its run id.

use crate::engine::Engine;
use crate::error::{Result, Status};
use crate::progress::Reporter;
use crate::settings;

pub async fn down(s: &settings::Down, reporter: &'static Reporter) -> Result<Status> {
    Engine::new(&s.api, reporter)?.down(s).await
}
