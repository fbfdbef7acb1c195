//! A faithful local imitation of the part of the Aiven API v1 that `aiven-ephemeral` uses.
//!
//! It serves the real paths, envelopes and error shapes (checked against the official
//! OpenAPI description and the official `avn` CLI), moves services from `REBUILDING` to
//! `RUNNING` on a schedule, listens on real local ports for them, and injects faults on
//! request. See `docs/sandbox.md` for the configuration reference.

mod admin;
mod backends;
pub mod catalogue;
mod clock;
pub mod config;
mod durations;
mod endpoints;
mod error;
pub mod faults;
mod layers;
mod pki;
mod ports;
mod procs;
mod render;
mod routes;
mod rules;
mod server;
mod world;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{BackendMode, Config, ConfigError, ProjectConfig, VpcConfig};
pub use faults::{Fault, FaultRule, ServiceFault};
pub use layers::log::LoggedRequest;
pub use routes::api_paths;

use backends::Backends;
use endpoints::Endpoints;
use faults::FaultBook;
use layers::log::RequestLog;
use world::{Persisted, World};

/// How often time-driven transitions are applied.
const TICK: Duration = Duration::from_millis(50);

pub(crate) struct Shared {
    world: Mutex<World>,
    faults: Arc<Mutex<FaultBook>>,
    log: RequestLog,
    endpoints: Mutex<Endpoints>,
    backends: Backends,
}

/// Locks a mutex, recovering from poisoning: a panicked handler must not take the
/// whole sandbox down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn persist(&self) {
        let world = lock(&self.world);
        if let Some(path) = &world.config.state_file {
            let snapshot = world.snapshot();
            if let Err(e) = write_atomic(path, &snapshot) {
                tracing::warn!("sandbox: cannot save state to {}: {e}", path.display());
            }
        }
    }

    /// Applies due transitions: starts endpoints of services whose time has come, stops
    /// those of services that powered off.
    fn tick(self: &Arc<Self>) {
        let (due, stopped) = {
            let mut world = lock(&self.world);
            (world.due_to_start(), world.advance())
        };
        for (project, name) in &stopped {
            lock(&self.endpoints).park(project, name);
        }
        if !stopped.is_empty() {
            self.persist();
        }
        for (project, svc) in due {
            let shared = self.clone();
            tokio::spawn(async move { shared.bring_up(&project, svc).await });
        }
    }

    async fn bring_up(self: &Arc<Self>, project: &str, svc: world::Service) {
        let pki = lock(&self.world).pki.clone();
        // A rebuilt service switches over: the old nodes, which served while the new
        // ones were built, stop, and their data moves to the new ones.
        let parked = {
            let mut endpoints = lock(&self.endpoints);
            endpoints.park(project, &svc.name);
            endpoints.take_parked(project, &svc.name)
        };
        match endpoints::start(&svc, &pki, &self.backends, parked).await {
            Ok(started) => {
                let (running, deleted) = {
                    let mut world = lock(&self.world);
                    world.mark_running(project, &svc.name, &started.ports);
                    if let Some(note) = self.backends.version_note(&svc) {
                        world.set_notice(project, &svc.name, note);
                    }
                    match world.service(project, &svc.name) {
                        Ok(s) => (
                            s.state == world::ServiceState::Running && s.deleted_at.is_none(),
                            s.deleted_at.is_some(),
                        ),
                        Err(_) => (false, true),
                    }
                };
                // Deleted or powered off while starting: nothing may stay listening.
                let mut endpoints = lock(&self.endpoints);
                endpoints.insert(project, &svc.name, started);
                if deleted {
                    endpoints.stop(project, &svc.name);
                } else if !running {
                    endpoints.park(project, &svc.name);
                }
                drop(endpoints);
                self.persist();
            }
            Err(e) => {
                tracing::error!("sandbox: cannot start {}: {e}", svc.name);
                lock(&self.world).mark_failed(project, &svc.name, &e);
                self.persist();
            }
        }
    }
}

fn write_atomic(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    use std::io::Write;
    // The world holds every service's passwords and keys: the owner's only.
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        procs::private_dir(dir, true)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    // A temporary file left by an earlier process of this pid kept its own mode.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(&serde_json::to_vec_pretty(value)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("sandbox config: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read sandbox state {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("cannot create the sandbox's certificates: {0}")]
    Pki(String),
}

