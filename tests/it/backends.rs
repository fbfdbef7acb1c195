//! Real databases behind the sandbox: the exported URIs work with real clients (psql
//! verifying the server against the CA file, redis-cli over TLS), and nothing is left
//! running or on disk afterwards.

use crate::common::*;

fn require(tool: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is needed: apt-get install postgresql redis-server redis-tools (.ci/run does)"
    );
}

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
