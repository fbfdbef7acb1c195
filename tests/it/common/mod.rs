//! Shared helpers: a sandbox on 127.0.0.1:0 in a background runtime, a temporary
//! working directory with a manifest, and the real binary run against them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub mod forge;
pub mod github;

pub const BIN: &str = env!("CARGO_BIN_EXE_aiven-ephemeral");
pub const PROJECT: &str = "test-project";

/// Hides what changes from run to run: run ids, ports, temporary paths, times.
macro_rules! pinned {
    ($value:expr, @$snapshot:literal) => {
        insta::with_settings!({filters => vec![
            (r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
            (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
            (r"localhost:\d+", "localhost:[PORT]"),
            (r"\b\d+(h\d\dm|m\d\ds|s)( elapsed| left|  )", "[T]$2"),
            (r"timed out after \d+\.\ds", "timed out after [T]"),
            (r"(?m)^\[\d\d:\d\d:\d\d\] ", "[HH:MM:SS] "),
            (r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]"),
            (r"[⠁-⣿]", "*"),
        ]}, {
            insta::assert_snapshot!($value, @$snapshot);
        });
    };
}

/// A sandbox for one test. Fast lifecycle so tests finish in seconds.
pub struct Sandbox {
    rt: Arc<tokio::runtime::Runtime>,
    inner: Option<aiven_sandbox::Sandbox>,
    pub url: String,
    pub token: String,
    pub ca_pem: String,
    http: reqwest::Client,
}

pub fn fast_config() -> aiven_sandbox::Config {
    aiven_sandbox::Config {
        token: format!("tok-{}", uuid::Uuid::new_v4().simple()),
        projects: vec![aiven_sandbox::ProjectConfig::named(PROJECT)],
        provisioning_delay: Duration::from_millis(300),
        topic_activation: Duration::from_millis(200),
        name_reservation: Duration::from_secs(30),
        backends: aiven_sandbox::BackendMode::Simulated,
        ..Default::default()
    }
}

impl Sandbox {
    pub fn start() -> Self {
        Self::with(fast_config())
    }

    pub fn with(config: aiven_sandbox::Config) -> Self {
        Self::on_port(config, 0)
    }

    /// On a given port of 127.0.0.1 (0: any free one).
    pub fn on_port(config: aiven_sandbox::Config, port: u16) -> Self {
        let rt = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime"),
        );
        let token = config.token.clone();
        let inner = rt
            .block_on(aiven_sandbox::Sandbox::start(
                config,
                ([127, 0, 0, 1], port).into(),
            ))
            .expect("sandbox starts");
        let mut http = reqwest::Client::builder().no_proxy();
        if inner.url().starts_with("https://") {
            let ca = reqwest::Certificate::from_pem(inner.ca_pem().as_bytes()).expect("CA is PEM");
            http = http.tls_certs_merge([ca]);
        }
        Self {
            url: inner.url().to_string(),
            rt,
            token,
            http: http.build().expect("client"),
            ca_pem: inner.ca_pem().to_string(),
            inner: Some(inner),
        }
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        auth: bool,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        self.rt.block_on(async {
            let mut req = self.http.request(method, &url);
            if auth {
                req = req.header("authorization", format!("aivenv1 {}", self.token));
            }
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.expect("sandbox answers");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        })
    }

    pub fn call_without_token(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None, false)
    }

    /// A call whose transport failure is the result (dropped connections).
    pub fn raw_result(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Option<String>, String), reqwest::Error> {
        let url = format!("{}{path}", self.url);
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method.parse().expect("method"), &url)
                .header("authorization", format!("aivenv1 {}", self.token));
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            Ok((status, retry_after, resp.text().await?))
        })
    }

    /// Status, `Retry-After`, body text.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Option<String>, String) {
        self.raw_result(method, path, body)
            .expect("sandbox answers")
    }

    /// A call to the imitated API with the token.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method.parse().expect("method"), path, body, true)
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(
            method.parse().expect("method"),
            &format!("/_sandbox{path}"),
            body,
            false,
        );
        assert_eq!(status, 200, "admin {method} {path}: {v}");
        v
    }

    pub fn requests(&self) -> Vec<Value> {
        self.admin("GET", "/requests", None)["requests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Requests matching a method and a path prefix.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                r["method"] == method
                    && r["path"]
                        .as_str()
                        .is_some_and(|p| p.starts_with(path_prefix))
            })
            .count()
    }

    /// Services that exist (not deleted).
    pub fn live_services(&self) -> Vec<Value> {
        self.admin("GET", "/services", None)["services"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["deleted"] == false)
            .collect()
    }

    pub fn live_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .live_services()
            .iter()
            .filter_map(|s| s["service_name"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }

    pub fn fault(&self, rule: Value) {
        self.admin("POST", "/faults", Some(rule));
    }

    pub fn service_fault(&self, fault: Value) {
        self.admin("POST", "/service-faults", Some(fault));
    }

    /// The `Date` of an API answer: the API's clock as a client reads it.
    pub fn date(&self) -> time::OffsetDateTime {
        let url = format!("{}/v1/clouds", self.url);
        self.rt.block_on(async {
            let resp = self.http.get(&url).send().await.expect("sandbox answers");
            let date = resp.headers()[reqwest::header::DATE]
                .to_str()
                .expect("ascii");
            httpdate::parse_http_date(date)
                .expect("an HTTP date")
                .into()
        })
    }

    /// Moves the sandbox's clock forward by `by` (`31m`), as if that time had passed:
    /// its timers, `Date` headers and timestamps all follow. What became due happens
    /// at once; what takes work (a service's servers starting) still takes it, so poll.
    pub fn advance_clock(&self, by: &str) {
        self.admin("POST", "/clock", Some(json!({ "advance": by })));
    }

    /// Waits until `check` holds on the request log (a side effect of the binary, not a
    /// sleep, decides when a test acts).
    pub fn wait_for(&self, what: &str, timeout: Duration, check: impl Fn(&[Value]) -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if check(&self.requests()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out waiting for {what}; requests: {:#?}",
            self.requests()
        );
    }

    /// Creates a service directly through the API (someone else's, or a pre-existing one).
    pub fn create_service(&self, name: &str, tags: Value) {
        let (status, body) = self.api(
            "POST",
            &format!("/v1/project/{PROJECT}/service"),
            Some(json!({"service_name": name, "service_type": "pg", "plan": "hobbyist", "project_vpc_id": null, "tags": tags})),
        );
        assert_eq!(status, 200, "{body}");
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(s) = self.inner.take() {
            self.rt.block_on(s.shutdown());
        }
    }
}

/// A temporary working directory with a manifest, and the binary pointed at a sandbox.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub sandbox: Sandbox,
}

