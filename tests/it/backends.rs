//! Real databases behind the sandbox: the exported URIs work with real clients (psql
//! verifying the server against the CA file, redis-cli over TLS), and nothing is left
//! running or on disk afterwards.

use crate::common::*;

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

#[test]
fn run_sandbox_quickstart_with_real_postgres_and_valkey() {
    for tool in ["psql", "redis-cli", "redis-server"] {
        require(tool);
    }
    let work = tempfile::tempdir().unwrap();
    // The servers' data lives here; as root, PostgreSQL runs as `postgres` and must
    // be able to reach it.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    let manifest =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml");
    let script = r#"set -e
psql "$DB_URI_VERIFY" -v ON_ERROR_STOP=1 -c "create table t (x int); insert into t values (42);"
test "$(PGSSLMODE=verify-full PGSSLROOTCERT="$DB_CA_CERT" psql "$DATABASE_URL" -tA -c 'select x from t')" = 42
test "$(psql "$DB_USER_APP_USER_URI" -tA -c 'select current_user')" = app_user
redis-cli -u "$CACHE_URI" --tls --cacert "$CACHE_CA_CERT" --no-auth-warning set greeting hello
test "$(redis-cli -u "$CACHE_URI" --tls --cacert "$CACHE_CA_CERT" --no-auth-warning get greeting)" = hello
test "$(redis-cli -h "$CACHE_HOST" -p "$CACHE_PORT" --tls --cacert "$CACHE_CA_CERT" --user worker --pass "$CACHE_USER_WORKER_PASSWORD" --no-auth-warning ping)" = PONG
echo ALL-GOOD
"#;
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["run", "--sandbox", "-f"])
        .arg(&manifest)
        .args(["--", "sh", "-c", script])
        .current_dir(work.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", work.path())
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = run(cmd);
    out.expect_code(0);
    assert!(
        out.stdout.contains("ALL-GOOD"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr.contains("pg: real"),
        "a real PostgreSQL served: {}",
        out.stderr
    );
    // The example asks no version: whatever PostgreSQL the machine has, there is nothing
    // to warn about (a version the sandbox lacks is told: see shared.rs).
    assert!(!out.stderr.contains("warning:"), "{}", out.stderr);
    let tmp_path = tmp.path().to_string_lossy().to_string();
    assert!(
        processes_mentioning(&tmp_path).is_empty(),
        "servers left running: {:?}",
        processes_mentioning(&tmp_path)
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "data left on disk: {left:?}");
}

/// Live (not zombie) processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                return false;
            };
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields.first() != Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str())
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

/// The data directories a sandbox process made (their name carries its pid).
fn dirs_of(pid: u32, tmpdir: &std::path::Path) -> Vec<std::path::PathBuf> {
    [tmpdir, std::path::Path::new("/tmp")]
        .iter()
        .flat_map(|base| std::fs::read_dir(base).into_iter().flatten())
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("aiven-sandbox-{pid}-")))
        })
        .collect()
}

