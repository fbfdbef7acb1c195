//! Hold: `run`'s command, with the services' environment, while the run is live. The
//! command runs in its own process group; signals are forwarded to the group, teardown
//! starts at the first one (its DELETEs within a second), and the group is killed 5 s
//! later if still alive. At a terminal the command shares this tool's (foreground)
//! group instead, as make's and cargo's do: Ctrl-C reaches both, the command decides
//! what it means (psql cancels a query), this tool says what it waits for, and a second
//! Ctrl-C stops the command (SIGTERM, SIGKILL 5 s later) while the run is torn down.
//! The run's expiry tags move forward every ttl/3 in a task of their own, which a
//! signal abandons.

use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio::task::JoinSet;

use super::{Engine, Live, record_teardown};
use crate::error::{Error, Result, Status};
use crate::signals::Signal;
use crate::tags;

/// How long the command may outlive the start of teardown.
const KILL_AFTER: Duration = Duration::from_secs(5);
/// A Ctrl-C the command does not end on within this long is answered with what this
/// tool waits for (one that ends it needs no answer).
const NOTICE_AFTER: Duration = Duration::from_millis(500);
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
    pub async fn run(&self, args: &crate::settings::Run) -> Result<Status> {
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
    args: &crate::settings::Run,
    mut events: broadcast::Receiver<Signal>,
) -> Result<Status> {
    // A signal during delivery, or just after: the command never starts.
    if let Some(e) = engine.interrupted() {
        return finish(engine, live, Err(e)).await;
    }
    let at_terminal = at_terminal();
    let command = command(args, &live, at_terminal);
    engine
        .reporter
        .info(format!("running: {}", shell_words(&args.command)));
    // From before the spawn: the command's Ctrl-C is this tool's too.
    engine.signals.defer_interrupts(at_terminal);
    let mut child = match spawn(engine, command, &args.command[0]) {
        Ok(c) => c,
        Err(code) => return finish(engine, live, Ok(Status::Code(code))).await,
    };
    let group = Group {
        pid: child.id(),
        own: !at_terminal,
    };
    let refresh = start_refresh(&live, args.refresh_every);

    let mut teardown = None;
    let mut kill_at: Option<Instant> = None;
    let mut asked = false;
    let mut notice_at: Option<Instant> = None;
    let exit = loop {
        tokio::select! {
            status = child.wait() => break status,
            Ok(sig) = events.recv() => {
                let sig = if at_terminal && sig == Signal::Int {
                    // The terminal's Ctrl-C reached the command too: the first is its
                    // to answer, the next one stops it.
                    if !asked && teardown.is_none() {
                        asked = true;
                        notice_at = Some(Instant::now() + NOTICE_AFTER);
                        continue;
                    }
                    notice_at = None;
                    engine.signals.act(Signal::Int);
                    if teardown.is_none() {
                        crate::say!();
                        engine.reporter.warn(format!(
                            "stopping `{}` (SIGTERM, SIGKILL in {}s) and tearing down",
                            args.command[0],
                            KILL_AFTER.as_secs()
                        ));
                        engine.signals.announced();
                    }
                    Signal::Term
                } else {
                    sig
                };
                group.forward(sig);
                if teardown.is_none() {
                    let _ = engine.interrupted();
                    refresh.abort();
                    kill_at = Some(Instant::now() + KILL_AFTER);
                    teardown = Some(start_teardown(engine, &live));
                }
            }
            _ = tokio::time::sleep_until(notice_at.unwrap_or_else(Instant::now).into()), if notice_at.is_some() => {
                notice_at = None;
                // From a fresh line: the terminal echoed ^C.
                crate::say!();
                engine.reporter.warn(format!(
                    "waiting for `{}` to exit; Ctrl-C again to stop it",
                    args.command[0]
                ));
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(Instant::now).into()), if kill_at.is_some() => {
                engine.reporter.warn("the command is still running 5s after teardown started; killing it");
                group.kill();
                kill_at = None;
            }
        }
    };
    refresh.abort();
    engine.signals.defer_interrupts(false);
    let outcome = match exit {
        // The command shared the terminal and a terminal signal ended it: the user
        // interrupted the run (the terminal echoed ^C: go on from a fresh line).
        Ok(status) if at_terminal && let Some(sig) = terminal_signal(status) => {
            crate::say!();
            Err(engine.interrupted_by(sig))
        }
        Ok(status) => Ok(Status::Code(exit_code(status))),
        Err(e) => Err(Error::io("waiting for the command", e)),
    };
    end(engine, live, outcome, teardown).await
}

/// The command, with the run's values in its environment (and the token withheld
/// unless `--pass-token`), in a process group of its own unless it has the terminal.
fn command(args: &crate::settings::Run, live: &Live, at_terminal: bool) -> std::process::Command {
    let mut command = std::process::Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    Group::prepare(&mut command, !at_terminal);
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
        crate::state::absolute(live.store.path()),
    );
    command
}

