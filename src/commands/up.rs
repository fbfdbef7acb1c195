//! `up`: the engine's phases up to a delivered run, then exit; `down` ends it.

use crate::cli::{ApiArgs, UpArgs};
use crate::engine::Engine;
use crate::error::{Result, Status};
use crate::progress::Reporter;
use crate::state;

pub async fn up(global: &ApiArgs, args: &UpArgs, reporter: &'static Reporter) -> Result<Status> {
    let engine = Engine::new(global, reporter)?;
    let live = engine.up(args).await?;
    // A signal that came as the run became ready still tears it down.
    if let Some(e) = engine.interrupted() {
        engine.tear_down(live).await?;
        return Err(e);
    }
    reporter.info(format!(
        "run {} is up: {} service(s); env file {} (in a shell: . {})",
        live.run_id,
        live.store.snapshot().services.len(),
        live.env_file.display(),
        crate::outputs::shell_env_file(&live.env_file).display()
    ));
    reporter.info(format!(
        "tear down with: aiven-ephemeral down{}",
        state::state_flag(live.store.path())
    ));
    live.conn.close().await;
    Ok(Status::Success)
}
