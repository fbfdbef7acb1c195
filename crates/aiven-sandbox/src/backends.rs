//! Real servers behind sandbox services, when this machine has them: PostgreSQL for
//! `pg` and Valkey or Redis for `valkey`, set up as Aiven sets them up (see
//! `docs/sandbox.md`, "Real servers as on Aiven"):
//!
//! - PostgreSQL: TLS with a certificate from the project CA, SCRAM password auth over the
//!   network. The superuser is a private `postgres`, reachable only over the private unix
//!   socket (the sandbox's own admin commands); `avnadmin` is `LOGIN CREATEDB CREATEROLE
//!   REPLICATION`, member of `pg_read_all_stats` and `pg_stat_scan_tables`, not a
//!   superuser. `defaultdb` and databases created through the API belong to `avnadmin`;
//!   users created through the API are plain `LOGIN` roles. The `public` schema of
//!   `template1` and `defaultdb` belongs to `postgres`.
//! - Valkey/Redis: TLS, the `default` user with the generated password, users created
//!   through the API with their `access_control` as ACL rules; the commands Aiven
//!   disables (`ACL`, `CONFIG`, ...) are unknown to clients. The sandbox's own admin
//!   commands use a private user, a private name for `ACL` and a private unix socket.
//!
//! A deleted service's server is stopped and its data removed; so are all of them at
//! sandbox shutdown. A powered-off service's server stops; PostgreSQL's data directory is
//! kept for the power-on (as Aiven restores from backup), Valkey's is not.
//!
//! Without the binaries (or with `backends: simulated`) services keep the simulated
//! listeners of `endpoints`, and the sandbox says so once. A server that cannot start
//! is an error with its cause (the service then shows it), never a silent wait.
//!
//! A `pg` service gets the PostgreSQL major version of its `user_config.pg_version`
//! where that version is installed, else the newest installed, with a warning.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::BackendMode;
use crate::error::{ApiError, ApiResult};
use crate::pki::Pki;
use crate::procs;
use crate::world::{Service, User};

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// PostgreSQL's superuser: Aiven keeps it for its own management; here it serves the
/// sandbox's admin commands over the private socket only.
const PG_SUPERUSER: &str = "postgres";

/// The sandbox's own Valkey/Redis user (clients cannot list users: `ACL` is disabled).
const REDIS_ADMIN_USER: &str = "aiven-sandbox-internal";

/// Commands Aiven for Valkey disables (aiven-docs, products/valkey/reference/
/// restricted-commands.md). `ACL` gets a private name for the sandbox's own use.
const REDIS_DISABLED: &[&str] = &[
    "BGREWRITEAOF",
    "CLUSTER",
    "COMMAND",
    "DEBUG",
    "FAILOVER",
    "MIGRATE",
    "SLAVEOF",
    "BGSAVE",
    "CONFIG",
    "LASTSAVE",
    "MONITOR",
    "REPLICAOF",
    "SAVE",
    "SHUTDOWN",
];

#[derive(Clone)]
struct PgTools {
    major: u32,
    /// `15.18`
    version: String,
    initdb: PathBuf,
    postgres: PathBuf,
    psql: PathBuf,
}

#[derive(Clone)]
struct RedisTools {
    server: PathBuf,
    cli: PathBuf,
}

/// Which real servers this machine can run, decided once at start.
pub struct Backends {
    /// Installed PostgreSQL versions, oldest first.
    pg: Vec<PgTools>,
    redis: Option<RedisTools>,
    /// A Redis/Valkey without TLS support is found out at its first start.
    redis_tls_broken: AtomicBool,
    /// `backends: simulated`: nothing was looked for.
    simulated: bool,
}

/// How to run admin commands against a running server (cheap to clone; used off the
/// lock that guards the endpoints).
#[derive(Clone)]
pub enum Admin {
    Pg {
        psql: PathBuf,
        socket_dir: PathBuf,
        port: u16,
    },
    Redis {
        cli: PathBuf,
        /// The private unix socket: admin commands never go to the TCP port, which a
        /// server that failed to bind it leaves to whoever has it.
        socket: PathBuf,
        /// The private admin user's password.
        password: String,
        /// The private name of `ACL`.
        acl: String,
        /// `access_control`'s field prefix: `valkey` or `redis`.
        prefix: String,
        /// Channels of users whose `access_control` has none: `allchannels` or
        /// `resetchannels` (`user_config.valkey_acl_channels_default`).
        channels_default: String,
    },
}

/// A running real server.
pub struct Backend {
    port: u16,
    admin: Admin,
    child: Mutex<Child>,
    dir: PathBuf,
    /// Keep the data directory when the server stops (a power-off of PostgreSQL).
    keep_data: AtomicBool,
}

/// A stopped server's data directory kept for the next start (PostgreSQL across a
/// power-off), with the thread still stopping the server.
pub struct Parked {
    pub dir: PathBuf,
    pub stopping: Option<std::thread::JoinHandle<()>>,
}

