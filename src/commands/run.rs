//! `run -- COMMAND`: `up`, the command with the services' environment, then teardown,
//! whatever happens. The command runs in its own process group; signals are forwarded
//! to the group, teardown starts at the first one (every DELETE within a second), and
//! the group is killed 5 s later if still alive. While it runs, the run's expiry tags
//! move forward every ttl/3.

use std::time::{Duration, Instant};

use crate::cli::{GlobalArgs, RunArgs};
use crate::commands::up::{Live, bring_up, rfc3339, tear_down};
use crate::error::{Error, Result, Status};
use crate::naming;
use crate::progress::Reporter;
use crate::signals::Signals;
use crate::teardown::Force;

/// How long the command may outlive the start of teardown.
const KILL_AFTER: Duration = Duration::from_secs(5);

/// Variables the command does not get (unless `--pass-token`): it gets the services,
/// not the keys to the project.
fn withheld(name: &str) -> bool {
    name == "AIVEN_TOKEN" || name == "AIVEN_AUTH_TOKEN" || name.starts_with("AIVEN_EPHEMERAL_")
}

pub async fn run(global: &GlobalArgs, args: &RunArgs, reporter: &Reporter) -> Result<Status> {
    let signals = Signals::install().map_err(|e| Error::io("cannot install signal handlers", e))?;
    let live = bring_up(global, &args.up, reporter, &signals).await?;
    let mut events = signals.subscribe();

    let mut command = std::process::Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    Group::prepare(&mut command);
    if !args.pass_token {
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(withheld) {
                command.env_remove(&name);
            }
        }
    }
    for v in &live.values {
        command.env(&v.name, &v.value);
    }
    command.env("AIVEN_EPHEMERAL_ENV_FILE", &live.env_file);
    reporter.info(format!("running: {}", shell_words(&args.command)));
    let mut child = match tokio::process::Command::from(command).spawn() {
        Ok(c) => c,
        Err(e) => {
            let error = Error::usage(format!("cannot start `{}`: {e}", args.command[0]));
            return finish(live, reporter, &signals, Err(error)).await;
        }
    };
    let group = Group { pid: child.id() };

    let refresh_every = (live.ttl / 3).max(Duration::from_secs(60));
    let mut refresh =
        tokio::time::interval_at((Instant::now() + refresh_every).into(), refresh_every);
    let mut teardown = None;
    let mut kill_at: Option<Instant> = None;
    let exit = loop {
        tokio::select! {
            status = child.wait() => break status,
            Ok(sig) = events.recv() => {
                group.forward(sig);
                if teardown.is_none() {
                    kill_at = Some(Instant::now() + KILL_AFTER);
                    teardown = Some(start_teardown(&live, reporter, &signals));
                }
            }
            _ = refresh.tick(), if teardown.is_none() => extend(&live, reporter).await,
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(Instant::now).into()), if kill_at.is_some() => {
                reporter.warn("the command is still running 5s after teardown started; killing it");
                group.kill();
                kill_at = None;
            }
        }
    };
    let outcome = match exit {
        Ok(status) => Ok(Status::Code(exit_code(status))),
        Err(e) => Err(Error::io("waiting for the command", e)),
    };
    match teardown {
        Some(task) => {
            let torn = task
                .await
                .unwrap_or_else(|e| Err(Error::Provision(format!("teardown task failed: {e}"))));
            live.conn.close().await;
            torn?;
            Err(Error::Interrupted(
                signals.received().unwrap_or(crate::signals::Signal::Term),
            ))
        }
        None => finish(live, reporter, &signals, outcome).await,
    }
}

/// Teardown in the background while the command gets its 5 seconds.
fn start_teardown(
    live: &Live,
    reporter: &Reporter,
    signals: &Signals,
) -> tokio::task::JoinHandle<Result<()>> {
    let store = live.store.clone();
    let targets = live.tracker.targets();
    let project = live.project.clone();
    let client = live.conn.client.clone();
    let signals = signals.clone();
    let mode = reporter.mode();
    tokio::spawn(async move {
        let reporter = Reporter::new(mode);
        tear_down(
            &client,
            &project,
            &store,
            targets,
            Force::No,
            &reporter,
            Some(&signals),
        )
        .await
    })
}

/// The command ended: tear down; teardown's failure (exit 5) overrides its exit code.
async fn finish(
    live: Live,
    reporter: &Reporter,
    signals: &Signals,
    outcome: Result<Status>,
) -> Result<Status> {
    if let Ok(Status::Code(code)) = &outcome {
        reporter.info(format!("the command exited with {code}; tearing down"));
    }
    let torn = tear_down(
        &live.conn.client,
        &live.project,
        &live.store,
        live.tracker.targets(),
        Force::No,
        reporter,
        Some(signals),
    )
    .await;
    live.conn.close().await;
    torn?;
    if let Some(sig) = signals.received() {
        return Err(Error::Interrupted(sig));
    }
    outcome
}

/// Pushes the expiry of every service of the run forward (the API's clock).
async fn extend(live: &Live, reporter: &Reporter) {
    let now = live
        .conn
        .client
        .server_time()
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    let expires = rfc3339(now + live.ttl);
    let tags = std::collections::BTreeMap::from([(
        naming::TAG_EXPIRES.to_string(),
        Some(expires.clone()),
    )]);
    for record in live.store.snapshot().services {
        if let Err(e) = live
            .conn
            .client
            .update_tags(&live.project, &record.name, &tags)
            .await
        {
            reporter.warn(format!("{}: cannot move the expiry: {e}", record.name));
        }
    }
    let _ = live.store.update(|s| s.expires_at = Some(expires));
}

/// The command's own code, or 128 + N when signal N killed it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    #[cfg(unix)]
    if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return (128 + sig).clamp(0, 255) as u8;
    }
    status.code().map(|c| c.clamp(0, 255) as u8).unwrap_or(1)
}

/// The command's process group: signals go to all of it.
struct Group {
    pid: Option<u32>,
}

impl Group {
    /// Starts the command in its own group, so that a signal meant for it reaches every
    /// process it starts, and a terminal's Ctrl-C reaches this tool first.
    fn prepare(command: &mut std::process::Command) {
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(command, 0);
        #[cfg(windows)]
        std::os::windows::process::CommandExt::creation_flags(command, 0x0000_0200); // CREATE_NEW_PROCESS_GROUP
    }

    fn forward(&self, sig: crate::signals::Signal) {
        #[cfg(unix)]
        if let Some(pid) = self.pid {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), sig.nix());
        }
        // Windows cannot deliver a console signal to another group: end it instead.
        #[cfg(windows)]
        {
            let _ = sig;
            self.kill();
        }
    }

    fn kill(&self) {
        let Some(pid) = self.pid else { return };
        #[cfg(unix)]
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        #[cfg(windows)]
        let _ = std::process::Command::new("taskkill")
            .args(["/PID", &pid.to_string(), "/T", "/F"])
            .output();
    }
}

fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