/// `aiven-ephemeral sandbox` as its own process, with real servers required.
struct SandboxProcess {
    child: std::process::Child,
    url: String,
    token: String,
    /// Held open: the sandbox must not write into a closed pipe.
    _stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl SandboxProcess {
    fn start(work: &std::path::Path, tmpdir: &std::path::Path) -> Self {
        use std::io::BufRead;
        let config = work.join("sandbox.yaml");
        std::fs::write(
            &config,
            "projects: [{name: test-project}]\nprovisioning_delay: 300ms\nbackends: required\n",
        )
        .unwrap();
        let mut child = std::process::Command::new(BIN)
            .args(["sandbox", "--config"])
            .arg(&config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", work)
            .env("TMPDIR", tmpdir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(work.join("sandbox.log")).unwrap())
            .spawn()
            .expect("sandbox starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut value = |key: &str| {
            let line = lines.next().expect("sandbox prints its settings").unwrap();
            line.strip_prefix(&format!("export {key}='"))
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or_else(|| panic!("expected export {key}='...', got {line}"))
                .to_string()
        };
        let (url, token) = (value("AIVEN_API_URL"), value("AIVEN_TOKEN"));
        Self {
            child,
            url,
            token,
            _stdout: lines,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `up` of a pg and a valkey service against it; both are real servers once ready.
    fn up(&self, work: &std::path::Path) -> Vec<u32> {
        std::fs::write(
            work.join("aiven-ephemeral.yaml"),
            "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist}\n  cache: {type: valkey, plan: hobbyist}\n",
        )
        .unwrap();
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("up")
            .current_dir(work)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", work)
            .env("AIVEN_API_URL", &self.url)
            .env("AIVEN_TOKEN", &self.token)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        run(cmd).expect_code(0);
        let servers = children_of(self.pid());
        assert!(
            servers.len() >= 2,
            "a postgres and a redis-server run under the sandbox: {servers:?}"
        );
        servers
    }
}

fn wait_gone(pids: &[u32]) {
    let start = std::time::Instant::now();
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "servers outlived the sandbox: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn real_servers_die_with_a_killed_sandbox_and_the_next_start_removes_their_data() {
    for tool in ["psql", "redis-cli", "redis-server"] {
        require(tool);
    }
    let work = tempfile::tempdir().unwrap();
    // A private TMPDIR: as root PostgreSQL runs as `postgres`, which cannot enter it,
    // so its data must go elsewhere (this once hung the service until the timeout).
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();

    let killed = SandboxProcess::start(work.path(), tmp.path());
    let servers = killed.up(work.path());
    let left = dirs_of(killed.pid(), tmp.path());
    assert_eq!(left.len(), 2, "one data directory per server: {left:?}");
    signal(&killed.child, nix::sys::signal::Signal::SIGKILL);
    let gone = wait(killed.child, std::time::Duration::from_secs(5));
    assert_eq!(gone.code, None, "killed by the signal: {}", gone.stderr);
    wait_gone(&servers);

    // The next sandbox removes what the killed one could not.
    let next = SandboxProcess::start(work.path(), tmp.path());
    let stale: Vec<_> = left.iter().filter(|d| d.exists()).collect();
    assert!(stale.is_empty(), "stale data directories remain: {stale:?}");

    // A normal stop leaves nothing.
    std::fs::remove_dir_all(work.path().join(".aiven-ephemeral")).unwrap();
    let servers = next.up(work.path());
    assert_eq!(dirs_of(next.pid(), tmp.path()).len(), 2);
    signal(&next.child, nix::sys::signal::Signal::SIGTERM);
    let pid = next.pid();
    wait(next.child, std::time::Duration::from_secs(15)).expect_code(0);
    wait_gone(&servers);
    assert_eq!(dirs_of(pid, tmp.path()), Vec::<std::path::PathBuf>::new());
}

#[test]
fn a_backend_that_cannot_start_fails_fast_with_its_cause() {
    require("psql");
    let postgres = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin/postgres")))
        .find(|p| p.is_file())
        .expect("PostgreSQL's server is needed: apt-get install postgresql");
    // An `initdb` on PATH wins over the installed one for its version; this one fails.
    let shim = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&postgres, shim.path().join("postgres")).unwrap();
    let initdb = shim.path().join("initdb");
    std::fs::write(
        &initdb,
        "#!/bin/sh\necho 'initdb: error: the disk is on fire' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&initdb, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("aiven-ephemeral.yaml"), PG).unwrap();
    let path = std::env::join_paths(std::iter::once(shim.path().to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["up", "--sandbox", "--timeout", "5m"])
        .current_dir(work.path())
        .env_clear()
        .env("PATH", path)
        .env("HOME", work.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let started = std::time::Instant::now();
    let out = run(cmd);
    let took = started.elapsed();
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("POWEROFF") && out.stderr.contains("the disk is on fire"),
        "the failure names its cause: {}",
        out.stderr
    );
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    eprintln!("a failing backend was reported after {took:?}");
}

/// A working directory for `--sandbox` commands with the quickstart manifest, and a
/// TMPDIR of its own for the servers' data.
struct Detached {
    work: tempfile::TempDir,
    tmp: tempfile::TempDir,
}

impl Detached {
    fn new() -> Self {
        for tool in ["psql", "redis-cli", "redis-server"] {
            require(tool);
        }
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
        let work = tempfile::tempdir().unwrap();
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml"),
            work.path().join("aiven-ephemeral.yaml"),
        )
        .unwrap();
        Self { work, tmp }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(args)
            .current_dir(self.work.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.work.path())
            .env("TMPDIR", self.tmp.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.work.path().join(".aiven-ephemeral").join(rel)
    }

    /// The sandbox process's pid and its servers.
    fn sandbox(&self) -> (u32, Vec<u32>) {
        let server: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.path("sandbox-server.json")).unwrap())
                .unwrap();
        let pid = server["pid"].as_u64().unwrap() as u32;
        assert_eq!(mode(&self.path("sandbox-server.json")), 0o600);
        let servers = children_of(pid);
        assert!(servers.len() >= 2, "postgres and redis-server: {servers:?}");
        (pid, servers)
    }

    /// The env file's value of `name`.
    fn env(&self, name: &str) -> String {
        std::fs::read_to_string(self.path("env"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_string))
            .unwrap_or_else(|| panic!("{name} in the env file"))
    }

    /// Nothing of the sandbox process is left: not it, not its servers, not their data,
    /// not its files.
    fn assert_gone(&self, pid: u32, servers: &[u32]) {
        let start = std::time::Instant::now();
        while alive(pid) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "the sandbox process {pid} is still running"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        wait_gone(servers);
        assert_eq!(
            dirs_of(pid, self.tmp.path()),
            Vec::<std::path::PathBuf>::new()
        );
        assert!(!self.path("sandbox-server.json").exists());
        let registry = self.tmp.path().join("aiven-ephemeral-sandboxes");
        assert!(!registry.join(format!("{pid}.json")).exists());
    }
}

#[test]
fn up_sandbox_leaves_working_uris_until_down_and_then_nothing() {
    let d = Detached::new();
    run(d.cmd(&["up", "--sandbox"])).expect_code(0);
    let (pid, servers) = d.sandbox();
    // After `up` returned, the URIs work with real clients.
    let psql = std::process::Command::new("psql")
        .arg(d.env("DB_URI_VERIFY"))
        .args(["-tA", "-c", "select 40 + 2"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&psql.stdout).trim(),
        "42",
        "{psql:?}"
    );
    let redis = std::process::Command::new("redis-cli")
        .args(["-u", &d.env("CACHE_URI"), "--tls", "--cacert"])
        .arg(d.env("CACHE_CA_CERT"))
        .args(["--no-auth-warning", "ping"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&redis.stdout).trim(),
        "PONG",
        "{redis:?}"
    );
    // `status` shows the process; `check` reaches every endpoint.
    let status = run(d.cmd(&["status"]));
    status.expect_code(0);
    assert!(
        status
            .stdout
            .contains(&format!("sandbox process {pid} at http://127.0.0.1:")),
        "{}",
        status.stdout
    );
    run(d.cmd(&["check"])).expect_code(0);
    run(d.cmd(&["down"])).expect_code(0);
    d.assert_gone(pid, &servers);
}

#[test]
fn shared_services_serve_again_after_a_sandbox_process_that_lived_a_moment() {
    let d = Detached::new();
    std::fs::write(
        d.work.path().join("aiven-ephemeral.yaml"),
        "project: sandbox\nservices:\n  db: {type: pg, plan: hobbyist, shared: true}\n  cache: {type: valkey, plan: hobbyist, shared: true}\n",
    )
    .unwrap();
    run(d.cmd(&["run", "--sandbox", "--", "true"])).expect_code(0);
    // A run whose command answers through the shared PostgreSQL.
    let psql_run = || {
        let out = run(d.cmd(&[
            "run",
            "--sandbox",
            "--timeout",
            "60s",
            "--",
            "sh",
            "-c",
            "psql \"$DB_URI_VERIFY\" -tAc 'select 40 + 2'",
        ]));
        out.expect_code(0);
        assert_eq!(out.stdout.trim(), "42", "{}", out.stderr);
        out
    };
    // Each of these starts the sandbox process, which starts the shared services'
    // servers again, and stops it a moment later, while they are still starting.
    run(d.cmd(&["plan", "--sandbox"])).expect_code(0);
    run(d.cmd(&["reap", "--sandbox", "--dry-run"])).expect_code(0);
    psql_run();
    // Interrupted commands let their sandbox process go without waiting: the next one
    // waits for it to be gone before it starts another on the same ports and files.
    for _ in 0..3 {
        let child = d.cmd(&["up", "--sandbox"]).spawn().unwrap();
        let start = std::time::Instant::now();
        while !d.path("sandbox-server.json").exists() {
            assert!(start.elapsed() < std::time::Duration::from_secs(30));
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        signal(&child, nix::sys::signal::Signal::SIGINT);
        wait(child, std::time::Duration::from_secs(30)).expect_code(130);
        let next = psql_run();
        assert!(!next.stderr.contains("powered off"), "{}", next.stderr);
    }
}

#[test]
fn down_after_a_sigkilled_up_sandbox_leaves_nothing() {
    let d = Detached::new();
    let child = d.cmd(&["up", "--sandbox"]).spawn().unwrap();
    // Kill it once every create is out.
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(d.path("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|s| {
            s["services"]
                .as_array()
                .is_some_and(|v| v.iter().all(|r| r["create_sent_at"].is_string()))
        })
    {
        assert!(start.elapsed() < std::time::Duration::from_secs(30));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    signal(&child, nix::sys::signal::Signal::SIGKILL);
    let gone = wait(child, std::time::Duration::from_secs(5));
    assert_eq!(gone.code, None, "killed by the signal: {}", gone.stderr);
    let pid: u32 = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(d.path("sandbox-server.json")).unwrap(),
    )
    .unwrap()["pid"]
        .as_u64()
        .unwrap() as u32;
    let servers = children_of(pid);
    run(d.cmd(&["down"])).expect_code(0);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path("state.json")).unwrap()).unwrap();
    assert_eq!(state["status"], "torn_down");
    d.assert_gone(pid, &servers);
}

#[test]
fn a_damaged_state_directory_does_not_strand_the_sandbox_process() {
    // The state file is gone: `down --sandbox` still finds the process and stops it.
    let d = Detached::new();
    run(d.cmd(&["up", "--sandbox"])).expect_code(0);
    let (pid, servers) = d.sandbox();
    std::fs::remove_file(d.path("state.json")).unwrap();
    let down = run(d.cmd(&["down", "--sandbox"]));
    down.expect_code(0);
    pinned!(down.stderr.replace(&pid.to_string(), "[PID]"), @"[HH:MM:SS] no state file (.aiven-ephemeral/state.json): nothing to delete; stopped the sandbox process of .aiven-ephemeral");
    d.assert_gone(pid, &servers);

    // The whole directory is gone: the process notices and stops by itself.
    let d = Detached::new();
    run(d.cmd(&["up", "--sandbox"])).expect_code(0);
    let (pid, servers) = d.sandbox();
    std::fs::remove_dir_all(d.work.path().join(".aiven-ephemeral")).unwrap();
    d.assert_gone(pid, &servers);
}
