//! The sandbox behind `--sandbox`: one detached process per state directory, like
//! `docker compose up -d`, so that the URIs `up --sandbox` wrote keep working until
//! `down`. Its world persists in `<dir>/sandbox.json`; its address and token are in
//! `<dir>/sandbox-server.json` (0600); a registry entry in the temp directory, keyed by
//! its pid, lets `down` find and stop it even when the state directory is damaged. It
//! stops itself when its state directory disappears, and its real servers die with it.
//! Every command that uses it holds a shared lock on `<dir>/sandbox-users.lock`; it is
//! stopped only by one that can take that lock exclusively, so never while another
//! command still uses it (a `plan`, a `reap`, an `up` before its first state write:
//! none of them shows in a state file).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const SERVER_FILE: &str = "sandbox-server.json";
/// The pid of a sandbox process asked to stop that may still be answering.
const STOPPING_FILE: &str = "sandbox-stopping";
const USERS_FILE: &str = "sandbox-users.lock";
/// How long a new sandbox process may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped sandbox process may take to stop its servers and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a sandbox process looks for its state directory.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Where a running sandbox process is.
#[derive(Clone, Serialize, Deserialize)]
pub struct Server {
    pub pid: u32,
    pub url: String,
    pub token: String,
    pub backends: String,
    /// The state directory it serves (absolute).
    pub dir: PathBuf,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("pid", &self.pid)
            .field("url", &self.url)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The registry of sandbox processes on this machine, one file per pid.
fn registry() -> PathBuf {
    std::env::temp_dir().join("aiven-ephemeral-sandboxes")
}

fn absolute_dir(dir: &Path) -> PathBuf {
    let dir = crate::state::absolute(dir);
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

fn read_server(path: &Path) -> Option<Server> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The sandbox process serving `dir`, if one is alive: from the directory's server file,
/// else from the registry. A file only names a pid, which may since belong to another
/// process: only one that is this program serving `dir` is found (and ever signalled).
pub fn find(dir: &Path) -> Option<Server> {
    let dir = absolute_dir(dir);
    let from_dir = read_server(&dir.join(SERVER_FILE));
    let from_registry = || {
        std::fs::read_dir(registry())
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| mine(&e.path()))
            .filter_map(|e| read_server(&e.path()))
            .find(|s| s.dir == dir && serves(s.pid, &dir))
    };
    from_dir
        .filter(|s| s.dir == dir && serves(s.pid, &dir))
        .or_else(from_registry)
}

/// Whether a registry entry was written by this user: another local user could plant
/// one naming any pid.
#[cfg(unix)]
fn mine(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_file() && m.uid() == nix::unistd::Uid::effective().as_raw())
}

#[cfg(not(unix))]
fn mine(_: &Path) -> bool {
    true
}

#[cfg(unix)]
fn mine_dir(path: &Path) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::symlink_metadata(path).is_ok_and(|m| {
        m.is_dir()
            && m.uid() == nix::unistd::Uid::effective().as_raw()
            && m.permissions().mode() & 0o077 == 0
    })
}

#[cfg(not(unix))]
fn mine_dir(_: &Path) -> bool {
    true
}

/// Whether `pid` is this program's sandbox process for `dir` (its executable and its
/// `sandbox --detach-for <dir>`), not a process that got a dead one's pid. Where
/// `/proc` is missing (macOS, Windows), being alive is all that can be told cheaply.
fn serves(pid: u32, dir: &Path) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if !Path::new("/proc/self").exists() {
        return alive(pid);
    }
    let same_program = match (
        std::fs::read_link(proc_dir.join("exe")),
        std::env::current_exe(),
    ) {
        (Ok(theirs), Ok(ours)) => theirs == ours,
        _ => false,
    };
    let args = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = args.split(|b| *b == 0).collect();
    let for_dir = args.windows(3).any(|w| {
        w[0] == b"sandbox" && w[1] == b"--detach-for" && w[2] == dir.as_os_str().as_encoded_bytes()
    });
    same_program && for_dir && alive(pid)
}

/// A command's use of a directory's sandbox process (a shared lock on its users file,
/// which the OS releases when the command dies, even by SIGKILL): while one is held,
/// the process is not stopped.
pub struct Use {
    _file: std::fs::File,
}

fn users_file(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(USERS_FILE);
    crate::state::private(
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true),
    )
    .open(&path)
    .map_err(|e| Error::io(format!("cannot open lock {}", path.display()), e))
}

impl Use {
    /// Waits (without blocking the runtime) while a command stops the process.
    async fn acquire(dir: &Path) -> Result<Self> {
        let file = users_file(dir)?;
        let started = Instant::now();
        loop {
            match file.try_lock_shared() {
                Ok(()) => return Ok(Self { _file: file }),
                Err(std::fs::TryLockError::WouldBlock)
                    if started.elapsed() < START_TIMEOUT + STOP_TIMEOUT =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::usage(format!(
                        "the sandbox process of {} is still stopping after {}s",
                        dir.display(),
                        (START_TIMEOUT + STOP_TIMEOUT).as_secs()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(
                        format!("cannot lock {}", dir.join(USERS_FILE).display()),
                        e,
                    ));
                }
            }
        }
    }
}

