//! The state file (`.aiven-ephemeral/state.json`): what a run is about to create and has
//! created, written before each create request is sent and after each change (atomic,
//! 0600), so that `down` can finish what a killed process could not. Also the state
//! directory's lock (one live run per state file) and its `.gitignore`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// `up` is creating or waiting.
    Creating,
    /// Every service is ready; the run is live.
    Up,
    /// Teardown started and has not been confirmed.
    TearingDown,
    /// `--keep-on-failure` kept a failed run; `down` skips it without `--force`.
    Kept,
    /// Every service was confirmed deleted.
    TornDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    /// Recorded before the create request is sent.
    Creating,
    /// The API answered the create (or the service was adopted): it exists.
    Created,
    /// Ready for use.
    Ready,
    /// The create was refused: the service never existed.
    Rejected,
    /// Confirmed gone.
    Deleted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub key: String,
    pub name: String,
    pub service_type: String,
    pub plan: String,
    pub cloud: Option<String>,
    pub status: ServiceStatus,
    /// When the last create request was sent (RFC 3339, this machine's clock): a name
    /// whose create never got an answer is re-checked until the request timeout passed.
    #[serde(default)]
    pub create_sent_at: Option<String>,
    /// On a shared service: the run's tenant name there. The service is never deleted;
    /// teardown releases the tenancy and the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub run_id: String,
    pub owner: String,
    pub project: String,
    pub api_url: String,
    pub sandbox: bool,
    pub status: RunStatus,
    pub started_at: String,
    /// The expiry tag's value (the API's clock).
    pub expires_at: Option<String>,
    pub manifest: Option<PathBuf>,
    pub env_file: Option<PathBuf>,
    pub services: Vec<ServiceRecord>,
    /// Until when an API write that makes the run's tenancies in shared services may
    /// still land (RFC 3339, this machine's clock): a release is not finished before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenancy_writes_until: Option<String>,
    /// The ttl `extend` gave the run (seconds): the expiry refresh of a live `run` keeps
    /// it instead of undoing the extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_ttl_secs: Option<u64>,
}

impl State {
    pub fn live(&self) -> bool {
        !matches!(self.status, RunStatus::TornDown)
    }

    pub fn record(&mut self, name: &str) -> Option<&mut ServiceRecord> {
        self.services.iter_mut().find(|s| s.name == name)
    }
}

pub fn default_state_file() -> PathBuf {
    PathBuf::from(".aiven-ephemeral/state.json")
}

/// The state file, and the directory it lives in (lock, `.gitignore`, certs).
#[derive(Debug, Clone)]
pub struct StatePaths {
    pub file: PathBuf,
    pub dir: PathBuf,
}

impl StatePaths {
    /// `--state-file`, else the default.
    pub fn of(state_file: Option<&Path>) -> Self {
        let file = state_file
            .map(Path::to_path_buf)
            .unwrap_or_else(default_state_file);
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Self { file, dir }
    }

    /// A run's default output beside its state file: `name` for the default
    /// `state.json`, `<stem>.<name>` for any other (`b.json`: `b.env`, `b.certs`), so
    /// that runs whose state files share a directory never share an env file or a
    /// certificate.
    pub fn beside(&self, name: &str) -> PathBuf {
        match self.file.file_stem().and_then(|s| s.to_str()) {
            Some("state") | None => self.dir.join(name),
            Some(stem) => self.dir.join(format!("{stem}.{name}")),
        }
    }
}

/// An absolute path (for env files and certificates used by later steps).
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// Reads a state file; `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<State>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::io(
                format!("cannot read state file {}", path.display()),
                e,
            ));
        }
    };
    let state: State = serde_json::from_str(&text).map_err(|e| {
        Error::usage_hint(
            format!(
                "state file {} is not a valid state file: {e}",
                path.display()
            ),
            "it is written by `aiven-ephemeral up`; if the run is gone, delete the file",
        )
    })?;
    if state.version != STATE_VERSION {
        return Err(Error::usage(format!(
            "state file {} has version {}, this aiven-ephemeral understands {STATE_VERSION}",
            path.display(),
            state.version
        )));
    }
    Ok(Some(state))
}

/// Files this tool writes are readable by their owner only (mode 0600 where modes exist).
pub(crate) fn private(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options
}

/// Opens a file for appending, created with mode 0600 (logs that may name secrets).
pub fn private_file(path: &Path) -> std::io::Result<File> {
    private(OpenOptions::new().create(true).append(true)).open(path)
}

/// Whether any state file in `dir` holds a live run.
pub fn any_live(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .any(|e| read(&e.path()).ok().flatten().is_some_and(|s| s.live()))
}

/// Writes a file atomically (temp file + rename) with mode 0600.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut file =
            private(OpenOptions::new().write(true).create(true).truncate(true)).open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates the state directory with a `.gitignore` holding `*`, so that the env file,
/// state and keys are never committed or copied into an image by accident.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "*\n")
            .map_err(|e| Error::io(format!("cannot write {}", ignore.display()), e))?;
    }
    Ok(())
}

