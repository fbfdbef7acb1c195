//! Real servers behind sandbox services, when this machine has them: PostgreSQL for
//! `pg` (TLS with a certificate from the project CA, SCRAM password auth for the
//! generated admin password, database `defaultdb`), and Valkey or Redis for `valkey`
//! (TLS, the `default` user with the generated password). Databases and users created
//! through the API are created in the server. A deleted service's server is stopped and
//! its data removed; so are all of them at sandbox shutdown.
//!
//! Without the binaries (or with `backends: simulated`) services keep the simulated
//! listeners of `endpoints`, and the sandbox says so once. A server that cannot start
//! is an error with its cause (the service then shows it), never a silent wait.
//!
//! A `pg` service gets the PostgreSQL major version of its `user_config.pg_version`
//! where that version is installed, else the newest installed, with a warning.

use std::collections::BTreeMap;
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
}

/// How to run admin commands against a running server (cheap to clone; used off the
/// lock that guards the endpoints).
#[derive(Clone)]
pub enum Admin {
    Pg {
        psql: PathBuf,
        socket_dir: PathBuf,
        port: u16,
        user: String,
    },
    Redis {
        cli: PathBuf,
        ca: PathBuf,
        port: u16,
        password: String,
    },
}

/// A running real server.
pub struct Backend {
    port: u16,
    admin: Admin,
    child: Mutex<Child>,
    dir: PathBuf,
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
    let out = procs::die_with_parent(cmd)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
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
        })
    }

    /// One line saying what serves the services' ports.
    pub fn describe(&self) -> String {
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

    /// Starts a real server for the service's primary port, if this type has one here.
    pub async fn start(
        &self,
        service: &Service,
        port: u16,
        pki: &Pki,
    ) -> Result<Option<Backend>, String> {
        let tools = match service.service_type.as_str() {
            "pg" if !self.pg.is_empty() => Tools::Pg(self.pg_for(service).clone(), pg_owner()?),
            "valkey" | "redis"
                if !self.redis_tls_broken.load(Ordering::Relaxed) && self.redis.is_some() =>
            {
                Tools::Redis(self.redis.clone().expect("checked"))
            }
            _ => return Ok(None),
        };
        let owner = match &tools {
            Tools::Pg(_, owner) => *owner,
            Tools::Redis(_) => None,
        };
        let base = data_bases()
            .into_iter()
            .find(|b| reachable(b, owner))
            .ok_or("no temporary directory the server's user can reach (set TMPDIR)")?;
        let dir = procs::new_dir(&base)
            .map_err(|e| format!("cannot create a data directory in {}: {e}", base.display()))?;
        let svc = service.clone();
        let pki = pki.clone();
        let is_redis = matches!(tools, Tools::Redis(_));
        let started = tokio::task::spawn_blocking(move || {
            let port = usable_port(port);
            let result = match &tools {
                Tools::Pg(t, owner) => start_pg(t, *owner, &svc, port, &pki, &dir),
                Tools::Redis(t) => start_redis(t, &svc, port, &pki, &dir),
            };
            if result.is_err() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            result
        })
        .await
        .map_err(|e| e.to_string())?;
        match started {
            Ok(b) => Ok(Some(b)),
            Err(e) if is_redis && e.contains("TLS") => {
                self.redis_tls_broken.store(true, Ordering::Relaxed);
                tracing::warn!("sandbox: {e}; valkey services fall back to simulated endpoints");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
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
) -> Result<Backend, String> {
    let admin = svc.admin().ok_or("service has no admin user")?;
    give_to(dir, owner)?;
    let data = dir.join("data");
    let pwfile = dir.join("pw");
    write_file(&pwfile, &admin.password, owner)?;
    output(
        as_owner(&mut Command::new(&t.initdb), owner)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                &admin.username,
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .env("LC_ALL", "C"),
    )
    .map_err(|e| format!("initdb: {e}"))?;
    let _ = std::fs::remove_file(&pwfile);
    write_file(&dir.join("server.crt"), &pki.server_cert_pem, owner)?;
    write_file(&dir.join("server.key"), pki.server_key_pem(), owner)?;
    let listen = if has_ipv6_loopback() {
        "127.0.0.1,::1"
    } else {
        "127.0.0.1"
    };
    let conf = format!(
        "\n# aiven-sandbox\nlisten_addresses = '{listen}'\nport = {port}\nunix_socket_directories = '{dir}'\n\
         ssl = on\nssl_cert_file = '{dir}/server.crt'\nssl_key_file = '{dir}/server.key'\n\
         fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 40\n\
         shared_buffers = 16MB\nlogging_collector = off\n",
        dir = dir.display()
    );
    let conf_path = data.join("postgresql.conf");
    let mut current = std::fs::read_to_string(&conf_path).map_err(|e| e.to_string())?;
    current.push_str(&conf);
    std::fs::write(&conf_path, current).map_err(|e| e.to_string())?;
    // Over the network only TLS with a password, as on Aiven; the private socket
    // serves the sandbox's own admin commands.
    let hba = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n";
    std::fs::write(data.join("pg_hba.conf"), hba).map_err(|e| e.to_string())?;
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
            user: admin.username.clone(),
        },
        child: Mutex::new(child),
        dir: dir.to_path_buf(),
    };
    backend.wait_ready()?;
    let mut databases = vec!["defaultdb".to_string()];
    databases.extend(svc.databases.iter().filter(|d| *d != "defaultdb").cloned());
    for db in databases {
        backend.admin.create_database(&db)?;
    }
    for user in svc.users.iter().filter(|u| u.r#type != "primary") {
        backend.admin.create_user(user)?;
    }
    Ok(backend)
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
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&t.server);
    cmd.args([
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "-::1",
    ])
    .arg("--tls-cert-file")
    .arg(&cert)
    .arg("--tls-key-file")
    .arg(&key)
    .arg("--tls-ca-cert-file")
    .arg(&ca)
    .args(["--tls-auth-clients", "no", "--requirepass", &admin.password])
    .args([
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
    ])
    .arg("--dir")
    .arg(dir)
    .stdin(Stdio::null())
    .stdout(log.try_clone().map_err(|e| e.to_string())?)
    .stderr(log);
    let child = procs::spawn_server(cmd)
        .map_err(|e| format!("cannot start {}: {e}", t.server.display()))?;
    let backend = Backend {
        port,
        admin: Admin::Redis {
            cli: t.cli.clone(),
            ca,
            port,
            password: admin.password.clone(),
        },
        child: Mutex::new(child),
        dir: dir.to_path_buf(),
    };
    if let Err(e) = backend.wait_ready() {
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        backend.stop_now();
        if log.contains("TLS") || log.contains("tls") {
            return Err(format!("{} has no TLS support: {e}", t.server.display()));
        }
        return Err(e);
    }
    for user in svc.users.iter().filter(|u| u.r#type != "primary") {
        backend.admin.create_user(user)?;
    }
    Ok(backend)
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Admin {
    fn psql(&self, sql: &str) -> Result<String, String> {
        match self {
            Admin::Pg {
                psql,
                socket_dir,
                port,
                user,
            } => output(
                Command::new(psql)
                    .args([
                        "-X",
                        "-q",
                        "-t",
                        "-A",
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-d",
                        "postgres",
                    ])
                    .arg("-h")
                    .arg(socket_dir)
                    .args(["-p", &port.to_string(), "-U", user, "-c", sql])
                    .env("PGCONNECT_TIMEOUT", "3"),
            ),
            Admin::Redis { .. } => Err("not a PostgreSQL server".into()),
        }
    }

    fn redis(&self, args: &[&str]) -> Result<String, String> {
        match self {
            Admin::Redis {
                cli,
                ca,
                port,
                password,
            } => {
                let out = output(
                    Command::new(cli)
                        .args(["--tls", "--cacert"])
                        .arg(ca)
                        .args([
                            "-h",
                            "127.0.0.1",
                            "-p",
                            &port.to_string(),
                            "--no-auth-warning",
                            "-a",
                            password,
                        ])
                        .args(args),
                )?;
                if out.starts_with("ERR")
                    || out.starts_with("NOAUTH")
                    || out.starts_with("WRONGPASS")
                {
                    Err(out)
                } else {
                    Ok(out)
                }
            }
            Admin::Pg { .. } => Err("not a Redis server".into()),
        }
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

    pub fn create_database(&self, name: &str) -> Result<(), String> {
        match self {
            Admin::Pg { .. } => {
                let exists = self.psql(&format!(
                    "select 1 from pg_database where datname = {}",
                    quote_literal(name)
                ))?;
                if exists.is_empty() {
                    self.psql(&format!("create database {}", quote_ident(name)))?;
                }
                Ok(())
            }
            Admin::Redis { .. } => Ok(()),
        }
    }

    pub fn create_user(&self, user: &User) -> Result<(), String> {
        match self {
            Admin::Pg { .. } => self
                .psql(&format!(
                    "create role {} login password {}; grant all on database defaultdb to {}",
                    quote_ident(&user.username),
                    quote_literal(&user.password),
                    quote_ident(&user.username)
                ))
                .map(|_| ()),
            Admin::Redis { .. } => self
                .redis(&[
                    "ACL",
                    "SETUSER",
                    &user.username,
                    "on",
                    &format!(">{}", user.password),
                    "~*",
                    "&*",
                    "+@all",
                ])
                .map(|_| ()),
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
        match log.lines().find(|l| l.contains("Address already in use")) {
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

    fn stop_now(&self) {
        if let Ok(mut child) = self.child.lock() {
            // SIGINT is PostgreSQL's fast shutdown; Redis treats it like SIGTERM.
            #[cfg(unix)]
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Also when a start is abandoned (the sandbox stopping meanwhile).
impl Drop for Backend {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Creates a database created through the API in the real server behind the service.
pub(crate) async fn sync_database(
    shared: &crate::Shared,
    project: &str,
    service: &str,
    database: &str,
) -> ApiResult<()> {
    let Some(admin) = crate::lock(&shared.endpoints).admin(project, service) else {
        return Ok(());
    };
    let database = database.to_string();
    run_admin(move || admin.create_database(&database)).await
}

/// Creates a user created through the API in the real server behind the service.
pub(crate) async fn sync_user(
    shared: &crate::Shared,
    project: &str,
    service: &str,
    user: &User,
) -> ApiResult<()> {
    let Some(admin) = crate::lock(&shared.endpoints).admin(project, service) else {
        return Ok(());
    };
    let user = user.clone();
    run_admin(move || admin.create_user(&user)).await
}

async fn run_admin(f: impl FnOnce() -> Result<(), String> + Send + 'static) -> ApiResult<()> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(500, e.to_string()))?
        .map_err(|e| ApiError::new(500, format!("Internal error in the service: {e}")))
}