/// The right to stop `dir`'s process: no command uses it. `None` when one does (or the
/// lock cannot be taken: then it is left running too).
fn sole(dir: &Path) -> Option<std::fs::File> {
    let file = users_file(dir).ok()?;
    file.try_lock().ok().map(|()| file)
}

/// The sandbox process for `dir`, the running one or a new one, and this command's use
/// of it, taken before it is looked for: a command stopping it meanwhile is waited out.
pub async fn ensure(dir: &Path) -> Result<(Server, Use)> {
    crate::state::prepare_dir(dir)?;
    let using = Use::acquire(dir).await?;
    let server = start_or_find(dir).await?;
    Ok((server, using))
}

async fn start_or_find(dir: &Path) -> Result<Server> {
    // One command at a time finds or starts the directory's process: two runs started
    // at once in one directory (their own state files) must not start two.
    let _starting = crate::state::StateLock::acquire(
        &dir.join("sandbox-process"),
        START_TIMEOUT + STOP_TIMEOUT,
    )
    .await?;
    if let Some(server) = find(dir) {
        // One that was asked to stop, or does not answer, is stopping (a command
        // before this one let it go): it still holds its servers' ports and the
        // directory's files, so a new one starts only once it is gone.
        let going = stopping(&absolute_dir(dir)) == Some(server.pid);
        let started = Instant::now();
        while serves(server.pid, &server.dir) {
            if !going && healthy(&server).await {
                return Ok(server);
            }
            if started.elapsed() > STOP_TIMEOUT {
                kill(server.pid);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let dir = absolute_dir(dir);
    let _ = std::fs::remove_file(dir.join(SERVER_FILE));
    let _ = std::fs::remove_file(dir.join(STOPPING_FILE));
    let log_path = dir.join("sandbox.log");
    let log = crate::state::private_file(&log_path)
        .map_err(|e| Error::io(format!("cannot open {}", log_path.display()), e))?;
    let exe = std::env::current_exe().map_err(|e| Error::io("cannot find this program", e))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("sandbox")
        .arg("--detach-for")
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    // Its own process group: a terminal's Ctrl-C meant for a command does not stop it.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .spawn()
        .map_err(|e| Error::io("cannot start the sandbox process", e))?;
    // Until it answers, a signal that drops this future stops the process too.
    let mut starting = Starting(Some(child));
    let started = Instant::now();
    loop {
        let child = starting.0.as_mut().expect("held until it answers");
        if let Some(server) = read_server(&dir.join(SERVER_FILE))
            && server.pid == child.id()
            && healthy(&server).await
        {
            starting.0 = None;
            return Ok(server);
        }
        if let Ok(Some(status)) = child.try_wait() {
            starting.0 = None;
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(Error::usage(format!(
                "the sandbox process exited ({status}) before it answered: {}",
                log.trim()
            )));
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(Error::usage(format!(
                "the sandbox process did not answer within {}s (its log: {})",
                START_TIMEOUT.as_secs(),
                log_path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A sandbox process that has not answered yet: stopped if it is dropped so.
struct Starting(Option<std::process::Child>);

/// How long a sandbox process that never answered has to stop before it is killed: one
/// stalled while it starts may never act on SIGTERM.
const STARTING_GRACE: Duration = Duration::from_secs(1);

impl Drop for Starting {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        terminate(child.id());
        // Reaped before this returns (the command may exit next), in bounded time and
        // off the runtime's worker.
        crate::state::off_runtime(|| {
            let started = Instant::now();
            while matches!(child.try_wait(), Ok(None)) {
                if started.elapsed() > STARTING_GRACE {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    }
}

async fn healthy(server: &Server) -> bool {
    let url = format!("{}/_sandbox/health", server.url);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build();
    match client {
        Ok(c) => c
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success()),
        Err(_) => false,
    }
}

/// Asks the sandbox process serving `dir`, if any and if no other command uses it, to
/// stop, without waiting: it stops its servers and removes its files itself.
pub fn stop_soon(dir: &Path) {
    if let Some(_sole) = sole(dir)
        && let Some(server) = find(dir)
    {
        // Written before the signal and under the lock: a command that comes next
        // knows this process is going (it may still answer a while) and waits for it
        // to be gone instead of using it.
        let _ = std::fs::write(
            absolute_dir(dir).join(STOPPING_FILE),
            server.pid.to_string(),
        );
        terminate(server.pid);
    }
}

/// The pid of the sandbox process [`stop_soon`] asked to stop, if any.
fn stopping(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join(STOPPING_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What [`stop`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It ran and is gone, its real servers and their data with it.
    Yes,
    /// Another command uses it: left running.
    InUse,
    /// None was running.
    NoneRunning,
}

/// Stops the sandbox process serving `dir`, if any and if no other command uses it, and
/// waits until it has gone; commands that come meanwhile wait for it too.
pub async fn stop(dir: &Path) -> Stopped {
    let Some(_sole) = sole(dir) else {
        return match find(dir) {
            Some(server) => {
                tracing::info!(
                    "the sandbox process {} is in use by another command: left running",
                    server.pid
                );
                Stopped::InUse
            }
            None => Stopped::NoneRunning,
        };
    };
    let Some(server) = find(dir) else {
        let _ = std::fs::remove_file(absolute_dir(dir).join(SERVER_FILE));
        return Stopped::NoneRunning;
    };
    terminate(server.pid);
    let started = Instant::now();
    while serves(server.pid, &server.dir) {
        if started.elapsed() > STOP_TIMEOUT {
            kill(server.pid);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    forget(&server);
    Stopped::Yes
}

fn forget(server: &Server) {
    // The directory's server file may already name the next process.
    let file = server.dir.join(SERVER_FILE);
    if read_server(&file).is_some_and(|s| s.pid == server.pid) {
        let _ = std::fs::remove_file(file);
    }
    if stopping(&server.dir) == Some(server.pid) {
        let _ = std::fs::remove_file(server.dir.join(STOPPING_FILE));
    }
    let _ = std::fs::remove_file(registry().join(format!("{}.json", server.pid)));
    // The last one out removes the registry (it fails while others are in it).
    let _ = std::fs::remove_dir(registry());
}

#[cfg(unix)]
fn alive(pid: u32) -> bool {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    // A zombie is not alive; only Linux tells the two apart cheaply.
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        return !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    }
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

#[cfg(unix)]
fn terminate(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
}

#[cfg(unix)]
fn kill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[cfg(windows)]
fn alive(pid: u32) -> bool {
    std::process::Command::new("tasklist")
        .args(["/FI", &format!("PID eq {pid}"), "/NH"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&pid.to_string()))
}

#[cfg(windows)]
fn terminate(pid: u32) {
    kill(pid);
}

#[cfg(windows)]
fn kill(pid: u32) {
    let _ = std::process::Command::new("taskkill")
        .args(["/PID", &pid.to_string(), "/T", "/F"])
        .output();
}

/// The sandbox's configuration for a state directory: its world in `sandbox.json`, any
/// project accepted, a fresh token; `AIVEN_EPHEMERAL_SANDBOX_CONFIG` for the rest.
fn config(dir: &Path) -> Result<aiven_sandbox::Config> {
    let mut config = match std::env::var_os("AIVEN_EPHEMERAL_SANDBOX_CONFIG") {
        Some(path) => aiven_sandbox::Config::load(Path::new(&path))
            .map_err(|e| Error::usage(e.to_string()))?,
        None => aiven_sandbox::Config::default(),
    };
    config.token = crate::identity::new_owner();
    config.accept_any_project = true;
    config.state_file = Some(dir.join("sandbox.json"));
    Ok(config)
}

/// The sandbox process itself: serves until a signal, or until its state directory is
/// gone; then stops its servers and removes its files.
pub async fn serve(dir: &Path) -> Result<()> {
    let dir = absolute_dir(dir);
    let signals = crate::signals::Signals::install()
        .map_err(|e| Error::io("cannot install signal handlers", e))?;
    let config = config(&dir)?;
    let drain = config.stop_drain;
    let sandbox = aiven_sandbox::Sandbox::start(config, ([127, 0, 0, 1], 0).into())
        .await
        .map_err(|e| Error::usage(format!("cannot start the sandbox: {e}")))?;
    let server = Server {
        pid: std::process::id(),
        url: sandbox.url().to_string(),
        token: sandbox.token().to_string(),
        backends: sandbox.backend_description(),
        dir: dir.clone(),
    };
    let json = serde_json::to_vec_pretty(&server).unwrap_or_default();
    // The registry is this user's alone; one someone else made is not used.
    let mut registry_dir = std::fs::DirBuilder::new();
    registry_dir.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut registry_dir, 0o700);
    registry_dir
        .create(registry())
        .map_err(|e| Error::io(format!("cannot create {}", registry().display()), e))?;
    let mut files = vec![dir.join(SERVER_FILE)];
    if mine_dir(&registry()) {
        files.push(registry().join(format!("{}.json", server.pid)));
    } else {
        tracing::warn!(
            "{} is not this user's alone (0700): no entry there",
            registry().display()
        );
    }
    for path in files {
        crate::state::write_private(&path, &json)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    }
    crate::say!(
        "sandbox {} serving {} ({})",
        server.pid,
        server.url,
        server.backends
    );
    let token = signals.token();
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(WATCH_EVERY) => {
                if !dir.join(SERVER_FILE).exists() {
                    crate::say!("{} is gone; stopping", dir.join(SERVER_FILE).display());
                    break;
                }
            }
        }
    }
    tokio::time::sleep(drain).await;
    sandbox.shutdown().await;
    forget(&server);
    Ok(())
}