impl Parked {
    /// Waits for the server to be gone and removes the data.
    pub fn discard(self) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            if let Some(h) = self.stopping {
                let _ = h.join();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        })
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Installed PostgreSQL servers, one per major version: Debian's
/// `/usr/lib/postgresql/N/bin`, and the directory of an `initdb` on PATH (which wins for
/// its version).
fn detect_pg() -> Vec<PgTools> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.extend(which("initdb").and_then(|p| p.parent().map(Path::to_path_buf)));
    let mut found = BTreeMap::new();
    for dir in dirs {
        let (initdb, postgres) = (dir.join("initdb"), dir.join("postgres"));
        let psql = Some(dir.join("psql"))
            .filter(|p| p.is_file())
            .or_else(|| which("psql"));
        let (true, true, Some(psql)) = (initdb.is_file(), postgres.is_file(), psql) else {
            continue;
        };
        // `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`
        let Some(version) = output(Command::new(&postgres).arg("--version"))
            .ok()
            .and_then(|v| v.split_whitespace().nth(2).map(str::to_string))
        else {
            continue;
        };
        let Some(major) = version.split('.').next().and_then(|m| m.parse().ok()) else {
            continue;
        };
        found.insert(
            major,
            PgTools {
                major,
                version,
                initdb,
                postgres,
                psql,
            },
        );
    }
    found.into_values().collect()
}

fn output(cmd: &mut Command) -> Result<String, String> {
    fed(cmd, "")?.into_result()
}

/// What a finished command said, trimmed.
struct Said {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Said {
    fn into_result(self) -> Result<String, String> {
        if self.success {
            Ok(self.stdout)
        } else {
            Err(self.both())
        }
    }

    /// Each line once (redis-cli says a failed connection again for the command).
    fn both(&self) -> String {
        let mut lines: Vec<&str> = Vec::new();
        for line in self.stderr.lines().chain(self.stdout.lines()) {
            if !line.is_empty() && !lines.contains(&line) {
                lines.push(line);
            }
        }
        lines.join("; ")
    }
}

/// Runs `cmd` with `input` on its stdin: what it carries (passwords, the private ACL
/// name) stays off command lines, which every local user can read.
fn fed(cmd: &mut Command, input: &str) -> Result<Said, String> {
    let mut child = procs::die_with_parent(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().expect("piped");
    // A command that exits early closes its stdin; its output says why.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    Ok(Said {
        success: out.status.success(),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
    })
}

impl Backends {
    pub fn detect(mode: BackendMode) -> Result<Self, String> {
        let (pg, redis) = if mode == BackendMode::Simulated {
            (Vec::new(), None)
        } else {
            let redis = match (
                which("valkey-server").or_else(|| which("redis-server")),
                which("valkey-cli").or_else(|| which("redis-cli")),
            ) {
                (Some(server), Some(cli)) => Some(RedisTools { server, cli }),
                _ => None,
            };
            (detect_pg(), redis)
        };
        if mode == BackendMode::Required && (pg.is_empty() || redis.is_none()) {
            return Err(
                "`backends: required`, but PostgreSQL (initdb, postgres, psql) or Valkey/Redis (server and cli) is missing"
                    .into(),
            );
        }
        if !pg.is_empty() || redis.is_some() {
            procs::remove_stale(&data_bases());
        }
        Ok(Self {
            pg,
            redis,
            redis_tls_broken: AtomicBool::new(false),
            simulated: mode == BackendMode::Simulated,
        })
    }

    /// One line saying what serves the services' ports.
    pub fn describe(&self) -> String {
        if self.simulated {
            return "every type: simulated TCP/TLS listeners (`backends: simulated`)".into();
        }
        let pg = if self.pg.is_empty() {
            "pg: simulated (no PostgreSQL server binaries found)".to_string()
        } else {
            let versions: Vec<&str> = self.pg.iter().map(|t| t.version.as_str()).collect();
            format!("pg: real PostgreSQL {}", versions.join(", "))
        };
        let valkey = match &self.redis {
            Some(t) if !self.redis_tls_broken.load(Ordering::Relaxed) => format!(
                "valkey: real {}",
                t.server
                    .file_name()
                    .and_then(|f| f.to_str())
                    .unwrap_or("server")
            ),
            _ => "valkey: simulated (no valkey-server or redis-server with TLS found)".into(),
        };
        format!("{pg}; {valkey}; other types: simulated TCP/TLS listeners")
    }