pub const PG: &str = "project: test-project\nservices:\n  db:\n    type: pg\n    plan: hobbyist\n    databases: [app]\n    users: [app_user]\n";

impl Env {
    pub fn new(manifest: &str) -> Self {
        Self::with(manifest, Sandbox::start())
    }

    pub fn with(manifest: &str, sandbox: Sandbox) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("aiven-ephemeral.yaml"), manifest).expect("manifest");
        Self { dir, sandbox }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The binary, in the directory, against the sandbox, with a clean environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        cmd_in(self.dir.path(), &self.sandbox, args)
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run(self.cmd(args))
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args).spawn().expect("binary starts")
    }

    pub fn state(&self) -> Value {
        let text =
            std::fs::read_to_string(self.path(".aiven-ephemeral/state.json")).expect("state file");
        serde_json::from_str(&text).expect("state is JSON")
    }

    pub fn env_file(&self) -> String {
        std::fs::read_to_string(self.path(".aiven-ephemeral/env")).expect("env file")
    }
}

/// The binary in `dir` against `sandbox`, with a clean environment.
pub fn cmd_in(dir: &Path, sandbox: &Sandbox, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    against(&mut cmd, dir, sandbox);
    cmd
}

/// Points a command (the binary, or a program that execs it) at `sandbox`, in `dir`,
/// with a clean environment.
pub fn against(cmd: &mut Command, dir: &Path, sandbox: &Sandbox) {
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("AIVEN_API_URL", &sandbox.url)
        .env("AIVEN_TOKEN", &sandbox.token)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
}