/// An exclusive lock on one state file (`<state file>.lock`), held while a command
/// changes its run. The OS releases it when the process dies, even by SIGKILL.
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Waits up to `wait` for the lock, without blocking the runtime.
    pub async fn acquire(state_file: &Path, wait: Duration) -> Result<Self> {
        let started = std::time::Instant::now();
        loop {
            match Self::try_acquire(state_file)? {
                Some(lock) => return Ok(lock),
                None if started.elapsed() < wait => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => {
                    // The holder wrote its pid into the lock file when it took it.
                    let holder = std::fs::read_to_string(with_suffix(state_file, ".lock"))
                        .ok()
                        .and_then(|t| t.trim().parse::<u32>().ok())
                        .map(|pid| format!(" (pid {pid})"))
                        .unwrap_or_default();
                    return Err(Error::usage_hint(
                        format!(
                            "another aiven-ephemeral process{holder} is using {}",
                            state_file.display()
                        ),
                        "wait for it to finish, or give this run its own --state-file",
                    ));
                }
            }
        }
    }

    /// The lock if no other process holds it.
    pub fn try_acquire(state_file: &Path) -> Result<Option<Self>> {
        let dir = state_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        prepare_dir(dir)?;
        let path = with_suffix(state_file, ".lock");
        let file = private(OpenOptions::new().create(true).truncate(false).write(true))
            .open(&path)
            .map_err(|e| Error::io(format!("cannot open lock {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the error of a command that waited in vain.
                let mut file = file;
                let _ = file
                    .set_len(0)
                    .and_then(|()| write!(file, "{}", std::process::id()));
                Ok(Some(Self { _file: file }))
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::io(format!("cannot lock {}", path.display()), e))
            }
        }
    }
}

/// `<state file><suffix>`: the files that belong to one state file.
fn with_suffix(state_file: &Path, suffix: &str) -> PathBuf {
    let mut path = state_file.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

/// A new expiry for a run, from `extend`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extension {
    pub run_id: String,
    pub expires_at: String,
    pub ttl_secs: u64,
}

/// Records an extension: in the state file when no process holds the run, else in
/// `<state file>.extend`, which the holder (a live `run`) applies at its next write;
/// only a lock holder writes the state file. `false`: handed to the holder.
pub fn record_extension(state_file: &Path, extension: &Extension) -> Result<bool> {
    let Some(_lock) = StateLock::try_acquire(state_file)? else {
        let path = with_suffix(state_file, ".extend");
        let json = serde_json::to_vec_pretty(extension).expect("an extension serialises");
        write_private(&path, &json)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        return Ok(false);
    };
    if let Some(state) = read(state_file)?.filter(|s| s.live() && s.run_id == extension.run_id) {
        Store::new(state_file.to_path_buf(), state)?.update(|s| extend(s, extension))?;
    }
    Ok(true)
}

fn extend(state: &mut State, extension: &Extension) {
    if state.run_id == extension.run_id {
        state.expires_at = Some(extension.expires_at.clone());
        state.extended_ttl_secs = Some(extension.ttl_secs);
    }
}

/// ` --state-file X` when X is not the default: for commands printed to the user.
pub fn state_flag(path: &Path) -> String {
    if path == default_state_file() {
        String::new()
    } else {
        format!(" --state-file {}", path.display())
    }
}

/// The live state of a run, saved on every change. Cheap to clone; tasks share it.
#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    state: Arc<Mutex<State>>,
    /// Held while the file is written: one write at a time, never under `state`, so a
    /// reader (teardown's snapshot) never waits for the disk.
    writing: Arc<Mutex<()>>,
}

impl Store {
    pub fn new(path: PathBuf, state: State) -> Result<Self> {
        let store = Self {
            path,
            state: Arc::new(Mutex::new(state)),
            writing: Arc::new(Mutex::new(())),
        };
        store.save()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> State {
        self.state().clone()
    }

    /// Changes the state and saves it before returning, with any extension `extend`
    /// handed over meanwhile. The write (an fsync, a rename) leaves the runtime's
    /// worker to the other tasks while it lasts: a slow disk must not hold back a
    /// signal's teardown.
    pub fn update<R>(&self, change: impl FnOnce(&mut State) -> R) -> Result<R> {
        let out = change(&mut self.state());
        off_runtime(|| self.write())?;
        Ok(out)
    }

    /// Writes the state as it is when the write starts: of two updates, whichever
    /// writes last writes both.
    fn write(&self) -> Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        // Claimed by a rename: an `extend` that comes meanwhile leaves a new one.
        let handed = with_suffix(&self.path, ".extend");
        let taken = with_suffix(&self.path, &format!(".extend.{}", std::process::id()));
        if std::fs::rename(&handed, &taken).is_ok() {
            let extension = std::fs::read(&taken)
                .ok()
                .and_then(|b| serde_json::from_slice::<Extension>(&b).ok());
            if let Some(extension) = &extension {
                extend(&mut self.state(), extension);
            }
            let _ = std::fs::remove_file(&taken);
        }
        let json = serde_json::to_vec_pretty(&*self.state()).expect("state serialises");
        write_private(&self.path, &json).map_err(|e| {
            Error::io(
                format!("cannot write state file {}", self.path.display()),
                e,
            )
        })
    }

    /// Applies an extension `extend` handed over, if there is one.
    pub fn take_extension(&self) -> Result<()> {
        if with_suffix(&self.path, ".extend").exists() {
            self.save()?;
        }
        Ok(())
    }

    /// [`Store::update`] for a record the command can go on without: a failed write is
    /// said, naming the file and what the record no longer tells (`lost`).
    pub fn update_or_warn(&self, lost: &str, change: impl FnOnce(&mut State)) {
        if let Err(e) = self.update(change) {
            tracing::warn!("{e}; {lost}");
        }
    }

    pub fn save(&self) -> Result<()> {
        self.update(|_| ())
    }

    pub fn set_service(&self, name: &str, status: ServiceStatus) -> Result<()> {
        self.update(|s| {
            if let Some(r) = s.record(name) {
                r.status = status;
            }
        })
    }

    pub fn set_status(&self, status: RunStatus) -> Result<()> {
        self.update(|s| s.status = status)
    }
}

/// Runs `work`, which may block on the disk, without holding a worker of the runtime:
/// on the multi-threaded runtime the worker's other tasks move to another thread
/// meanwhile (the runtime has two workers).
pub(crate) fn off_runtime<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
