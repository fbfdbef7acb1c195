//! The GitHub Action, run with this machine's Node against the sandbox, with the
//! runner's files emulated: $GITHUB_ENV, $GITHUB_OUTPUT, $GITHUB_STATE,
//! $GITHUB_STEP_SUMMARY and INPUT_* variables.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::common::github::{DownloadFault, GitHub};
use crate::common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parses a runner key-value file (`NAME<<DELIM` heredocs, or `NAME=value`).
fn key_values(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            out.insert(name.to_string(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            out.insert(name.to_string(), value.to_string());
        }
    }
    out
}

/// An action checkout's `action/` directory: the repository's own by default.
fn action_dir() -> PathBuf {
    repo().join("action")
}

/// The inputs the runner passes when the workflow gives none: every default in
/// action.yml, with `${{ job.status }}` evaluated to the job's status.
fn default_inputs(job_status: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo().join("action.yml")).unwrap();
    let action: Value = serde_saphyr::from_str(&text).unwrap();
    action["inputs"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(name, spec)| {
            let default = spec["default"].as_str()?;
            Some((
                runner_input(name),
                default.replace("${{ job.status }}", job_status),
            ))
        })
        .collect()
}

/// The runner's environment name for an input: spaces to `_`, upper case, hyphens kept.
fn runner_input(name: &str) -> String {
    format!("INPUT_{}", name.replace(' ', "_").to_uppercase())
}

fn inputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (runner_input(k), v.to_string()))
        .collect()
}

pub(crate) struct Runner {
    pub(crate) env: Env,
    files: tempfile::TempDir,
}

