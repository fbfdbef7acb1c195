//! The GitHub Action, run with this machine's Node against the sandbox, with the
//! runner's files emulated: $GITHUB_ENV, $GITHUB_OUTPUT, $GITHUB_STATE,
//! $GITHUB_STEP_SUMMARY and INPUT_* variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

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

struct Runner {
    env: Env,
    files: tempfile::TempDir,
}

impl Runner {
    fn new(manifest: &str) -> Self {
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

    fn node(&self, script: &str, extra: &BTreeMap<String, String>) -> Run {
        let mut cmd = Command::new("node");
        cmd.arg(repo().join("action").join(script))
            .current_dir(self.env.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.env.dir.path())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_REPOSITORY", "acme/shop")
            .env("GITHUB_RUN_ID", "4242")
            .env("GITHUB_ENV", self.file("env"))
            .env("GITHUB_OUTPUT", self.file("output"))
            .env("GITHUB_STATE", self.file("state"))
            .env("GITHUB_STEP_SUMMARY", self.file("summary"))
            .env("RUNNER_TEMP", self.files.path())
            .env("INPUT_BINARY", BIN)
            .env("INPUT_MANIFEST", "aiven-ephemeral.yaml")
            .env("INPUT_TOKEN", &self.env.sandbox.token)
            .env("INPUT_API-URL", &self.env.sandbox.url)
            .env("INPUT_TIMEOUT", "2m")
            .envs(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        run(cmd)
    }

    /// The runner hands what main saved to post as STATE_<name>.
    fn post_env(&self) -> BTreeMap<String, String> {
        key_values(&self.file("state"))
            .into_iter()
            .map(|(k, v)| (format!("STATE_{k}"), v))
            .collect()
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
    let runner = Runner::new(MANIFEST);
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
    let env_file = std::fs::read_to_string(runner.file("env")).unwrap();
    let github_env = key_values(&runner.file("env"));
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
    let outputs = key_values(&runner.file("output"));
    let run_id = outputs["run-id"].clone();
    assert_eq!(run_id.len(), 8);
    assert!(
        Path::new(&outputs["env-file"]).is_absolute() && Path::new(&outputs["env-file"]).exists()
    );
    assert!(Path::new(&outputs["state-file"]).exists());
    let services: Value = serde_json::from_str(&outputs["services"]).unwrap();
    assert_eq!(services.as_array().unwrap().len(), 2);
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

    let post = runner.node("post.js", &runner.post_env());
    post.expect_code(0);
    assert!(runner.env.sandbox.live_names().is_empty());
    let summary = std::fs::read_to_string(runner.file("summary")).unwrap();
    assert!(summary.contains("deleted"), "{summary}");
}

#[test]
fn post_cleans_up_after_the_workspace_was_cleaned() {
    let runner = Runner::new(MANIFEST);
    runner.node("main.js", &BTreeMap::new()).expect_code(0);
    assert_eq!(runner.env.sandbox.live_names().len(), 2);
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
        for part in js.split("input('").skip(1) {
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
}
