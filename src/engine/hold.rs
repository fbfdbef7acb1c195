//! Hold: `run`'s command, with the services' environment, while the run is live. The
//! command runs in its own process group; signals are forwarded to the group, teardown
//! starts at the first one (its DELETEs within a second), and the group is killed 5 s
//! later if still alive. The run's expiry tags move forward every ttl/3 in a task of
//! their own, which a signal abandons.

use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio::task::JoinSet;

use super::{Engine, Live, record_teardown};
use crate::cli::RunArgs;
use crate::error::{Error, Result, Status};
use crate::naming;
use crate::signals::Signal;

/// How long the command may outlive the start of teardown.
const KILL_AFTER: Duration = Duration::from_secs(5);
/// One expiry update may take this long; the next round tries again.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(10);

/// Variables the command does not get (unless `--pass-token`): it gets the services,
/// not the keys to the project.
fn withheld(name: &str) -> bool {
    name == "AIVEN_TOKEN" || name == "AIVEN_AUTH_TOKEN" || name.starts_with("AIVEN_EPHEMERAL_")
}

/// Finds `run`'s command before anything is created: a path must be an executable file,
/// a name must be one on PATH.
fn locate(command: &str) -> Result<()> {
    let path = std::path::Path::new(command);
    let found: Vec<std::path::PathBuf> = if command.contains(std::path::MAIN_SEPARATOR) {
        vec![path.to_path_buf()]
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(command)).collect())
            .unwrap_or_default()
    };
    let Some(file) = found.iter().find(|p| p.is_file()) else {
        return Err(Error::Command {
            message: format!("`{command}`: command not found"),
            code: 127,
        });
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let executable = found.iter().filter(|p| p.is_file()).any(|p| {
            p.metadata()
                .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
        });
        if !executable {
            return Err(Error::Command {
                message: format!("`{}`: permission denied (not executable)", file.display()),
                code: 126,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

impl Engine {
    /// `run`: the command is found, the run brought up, the command held, the run torn
    /// down, whatever happens.
    pub async fn run(&self, args: &RunArgs) -> Result<Status> {
        if args.up.preview.reuse {
            return Err(Error::usage_hint(
                "`run` deletes its services when the command ends; --reuse keeps them for a pull request's later pushes",
                "use `aiven-ephemeral up --reuse --run-id pr-<number>`, then the command; the pull request's close runs `down`",
            ));
        }
        // A command that cannot start would only be found after minutes of provisioning.
        locate(&args.command[0])?;
        // Subscribed before anything starts: a signal at any moment reaches the command.
        let events = self.signals.subscribe();
        let live = self.bring_up(&args.up).await?;
        hold(self, live, args, events).await
    }
}

/// Runs the command against a live run, then tears the run down, whatever happens.
/// `events` was subscribed before `up` began, so no signal is missed.
async fn hold(
    engine: &Engine,
    live: Live,
    args: &RunArgs,
    mut events: broadcast::Receiver<Signal>,
) -> Result<Status> {
    // A signal during delivery, or just after: the command never starts.
    if let Some(e) = engine.interrupted() {
        return finish(engine, live, Err(e)).await;
    }
    let mut command = std::process::Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    Group::prepare(&mut command);
    #[cfg(unix)]
    let held = Terminal::prepare(&mut command);
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
    command.env(
        "AIVEN_EPHEMERAL_STATE_FILE",
        crate::settings::absolute(live.store.path()),
    );
    engine
        .reporter
        .info(format!("running: {}", shell_words(&args.command)));
    let mut child = match tokio::process::Command::from(command).spawn() {
        Ok(c) => c,
        Err(e) => {
            // As shells do: 127 when there is no such command, 126 when it cannot run.
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            engine
                .reporter
                .warn(format!("cannot start `{}`: {e}", args.command[0]));
            return finish(engine, live, Ok(Status::Code(code))).await;
        }
    };
    let group = Group { pid: child.id() };
    #[cfg(unix)]
    let terminal = held.and_then(|ours| Terminal::hand_to(ours, child.id()?));
    let refresh = tokio::spawn(refresh_expiry(
        live.conn.client.clone(),
        live.tracker.tenancy_writes.clone(),
        live.project.clone(),
        live.store.clone(),
        live.ttl,
        args.refresh_every,
    ));

    let mut teardown = None;
    let mut kill_at: Option<Instant> = None;
    let exit = loop {
        tokio::select! {
            status = child.wait() => break status,
            Ok(sig) = events.recv() => {
                group.forward(sig);
                if teardown.is_none() {
                    let _ = engine.interrupted();
                    refresh.abort();
                    kill_at = Some(Instant::now() + KILL_AFTER);
                    teardown = Some(start_teardown(engine, &live));
                }
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(Instant::now).into()), if kill_at.is_some() => {
                engine.reporter.warn("the command is still running 5s after teardown started; killing it");
                group.kill();
                kill_at = None;
            }
        }
    };
    refresh.abort();
    #[cfg(unix)]
    let had_terminal = terminal.is_some();
    #[cfg(not(unix))]
    let had_terminal = false;
    #[cfg(unix)]
    drop(terminal);
    let outcome = match exit {
        // The command had the terminal and a terminal signal ended it: the user
        // interrupted the run (the terminal echoed ^C: go on from a fresh line).
        Ok(status) if had_terminal && let Some(sig) = terminal_signal(status) => {
            crate::say!();
            Err(engine.interrupted_by(sig))
        }
        Ok(status) => Ok(Status::Code(exit_code(status))),
        Err(e) => Err(Error::io("waiting for the command", e)),
    };
    match teardown {
        Some(task) => {
            let torn = task.await.unwrap_or_else(|e| {
                Err(Error::TeardownIncomplete {
                    names: live
                        .store
                        .snapshot()
                        .services
                        .into_iter()
                        .map(|s| s.name)
                        .collect(),
                    command: format!("aiven-ephemeral down (the teardown task failed: {e})"),
                })
            });
            live.conn.close().await;
            torn?;
            Err(engine
                .interrupted()
                .unwrap_or_else(|| engine.interrupted_by(Signal::Term)))
        }
        None => {
            match &outcome {
                Ok(Status::Code(code)) => engine
                    .reporter
                    .info(format!("the command exited with {code}; tearing down")),
                Err(Error::Interrupted { signal: sig, .. }) => engine
                    .reporter
                    .info(format!("the command ended on {sig}; tearing down")),
                _ => {}
            }
            finish(engine, live, outcome).await
        }
    }
}

/// Teardown in the background while the command gets its 5 seconds.
fn start_teardown(engine: &Engine, live: &Live) -> tokio::task::JoinHandle<Result<()>> {
    let store = live.store.clone();
    let targets = live.tracker.targets();
    let project = live.project.clone();
    let client = live.conn.client.clone();
    let signals = engine.signals.clone();
    let reporter = engine.reporter;
    let options = live.teardown_options();
    tokio::spawn(async move {
        record_teardown(
            &client,
            &project,
            &store,
            targets,
            options,
            reporter,
            Some(&signals),
        )
        .await
        .map(|_| ())
    })
}

/// Tears down; teardown's failure (exit 5) overrides the outcome, a signal follows it.
async fn finish(engine: &Engine, live: Live, outcome: Result<Status>) -> Result<Status> {
    engine.tear_down(live).await?;
    if let Some(e) = engine.interrupted() {
        return Err(e);
    }
    // Said after teardown, which knows whether tenancies were released.
    outcome.map_err(|e| match e {
        Error::Interrupted { signal, .. } => engine.interrupted_by(signal),
        e => e,
    })
}

/// Pushes the expiry of every service of the run forward (the API's clock), every
/// ttl/3, all services at once, each update with a short timeout. A lease's move is one
/// of the run's tenancy writes: its release waits until it cannot land any more.
async fn refresh_expiry(
    client: crate::api::Client,
    tenancy_writes: crate::api::Writes,
    project: String,
    store: crate::state::Store,
    ttl: Duration,
    every: Option<Duration>,
) {
    let every = every.unwrap_or_else(|| (ttl / 3).max(Duration::from_secs(60)));
    loop {
        tokio::time::sleep(every).await;
        // An `extend` meanwhile set a new ttl: kept, not undone.
        if let Err(e) = store.take_extension() {
            tracing::warn!("{e}; the extension is applied to the tags all the same");
        }
        let state = store.snapshot();
        let ttl = state.extended_ttl_secs.map_or(ttl, Duration::from_secs);
        let now = client
            .server_time()
            .unwrap_or_else(time::OffsetDateTime::now_utc);
        let expires = naming::rfc3339(now + ttl);
        let mut updates = JoinSet::new();
        for record in state.services {
            // A shared service's expiry is the run's lease on it.
            let ((key, value), client) = match &record.tenant {
                Some(_) => (
                    naming::lease(&state.run_id, &expires, &state.owner),
                    client.tracking(&tenancy_writes),
                ),
                None => (
                    (naming::TAG_EXPIRES.to_string(), expires.clone()),
                    client.clone(),
                ),
            };
            let tags = std::collections::BTreeMap::from([(key, Some(value))]);
            let project = project.clone();
            updates.spawn(async move {
                let update =
                    client.update_tags(&project, &record.name, &tags, crate::api::Retry::Standard);
                match tokio::time::timeout(REFRESH_TIMEOUT, update).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("{}: cannot move the expiry: {e}", record.name),
                    Err(_) => tracing::warn!(
                        "{}: cannot move the expiry: no answer in {}s",
                        record.name,
                        REFRESH_TIMEOUT.as_secs()
                    ),
                }
            });
        }
        while updates.join_next().await.is_some() {}
        store.update_or_warn(
            "it keeps the previous expiry; the services' tags have the new one",
            |s| s.expires_at = Some(expires),
        );
    }
}

/// The signal that ended the command, if it is one a terminal or a CI runner sends.
fn terminal_signal(status: std::process::ExitStatus) -> Option<Signal> {
    #[cfg(unix)]
    match std::os::unix::process::ExitStatusExt::signal(&status) {
        Some(2) => return Some(Signal::Int),
        Some(15) => return Some(Signal::Term),
        Some(1) => return Some(Signal::Hup),
        _ => {}
    }
    let _ = status;
    None
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
        #[cfg(target_os = "linux")]
        Self::die_with_us(command);
        #[cfg(windows)]
        std::os::windows::process::CommandExt::creation_flags(command, 0x0000_0200); // CREATE_NEW_PROCESS_GROUP
    }

    /// The command must not outlive a `kill -9` of this tool with the services'
    /// credentials in its environment: the kernel kills it when its parent dies. The
    /// parent is the thread that spawns it, and it must live as long as the process: the
    /// spawn happens in the future `main` blocks on, on the main thread. A parent gone
    /// before the request is caught by its pid.
    #[cfg(target_os = "linux")]
    fn die_with_us(command: &mut std::process::Command) {
        let parent = nix::unistd::getpid();
        let arm = move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL)?;
            }
            Ok(())
        };
        // SAFETY: prctl, getppid and raise are async-signal-safe.
        unsafe { std::os::unix::process::CommandExt::pre_exec(command, arm) };
    }

    fn forward(&self, sig: Signal) {
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

/// When this tool holds the terminal, the command gets it (its group in the foreground)
/// as a shell gives it to a job: it can read from it, and Ctrl-C goes to it. This tool
/// takes it back when the command ends; SIGTERM and SIGHUP still reach it.
#[cfg(unix)]
struct Terminal {
    ours: nix::unistd::Pid,
}

#[cfg(unix)]
impl Terminal {
    /// When this tool's group has the terminal in the foreground, the command takes
    /// it itself, in its new group, before it runs: were only this tool to hand it over
    /// after the spawn, a command that reads at once would do so from the background
    /// first (as shells do, both sides set it). Returns this tool's group.
    fn prepare(command: &mut std::process::Command) -> Option<nix::unistd::Pid> {
        use nix::sys::signal::{SigHandler, Signal, signal};
        use std::io::IsTerminal;
        let stdin = std::io::stdin();
        let ours = nix::unistd::getpgrp();
        if !stdin.is_terminal() || nix::unistd::tcgetpgrp(&stdin).ok()? != ours {
            return None;
        }
        let take = || {
            // SAFETY: fd 0 is the terminal, open in the child as in this process.
            let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
            // Between fork and exec only async-signal-safe calls: sigaction, getpid,
            // tcsetpgrp. SIGTTOU is ignored for the call (the child is not yet in the
            // foreground) and restored, so that the command starts with the default.
            unsafe { signal(Signal::SIGTTOU, SigHandler::SigIgn) }?;
            let _ = nix::unistd::tcsetpgrp(stdin, nix::unistd::getpid());
            unsafe { signal(Signal::SIGTTOU, SigHandler::SigDfl) }?;
            Ok(())
        };
        // SAFETY: `take` makes only async-signal-safe calls.
        unsafe { std::os::unix::process::CommandExt::pre_exec(command, take) };
        Some(ours)
    }

    fn hand_to(ours: nix::unistd::Pid, pgid: u32) -> Option<Self> {
        use nix::sys::signal::{SigHandler, Signal, signal};
        let stdin = std::io::stdin();
        // Taking the terminal back from the background would stop this process
        // (SIGTTOU). Set after the command started, so that it keeps the default.
        // SAFETY: ignoring a signal installs no handler code.
        unsafe { signal(Signal::SIGTTOU, SigHandler::SigIgn) }.ok()?;
        // The command took it already, unless it is gone: either way this tool takes
        // it back when the command ends.
        let _ = nix::unistd::tcsetpgrp(&stdin, nix::unistd::Pid::from_raw(pgid as i32));
        Some(Self { ours })
    }
}

#[cfg(unix)]
impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = nix::unistd::tcsetpgrp(std::io::stdin(), self.ours);
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