impl Runner {
    pub(crate) fn new(manifest: &str) -> Self {
        let node = Command::new("node").arg("--version").output();
        assert!(
            node.is_ok_and(|o| o.status.success()),
            "node is needed to run the action"
        );
        Self {
            env: Env::new(manifest),
            files: tempfile::tempdir().unwrap(),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }

    /// The first use of the action in the job, from the repository's `action/`.
    fn node(&self, script: &str, extra: &BTreeMap<String, String>) -> Run {
        self.step("1", &action_dir(), script, extra)
    }

    /// One step of the job: each step has its own $GITHUB_STATE and $GITHUB_OUTPUT, as on
    /// the runner; $GITHUB_ENV, the workspace and the tool cache are the job's.
    fn step(
        &self,
        step: &str,
        action: &Path,
        script: &str,
        extra: &BTreeMap<String, String>,
    ) -> Run {
        let mut cmd = Command::new("node");
        cmd.arg(action.join(script))
            .current_dir(self.env.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.env.dir.path())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_REPOSITORY", "acme/shop")
            .env("GITHUB_RUN_ID", "4242")
            .env("GITHUB_ENV", self.file("env"))
            .env("GITHUB_OUTPUT", self.file(&format!("output-{step}")))
            .env("GITHUB_STATE", self.file(&format!("state-{step}")))
            .env("GITHUB_STEP_SUMMARY", self.file("summary"))
            .env("GITHUB_PATH", self.file("path"))
            .env("RUNNER_TEMP", self.files.path())
            .env("RUNNER_TOOL_CACHE", self.file("tool-cache"))
            .envs(default_inputs("success"))
            .env("INPUT_BINARY", BIN)
            .env("INPUT_TOKEN", &self.env.sandbox.token)
            .env("INPUT_API-URL", &self.env.sandbox.url)
            .env("INPUT_TIMEOUT", "2m")
            .envs(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        run(cmd)
    }

    /// The runner hands what a step's main saved to its post as STATE_<name>.
    fn post_env(&self) -> BTreeMap<String, String> {
        self.post_env_of("1")
    }

    fn post_env_of(&self, step: &str) -> BTreeMap<String, String> {
        key_values(&self.file(&format!("state-{step}")))
            .into_iter()
            .map(|(k, v)| (format!("STATE_{k}"), v))
            .collect()
    }

    fn outputs(&self, step: &str) -> BTreeMap<String, String> {
        key_values(&self.file(&format!("output-{step}")))
    }

    fn issued_secrets(&self) -> Vec<String> {
        let (_, list) = self.env.sandbox.api(
            "GET",
            &format!("/v1/project/{PROJECT}/service?include_secrets=true"),
            None,
        );
        let mut out = vec![self.env.sandbox.token.clone()];
        for svc in list["services"].as_array().unwrap() {
            for u in svc["users"].as_array().unwrap() {
                out.push(u["password"].as_str().unwrap().to_string());
            }
        }
        out
    }
}

const MANIFEST: &str = "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist, users: [app_user]}\n  cache: {type: valkey, plan: hobbyist}\n";
pub(crate) const ONE: &str =
    "project: test-project\nservices:\n  cache: {type: valkey, plan: hobbyist}\n";

fn masked(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.strip_prefix("::add-mask::"))
        .map(|m| {
            m.replace("%0A", "\n")
                .replace("%0D", "\r")
                .replace("%25", "%")
        })
        .collect()
}

#[test]
fn main_and_post_against_the_sandbox() {
    let runner = Runner::new(&format!(
        "{MANIFEST}  events: {{type: kafka, plan: startup-2}}\n"
    ));
    let main = runner.node("main.js", &BTreeMap::new());
    main.expect_code(0);
    let log = main.all();

    // Masks: every secret is masked, and appears nowhere else in the log.
    let secrets = runner.issued_secrets();
    let masks = masked(&log);
    for s in &secrets[1..] {
        assert!(masks.contains(s), "secret not masked");
    }
    for line in log.lines().filter(|l| !l.starts_with("::add-mask::")) {
        for s in &secrets {
            assert!(
                !line.contains(s.as_str()),
                "a secret appears unmasked: {line}"
            );
        }
    }
    // Addresses are not secrets: masking them would blank every host in the log and
    // drop the job outputs holding them.
    let github_env = key_values(&runner.file("env"));
    let addresses: Vec<&String> = github_env
        .iter()
        .filter(|(k, _)| {
            k.ends_with("_HOST")
                || k.ends_with("_PORT")
                || *k == "EVENTS_BOOTSTRAP_SERVERS"
                || *k == "EVENTS_URI"
        })
        .map(|(_, v)| v)
        .collect();
    assert!(addresses.len() >= 8, "{github_env:?}");
    for address in addresses {
        assert!(!masks.contains(address), "an address is masked: {address}");
    }
    let env_file = std::fs::read_to_string(runner.file("env")).unwrap();
    assert!(
        github_env["DB_URI"].starts_with("postgres://avnadmin:"),
        "{env_file}"
    );
    for v in github_env
        .values()
        .filter(|v| secrets.iter().any(|s| v.contains(s.as_str())))
    {
        assert!(
            masks.contains(v),
            "an exported value embedding a secret is masked as a whole"
        );
    }

    // Outputs.
    let outputs = runner.outputs("1");
    let run_id = outputs["run-id"].clone();
    assert_eq!(run_id.len(), 8);
    assert!(
        Path::new(&outputs["env-file"]).is_absolute() && Path::new(&outputs["env-file"]).exists()
    );
    assert!(Path::new(&outputs["state-file"]).exists());
    let services: Value = serde_json::from_str(&outputs["services"]).unwrap();
    assert_eq!(services.as_array().unwrap().len(), 3);
    for s in &secrets {
        assert!(!outputs["services"].contains(s.as_str()));
    }
    let summary = std::fs::read_to_string(runner.file("summary")).unwrap();
    assert!(
        summary.contains(&format!("ae-db-{run_id}")) && summary.contains("| service |"),
        "{summary}"
    );
    // The CI tag says where the run came from.
    assert_eq!(
        runner.env.sandbox.live_services()[0]["tags"]["aiven-ephemeral-ci"],
        "github:acme/shop/4242"
    );
    // Later steps run the binary by name: its directory is on $GITHUB_PATH.
    assert_eq!(
        std::fs::read_to_string(runner.file("path")).unwrap(),
        format!("{}\n", Path::new(BIN).parent().unwrap().display())
    );

    let post = runner.node("post.js", &runner.post_env());
    post.expect_code(0);
    assert!(runner.env.sandbox.live_names().is_empty());
    let summary = std::fs::read_to_string(runner.file("summary")).unwrap();
    assert!(summary.contains("deleted"), "{summary}");
}

#[test]
fn post_tears_down_a_run_whose_id_was_shortened() {
    // The GitHub example's id for a leg: 22 characters, recorded as its short form.
    let runner = Runner::new(ONE);
    let main = runner.node("main.js", &inputs(&[("run-id", "12345678901-1-consumer")]));
    main.expect_code(0);
    assert_eq!(
        runner.env.sandbox.live_names(),
        ["ae-cache-12345678901-1-e8bc27"]
    );
    let post = runner.node("post.js", &runner.post_env());
    post.expect_code(0);
    assert!(runner.env.sandbox.live_names().is_empty(), "{}", post.all());
}

#[test]
fn post_cleans_up_after_the_workspace_was_cleaned() {
    let runner = Runner::new(MANIFEST);
    runner.node("main.js", &BTreeMap::new()).expect_code(0);
    assert_eq!(runner.env.sandbox.live_names().len(), 2);
    // Each use of the action has its own state directory, named after the run.
    let run_id = runner.outputs("1")["run-id"].clone();
    assert_eq!(
        Path::new(&runner.outputs("1")["state-file"]),
        runner
            .env
            .path(&format!(".aiven-ephemeral/{run_id}/state.json"))
    );
    // A later actions/checkout removed the state directory and the manifest.
    std::fs::remove_dir_all(runner.env.path(".aiven-ephemeral")).unwrap();
    std::fs::remove_file(runner.env.path("aiven-ephemeral.yaml")).unwrap();
    let post = runner.node("post.js", &runner.post_env());
    post.expect_code(0);
    assert!(runner.env.sandbox.live_names().is_empty());
}

#[test]
fn post_after_a_failed_main_still_cleans_up() {
    let runner = Runner::new(MANIFEST);
    runner
        .env
        .sandbox
        .service_fault(serde_json::json!({"name": "ae-cache-*", "never_ready": true}));
    let mut inputs = BTreeMap::new();
    inputs.insert("INPUT_TIMEOUT".to_string(), "3s".to_string());
    let main = runner.node("main.js", &inputs);
    main.expect_code(4);
    assert!(main.stdout.contains("::error::"), "{}", main.stdout);
    let post = runner.node("post.js", &runner.post_env());
    post.expect_code(0);
    assert!(runner.env.sandbox.live_names().is_empty());
}

#[test]
fn action_yml_parses_and_declares_every_input_it_uses() {
    let text = std::fs::read_to_string(repo().join("action.yml")).unwrap();
    let action: Value = serde_saphyr::from_str(&text).expect("action.yml is YAML");
    assert_eq!(action["runs"]["using"], "node24");
    for step in ["main", "post"] {
        let file = action["runs"][step].as_str().unwrap();
        assert!(repo().join(file).exists(), "{file}");
    }
    assert_eq!(action["runs"]["post-if"], "always()");
    let declared: Vec<&str> = action["inputs"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut used = Vec::new();
    for file in ["lib.js", "main.js", "post.js"] {
        let js = std::fs::read_to_string(repo().join("action").join(file)).unwrap();
        for part in js.split("nput('").skip(1) {
            used.push(part.split('\'').next().unwrap().to_string());
        }
    }
    assert!(used.len() >= 8, "{used:?}");
    for name in &used {
        assert!(
            declared.contains(&name.as_str()),
            "input `{name}` is used but not declared in action.yml"
        );
    }
    for output in ["run-id", "env-file", "state-file", "services"] {
        assert!(action["outputs"].get(output).is_some(), "output {output}");
    }

    // The setup action: its script resolved from its own directory, as the runner does,
    // and the inputs `resolveBinary` reads described as the main action describes them.
    let setup: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo().join("setup/action.yml")).unwrap())
            .expect("setup/action.yml is YAML");
    assert_eq!(setup["runs"]["using"], "node24");
    let script = repo()
        .join("setup")
        .join(setup["runs"]["main"].as_str().unwrap());
    assert_eq!(
        script.canonicalize().unwrap(),
        action_dir().join("setup.js")
    );
    let setup_inputs: Vec<&String> = setup["inputs"].as_object().unwrap().keys().collect();
    assert_eq!(setup_inputs, ["binary", "version"]);
    for name in setup_inputs {
        assert_eq!(setup["inputs"][name], action["inputs"][name], "{name}");
    }
}

