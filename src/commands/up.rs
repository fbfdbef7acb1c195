//! `up`: the engine's phases up to a delivered run, then exit; `down` ends it.

use crate::cli::{ApiArgs, UpArgs};
use crate::engine::Engine;
use crate::error::{Result, Status};
use crate::progress::Reporter;

pub async fn up(global: &ApiArgs, args: &UpArgs, reporter: &'static Reporter) -> Result<Status> {
    Engine::new(global, reporter)?.up(args).await
}