/// Starts the command; when it cannot start, the exit code a shell would give (127: not
/// found, 126: cannot run), said.
fn spawn(
    engine: &Engine,
    command: std::process::Command,
    name: &str,
) -> std::result::Result<tokio::process::Child, u8> {
    match tokio::process::Command::from(command).spawn() {
        Ok(c) => Ok(c),
        Err(e) => {
            engine.signals.defer_interrupts(false);
            // As shells do: 127 when there is no such command, 126 when it cannot run.
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            engine.reporter.warn(format!("cannot start `{name}`: {e}"));
            Err(code)
        }
    }
}

/// After the command: the teardown a signal started is awaited (and the run ends as
/// interrupted), else the run is torn down now.
async fn end(
    engine: &Engine,
    live: Live,
    outcome: Result<Status>,
    teardown: Option<tokio::task::JoinHandle<Result<()>>>,
) -> Result<Status> {
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

/// The expiry moves forward while the command runs.
fn start_refresh(live: &Live, every: Option<Duration>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(refresh_expiry(
        live.conn.client.clone(),
        live.tracker.tenancy_writes.clone(),
        live.project.clone(),
        live.store.clone(),
        live.ttl,
        every,
    ))
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
        let expires = tags::rfc3339(now + ttl);
        let mut updates = JoinSet::new();
        for record in state.services {
            // A shared service's expiry is the run's lease on it.
            let ((key, value), client) = match &record.tenant {
                Some(_) => (
                    tags::lease(&state.run_id, &expires, &state.owner),
                    client.tracking(&tenancy_writes),
                ),
                None => (
                    (tags::TAG_EXPIRES.to_string(), expires.clone()),
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

/// Whether this tool's group has the terminal in the foreground: then the command
/// shares it (it can read from the terminal, and Ctrl-C reaches it and this tool).
fn at_terminal() -> bool {
    #[cfg(unix)]
    {
        use std::io::IsTerminal;
        let stdin = std::io::stdin();
        stdin.is_terminal()
            && nix::unistd::tcgetpgrp(&stdin).is_ok_and(|fg| fg == nix::unistd::getpgrp())
    }
    #[cfg(not(unix))]
    false
}

/// The command and what it starts: its own process group, or, when it shares this
/// tool's group at a terminal, the command and its descendants.
struct Group {
    pid: Option<u32>,
    own: bool,
}

impl Group {
    /// Starts the command in its own group (unless `own` is false: at a terminal), so
    /// that a signal meant for it reaches every process it starts.
    fn prepare(command: &mut std::process::Command, own: bool) {
        #[cfg(unix)]
        if own {
            std::os::unix::process::CommandExt::process_group(command, 0);
        }
        #[cfg(target_os = "linux")]
        Self::die_with_us(command);
        #[cfg(windows)]
        if own {
            std::os::windows::process::CommandExt::creation_flags(command, 0x0000_0200); // CREATE_NEW_PROCESS_GROUP
        }
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
        self.signal(sig.nix());
        // Windows cannot deliver a console signal to another group: end it instead.
        #[cfg(windows)]
        {
            let _ = sig;
            self.kill();
        }
    }

    fn kill(&self) {
        #[cfg(unix)]
        self.signal(nix::sys::signal::Signal::SIGKILL);
        #[cfg(windows)]
        if let Some(pid) = self.pid {
            let _ = std::process::Command::new("taskkill")
                .args(["/PID", &pid.to_string(), "/T", "/F"])
                .output();
        }
    }

    #[cfg(unix)]
    fn signal(&self, sig: nix::sys::signal::Signal) {
        use nix::sys::signal::{kill, killpg};
        use nix::unistd::Pid;
        let Some(pid) = self.pid else { return };
        let pid = Pid::from_raw(pid as i32);
        if self.own {
            let _ = killpg(pid, sig);
            return;
        }
        // The group is this tool's, and its shell's at times: only the command's tree.
        let mut tree = vec![pid];
        tree.extend(descendants(pid));
        for p in tree {
            let _ = kill(p, sig);
        }
    }
}

/// The processes descending from `root`, from /proc's parent links (none elsewhere:
/// there the command alone is signalled).
#[cfg(unix)]
fn descendants(root: nix::unistd::Pid) -> Vec<nix::unistd::Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // (pid, parent) from /proc/<pid>/stat: "pid (comm) state ppid ...", comm may hold ')'.
    let links: Vec<(i32, i32)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = &stat[stat.rfind(')')? + 1..];
            Some((pid, after.split_whitespace().nth(1)?.parse().ok()?))
        })
        .collect();
    let mut found = vec![root.as_raw()];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(links.iter().filter(|l| l.1 == parent).map(|l| l.0));
        i += 1;
    }
    found[1..]
        .iter()
        .map(|&p| nix::unistd::Pid::from_raw(p))
        .collect()
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