#[test]
fn setup_puts_the_checked_binary_on_path_for_the_steps_after() {
    let (dir, served) = release_assets(&stand_in());
    let server = GitHub::serving(served);
    let checkout = released_checkout(dir.path());
    let mut extra = inputs(&[("binary", "")]);
    extra.insert("AIVEN_EPHEMERAL_DOWNLOAD_URL".into(), server.url.clone());
    extra.insert("GITHUB_ACTION_REF".into(), "v1".into());
    let runner = Runner::new(ONE);
    let setup = runner.step("1", &checkout.path().join("action"), "setup.js", &extra);
    setup.expect_code(0);
    let version = format!("aiven-ephemeral {}", env!("CARGO_PKG_VERSION"));
    pinned!(setup.stdout.replace(&version, "aiven-ephemeral [VERSION]"), @"aiven-ephemeral [VERSION]");
    let binary = runner.outputs("1")["path"].clone();
    assert_eq!(std::fs::read(&binary).unwrap(), stand_in());
    // The runner prepends each $GITHUB_PATH line to PATH for later steps.
    let path = std::fs::read_to_string(runner.file("path")).unwrap();
    assert_eq!(
        path,
        format!("{}\n", Path::new(&binary).parent().unwrap().display())
    );
    let later = Command::new("bash")
        .args([
            "-eo",
            "pipefail",
            "-c",
            "command -v aiven-ephemeral; aiven-ephemeral --version",
        ])
        .env(
            "PATH",
            format!("{}:{}", path.trim_end(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    assert!(later.status.success());
    assert_eq!(
        String::from_utf8_lossy(&later.stdout),
        format!("{binary}\n{version}\n")
    );
    // It creates nothing, so there is nothing to clean up.
    assert!(runner.env.sandbox.requests().is_empty());

    // A download that is not the released asset never reaches PATH.
    let server = GitHub::serving(BTreeMap::from([(
        format!("{VERSION}/{ASSET}"),
        b"#!/bin/sh\necho tampered\n".to_vec(),
    )]));
    extra.insert("AIVEN_EPHEMERAL_DOWNLOAD_URL".into(), server.url.clone());
    let runner = Runner::new(ONE);
    let setup = runner.step("1", &checkout.path().join("action"), "setup.js", &extra);
    setup.expect_code(1);
    assert!(
        setup.stdout.starts_with("::error::checksum mismatch"),
        "{}",
        setup.stdout
    );
    assert!(!runner.file("path").exists());
}

const VERSION: &str = "v1.2.3";
const ASSET: &str = "aiven-ephemeral-x86_64-unknown-linux-musl";

/// A checkout of the action as the release workflow leaves it: action.yml, action/, and
/// action/release.json written by the workflow's own script for these assets.
fn released_checkout(assets: &Path) -> tempfile::TempDir {
    let checkout = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(checkout.path().join("action")).unwrap();
    std::fs::create_dir_all(checkout.path().join(".github/scripts")).unwrap();
    std::fs::copy(
        repo().join("action.yml"),
        checkout.path().join("action.yml"),
    )
    .unwrap();
    std::fs::create_dir_all(checkout.path().join("setup")).unwrap();
    for file in [
        "action/lib.js",
        "action/main.js",
        "action/post.js",
        "action/setup.js",
        "setup/action.yml",
    ] {
        std::fs::copy(repo().join(file), checkout.path().join(file)).unwrap();
    }
    let script = checkout.path().join(".github/scripts/release-file.js");
    std::fs::copy(repo().join(".github/scripts/release-file.js"), &script).unwrap();
    let out = Command::new("node")
        .arg(&script)
        .arg(VERSION)
        .arg(assets)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    checkout
}

/// The release's assets: this build's binary under the runner's asset name, and the
/// `.sha256` files the release also publishes.
fn release_assets(binary: &[u8]) -> (tempfile::TempDir, BTreeMap<String, Vec<u8>>) {
    assert_eq!(
        (std::env::consts::OS, std::env::consts::ARCH),
        ("linux", "x86_64"),
        "the asset name below is this runner's"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(ASSET), binary).unwrap();
    let mut served = BTreeMap::new();
    served.insert(format!("{VERSION}/{ASSET}"), binary.to_vec());
    (dir, served)
}

/// Main and post of one use from a checkout, without input `binary`, against a release
/// server.
pub(crate) fn from_release(
    runner: &Runner,
    checkout: &Path,
    server: &GitHub,
    reference: &str,
) -> (Run, Run) {
    from_release_via(runner, checkout, &server.url, reference, &BTreeMap::new())
}

/// The same with the download from `url` and more of the runner's variables.
fn from_release_via(
    runner: &Runner,
    checkout: &Path,
    url: &str,
    reference: &str,
    more: &BTreeMap<String, String>,
) -> (Run, Run) {
    let mut extra = inputs(&[("binary", "")]);
    extra.insert("GITHUB_ACTION_REF".into(), reference.into());
    extra.insert(
        "GITHUB_ACTION_REPOSITORY".into(),
        "aiven-ephemeral/aiven-ephemeral".into(),
    );
    extra.insert("AIVEN_EPHEMERAL_DOWNLOAD_URL".into(), url.into());
    extra.extend(more.clone());
    let main = runner.step("1", &checkout.join("action"), "main.js", &extra);
    let mut post_extra = extra.clone();
    post_extra.extend(runner.post_env());
    let post = runner.step("1", &checkout.join("action"), "post.js", &post_extra);
    (main, post)
}

/// A small stand-in for the release asset that runs this build: faults are about the
/// download, and the debug binary is too large to send over and over.
fn stand_in() -> Vec<u8> {
    format!("#!/bin/sh\nexec '{BIN}' \"$@\"\n").into_bytes()
}

/// What the action printed about its download, with the port and the asset's length
/// (which holds this build's path) replaced: the server cuts it off at half.
fn download_lines(run: &Run) -> String {
    let length = stand_in().len();
    let cut = format!("after {} of {length} bytes", length / 2);
    run.stdout
        .lines()
        .filter(|l| l.contains("GET "))
        .map(|l| l.replace(&cut, "after [HALF] of [LENGTH] bytes"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn env_vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_download_outlasts_a_hang_and_a_502() {
    let (dir, served) = release_assets(&stand_in());
    let checkout = released_checkout(dir.path());
    let server = GitHub::serving(served);
    // A connection that never answers, then a proxy's 502: the third attempt succeeds.
    server.fault_downloads(&[DownloadFault::Hang, DownloadFault::Status(502)]);
    let runner = Runner::new(ONE);
    let more = env_vars(&[("AIVEN_EPHEMERAL_DOWNLOAD_TIMEOUT", "2")]);
    let (main, post) = from_release_via(&runner, checkout.path(), &server.url, "v1", &more);
    main.expect_code(0);
    post.expect_code(0);
    pinned!(download_lines(&main), @r"
    aiven-ephemeral: GET http://127.0.0.1:[PORT]/storage/v1.2.3/aiven-ephemeral-x86_64-unknown-linux-musl: no answer for 2 s; trying again in 1 s (attempt 2 of 3)
    aiven-ephemeral: GET http://127.0.0.1:[PORT]/storage/v1.2.3/aiven-ephemeral-x86_64-unknown-linux-musl: HTTP 502; trying again in 2 s (attempt 3 of 3)
    ");
    assert!(runner.env.sandbox.live_names().is_empty());
}

#[test]
fn a_cut_off_download_says_so_and_a_missing_one_is_not_retried() {
    let (dir, served) = release_assets(&stand_in());
    let checkout = released_checkout(dir.path());
    let server = GitHub::serving(served);
    server.fault_downloads(&[DownloadFault::Truncate; 3]);
    let runner = Runner::new(ONE);
    let (main, post) = from_release(&runner, checkout.path(), &server, "v1");
    main.expect_code(1);
    post.expect_code(0);
    pinned!(download_lines(&main), @r"
    aiven-ephemeral: GET http://127.0.0.1:[PORT]/storage/v1.2.3/aiven-ephemeral-x86_64-unknown-linux-musl: the download was cut off after [HALF] of [LENGTH] bytes; trying again in 1 s (attempt 2 of 3)
    aiven-ephemeral: GET http://127.0.0.1:[PORT]/storage/v1.2.3/aiven-ephemeral-x86_64-unknown-linux-musl: the download was cut off after [HALF] of [LENGTH] bytes; trying again in 2 s (attempt 3 of 3)
    ::error::GET http://127.0.0.1:[PORT]/storage/v1.2.3/aiven-ephemeral-x86_64-unknown-linux-musl: the download was cut off after [HALF] of [LENGTH] bytes (gave up after 3 attempts)
    ");
    assert!(runner.env.sandbox.requests().is_empty(), "nothing ran");

    // A 404 (a release without this asset) is an answer, not a fault: asked once.
    let server = GitHub::serving(BTreeMap::new());
    let runner = Runner::new(ONE);
    let (main, _) = from_release(&runner, checkout.path(), &server, "v1");
    main.expect_code(1);
    assert_eq!(server.asked().len(), 1, "{:?}", server.asked());
    pinned!(download_lines(&main), @"::error::GET http://127.0.0.1:[PORT]/aiven-ephemeral/aiven-ephemeral/releases/download/v1.2.3/aiven-ephemeral-x86_64-unknown-linux-musl: HTTP 404");
}

/// An HTTP proxy on 127.0.0.1:0 for plain-HTTP targets (absolute-form requests): it
/// sends each to `upstream` whatever host it names, and records the URLs.
fn proxy(upstream: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            let mut reader = BufReader::new(client.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let target = line.split(' ').nth(1).unwrap_or("").to_string();
            log.lock().unwrap().push(target.clone());
            let path = target
                .strip_prefix("http://")
                .and_then(|t| t.find('/').map(|i| t[i..].to_string()))
                .unwrap_or_default();
            let mut server = TcpStream::connect(upstream.trim_start_matches("http://")).unwrap();
            server
                .write_all(format!("GET {path} HTTP/1.1\r\nconnection: close\r\n\r\n").as_bytes())
                .unwrap();
            std::io::copy(&mut server, &mut client).unwrap();
        }
    });
    (url, seen)
}

/// Reads an HTTP head (through the blank line) byte by byte, leaving the rest unread.
fn read_head(stream: &mut impl std::io::Read) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    head
}

/// An HTTPS front for `upstream` on 127.0.0.1:0, with a certificate for `releases.test`
/// only: each request is passed on, its answer sent back. Returns its port and the
/// certificate's PEM (the runner's trust, through NODE_EXTRA_CA_CERTS).
fn https_front(upstream: String) -> (u16, String) {
    let key = rcgen::generate_simple_self_signed(vec!["releases.test".to_string()]).unwrap();
    let pem = key.cert.pem();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![key.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into()),
        )
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (config, upstream) = (config.clone(), upstream.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, client);
                let head = read_head(&mut tls);
                let mut server =
                    TcpStream::connect(upstream.trim_start_matches("http://")).unwrap();
                server.write_all(&head).unwrap();
                let _ = std::io::copy(&mut server, &mut tls);
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (port, pem)
}

/// A proxy on 127.0.0.1:0 that answers CONNECT as an HTTPS proxy does and then relays
/// bytes both ways, to `port` whatever host is named; it records each CONNECT's target.
fn connect_proxy(port: u16) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            let head = String::from_utf8(read_head(&mut client)).unwrap();
            log.lock()
                .unwrap()
                .push(head.lines().next().unwrap_or("").to_string());
            let mut server = TcpStream::connect(("127.0.0.1", port)).unwrap();
            client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .unwrap();
            let (mut from_client, mut to_server) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_client, &mut to_server);
                let _ = to_server.shutdown(std::net::Shutdown::Write);
            });
            let _ = std::io::copy(&mut server, &mut client);
            let _ = client.shutdown(std::net::Shutdown::Write);
        }
    });
    (url, seen)
}