    /// Starts a real server for the service's primary port, if this type has one here;
    /// PostgreSQL on `parked` data (a power-on) where there is some.
    pub async fn start(
        &self,
        service: &Service,
        port: u16,
        pki: &Pki,
        parked: Option<Parked>,
    ) -> Result<Option<Backend>, String> {
        let Some(tools) = self.tools(service)? else {
            if let Some(p) = parked {
                drop(p.discard());
            }
            return Ok(None);
        };
        let svc = service.clone();
        let pki = pki.clone();
        let is_redis = matches!(tools, Tools::Redis(_));
        let started = tokio::task::spawn_blocking(move || {
            // Only PostgreSQL's data survives a power-off (restored from backup).
            let restored = match parked {
                Some(p) if !is_redis => {
                    if let Some(h) = p.stopping {
                        let _ = h.join();
                    }
                    Some(p.dir)
                }
                Some(p) => {
                    let _ = p.discard().join();
                    None
                }
                None => None,
            };
            launch(&tools, &svc, usable_port(port), &pki, restored)
        })
        .await
        .map_err(|e| e.to_string())?;
        match started {
            Ok(b) => Ok(Some(b)),
            Err(e) if is_redis && e.contains(NO_TLS) => {
                self.redis_tls_broken.store(true, Ordering::Relaxed);
                tracing::warn!("sandbox: {e}; valkey services fall back to simulated endpoints");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The real server for this service's type, if this machine has one.
    fn tools(&self, service: &Service) -> Result<Option<Tools>, String> {
        Ok(match service.service_type.as_str() {
            "pg" if !self.pg.is_empty() => {
                Some(Tools::Pg(self.pg_for(service).clone(), pg_owner()?))
            }
            "valkey" | "redis"
                if !self.redis_tls_broken.load(Ordering::Relaxed) && self.redis.is_some() =>
            {
                self.redis.clone().map(Tools::Redis)
            }
            _ => None,
        })
    }
}

/// How often a server is started on a new port when its own was taken before it bound
/// it: ports are picked by binding and releasing them, so between the sandbox's check
/// and the server's bind (an `initdb` later) another process may be given the same one.
const PORT_ATTEMPTS: u32 = 3;

/// Starts the server on `port`, or on a fresh port if someone else takes that one first;
/// in `restored` data (a power-on) or in a new data directory.
fn launch(
    tools: &Tools,
    svc: &Service,
    mut port: u16,
    pki: &Pki,
    mut restored: Option<PathBuf>,
) -> Result<Backend, String> {
    let owner = match tools {
        Tools::Pg(_, owner) => *owner,
        Tools::Redis(_) => None,
    };
    let mut attempt = 1;
    loop {
        let fresh = restored.is_none();
        let dir = match restored.take() {
            Some(dir) => dir,
            None => new_data_dir(owner)?,
        };
        let result = match tools {
            Tools::Pg(t, owner) => start_pg(t, *owner, svc, port, pki, &dir, fresh),
            Tools::Redis(t) => start_redis(t, svc, port, pki, &dir),
        };
        match result {
            Err(e) if port_taken(&e) && attempt < PORT_ATTEMPTS => {
                tracing::debug!("sandbox: {}: port {port} was taken, moving: {e}", svc.name);
                if fresh {
                    let _ = std::fs::remove_dir_all(&dir);
                } else {
                    restored = Some(dir);
                }
                port = crate::ports::free_port();
                attempt += 1;
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
            Ok(backend) => return Ok(backend),
        }
    }
}

/// A new private data directory where the server's user can reach it.
fn new_data_dir(owner: Option<(u32, u32)>) -> Result<PathBuf, String> {
    let base = data_bases()
        .into_iter()
        .find(|b| reachable(b, owner))
        .ok_or("no temporary directory the server's user can reach (set TMPDIR)")?;
    procs::new_dir(&base)
        .map_err(|e| format!("cannot create a data directory in {}: {e}", base.display()))
}

/// What a Redis server built without TLS is said to lack: the sandbox then simulates Valkey.
const NO_TLS: &str = "has no TLS support";

/// How such a server fails: older builds reject the config's `tls-port` line, Valkey and
/// Redis 7.2+ find no TLS connection type. (A TLS-capable server also logs "TLS" when it
/// fails otherwise, e.g. on a taken port or a bad certificate: that is no reason.)
const NO_TLS_SAID: [&str; 2] = [">>> 'tls-port", "Failed finding TLS support"];

/// Whether a server failed because another process had its port (as both servers log it).
fn port_taken(error: &str) -> bool {
    error.contains("Address already in use")
}

impl Backends {
    /// The requested major version where installed, else the newest (with a warning).
    fn pg_for(&self, service: &Service) -> &PgTools {
        let newest = self.pg.last().expect("checked");
        let Some(wanted) = wanted_pg(service) else {
            return newest;
        };
        match self.pg.iter().find(|t| t.major.to_string() == wanted) {
            Some(t) => t,
            None => {
                tracing::warn!(
                    "sandbox: {}: {}",
                    service.name,
                    self.version_note(service).unwrap_or_default()
                );
                newest
            }
        }
    }

    /// What a user must know about the server behind `service`: a PostgreSQL version
    /// other than the one asked for.
    pub fn version_note(&self, service: &Service) -> Option<String> {
        let newest = self.pg.last()?;
        let wanted = wanted_pg(service).filter(|_| service.service_type == "pg")?;
        if self.pg.iter().any(|t| t.major.to_string() == wanted) {
            return None;
        }
        Some(format!(
            "PostgreSQL {wanted} is asked for but not installed where the sandbox runs (/usr/lib/postgresql/{wanted}/bin); this service runs PostgreSQL {}",
            newest.version
        ))
    }
}

/// The major version in `user_config.pg_version`.
fn wanted_pg(service: &Service) -> Option<String> {
    service.user_config.get("pg_version").map(|v| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

enum Tools {
    /// With the user PostgreSQL runs as, when not this process's.
    Pg(PgTools, Option<(u32, u32)>),
    Redis(RedisTools),
}

/// Where data directories may go, in order of preference: the temporary directory, then
/// `/tmp` (a `TMPDIR` inside a private directory is out of reach of the `postgres` user).
fn data_bases() -> Vec<PathBuf> {
    let mut bases = vec![std::env::temp_dir()];
    #[cfg(unix)]
    bases.push(PathBuf::from("/tmp"));
    bases.dedup();
    bases
}

fn reachable(base: &Path, owner: Option<(u32, u32)>) -> bool {
    match owner {
        #[cfg(unix)]
        Some((uid, gid)) => procs::reachable_by(base, uid, gid),
        _ => base.is_dir(),
    }
}

/// The port if nobody listens on it, else a free one: a server left on the old port
/// must never answer for this service.
fn usable_port(port: u16) -> u16 {
    let free = |p: u16| {
        std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && (!has_ipv6_loopback() || std::net::TcpListener::bind(("::1", p)).is_ok())
    };
    if port != 0 && free(port) {
        port
    } else {
        crate::ports::free_port()
    }
}

/// PostgreSQL refuses to run as root; as root, its files and process belong to the
/// `postgres` user (present wherever the server package is installed).
#[cfg(unix)]
fn pg_owner() -> Result<Option<(u32, u32)>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")
        .map_err(|e| e.to_string())?
        .ok_or("running as root, and there is no `postgres` user to run PostgreSQL as")?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

#[cfg(not(unix))]
fn pg_owner() -> Result<Option<(u32, u32)>, String> {
    Ok(None)
}

/// Hands a path to the user the server runs as.
fn give_to(path: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    #[cfg(unix)]
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = (path, owner);
    Ok(())
}

fn write_file(path: &Path, contents: &str, owner: Option<(u32, u32)>) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Write::write_all(&mut f, contents.as_bytes()).map_err(|e| e.to_string())?;
    give_to(path, owner)
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    #[cfg(unix)]
    if let Some((uid, gid)) = owner {
        std::os::unix::process::CommandExt::uid(cmd, uid);
        std::os::unix::process::CommandExt::gid(cmd, gid);
    }
    #[cfg(not(unix))]
    let _ = owner;
    cmd
}

fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

fn start_pg(
    t: &PgTools,
    owner: Option<(u32, u32)>,
    svc: &Service,
    port: u16,
    pki: &Pki,
    dir: &Path,
    fresh: bool,
) -> Result<Backend, String> {
    let admin = svc.admin().ok_or("service has no admin user")?;
    give_to(dir, owner)?;
    // The private socket lives here: nobody else may reach it.
    #[cfg(unix)]
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let data = dir.join("data");
    if fresh {
        output(
            as_owner(&mut Command::new(&t.initdb), owner)
                .arg("-D")
                .arg(&data)
                .args(["-U", PG_SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-sync"])
                .env("LC_ALL", "C"),
        )
        .map_err(|e| format!("initdb: {e}"))?;
        let conf_path = data.join("postgresql.conf");
        let mut current = std::fs::read_to_string(&conf_path).map_err(|e| e.to_string())?;
        current.push_str("\n# aiven-sandbox\ninclude 'sandbox.conf'\n");
        std::fs::write(&conf_path, current).map_err(|e| e.to_string())?;
    }
    write_file(&dir.join("server.crt"), &pki.server_cert_pem, owner)?;
    write_file(&dir.join("server.key"), pki.server_key_pem(), owner)?;
    let listen = if has_ipv6_loopback() {
        "127.0.0.1,::1"
    } else {
        "127.0.0.1"
    };
    // Rewritten at every start: a power-on may move the port.
    let conf = format!(
        "listen_addresses = '{listen}'\nport = {port}\nunix_socket_directories = '{dir}'\n\
         ssl = on\nssl_cert_file = '{dir}/server.crt'\nssl_key_file = '{dir}/server.key'\n\
         fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 40\n\
         shared_buffers = 16MB\nlogging_collector = off\npassword_encryption = 'scram-sha-256'\n",
        dir = dir.display()
    );
    write_file(&data.join("sandbox.conf"), &conf, owner)?;
    // Over the network only TLS with a password, as on Aiven; the private socket
    // serves the superuser, for the sandbox's own admin commands.
    let hba = format!(
        "local all {PG_SUPERUSER} trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n"
    );
    write_file(&data.join("pg_hba.conf"), &hba, owner)?;
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    give_to(&dir.join("server.log"), owner)?;
    let mut cmd = Command::new(&t.postgres);
    as_owner(&mut cmd, owner)
        .arg("-D")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    let child = procs::spawn_server(cmd).map_err(|e| format!("cannot start postgres: {e}"))?;
    let backend = Backend {
        port,
        admin: Admin::Pg {
            psql: t.psql.clone(),
            socket_dir: dir.to_path_buf(),
            port,
        },
        child: Mutex::new(child),
        dir: dir.to_path_buf(),
        // Restored data outlives a start that fails: the next port may do.
        keep_data: AtomicBool::new(!fresh),
    };
    backend.wait_ready()?;
    backend.keep_data.store(false, Ordering::SeqCst);
    if fresh {
        backend.admin.bootstrap_pg(admin)?;
    }
    // What the API says exists (after a power-on too: passwords may have been reset).
    backend.admin.apply_user(admin)?;
    let mut databases = vec!["defaultdb".to_string()];
    databases.extend(svc.databases.iter().filter(|d| *d != "defaultdb").cloned());
    for db in databases {
        backend.admin.create_database(&db)?;
    }
    for user in svc.users.iter().filter(|u| u.r#type != "primary") {
        backend.admin.apply_user(user)?;
    }
    Ok(backend)
}

/// A value in double quotes, for a config file or a `redis-cli` line (both split words
/// the same way, reading `\\`, `\"`, `\n` and `\r` in quotes).
fn redis_quote(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .replace('\r', "\\r");
    format!("\"{escaped}\"")
}

fn start_redis(
    t: &RedisTools,
    svc: &Service,
    port: u16,
    pki: &Pki,
    dir: &Path,
) -> Result<Backend, String> {
    let admin = svc.admin().ok_or("service has no admin user")?;
    let (cert, key, ca) = (
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("ca.crt"),
    );
    write_file(&cert, &pki.server_cert_pem, None)?;
    write_file(&key, pki.server_key_pem(), None)?;
    write_file(&ca, &pki.ca_cert_pem, None)?;
    let secret = || {
        format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        )
    };
    let (admin_password, acl) = (secret(), format!("ACL-{}", secret()));
    let socket = dir.join("redis.sock");
    let mut conf = format!(
        "port 0\ntls-port {port}\nbind 127.0.0.1 -::1\nunixsocket {}\nunixsocketperm 700\n\
         tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\n\
         save \"\"\nappendonly no\nprotected-mode no\ndaemonize no\ndir {}\n\
         user default on {} ~* &* +@all\n\
         user {REDIS_ADMIN_USER} on {} ~* &* +@all\n\
         rename-command ACL {acl}\n",
        redis_quote(&socket.to_string_lossy()),
        redis_quote(&cert.to_string_lossy()),
        redis_quote(&key.to_string_lossy()),
        redis_quote(&ca.to_string_lossy()),
        redis_quote(&dir.to_string_lossy()),
        redis_quote(&format!(">{}", admin.password)),
        redis_quote(&format!(">{admin_password}")),
    );
    for command in REDIS_DISABLED {
        conf.push_str(&format!("rename-command {command} \"\"\n"));
    }
    let conf_path = dir.join("server.conf");
    write_file(&conf_path, &conf, None)?;
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&t.server);
    cmd.arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    let child = procs::spawn_server(cmd)
        .map_err(|e| format!("cannot start {}: {e}", t.server.display()))?;
    let channels_default = svc
        .user_config
        .get(format!("{}_acl_channels_default", svc.service_type))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("allchannels")
        .to_string();
    let backend = Backend {
        port,
        admin: Admin::Redis {
            cli: t.cli.clone(),
            socket,
            password: admin_password,
            acl,
            prefix: svc.service_type.clone(),
            channels_default,
        },
        child: Mutex::new(child),
        dir: dir.to_path_buf(),
        keep_data: AtomicBool::new(false),
    };
    if let Err(e) = backend.wait_ready() {
        // The error ends with the log's tail (the directory is gone by now).
        if NO_TLS_SAID.iter().any(|said| e.contains(said)) {
            return Err(format!("{} {NO_TLS}: {e}", t.server.display()));
        }
        return Err(e);
    }
    // Users and their ACLs are restored (after a power-on too), the data is not.
    for user in svc.users.iter().filter(|u| u.r#type != "primary") {
        backend.admin.apply_user(user)?;
    }
    Ok(backend)
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The ACL rules of a Valkey/Redis user from its `access_control` (fields
/// `<prefix>_acl_keys|channels|categories|commands`): none of them means full access, as
/// a user created without `access_control`. Keys are globs without `~`, channels globs
/// without `&` (absent: `channels_default`), categories `+@x`/`-@x`, commands
/// `+cmd`/`-cmd`; categories apply before commands, each in the order given.
pub fn redis_acl_rules(prefix: &str, user: &User, channels_default: &str) -> Vec<String> {
    let field = |name: &str| -> Option<Vec<String>> {
        user.access_control
            .as_ref()?
            .get(format!("{prefix}_acl_{name}"))?
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
    };
    let mut rules = vec![
        "reset".to_string(),
        "on".to_string(),
        format!(">{}", user.password),
    ];
    let (keys, channels, categories, commands) = (
        field("keys"),
        field("channels"),
        field("categories"),
        field("commands"),
    );
    if user.r#type == "primary"
        || (keys.is_none() && channels.is_none() && categories.is_none() && commands.is_none())
    {
        rules.extend(["~*", "&*", "+@all"].map(str::to_string));
        return rules;
    }
    rules.extend(keys.unwrap_or_default().iter().map(|k| format!("~{k}")));
    match channels {
        Some(channels) => {
            rules.push("resetchannels".into());
            rules.extend(channels.iter().map(|c| format!("&{c}")));
        }
        None => rules.push(
            if channels_default == "resetchannels" {
                "resetchannels"
            } else {
                "allchannels"
            }
            .into(),
        ),
    }
    rules.extend(categories.unwrap_or_default());
    rules.extend(commands.unwrap_or_default());
    rules
}

impl Admin {
    fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_in("postgres", sql)
    }

    /// One statement as the superuser, over the private socket, in `database`.
    fn psql_in(&self, database: &str, sql: &str) -> Result<String, String> {
        match self {
            Admin::Pg {
                psql,
                socket_dir,
                port,
            } => fed(
                Command::new(psql)
                    .args([
                        "-X",
                        "-q",
                        "-t",
                        "-A",
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-d",
                        database,
                    ])
                    .arg("-h")
                    .arg(socket_dir)
                    .args(["-p", &port.to_string(), "-U", PG_SUPERUSER, "-f", "-"])
                    .env("PGCONNECT_TIMEOUT", "3"),
                sql,
            )
            .and_then(Said::into_result),
            Admin::Redis { .. } => Err("not a PostgreSQL server".into()),
        }
    }

    fn redis(&self, args: &[&str]) -> Result<String, String> {
        match self {
            Admin::Redis {
                cli,
                socket,
                password,
                ..
            } => {
                // The password in the environment and the command on stdin, not on a
                // command line others can read.
                let line: Vec<String> = args.iter().map(|a| redis_quote(a)).collect();
                let said = fed(
                    Command::new(cli)
                        .arg("-s")
                        .arg(socket)
                        // Replies as they are, also where FAKETTY asks for a terminal's.
                        .args(["--raw", "--user", REDIS_ADMIN_USER])
                        .env("REDISCLI_AUTH", password)
                        .env_remove("VALKEYCLI_AUTH"),
                    &(line.join(" ") + "\n"),
                )?;
                // Reading its stdin, redis-cli exits 0 also when it cannot connect (said
                // on stderr) or parse the line; every command sent here answers something.
                let out = &said.stdout;
                if !said.success
                    || out.is_empty()
                    || out == "Invalid argument(s)"
                    || ["ERR", "NOAUTH", "WRONGPASS", "NOPERM"]
                        .iter()
                        .any(|p| out.starts_with(p))
                {
                    Err(said.both())
                } else {
                    Ok(said.stdout)
                }
            }
            Admin::Pg { .. } => Err("not a Redis server".into()),
        }
    }

    /// `ACL <args>` under its private name.
    fn redis_acl(&self, args: &[&str]) -> Result<String, String> {
        let Admin::Redis { acl, .. } = self else {
            return Err("not a Redis server".into());
        };
        let mut all = vec![acl.as_str()];
        all.extend_from_slice(args);
        self.redis(&all)
    }

    fn ping(&self) -> Result<(), String> {
        match self {
            Admin::Pg { .. } => self.psql("select 1").map(|_| ()),
            Admin::Redis { .. } => match self.redis(&["PING"])?.as_str() {
                "PONG" => Ok(()),
                other => Err(other.to_string()),
            },
        }
    }

    /// A new cluster as Aiven sets it up: `public` in `template1` (and so in every
    /// database copied from it) belongs to `postgres`, with CREATE for everyone as before
    /// PostgreSQL 15; `avnadmin` is no superuser; `defaultdb` is `avnadmin`'s.
    fn bootstrap_pg(&self, admin: &User) -> Result<(), String> {
        for db in ["template1", "postgres"] {
            self.psql_in(db, &format!("alter schema public owner to {PG_SUPERUSER}"))?;
            self.psql_in(db, "grant usage, create on schema public to public")?;
        }
        self.psql(&format!(
            "create role {} login createdb createrole replication password {}",
            quote_ident(&admin.username),
            quote_literal(&admin.password)
        ))?;
        self.psql(&format!(
            "grant pg_read_all_stats, pg_stat_scan_tables to {}",
            quote_ident(&admin.username)
        ))?;
        Ok(())
    }

    /// Creates a database, owned by the admin user as Aiven's are, unless it exists.
    pub fn create_database(&self, name: &str) -> Result<(), String> {
        match self {
            Admin::Pg { .. } => {
                let exists = self.psql(&format!(
                    "select 1 from pg_database where datname = {}",
                    quote_literal(name)
                ))?;
                if exists.is_empty() {
                    self.psql(&format!(
                        "create database {} owner avnadmin",
                        quote_ident(name)
                    ))?;
                }
                Ok(())
            }
            Admin::Redis { .. } => Ok(()),
        }
    }

    pub fn delete_database(&self, name: &str) -> Result<(), String> {
        match self {
            Admin::Pg { .. } => self
                .psql(&format!(
                    "drop database if exists {} with (force)",
                    quote_ident(name)
                ))
                .map(|_| ()),
            Admin::Redis { .. } => Ok(()),
        }
    }

    /// Creates the user, or brings an existing one up to date (password, ACL). An API
    /// user of PostgreSQL is a plain LOGIN role (REPLICATION if
    /// `access_control.pg_allow_replication`), granted nothing.
    pub fn apply_user(&self, user: &User) -> Result<(), String> {
        match self {
            Admin::Pg { .. } => {
                let exists = self.psql(&format!(
                    "select 1 from pg_roles where rolname = {}",
                    quote_literal(&user.username)
                ))?;
                let verb = if exists.is_empty() { "create" } else { "alter" };
                let mut sql = format!(
                    "{verb} role {} login password {}",
                    quote_ident(&user.username),
                    quote_literal(&user.password)
                );
                if user.r#type != "primary" {
                    let replication = user
                        .access_control
                        .as_ref()
                        .and_then(|a| a.get("pg_allow_replication"))
                        .and_then(serde_json::Value::as_bool)
                        .unwrap_or(false);
                    sql.push_str(if replication {
                        " replication"
                    } else {
                        " noreplication"
                    });
                }
                self.psql(&sql).map(|_| ())
            }
            Admin::Redis {
                prefix,
                channels_default,
                ..
            } => {
                let rules = redis_acl_rules(prefix, user, channels_default);
                let mut args = vec!["SETUSER", user.username.as_str()];
                args.extend(rules.iter().map(String::as_str));
                match self.redis_acl(&args)? {
                    ok if ok == "OK" => Ok(()),
                    other => Err(other),
                }
            }
        }
    }

    pub fn delete_user(&self, username: &str) -> Result<(), String> {
        match self {
            Admin::Pg { .. } => self
                .psql(&format!("drop role if exists {}", quote_ident(username)))
                .map(|_| ()),
            Admin::Redis { .. } => match self.redis_acl(&["DELUSER", username])? {
                // How many users went.
                n if n.parse::<u32>().is_ok() => Ok(()),
                other => Err(other),
            },
        }
    }
}

impl Backend {
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin(&self) -> Admin {
        self.admin.clone()
    }

    fn wait_ready(&self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let last = match self.admin.ping() {
                Ok(()) => return self.check_log(),
                Err(e) => e,
            };
            let exited = self
                .child
                .lock()
                .map(|mut c| c.try_wait().ok().flatten())
                .unwrap_or(None);
            if exited.is_some() || started.elapsed() > START_TIMEOUT {
                self.check_log()?;
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                self.stop_now();
                return Err(format!(
                    "the server did not start ({last}); its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A server that came up without one of its ports (PostgreSQL carries on with the
    /// addresses it could bind) must not be reported ready.
    fn check_log(&self) -> Result<(), String> {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        match log.lines().find(|l| port_taken(l)) {
            Some(line) => {
                self.stop_now();
                Err(format!("port {} is taken: {line}", self.port))
            }
            None => Ok(()),
        }
    }

    /// Stops the server and removes its data, on a thread; join the handle to wait.
    pub fn stop(self) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || drop(self))
    }

    /// Stops the server (on a thread). PostgreSQL's data directory stays for the next
    /// start, as a power-on restores from backup; other servers' data goes.
    pub fn park(self) -> Option<Parked> {
        if !matches!(self.admin, Admin::Pg { .. }) {
            drop(self.stop());
            return None;
        }
        self.keep_data.store(true, Ordering::SeqCst);
        let dir = self.dir.clone();
        Some(Parked {
            dir,
            stopping: Some(self.stop()),
        })
    }

    fn stop_now(&self) {
        if let Ok(mut child) = self.child.lock() {
            // SIGINT is PostgreSQL's fast shutdown; Redis treats it like SIGTERM. Only
            // while unreaped: a reaped child's pid may be another process's by now.
            #[cfg(unix)]
            if matches!(child.try_wait(), Ok(None)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGINT,
                );
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.keep_data.load(Ordering::SeqCst) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Also when a start is abandoned (the sandbox stopping meanwhile).
impl Drop for Backend {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Admin access to the real server behind a service, if it has one.
fn admin_of(shared: &crate::Shared, project: &str, service: &str) -> Option<Admin> {
    crate::lock(&shared.endpoints).admin(project, service)
}

/// Does to the real server behind the service what the API just did (a database made
/// or dropped, a user removed); nothing for a simulated service.
pub(crate) async fn on_server(
    shared: &crate::Shared,
    project: &str,
    service: &str,
    op: impl FnOnce(&Admin) -> Result<(), String> + Send + 'static,
) -> ApiResult<()> {
    let Some(admin) = admin_of(shared, project, service) else {
        return Ok(());
    };
    run_admin(move || op(&admin)).await
}

/// Creates a user created through the API in the real server behind the service, or
/// applies its new password or access control. A rule the server refuses is the
/// client's error (400), as the API validates them.
pub(crate) async fn sync_user(
    shared: &crate::Shared,
    project: &str,
    service: &str,
    user: &User,
) -> ApiResult<()> {
    let Some(admin) = admin_of(shared, project, service) else {
        return Ok(());
    };
    let user = user.clone();
    let is_redis = matches!(admin, Admin::Redis { .. });
    match tokio::task::spawn_blocking(move || admin.apply_user(&user)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if is_redis && e.contains("ACL") => Err(ApiError::new(
            400,
            format!("Invalid access control rules: {e}"),
        )
        .code("bad_request")),
        Ok(Err(e)) => Err(ApiError::new(
            500,
            format!("Internal error in the service: {e}"),
        )),
        Err(e) => Err(ApiError::new(500, e.to_string())),
    }
}

async fn run_admin(f: impl FnOnce() -> Result<(), String> + Send + 'static) -> ApiResult<()> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(500, e.to_string()))?
        .map_err(|e| ApiError::new(500, format!("Internal error in the service: {e}")))
}

#[cfg(all(test, unix))]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// A service as the sandbox's world makes it, with `port` for its endpoints.
    fn service(ty: &str, port: u16, pki: &Pki) -> Service {
        let mut world = crate::world::World {
            config: crate::config::Config {
                accept_any_project: true,
                ..Default::default()
            },
            clock: crate::clock::Clock::new(0, Duration::ZERO),
            pki: pki.clone(),
            projects: BTreeMap::new(),
            rng: rand::rngs::StdRng::seed_from_u64(1),
        };
        let body =
            serde_json::json!({"service_name": "svc", "service_type": ty, "plan": "hobbyist"});
        let name = world
            .create_service("test-project", &body, || port)
            .expect("created");
        world
            .service("test-project", &name)
            .expect("listed")
            .clone()
    }

    /// Ports are picked by binding and releasing them: another process can be given the
    /// same port before the server binds it (this flaked the suite under load). The server
    /// then runs on another port, its data restored where there was some, and Valkey is
    /// not mistaken for a server without TLS.
    #[test]
    fn a_server_whose_port_is_taken_before_it_binds_runs_on_another() {
        let backends = Backends::detect(BackendMode::Required)
            .expect("scripts/run-tests installs PostgreSQL and Redis");
        let pki = Pki::generate().expect("a CA");
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("bound");
        let taken = v4.local_addr().expect("an address").port();
        let _v6 = std::net::TcpListener::bind(("::1", taken));
        for ty in ["pg", "valkey"] {
            let svc = service(ty, taken, &pki);
            let tools = backends.tools(&svc).expect("tools").expect("a real server");
            let backend =
                launch(&tools, &svc, taken, &pki, None).unwrap_or_else(|e| panic!("{ty}: {e}"));
            assert_ne!(backend.port(), taken, "{ty}");
            backend
                .admin()
                .ping()
                .unwrap_or_else(|e| panic!("{ty}: {e}"));
            if ty != "pg" {
                let dir = backend.dir.clone();
                backend.stop().join().expect("stopped");
                assert!(!dir.exists(), "{ty}: its data directory is left");
                continue;
            }
            // A power-on whose port is taken keeps the data it restores.
            backend.admin().create_database("kept").expect("created");
            let parked = backend.park().expect("parked");
            parked.stopping.expect("stopping").join().expect("stopped");
            let backend = launch(&tools, &svc, taken, &pki, Some(parked.dir))
                .unwrap_or_else(|e| panic!("power-on: {e}"));
            assert_ne!(backend.port(), taken);
            let found = backend
                .admin()
                .psql("select datname from pg_database where datname = 'kept'")
                .expect("asked");
            assert_eq!(found.trim(), "kept");
            backend.stop().join().expect("stopped");
        }
        // Redis's own failure on the taken port is not read as a build without TLS.
        let svc = service("valkey", taken, &pki);
        let Some(Tools::Redis(t)) = backends.tools(&svc).expect("tools") else {
            panic!("valkey has a real server");
        };
        let dir = new_data_dir(None).expect("a directory");
        let e = start_redis(&t, &svc, taken, &pki, &dir)
            .err()
            .expect("the port is taken");
        assert!(port_taken(&e) && !e.contains(NO_TLS), "{e}");
        assert!(!dir.exists(), "its data directory is left");
    }

    /// redis-cli reading its stdin exits 0 when it cannot reach the server: an admin
    /// command then must fail, with the cause, not pass as done.
    #[test]
    fn a_valkey_admin_command_to_a_server_that_is_gone_fails_with_its_cause() {
        let backends = Backends::detect(BackendMode::Required)
            .expect("scripts/run-tests installs PostgreSQL and Redis");
        let pki = Pki::generate().expect("a CA");
        let port = crate::ports::free_port();
        let svc = service("valkey", port, &pki);
        let tools = backends.tools(&svc).expect("tools").expect("a real server");
        let backend = launch(&tools, &svc, port, &pki, None).expect("started");
        let admin = backend.admin();
        admin.ping().expect("up");
        admin.delete_user("nobody").expect("an answer");
        // A line it cannot split is said on stdout, and exits 0 too.
        let e = admin.delete_user("a\0b").expect_err("not sent");
        assert!(e.contains("Invalid argument"), "{e}");
        {
            let mut child = backend.child.lock().expect("the child");
            child.kill().expect("killed");
            child.wait().expect("reaped");
        }
        let e = admin.delete_user("nobody").expect_err("no server");
        assert!(e.contains("Could not connect"), "{e}");
        let e = admin.ping().expect_err("no server");
        assert!(e.contains("Could not connect"), "{e}");
        backend.stop().join().expect("stopped");
    }
}
