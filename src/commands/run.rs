//! `run -- COMMAND`: `up`, the command with the services' environment, then teardown,
//! whatever happens (the engine's hold phase).

use crate::cli::{ApiArgs, RunArgs};
use crate::engine::{self, Engine};
use crate::error::{Result, Status};
use crate::progress::Reporter;

pub async fn run(global: &ApiArgs, args: &RunArgs, reporter: &'static Reporter) -> Result<Status> {
    // A command that cannot start would only be found after minutes of provisioning.
    engine::locate(&args.command[0])?;
    let engine = Engine::new(global, reporter)?;
    // Subscribed before anything starts: a signal at any moment reaches the command.
    let events = engine.signals.subscribe();
    let live = engine.up(&args.up).await?;
    engine::hold(&engine, live, args, events).await
}