#[test]
fn an_https_download_goes_through_the_proxy_with_connect() {
    // As from github.com behind a corporate proxy: the action asks the proxy for a
    // tunnel and speaks TLS to the release server through it, for the redirect too.
    let (dir, served) = release_assets(&stand_in());
    let checkout = released_checkout(dir.path());
    let server = GitHub::serving(served);
    let (port, pem) = https_front(server.url.clone());
    let (proxy_url, seen) = connect_proxy(port);
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), pem).unwrap();
    let runner = Runner::new(ONE);
    let more = env_vars(&[
        ("HTTPS_PROXY", &proxy_url),
        ("NODE_EXTRA_CA_CERTS", ca.path().to_str().unwrap()),
    ]);
    let mirror = format!("https://releases.test:{port}");
    let (main, post) = from_release_via(&runner, checkout.path(), &mirror, "v1", &more);
    main.expect_code(0);
    post.expect_code(0);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![format!("CONNECT releases.test:{port} HTTP/1.1"); 2],
        "{}",
        main.stdout
    );
    let path = format!("/aiven-ephemeral/aiven-ephemeral/releases/download/{VERSION}/{ASSET}");
    assert_eq!(
        server.asked(),
        [path, format!("/storage/{VERSION}/{ASSET}")]
    );
    assert!(runner.env.sandbox.live_names().is_empty());
}

