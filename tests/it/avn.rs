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
            "the official CLI `avn` is not on PATH: install it with `pip install aiven-client` (in a virtualenv whose bin is on PATH; the README's test command does this)"
        );
        Self {
            sandbox,
            config: tempfile::tempdir().unwrap(),
        }
    }

    /// `avn --url URL --auth-token T <args>`, in an empty configuration (no default
    /// project).
    fn output(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new("avn");
        cmd.args([
            "--url",
            &self.sandbox.url,
            "--auth-token",
            &self.sandbox.token,
        ])
        .args(args)
        .env("AIVEN_CONFIG_DIR", self.config.path())
        .env(
            "AIVEN_CREDENTIALS_FILE",
            self.config.path().join("none.json"),
        )
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("AIVEN_WEB_URL")
        .env_remove("AIVEN_AUTH_TOKEN")
        .env_remove("AIVEN_PROJECT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        run(cmd)
    }

    /// `avn ... <args> --project P`, as its docs show; it must succeed.
    fn run(&self, args: &[&str]) -> Run {
        let args = [args, &["--project", PROJECT]].concat();
        let out = self.output(&args);
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

    avn.run(&["service", "user-create", "avn-kafka", "--username", "ku"]);
    avn.run(&[
        "service",
        "acl-add",
        "avn-kafka",
        "--permission",
        "read",
        "--topic",
        "orders",
        "--username",
        "ku",
    ]);
    every_read_command_works(&avn);

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

/// Every avn command that reads what the sandbox serves, each with a piece of its
/// output that shows it read the right thing. All steps run; the failures are listed
/// together.
fn every_read_command_works(avn: &Avn) {
    let ca = avn.config.path().join("ca.pem");
    let ca_arg = ca.to_str().unwrap();
    let p = ["--project", PROJECT];
    let steps: Vec<(Vec<&str>, &str)> = vec![
        (vec!["project", "details", p[0], p[1]], PROJECT),
        (
            vec!["project", "details", "--json", p[0], p[1]],
            "\"billing_extra_text\"",
        ),
        (vec!["project", "list"], PROJECT),
        (vec!["project", "list", "-v"], "BILLING_CURRENCY"),
        (vec!["project", "list", "--json"], "\"project_name\""),
        (vec!["cloud", "list"], "google-europe-west1"),
        (vec!["cloud", "list", "--json"], "\"geo_region\""),
        (vec!["cloud", "list", p[0], p[1]], "google-europe-west1"),
        (vec!["service", "get", "avn-pg", p[0], p[1]], "RUNNING"),
        (
            vec!["service", "get", "avn-pg", "-v", p[0], p[1]],
            "Service node states",
        ),
        (
            vec!["service", "get", "avn-kafka", "-v", p[0], p[1]],
            "kafka",
        ),
        (
            vec!["service", "get", "avn-valkey", "--json", p[0], p[1]],
            "\"node_states\"",
        ),
        (vec!["service", "list", p[0], p[1]], "avn-valkey"),
        (vec!["service", "list", "-v", p[0], p[1]], "defaultdb"),
        (
            vec!["service", "list", "--json", p[0], p[1]],
            "\"service_uri\"",
        ),
        (vec!["service", "types", p[0], p[1]], "PostgreSQL"),
        (vec!["service", "types", "-v", p[0], p[1]], "options:"),
        (
            vec!["service", "types", "--json", p[0], p[1]],
            "\"user_config_schema\"",
        ),
        (
            vec![
                "service",
                "plans",
                "--service-type",
                "pg",
                "--cloud",
                "google-europe-west1",
                p[0],
                p[1],
            ],
            "pg:hobbyist",
        ),
        (
            vec!["service", "plans", "--json", p[0], p[1]],
            "\"service_plans\"",
        ),
        (vec!["service", "versions"], "MAJOR_VERSION"),
        (
            vec!["service", "database-list", "avn-pg", p[0], p[1]],
            "app",
        ),
        (
            vec!["service", "user-list", "avn-pg", p[0], p[1]],
            "app_user",
        ),
        (
            vec!["service", "user-list", "avn-valkey", p[0], p[1]],
            "+@all",
        ),
        (
            vec![
                "service",
                "user-get",
                "avn-pg",
                "--username",
                "app_user",
                p[0],
                p[1],
            ],
            "regular",
        ),
        (
            vec!["service", "topic-list", "avn-kafka", p[0], p[1]],
            "orders",
        ),
        (
            vec!["service", "topic-get", "avn-kafka", "orders", p[0], p[1]],
            "orders",
        ),
        (vec!["service", "acl-list", "avn-kafka", p[0], p[1]], "ku"),
        (
            vec!["project", "ca-get", "--target-filepath", ca_arg, p[0], p[1]],
            "",
        ),
        (
            vec![
                "service",
                "connection-info",
                "pg",
                "uri",
                "avn-pg",
                p[0],
                p[1],
            ],
            "postgres://avnadmin:",
        ),
        (
            vec![
                "service",
                "connection-info",
                "pg",
                "string",
                "avn-pg",
                p[0],
                p[1],
            ],
            "dbname='defaultdb'",
        ),
        (
            vec!["service", "connection-info", "psql", "avn-pg", p[0], p[1]],
            "psql postgres://",
        ),
        (
            vec![
                "service",
                "connection-info",
                "valkey",
                "uri",
                "avn-valkey",
                p[0],
                p[1],
            ],
            "rediss://default:",
        ),
        (
            vec![
                "service",
                "connection-info",
                "kcat",
                "avn-kafka",
                p[0],
                p[1],
            ],
            "security.protocol=SSL",
        ),
        (
            vec![
                "service",
                "tags",
                "update",
                "avn-pg",
                "--add-tag",
                "team=core",
                p[0],
                p[1],
            ],
            "",
        ),
        (
            vec!["service", "tags", "list", "avn-pg", p[0], p[1]],
            "core",
        ),
        (
            vec!["service", "tags", "list", "avn-pg", "--json", p[0], p[1]],
            "\"team\"",
        ),
    ];
    let mut failed = Vec::new();
    for (args, expect) in &steps {
        let out = avn.output(args);
        if out.code != Some(0) || !out.stdout.contains(expect) {
            failed.push(format!(
                "avn {} (exit {:?}, expected {expect:?} in stdout)\n{}\n{}",
                args.join(" "),
                out.code,
                out.stdout,
                out.stderr
            ));
        }
    }
    let pem = std::fs::read_to_string(&ca).unwrap_or_default();
    if !pem.starts_with("-----BEGIN CERTIFICATE-----") {
        failed.push(format!("avn project ca-get wrote {pem:?}"));
    }
    assert!(
        failed.is_empty(),
        "{} of {} avn steps failed:\n{}",
        failed.len(),
        steps.len() + 1,
        failed.join("\n\n")
    );
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
