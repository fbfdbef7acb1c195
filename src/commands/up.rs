//! `up`: the engine's phases up to a delivered run, then exit; `down` ends it.

use crate::engine::Engine;
use crate::error::{Result, Status};
use crate::progress::Reporter;
use crate::settings;

pub async fn up(s: &settings::Up, reporter: &'static Reporter) -> Result<Status> {
    Engine::new(&s.api, reporter)?.up(s).await
}