#[test]
fn the_download_goes_through_the_proxy_unless_no_proxy_names_the_host() {
    let (dir, served) = release_assets(&stand_in());
    let checkout = released_checkout(dir.path());
    let server = GitHub::serving(served);
    let (proxy_url, seen) = proxy(server.url.clone());
    // A name only the proxy can reach.
    let mirror = format!(
        "http://releases.test:{}",
        server.url.rsplit(':').next().unwrap()
    );
    let runner = Runner::new(ONE);
    let more = env_vars(&[("HTTP_PROXY", &proxy_url)]);
    let (main, post) = from_release_via(&runner, checkout.path(), &mirror, "v1", &more);
    main.expect_code(0);
    post.expect_code(0);
    let path = format!("/aiven-ephemeral/aiven-ephemeral/releases/download/{VERSION}/{ASSET}");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            format!("{mirror}{path}"),
            format!("{mirror}/storage/{VERSION}/{ASSET}")
        ]
    );

    let runner = Runner::new(ONE);
    let more = env_vars(&[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "localhost,.test")]);
    let (main, _) = from_release_via(&runner, checkout.path(), &mirror, "v1", &more);
    main.expect_code(1);
    assert!(main.stdout.contains("releases.test"), "{}", main.stdout);
    assert_eq!(seen.lock().unwrap().len(), 2, "NO_PROXY bypasses the proxy");
}

