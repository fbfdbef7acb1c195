//! Inside the services: what each type exports, certificates that chain to the CA,
//! databases/users/topics/ACLs created exactly once through transient answers, forks.

use std::collections::BTreeMap;

use serde_json::json;

use crate::common::*;

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(|l| {
            let (k, v) = l.split_once('=').expect("NAME=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn openssl_verify(ca: &str, cert: &str) {
    let out = std::process::Command::new("openssl")
        .args(["verify", "-CAfile", ca, cert])
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{cert} does not chain to {ca}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_pem(path: &str, kind: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains(&format!("-----BEGIN {kind}")))
}

#[test]
fn every_type_exports_what_the_readme_lists() {
    let env = Env::new(
        "project: test-project\nservices:\n  pg: {type: pg, plan: hobbyist, databases: [app], users: [u1]}\n  my: {type: mysql, plan: hobbyist, users: [u2]}\n  os: {type: opensearch, plan: hobbyist}\n  vk: {type: valkey, plan: hobbyist, users: [u3]}\n  ev:\n    type: kafka\n    plan: startup-2\n    users: [app]\n    user_config: {kafka_authentication_methods: {sasl: true}, schema_registry: true, kafka_rest: true}\n",
    );
    env.run(&["up", "--run-id", "types1"]).expect_code(0);
    let e = parse_env(&env.env_file());
    let get = |k: &str| {
        e.get(k)
            .unwrap_or_else(|| panic!("{k} missing from {e:#?}"))
            .clone()
    };

    assert!(
        get("PG_URI").starts_with("postgres://avnadmin:AVNS_")
            && get("PG_URI").ends_with("/app?sslmode=require")
    );
    assert!(get("PG_URI_VERIFY").contains("sslmode=verify-full&sslrootcert=/"));
    assert_eq!(get("PG_DATABASE"), "app");
    assert!(get("PG_USER_U1_URI").starts_with("postgres://u1:"));

    assert!(
        get("MY_URI").starts_with("mysql://avnadmin:")
            && get("MY_URI").ends_with("/defaultdb?ssl-mode=REQUIRED")
    );
    assert_eq!(get("MY_SSLMODE"), "REQUIRED");
    assert_eq!(get("MY_DATABASE"), "defaultdb");
    assert!(get("MY_USER_U2_PASSWORD").starts_with("AVNS_"));

    assert!(get("OS_URI").starts_with("https://avnadmin:"));
    assert_eq!(get("OS_USER"), "avnadmin");
    assert!(!e.contains_key("OS_DATABASE"));

    assert!(get("VK_URI").starts_with("rediss://default:"));
    assert_eq!(get("VK_USER"), "default");
    assert!(get("VK_USER_U3_URI").starts_with("rediss://u3:"));

    assert_eq!(get("EV_URI"), get("EV_BOOTSTRAP_SERVERS"));
    assert_eq!(get("EV_SECURITY_PROTOCOL"), "SSL");
    assert_eq!(get("EV_SASL_MECHANISM"), "SCRAM-SHA-256");
    assert_ne!(
        get("EV_SASL_BOOTSTRAP_SERVERS"),
        get("EV_BOOTSTRAP_SERVERS"),
        "SASL has its own listener"
    );
    assert!(get("EV_SCHEMA_REGISTRY_URI").starts_with("https://avnadmin:"));
    assert!(get("EV_REST_URI").starts_with("https://"));

    // Certificates: files, PEM, 0600, chaining to the project CA.
    let ca = get("EV_CA_CERT");
    assert!(is_pem(&ca, "CERTIFICATE"));
    for (cert, key) in [
        ("EV_ACCESS_CERT", "EV_ACCESS_KEY"),
        ("EV_USER_APP_ACCESS_CERT", "EV_USER_APP_ACCESS_KEY"),
    ] {
        assert!(is_pem(&get(cert), "CERTIFICATE"), "{cert}");
        assert!(is_pem(&get(key), "PRIVATE KEY"), "{key}");
        assert_eq!(mode(std::path::Path::new(&get(key))), 0o600);
        openssl_verify(&ca, &get(cert));
    }
    // No multiline value, no quotes: a valid GitLab dotenv report.
    assert!(
        env.env_file()
            .lines()
            .all(|l| !l.contains('"') && !l.is_empty())
    );
    env.run(&["down"]).expect_code(0);
}

#[test]
fn the_exported_kafka_credentials_pass_the_listeners_mutual_tls() {
    let env = Env::new(
        "project: test-project\nservices:\n  ev: {type: kafka, plan: startup-2, probe: tls}\n",
    );
    env.run(&["up"]).expect_code(0);
    let e = parse_env(&env.env_file());
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &e["EV_BOOTSTRAP_SERVERS"],
            "-brief",
            "-verify_return_error",
        ])
        .args([
            "-CAfile",
            &e["EV_CA_CERT"],
            "-cert",
            &e["EV_ACCESS_CERT"],
            "-key",
            &e["EV_ACCESS_KEY"],
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Verification: OK"), "{text}");
    env.run(&["down"]).expect_code(0);
}

#[test]
fn topics_and_acls_are_created_once_through_transient_answers() {
    let mut config = fast_config();
    config.create_lag = std::time::Duration::from_millis(100);
    let env = Env::with(
        "project: test-project\nservices:\n  ev:\n    type: kafka\n    plan: startup-2\n    users: [app]\n    topics:\n      - {name: orders, partitions: 3, replication: 3}\n      - {name: audit}\n    acls:\n      - {username: app, topic: \"orders*\", permission: readwrite}\n    default_acl: false\n",
        Sandbox::with(config),
    );
    let topic = "/v1/project/*/service/*/topic";
    // The real API's words, not the sandbox's: each answer is one a client of the real
    // API is seen to retry, or the spec's own example.
    // terraform-provider-aiven 271b2c15 (#1507):
    env.sandbox.fault(json!({"method": "POST", "path": topic, "nth": [1], "fault": {"kind": "status", "status": 409, "message": "Cluster only has 2 broker(s), cannot set replication factor to 3"}}));
    env.sandbox.fault(json!({"method": "POST", "path": topic, "nth": [2], "fault": {"kind": "status", "status": 501, "message": "Failed to create Kafka topic: orders"}}));
    env.sandbox.fault(
        json!({"method": "POST", "path": topic, "nth": [3], "fault": {"kind": "lost_response"}}),
    );
    env.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service/*/acl", "nth": [1], "fault": {"kind": "status", "status": 503}}));
    // The spec's example error, with its code:
    env.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service/*/acl", "nth": [2], "fault": {"kind": "status", "status": 409, "message": "Database not powered on", "error_code": "not_powered"}}));
    // aiven-go-client's isServiceLagError (`Service \S+ does not exist`), no code:
    env.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service/*/user", "nth": [1], "fault": {"kind": "status", "status": 404, "message": "Service 'ae-ev-x' does not exist"}}));
    env.run(&["up"]).expect_code(0);
    let svc = &env.sandbox.live_services()[0];
    assert_eq!(
        svc["topics"],
        json!(["orders", "audit"]),
        "each topic exactly once"
    );
    let acls = svc["acls"].as_array().unwrap();
    assert_eq!(
        acls.len(),
        1,
        "the default ACL is gone, ours is there once: {acls:?}"
    );
    assert_eq!(acls[0]["username"], "app");
    assert_eq!(acls[0]["permission"], "readwrite");
    assert_eq!(svc["users"], json!(["avnadmin", "app"]));
    env.run(&["down"]).expect_code(0);
}

#[test]
fn a_failing_sub_resource_is_a_provisioning_failure_naming_it() {
    let env = Env::new(
        "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist, databases: [app]}\n",
    );
    env.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service/*/db", "fault": {"kind": "status", "status": 400, "message": "Invalid database name"}}));
    let up = env.run(&["up", "--run-id", "sub1"]);
    up.expect_code(1);
    pinned!(up.told(), @"error: ae-db-sub1 (services.db): creating database `app` in ae-db-sub1: HTTP 400: Invalid database name");
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn a_fork_sends_the_user_config_the_api_uses() {
    let env = Env::new(
        "project: test-project\nservices:\n  copy:\n    type: pg\n    plan: hobbyist\n    fork_from: {service: staging-db, project: test-project, recovery_target_time: \"2026-11-01T10:00:00Z\"}\n",
    );
    let (status, _) = env.sandbox.api(
        "POST",
        &format!("/v1/project/{PROJECT}/service"),
        Some(json!({"service_name": "staging-db", "service_type": "pg", "plan": "hobbyist", "project_vpc_id": null})),
    );
    assert_eq!(status, 200);
    env.run(&["up", "--run-id", "fork1"]).expect_code(0);
    let create = env
        .sandbox
        .requests()
        .into_iter()
        .find(|r| r["method"] == "POST" && r["body"]["service_name"] == "ae-copy-fork1")
        .unwrap();
    assert_eq!(
        create["body"]["user_config"],
        json!({"service_to_fork_from": "staging-db", "project_to_fork_from": "test-project", "recovery_target_time": "2026-11-01T10:00:00Z"})
    );
    env.run(&["down"]).expect_code(0);
    assert_eq!(
        env.sandbox.live_names(),
        vec!["staging-db"],
        "the source is never touched"
    );
}

#[test]
fn fork_settings_are_checked_offline() {
    let env = Env::new(
        "services:\n  copy:\n    type: kafka\n    plan: startup-2\n    fork_from: {service: Staging, recovery_target_time: yesterday}\n",
    );
    let out = env.run(&["validate"]);
    out.expect_code(2);
    pinned!(out.stderr, @"
    error: aiven-ephemeral.yaml:5:16: type `kafka` cannot be forked
     --> aiven-ephemeral.yaml:5:16
      |
    5 |     fork_from: {service: Staging, recovery_target_time: yesterday}
      |                ^ type `kafka` cannot be forked
      hint: fork_from works with alloydbomni, clickhouse, mysql, opensearch, pg, valkey
    error: aiven-ephemeral.yaml:5:26: fork_from.service `Staging` is invalid: an existing service's name
     --> aiven-ephemeral.yaml:5:26
      |
    5 |     fork_from: {service: Staging, recovery_target_time: yesterday}
      |                          ^ fork_from.service `Staging` is invalid: an existing service's name
    error: aiven-ephemeral.yaml:5:57: type `kafka` has no point-in-time recovery
     --> aiven-ephemeral.yaml:5:57
      |
    5 |     fork_from: {service: Staging, recovery_target_time: yesterday}
      |                                                         ^ type `kafka` has no point-in-time recovery
      hint: remove recovery_target_time to fork from the latest backup
    error: aiven-ephemeral.yaml:5:57: recovery_target_time `yesterday` is not an RFC 3339 time
     --> aiven-ephemeral.yaml:5:57
      |
    5 |     fork_from: {service: Staging, recovery_target_time: yesterday}
      |                                                         ^ recovery_target_time `yesterday` is not an RFC 3339 time
      hint: write e.g. [TIME]
    ");
}

#[test]
fn tls_probes_follow_each_protocols_way_into_tls() {
    let env = Env::new(
        "project: test-project\nservices:\n  pg: {type: pg, plan: hobbyist, probe: tls}\n  my: {type: mysql, plan: hobbyist, probe: tls}\n  vk: {type: valkey, plan: hobbyist, probe: tls}\n  os: {type: opensearch, plan: hobbyist, probe: tls}\n",
    );
    env.run(&["up", "--timeout", "1m"]).expect_code(0);
    env.run(&["down"]).expect_code(0);
}