/// A client's whole answer, errors included, as a person reads it.
pub fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
    .trim()
    .to_string()
}

/// What a finished command did.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Its stderr without the progress lines (`[HH:MM:SS] name: state`, in an order
    /// that services working at once decide): errors and warnings with their hints and
    /// snippets, what a user must act on.
    pub fn told(&self) -> String {
        self.stderr
            .lines()
            .filter(|l| match l.as_bytes() {
                [b'[', _, _, b':', _, _, b':', _, _, b']', b' ', ..] => {
                    l[11..].starts_with("error") || l[11..].starts_with("warning")
                }
                _ => true,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn expect_stderr(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n--- stderr\n{}",
            self.stderr
        );
        self
    }
}

/// Runs a command with a time limit: a hung binary fails the test instead of CI.
pub fn run(cmd: Command) -> Run {
    let child = assert_cmd::Command::from_std(cmd)
        .timeout(Duration::from_secs(180))
        .output()
        .expect("binary runs");
    out(child)
}

pub fn out(o: Output) -> Run {
    Run {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Polls the service until it and all its nodes run; its body, with secrets.
pub fn wait_running(s: &Sandbox, name: &str) -> Value {
    let start = std::time::Instant::now();
    loop {
        let (_, v) = s.api(
            "GET",
            &format!("/v1/project/{PROJECT}/service/{name}?include_secrets=true"),
            None,
        );
        if v["service"]["state"] == "RUNNING"
            && v["service"]["node_states"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["state"] == "running")
        {
            return v["service"].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{name} never ran: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A blocking GET for tests that have no sandbox handle (a sandbox process of the binary).
pub fn blocking_get(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

/// Waits for a spawned child, failing the test if it does not end in time. Its pipes are
/// read meanwhile: a child writing more than a pipe holds would otherwise block.
pub fn wait(mut child: Child, timeout: Duration) -> Run {
    use std::io::Read;
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process did not end within {timeout:?}\n--- stderr\n{}",
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: stdout.join().expect("stdout read"),
        stderr: stderr.join().expect("stderr read"),
    }
}

#[test]
fn wait_reads_what_a_child_writes_meanwhile() {
    // Four times what a pipe holds, on each pipe.
    let child = Command::new("sh")
        .args([
            "-c",
            "head -c 262144 /dev/zero; head -c 262144 /dev/zero >&2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh starts");
    let out = wait(child, Duration::from_secs(10));
    out.expect_code(0);
    assert_eq!((out.stdout.len(), out.stderr.len()), (262144, 262144));
}

pub fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig)
        .expect("signal sent");
}

/// Whether a thread of `pid` waits in the kernel where a wait channel names one of
/// `channels` (Linux's /proc/<pid>/task/*/wchan): how a test knows a process is blocked
/// on a pipe or FIFO before it acts.
pub fn blocked_in(pid: u32, channels: &[&str]) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("wchan")).ok())
        .any(|w| channels.iter().any(|c| w.contains(c)))
}

/// Whether a thread of `pid` waits for a FIFO's other end to open it.
pub fn opening_a_fifo(pid: u32) -> bool {
    blocked_in(pid, &["partner", "fifo"])
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("file exists")
        .permissions()
        .mode()
        & 0o777
}

/// Fails the test, naming the package, when a program it drives is missing
/// (`scripts/run-tests` installs them).
#[track_caller]
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is needed: scripts/run-tests installs it (apt-get install postgresql redis-server redis-tools zsh fish tmux)"
    );
}

/// Whether the run of [`PG`] has made what its manifest asks inside the service (its
/// database and its user, both answered): what comes next is delivery, then `run`'s
/// command.
pub fn populated(requests: &[Value]) -> bool {
    ["/db", "/user"].iter().all(|part| {
        requests.iter().any(|r| {
            r["method"] == "POST"
                && r["status"] == 200
                && r["path"].as_str().is_some_and(|p| p.ends_with(part))
        })
    })
}