#[test]
fn the_binary_resolves_at_every_kind_of_ref() {
    let binary = std::fs::read(BIN).unwrap();
    let (dir, served) = release_assets(&binary);
    let server = GitHub::serving(served);
    let checkout = released_checkout(dir.path());
    let release: Value = serde_json::from_str(
        &std::fs::read_to_string(checkout.path().join("action/release.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(release["version"], VERSION);
    // A major tag, a full tag, a commit and a branch: the release workflow commits the
    // same release.json to each, and the action trusts only it.
    for reference in [
        "v1",
        VERSION,
        "0123456789abcdef0123456789abcdef01234567",
        "main",
    ] {
        let runner = Runner::new(ONE);
        let (main, post) = from_release(&runner, checkout.path(), &server, reference);
        main.expect_code(0);
        post.expect_code(0);
        assert!(runner.env.sandbox.live_names().is_empty(), "{reference}");
        let cached = runner.file(&format!(
            "tool-cache/aiven-ephemeral/{VERSION}/x86_64-unknown-linux-musl/aiven-ephemeral"
        ));
        assert_eq!(std::fs::read(&cached).unwrap(), binary, "{reference}");
        assert_eq!(mode(&cached) & 0o111, 0o111);
    }
    let asset_path =
        format!("/aiven-ephemeral/aiven-ephemeral/releases/download/{VERSION}/{ASSET}");
    let asked = server.asked();
    assert_eq!(
        asked.iter().filter(|p| **p == asset_path).count(),
        4,
        "{asked:?}"
    );
    // The published .sha256 beside the asset is never what the action relies on.
    assert!(!asked.iter().any(|p| p.ends_with(".sha256")), "{asked:?}");
}

#[test]
fn a_download_that_does_not_match_the_committed_checksum_is_refused() {
    let binary = std::fs::read(BIN).unwrap();
    let (dir, _) = release_assets(&binary);
    let checkout = released_checkout(dir.path());
    // The server hands out something else than what was released.
    let mut tampered = binary.clone();
    tampered.extend_from_slice(b"tampered");
    let mut served = BTreeMap::new();
    served.insert(format!("{VERSION}/{ASSET}"), tampered);
    let server = GitHub::serving(served);
    let runner = Runner::new(ONE);
    let (main, post) = from_release(&runner, checkout.path(), &server, "v1");
    main.expect_code(1);
    assert!(
        main.stdout.contains("::error::checksum mismatch"),
        "{}",
        main.stdout
    );
    assert!(
        !runner
            .file("tool-cache/aiven-ephemeral")
            .join(VERSION)
            .join("x86_64-unknown-linux-musl/aiven-ephemeral")
            .exists()
    );
    assert!(
        runner.env.sandbox.requests().is_empty(),
        "nothing may have run"
    );
    post.expect_code(0);
    assert!(
        post.stdout.contains("main created no service"),
        "{}",
        post.stdout
    );

    // A revision of the action from before any release has no release.json.
    std::fs::remove_file(checkout.path().join("action/release.json")).unwrap();
    let runner = Runner::new(ONE);
    let (main, post) = from_release(
        &runner,
        checkout.path(),
        &server,
        "0123456789abcdef0123456789abcdef01234567",
    );
    main.expect_code(1);
    assert!(
        main.stdout.contains("has no action/release.json"),
        "{}",
        main.stdout
    );
    post.expect_code(0);
}

#[test]
fn post_succeeds_calmly_when_main_created_nothing() {
    let cases: [(&str, &[(&str, &str)]); 5] = [
        ("a bad manifest", &[("manifest", "broken.yaml")]),
        ("a run id that is not one", &[("run-id", "Not_A_Run_Id")]),
        (
            "a missing token (a pull request from a fork)",
            &[("token", "")],
        ),
        (
            "a manifest that does not exist",
            &[("manifest", "missing.yaml")],
        ),
        ("a boolean that is not one", &[("keep-on-failure", "yes")]),
    ];
    for (what, given) in cases {
        let runner = Runner::new(ONE);
        std::fs::write(
            runner.env.path("broken.yaml"),
            "project: test-project\nservices: [\n",
        )
        .unwrap();
        let main = runner.node("main.js", &inputs(given));
        assert_ne!(main.code, Some(0), "{what}");
        assert!(main.stdout.contains("::error::"), "{what}: {}", main.stdout);
        // Outputs are known before `up`.
        let outputs = runner.outputs("1");
        assert!(!outputs["run-id"].is_empty(), "{what}");
        assert!(outputs["state-file"].ends_with("state.json"), "{what}");
        let post = runner.node("post.js", &runner.post_env());
        post.expect_code(0);
        assert!(
            post.stdout.contains("main created no service"),
            "{what}: {}",
            post.stdout
        );
        assert!(
            !post.stdout.contains("::error::"),
            "{what}: {}",
            post.stdout
        );
        assert_eq!(runner.env.sandbox.count("POST", "/v1/project"), 0, "{what}");
        assert_eq!(
            runner.env.sandbox.count("DELETE", "/v1/project"),
            0,
            "{what}"
        );
    }
}

#[test]
fn two_uses_in_one_job_work_side_by_side() {
    let runner = Runner::new(ONE);
    std::fs::write(runner.env.path("db.yaml"), PG).unwrap();
    let first = runner.step("1", &action_dir(), "main.js", &BTreeMap::new());
    first.expect_code(0);
    // The runner gives later steps what earlier ones put in $GITHUB_ENV.
    let mut given = key_values(&runner.file("env"));
    given.extend(inputs(&[("manifest", "db.yaml")]));
    let second = runner.step("2", &action_dir(), "main.js", &given);
    second.expect_code(0);
    assert!(!second.stdout.contains("::warning::"), "{}", second.stdout);
    assert_eq!(runner.env.sandbox.live_names().len(), 2);
    assert_ne!(
        runner.outputs("1")["state-file"],
        runner.outputs("2")["state-file"]
    );
    let github_env = key_values(&runner.file("env"));
    assert!(github_env.contains_key("CACHE_URI") && github_env.contains_key("DB_URI"));
    // Posts run in reverse order; each tears down its own run only.
    let post = runner.step("2", &action_dir(), "post.js", &runner.post_env_of("2"));
    post.expect_code(0);
    let left = runner.env.sandbox.live_names();
    assert_eq!(left.len(), 1);
    assert!(left[0].starts_with("ae-cache-"), "{left:?}");
    runner
        .step("1", &action_dir(), "post.js", &runner.post_env_of("1"))
        .expect_code(0);
    assert!(runner.env.sandbox.live_names().is_empty());
}

#[test]
fn keep_on_failure_keeps_the_services_of_a_failed_job() {
    let runner = Runner::new(ONE);
    runner
        .node("main.js", &inputs(&[("keep-on-failure", "TRUE")]))
        .expect_code(0);
    // A later step failed: the runner evaluates job.status to `failure` for post.
    let mut failed = runner.post_env();
    failed.extend(default_inputs("failure"));
    let post = runner.node("post.js", &failed);
    post.expect_code(0);
    assert!(
        post.stdout.contains("::warning::") && post.stdout.contains("kept"),
        "{}",
        post.stdout
    );
    assert_eq!(runner.env.sandbox.live_names().len(), 1);
    runner
        .env
        .run(&[
            "down",
            "--force",
            "--missing-ok",
            "--state-file",
            &runner.outputs("1")["state-file"],
        ])
        .expect_code(0);
    assert!(runner.env.sandbox.live_names().is_empty());

    // The same setting in a job that succeeded: post deletes.
    let runner = Runner::new(ONE);
    runner
        .node("main.js", &inputs(&[("keep-on-failure", "True")]))
        .expect_code(0);
    runner.node("post.js", &runner.post_env()).expect_code(0);
    assert!(runner.env.sandbox.live_names().is_empty());

    // Without it, a failed job's services are deleted.
    let runner = Runner::new(ONE);
    runner.node("main.js", &BTreeMap::new()).expect_code(0);
    let mut failed = runner.post_env();
    failed.extend(default_inputs("failure"));
    runner.node("post.js", &failed).expect_code(0);
    assert!(runner.env.sandbox.live_names().is_empty());
}

#[test]
fn booleans_follow_the_actions_toolkit() {
    let runner = Runner::new(ONE);
    // A stand-in binary that records the arguments main gives `up`.
    let fake = runner.file("fake-binary");
    let args_file = runner.file("args");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$@\" > '{}'\n", args_file.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let fake = fake.display().to_string();
    for (value, keep) in [
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("false", false),
        ("False", false),
        ("FALSE", false),
    ] {
        let _ = std::fs::remove_file(&args_file);
        runner
            .node(
                "main.js",
                &inputs(&[("binary", &fake), ("keep-on-failure", value)]),
            )
            .expect_code(0);
        let args = std::fs::read_to_string(&args_file).unwrap();
        assert!(args.starts_with("up "), "{args}");
        assert_eq!(args.contains("--keep-on-failure"), keep, "{value}: {args}");
    }
    for value in ["yes", "1", "tRUE", "on", ""] {
        let _ = std::fs::remove_file(&args_file);
        let main = runner.node(
            "main.js",
            &inputs(&[("binary", &fake), ("keep-on-failure", value)]),
        );
        main.expect_code(1);
        assert!(
            main.stdout.contains("is not a boolean"),
            "{value}: {}",
            main.stdout
        );
        assert!(!args_file.exists(), "{value}: up must not run");
    }
}

#[test]
fn with_reuse_post_leaves_the_pull_requests_environment_to_the_close() {
    let runner = Runner::new(ONE);
    // Without a run id stable for the pull request, nothing starts.
    let main = runner.node("main.js", &inputs(&[("reuse", "true")]));
    main.expect_code(1);
    assert!(
        main.stdout.contains("input reuse: needs a run-id"),
        "{}",
        main.stdout
    );
    let reuse = inputs(&[("reuse", "true"), ("run-id", "pr-5")]);
    runner.node("main.js", &reuse).expect_code(0);
    let post = runner.node("post.js", &runner.post_env());
    post.expect_code(0);
    assert!(
        post.stdout
            .contains("run pr-5 is the pull request's environment (reuse): it stays"),
        "{}",
        post.stdout
    );
    assert_eq!(runner.env.sandbox.live_names(), vec!["ae-cache-pr-5"]);
    assert_eq!(runner.env.sandbox.count("DELETE", "/v1"), 0);
    // The next push's job adopts it: no create.
    let creates = runner
        .env
        .sandbox
        .count("POST", "/v1/project/test-project/service");
    runner.node("main.js", &reuse).expect_code(0);
    assert_eq!(
        runner
            .env
            .sandbox
            .count("POST", "/v1/project/test-project/service"),
        creates
    );
}

#[test]
fn a_second_use_that_overwrites_the_first_ones_variables_says_so() {
    let runner = Runner::new(ONE);
    // Another manifest with a service of the same key: the same variable names.
    std::fs::write(
        runner.env.path("other.yaml"),
        "project: test-project\nname_prefix: other\nservices:\n  cache: {type: valkey, plan: hobbyist}\n",
    )
    .unwrap();
    runner
        .step("1", &action_dir(), "main.js", &BTreeMap::new())
        .expect_code(0);
    let mut given = key_values(&runner.file("env"));
    given.extend(inputs(&[("manifest", "other.yaml")]));
    let second = runner.step("2", &action_dir(), "main.js", &given);
    second.expect_code(0);
    let warning: Vec<&str> = second
        .stdout
        .lines()
        .filter(|l| l.starts_with("::warning::"))
        .collect();
    pinned!(warning.join("\n"), @"::warning::CACHE_SERVICE_NAME, CACHE_URI, CACHE_HOST, CACHE_PORT, CACHE_USER, CACHE_PASSWORD were set by an earlier step (another use of this action?) and are now this run's: the steps after see only these. Give the services of one use an `env_prefix` in its manifest, or set `github-env: none` on it and read its env-file");
    for step in ["2", "1"] {
        runner
            .step(step, &action_dir(), "post.js", &runner.post_env_of(step))
            .expect_code(0);
    }
    assert!(runner.env.sandbox.live_names().is_empty());
}

#[test]
fn action_code_newer_than_its_release_is_warned_about() {
    let (dir, served) = release_assets(&stand_in());
    let checkout = released_checkout(dir.path());
    let server = GitHub::serving(served);
    let release: Value = serde_json::from_str(
        &std::fs::read_to_string(checkout.path().join("action/release.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(release["action_sha256"].as_str().unwrap().len(), 64);
    let runner = Runner::new(ONE);
    let (main, _) = from_release(&runner, checkout.path(), &server, "v1");
    main.expect_code(0);
    assert!(!main.stdout.contains("::warning::"), "{}", main.stdout);
    runner.node("post.js", &runner.post_env()).expect_code(0);

    // main, a commit later: its code changed, its release.json did not.
    let main_js = checkout.path().join("action/main.js");
    let mut code = std::fs::read_to_string(&main_js).unwrap();
    code.push_str("// a change after the release\n");
    std::fs::write(&main_js, code).unwrap();
    let runner = Runner::new(ONE);
    let (main, post) = from_release(&runner, checkout.path(), &server, "main");
    main.expect_code(0);
    post.expect_code(0);
    let warning: Vec<&str> = main
        .stdout
        .lines()
        .filter(|l| l.starts_with("::warning::"))
        .collect();
    pinned!(warning.join("\n"), @"::warning::the action at main is not the code released as v1.2.3, yet runs v1.2.3's binary (the last release it knows): they may not match. Use the action at a release tag such as @v1, or set input `binary` to a build of the same revision");
}
