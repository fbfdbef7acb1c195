//! The official `avn` CLI (pip package aiven-client), unchanged, against the sandbox.
//! Where avn and the sandbox disagree, the sandbox is wrong: this keeps it honest.

use std::process::Command;

use serde_json::Value;

use crate::common::*;

struct Avn<'a> {
    sandbox: &'a Sandbox,
    config: tempfile::TempDir,
}

impl<'a> Avn<'a> {
    fn new(sandbox: &'a Sandbox) -> Self {
        let probe = Command::new("avn").arg("--version").output();
        assert!(
            probe.as_ref().is_ok_and(|o| o.status.success()),
            "the official CLI is needed: `pip install aiven-client` (.ci/run installs it)"
        );
        Self {
            sandbox,
            config: tempfile::tempdir().unwrap(),
        }
    }

    /// `avn --url URL --auth-token T <args> --project P`, as its docs show.
    fn run(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new("avn");
        cmd.args([
            "--url",
            &self.sandbox.url,
            "--auth-token",
            &self.sandbox.token,
        ])
        .args(args)
        .args(["--project", PROJECT])
        .env("AIVEN_CONFIG_DIR", self.config.path())
        .env(
            "AIVEN_CREDENTIALS_FILE",
            self.config.path().join("none.json"),
        )
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("AIVEN_WEB_URL")
        .env_remove("AIVEN_AUTH_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        let out = run(cmd);
        assert_eq!(
            out.code,
            Some(0),
            "avn {args:?} failed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        out
    }
}

#[test]
fn the_official_avn_cli_works_unchanged() {
    let sandbox = Sandbox::start();
    let avn = Avn::new(&sandbox);
    // With --cloud avn first lists the project's VPCs; without, it does not.
    avn.run(&[
        "service",
        "create",
        "avn-pg",
        "-t",
        "pg",
        "--plan",
        "hobbyist",
        "--cloud",
        "google-europe-west1",
    ]);
    avn.run(&[
        "service",
        "create",
        "avn-kafka",
        "-t",
        "kafka",
        "--plan",
        "startup-2",
        "--no-project-vpc",
    ]);
    avn.run(&[
        "service",
        "create",
        "avn-valkey",
        "-t",
        "valkey",
        "--plan",
        "hobbyist",
        "-c",
        "valkey_version=8.0",
    ]);
    avn.run(&[
        "service",
        "wait",
        "avn-pg",
        "avn-kafka",
        "avn-valkey",
        "--timeout",
        "60",
    ]);

    let got = avn.run(&["service", "get", "avn-pg", "--json"]);
    let svc: Value = serde_json::from_str(&got.stdout).expect("avn prints the service as JSON");
    assert_eq!(svc["state"], "RUNNING");
    assert_eq!(svc["service_type"], "pg");
    assert!(
        svc["service_uri"]
            .as_str()
            .unwrap()
            .starts_with("postgres://avnadmin:")
    );

    let listed = avn.run(&["service", "list"]);
    for name in ["avn-pg", "avn-kafka", "avn-valkey"] {
        assert!(listed.stdout.contains(name), "{}", listed.stdout);
    }
    assert!(listed.stdout.contains("RUNNING"));

    avn.run(&["service", "database-create", "avn-pg", "--dbname", "app"]);
    avn.run(&["service", "user-create", "avn-pg", "--username", "app_user"]);
    avn.run(&[
        "service",
        "topic-create",
        "avn-kafka",
        "orders",
        "--partitions",
        "3",
        "--replication",
        "2",
    ]);

    let svc = &sandbox
        .live_services()
        .into_iter()
        .find(|s| s["service_name"] == "avn-pg")
        .unwrap();
    assert!(
        svc["databases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "app")
    );
    assert!(
        svc["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == "app_user")
    );
    let kafka = sandbox
        .live_services()
        .into_iter()
        .find(|s| s["service_name"] == "avn-kafka")
        .unwrap();
    assert_eq!(kafka["topics"], serde_json::json!(["orders"]));

    avn.run(&[
        "service",
        "terminate",
        "--force",
        "avn-pg",
        "avn-kafka",
        "avn-valkey",
    ]);
    assert!(sandbox.live_names().is_empty());
}

#[test]
fn avn_sees_what_aiven_ephemeral_created() {
    let env = Env::new(PG);
    env.run(&["up", "--run-id", "avn1"]).expect_code(0);
    let avn = Avn::new(&env.sandbox);
    let got = avn.run(&["service", "get", "ae-db-avn1", "--json"]);
    let svc: Value = serde_json::from_str(&got.stdout).unwrap();
    assert_eq!(svc["tags"]["aiven-ephemeral-run"], "avn1");
    assert!(svc["project_vpc_id"].is_null());
    env.run(&["down"]).expect_code(0);
}