/// A running sandbox. Stop it with [`Sandbox::shutdown`]; dropping it stops the server
/// tasks but not real backend servers.
pub struct Sandbox {
    url: String,
    token: String,
    ca_pem: String,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Sandbox {
    /// Starts the sandbox on `addr` (use port 0 for any free port), resuming the world in
    /// `config.state_file` if it exists.
    pub async fn start(config: Config, addr: SocketAddr) -> Result<Self, StartError> {
        config.validate().map_err(StartError::Config)?;
        let backends = Backends::detect(config.backends).map_err(StartError::Config)?;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let persisted = match &config.state_file {
            Some(path) if path.exists() => Some(load_state(path)?),
            _ => None,
        };
        let (pki, mut projects, advanced) = match persisted {
            Some(p) => (p.pki, p.projects, p.clock_advanced),
            None => (
                pki::Pki::generate().map_err(|e| StartError::Pki(e.to_string()))?,
                Default::default(),
                Duration::ZERO,
            ),
        };
        let clock = clock::Clock::new(config.clock_offset_secs, advanced);
        let now = clock.now();
        for p in &config.projects {
            projects
                .entry(p.name.clone())
                .or_insert_with(|| world::new_project(p, &mut rng, now));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let token = config.token.clone();
        let tls = config
            .tls
            .then(|| pki.server_config(false))
            .transpose()
            .map_err(StartError::Pki)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let host = if local.ip().is_loopback() {
            format!("localhost:{}", local.port())
        } else {
            local.to_string()
        };
        let ca_pem = pki.ca_cert_pem.clone();
        let shared = Arc::new(Shared {
            faults: Arc::new(Mutex::new(FaultBook::new(
                config.faults.clone(),
                config.seed,
            ))),
            world: Mutex::new(World {
                config,
                clock,
                pki,
                projects,
                rng,
            }),
            log: RequestLog::default(),
            endpoints: Mutex::new(Endpoints::default()),
            backends,
        });
        let cancel = CancellationToken::new();
        let router = routes::router(shared.clone());
        let mut tasks = vec![tokio::spawn(server::serve(
            listener,
            router,
            tls,
            cancel.clone(),
        ))];
        let ticker = shared.clone();
        let stop = cancel.clone();
        tasks.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = interval.tick() => ticker.tick(),
                }
            }
        }));
        resume_endpoints(&shared);
        Ok(Self {
            url: if scheme == "https" {
                format!("https://{host}")
            } else {
                format!("http://{local}")
            },
            token,
            ca_pem,
            shared,
            cancel,
            tasks,
        })
    }

    /// Base URL without `/v1`, as `avn --url` and `--api-url` take it.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The project CA (PEM): it signs every certificate the sandbox serves.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// What serves the services' ports (real servers or simulated listeners).
    pub fn backend_description(&self) -> String {
        self.shared.backends.describe()
    }

    /// Stops serving, stops every service endpoint and real server, saves the state.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in &self.tasks {
            t.abort();
        }
        lock(&self.shared.endpoints).stop_all();
        self.shared.persist();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.cancel.cancel();
        lock(&self.shared.endpoints).stop_all();
    }
}

fn load_state(path: &Path) -> Result<Persisted, StartError> {
    let text = std::fs::read_to_string(path).map_err(|e| StartError::State {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| StartError::State {
        path: path.to_path_buf(),
        message: format!("{e}; delete the file to start a fresh sandbox"),
    })
}

/// Services that were running when the state was saved listen again.
fn resume_endpoints(shared: &Arc<Shared>) {
    let running: Vec<(String, world::Service)> = {
        let world = lock(&shared.world);
        world
            .projects
            .iter()
            .flat_map(|(p, proj)| {
                proj.services
                    .values()
                    .filter(|s| s.state == world::ServiceState::Running && s.deleted_at.is_none())
                    .map(move |s| (p.clone(), s.clone()))
            })
            .collect()
    };
    for (project, svc) in running {
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Some(s) = lock(&shared.world)
                .projects
                .get_mut(&project)
                .and_then(|p| p.services.get_mut(&svc.name))
            {
                // Its servers start anew: not usable (nor reported RUNNING) until they
                // listen, as after a rebuild.
                s.starting = true;
                s.state = world::ServiceState::Rebuilding;
            }
            shared.bring_up(&project, svc).await;
        });
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_saved_world_is_the_owners_only() {
        let base = std::env::temp_dir().join(format!("world-test-{}", std::process::id()));
        let path = base.join("state").join("sandbox.json");
        std::fs::create_dir_all(&base).unwrap();
        // A stale temporary file of this process, world-readable.
        std::fs::create_dir(path.parent().unwrap()).ok();
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, "{}").unwrap();
        std::fs::set_permissions(&tmp, PermissionsExt::from_mode(0o644)).unwrap();
        super::write_atomic(&path, &serde_json::json!({"secret": 1})).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let file = mode(&path);
        std::fs::remove_dir_all(&base).unwrap();
        super::write_atomic(&path, &serde_json::json!({})).unwrap();
        let (dir, fresh) = (mode(path.parent().unwrap()), mode(&path));
        std::fs::remove_dir_all(&base).unwrap();
        assert_eq!((file, dir, fresh), (0o600, 0o700, 0o600));
    }
}
