//! The sandbox itself: validation like the real API, its lifecycle, each fault kind,
//! its configuration errors, and the `sandbox` command.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

fn create(s: &Sandbox, body: Value) -> (u16, Value) {
    s.api(
        "POST",
        &format!("/v1/project/{PROJECT}/service"),
        Some(body),
    )
}

fn pg(name: &str) -> Value {
    json!({"service_name": name, "service_type": "pg", "plan": "hobbyist", "project_vpc_id": null})
}

#[track_caller]
fn assert_error(r: (u16, Value), status: u16, needle: &str) {
    assert_eq!(r.0, status, "{}", r.1);
    assert_eq!(r.1["errors"][0]["status"], status, "{}", r.1);
    let message = r.1["message"].as_str().unwrap();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    assert_eq!(r.1["errors"][0]["message"], message);
}

#[test]
fn authentication_is_required_and_answers_the_apis_body() {
    let s = Sandbox::start();
    let (status, body) = s.call_without_token("/v1/project/test-project/service");
    assert_eq!(status, 403);
    assert_eq!(body["errors"][0]["error_code"], "authentication_failed");
    assert_eq!(body["message"], "Authentication failed");
    let (status, _) = s.call_without_token("/v1/clouds");
    assert_eq!(status, 200, "clouds need no token");
}

#[test]
fn validation_errors_like_the_real_api() {
    let s = Sandbox::start();
    assert_error(
        create(&s, pg("Bad_Name")),
        400,
        "Service name must consist of",
    );
    assert_error(create(&s, pg("-leading")), 400, "Service name");
    assert_error(
        create(
            &s,
            json!({"service_name": "x1", "service_type": "nosuch", "plan": "hobbyist"}),
        ),
        400,
        "Invalid service type",
    );
    assert_error(
        create(
            &s,
            json!({"service_name": "x1", "service_type": "pg", "plan": "tiny"}),
        ),
        400,
        "Invalid plan 'tiny'",
    );
    assert_error(
        create(
            &s,
            json!({"service_name": "x1", "service_type": "pg", "plan": "hobbyist", "cloud": "mars-1"}),
        ),
        400,
        "Invalid cloud",
    );
    assert_error(
        create(
            &s,
            json!({"service_name": "x1", "service_type": "pg", "plan": "hobbyist", "user_config": {"nope": 1}}),
        ),
        400,
        "'nope' was unexpected",
    );
    assert_error(
        create(
            &s,
            json!({"service_name": "x1", "service_type": "pg", "plan": "hobbyist", "tags": {"1bad": "v"}}),
        ),
        400,
        "Invalid tag key",
    );
    assert_eq!(create(&s, pg("taken")).0, 200);
    assert_error(create(&s, pg("taken")), 409, "already in use");
    assert_error(
        s.api(
            "GET",
            &format!("/v1/project/{PROJECT}/service/nosuch"),
            None,
        ),
        404,
        "Service nosuch does not exist",
    );
    assert_error(
        s.api("GET", "/v1/project/nosuch-project/service", None),
        404,
        "Project nosuch-project does not exist",
    );
    assert_error(
        s.api(
            "DELETE",
            &format!("/v1/project/{PROJECT}/service/nosuch"),
            None,
        ),
        404,
        "does not exist",
    );
}

#[test]
fn deleted_names_stay_taken_for_a_while() {
    let mut config = fast_config();
    config.name_reservation = Duration::from_millis(600);
    let s = Sandbox::with(config);
    assert_eq!(create(&s, pg("reused")).0, 200);
    assert_eq!(
        s.api(
            "DELETE",
            &format!("/v1/project/{PROJECT}/service/reused"),
            None
        )
        .0,
        200
    );
    assert_error(
        s.api(
            "GET",
            &format!("/v1/project/{PROJECT}/service/reused"),
            None,
        ),
        404,
        "does not exist",
    );
    assert_error(create(&s, pg("reused")), 409, "already in use");
    // The name comes free once its reservation ends (a refused create changes nothing).
    let start = std::time::Instant::now();
    while create(&s, pg("reused")).0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the name stayed reserved"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn termination_protection_blocks_delete_and_poweroff() {
    let s = Sandbox::start();
    let mut body = pg("guarded");
    body["termination_protection"] = json!(true);
    assert_eq!(create(&s, body).0, 200);
    let path = format!("/v1/project/{PROJECT}/service/guarded");
    let r = s.api("DELETE", &path, None);
    assert_error(
        r,
        403,
        "Service is protected against termination and shutdown. Remove termination protection first.",
    );
    assert_error(
        s.api("PUT", &path, Some(json!({"powered": false}))),
        403,
        "protected against termination",
    );
    assert_eq!(
        s.api("PUT", &path, Some(json!({"termination_protection": false})))
            .0,
        200
    );
    assert_eq!(s.api("DELETE", &path, None).0, 200);
}

#[test]
fn the_vpc_trap_an_absent_project_vpc_id_lands_in_the_vpc() {
    let mut config = fast_config();
    config.projects[0].vpcs = vec![aiven_sandbox::VpcConfig {
        cloud: "google-europe-west1".into(),
        network_cidr: "10.1.0.0/24".into(),
    }];
    let s = Sandbox::with(config);
    let (_, v) = create(
        &s,
        json!({"service_name": "omitted", "service_type": "pg", "plan": "hobbyist"}),
    );
    assert!(
        v["service"]["project_vpc_id"].is_string(),
        "absent key: into the VPC"
    );
    assert_eq!(v["service"]["components"][0]["route"], "private");
    let (_, v) = create(&s, pg("explicit-null"));
    assert!(
        v["service"]["project_vpc_id"].is_null(),
        "null: public network"
    );
    let (_, vpcs) = s.api("GET", &format!("/v1/project/{PROJECT}/vpcs"), None);
    assert_eq!(vpcs["vpcs"][0]["cloud_name"], "google-europe-west1");
}

#[test]
fn lifecycle_secrets_and_nodes() {
    let mut config = fast_config();
    // The second and third brokers come up long after the test ends, so the window in which
    // the service is RUNNING but not every broker runs is open for the whole test, not for a
    // few seconds that a loaded machine's GET-then-POST can straddle.
    config.node_lag = Duration::from_secs(3600);
    let s = Sandbox::with(config);
    let (_, created) = create(
        &s,
        json!({"service_name": "k1", "service_type": "kafka", "plan": "startup-2", "project_vpc_id": null}),
    );
    assert_eq!(created["service"]["state"], "REBUILDING");
    // RUNNING comes before every broker runs (node_lag): readiness must check nodes.
    let start = std::time::Instant::now();
    let nodes = loop {
        let (_, v) = s.api("GET", &format!("/v1/project/{PROJECT}/service/k1"), None);
        if v["service"]["state"] == "RUNNING" {
            break v["service"]["node_states"].clone();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{v}");
        std::thread::sleep(Duration::from_millis(30));
    };
    let states: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["running", "syncing_data", "syncing_data"]);
    // Replication above the running brokers is refused, as the real API does; within them it
    // is accepted.
    let topics = format!("/v1/project/{PROJECT}/service/k1/topic");
    assert_error(
        s.api(
            "POST",
            &topics,
            Some(json!({"topic_name": "t", "partitions": 1, "replication": 3})),
        ),
        409,
        "Cluster only has 1 broker(s), cannot set replication factor to 3",
    );
    let (status, body) = s.api(
        "POST",
        &topics,
        Some(json!({"topic_name": "t", "partitions": 1, "replication": 1})),
    );
    assert_eq!(status, 200, "{body}");
    // Without include_secrets passwords are redacted; with it they are not.
    let (_, plain) = s.api("GET", &format!("/v1/project/{PROJECT}/service/k1"), None);
    assert_eq!(plain["service"]["users"][0]["password"], "<redacted>");
    assert_eq!(plain["service"]["users"][0]["access_key"], "<redacted>");
    let (_, full) = s.api(
        "GET",
        &format!("/v1/project/{PROJECT}/service/k1?include_secrets=true"),
        None,
    );
    assert!(
        full["service"]["users"][0]["password"]
            .as_str()
            .unwrap()
            .starts_with("AVNS_")
    );
    assert_eq!(full["service"]["acl"][0]["id"], "default");
    assert_eq!(
        full["service"]["components"][0]["kafka_ssl_ca"],
        "project_ca"
    );
}

#[test]
fn topics_go_from_configuring_to_active() {
    let mut config = fast_config();
    config.topic_activation = Duration::from_millis(500);
    let s = Sandbox::with(config);
    create(
        &s,
        json!({"service_name": "k2", "service_type": "kafka", "plan": "startup-2", "project_vpc_id": null}),
    );
    wait_running(&s, "k2");
    let base = format!("/v1/project/{PROJECT}/service/k2/topic");
    assert_eq!(
        s.api(
            "POST",
            &base,
            Some(json!({"topic_name": "orders", "partitions": 3, "replication": 2}))
        )
        .0,
        200
    );
    assert_error(
        s.api("POST", &base, Some(json!({"topic_name": "orders"}))),
        409,
        "already exists",
    );
    let (_, list) = s.api("GET", &base, None);
    assert_eq!(list["topics"][0]["state"], "CONFIGURING");
    assert_error(
        s.api("GET", &format!("{base}/orders"), None),
        501,
        "Failed to fetch Kafka topic",
    );
    let start = std::time::Instant::now();
    while s.api("GET", &base, None).1["topics"][0]["state"] != "ACTIVE" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the topic never became ACTIVE"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.api("GET", &format!("{base}/orders"), None).0, 200);
}

#[test]
fn kafka_certificates_chain_to_the_project_ca_and_the_listener_requires_them() {
    let s = Sandbox::start();
    create(
        &s,
        json!({"service_name": "k3", "service_type": "kafka", "plan": "startup-2", "project_vpc_id": null}),
    );
    let svc = wait_running(&s, "k3");
    let dir = tempfile::tempdir().unwrap();
    let (_, ca) = s.api("GET", &format!("/v1/project/{PROJECT}/kms/ca"), None);
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca = write("ca.pem", ca["certificate"].as_str().unwrap());
    let cert = write("cert.pem", svc["users"][0]["access_cert"].as_str().unwrap());
    let key = write("key.pem", svc["users"][0]["access_key"].as_str().unwrap());
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca)
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let port = svc["components"][0]["port"].as_u64().unwrap().to_string();
    // TLS 1.2: a missing client certificate fails the handshake itself (with 1.3 the
    // alert may come after the client has already hung up).
    let connect = |with_cert: bool| {
        let mut c = std::process::Command::new("openssl");
        c.args([
            "s_client",
            "-tls1_2",
            "-connect",
            &format!("localhost:{port}"),
            "-verify_return_error",
            "-brief",
            "-CAfile",
        ])
        .arg(&ca)
        .stdin(std::process::Stdio::null());
        if with_cert {
            c.arg("-cert").arg(&cert).arg("-key").arg(&key);
        }
        let o = c.output().expect("openssl runs");
        String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout)
    };
    let ok = connect(true);
    assert!(
        ok.contains("Verification: OK") || ok.contains("Verify return code: 0"),
        "{ok}"
    );
    let refused = connect(false);
    assert!(
        refused.contains("alert") || refused.contains("error"),
        "a client without a certificate is refused: {refused}"
    );
}

#[test]
fn every_request_fault_kind() {
    let s = Sandbox::start();
    let list = format!("/v1/project/{PROJECT}/service");
    let rule = |fault: Value| json!({"method": "GET", "path": "/v1/project/*/service", "nth": [1], "fault": fault});
    s.fault(rule(
        json!({"kind": "rate_limit", "seconds": 7, "retry_after_header": true}),
    ));
    let r = s.raw("GET", &list, None);
    assert_eq!(r.0, 429);
    assert_eq!(r.1.as_deref(), Some("7"));
    assert!(
        r.2.contains("Rate limit 120 exceeded - try again in 7s"),
        "{}",
        r.2
    );

    s.admin("DELETE", "/faults", None);
    s.fault(rule(json!({"kind": "rate_limit", "seconds": 3})));
    let r = s.raw("GET", &list, None);
    assert_eq!((r.0, r.1.as_deref()), (429, None));
    assert!(r.2.contains("try again in 3s"));

    for status in [500, 501, 502, 503, 408] {
        s.admin("DELETE", "/faults", None);
        s.fault(rule(json!({"kind": "status", "status": status})));
        let (code, v) = s.api("GET", &list, None);
        assert_eq!(code, status);
        assert_eq!(v["errors"][0]["status"], status);
    }

    s.admin("DELETE", "/faults", None);
    s.fault(rule(json!({"kind": "drop"})));
    assert!(
        s.raw_result("GET", &list, None).is_err(),
        "the connection is closed without an answer"
    );

    s.admin("DELETE", "/faults", None);
    s.fault(json!({"method": "POST", "path": "/v1/project/*/service", "nth": [1], "fault": {"kind": "lost_response"}}));
    assert!(s.raw_result("POST", &list, Some(pg("lost-one"))).is_err());
    assert_eq!(
        s.live_names(),
        vec!["lost-one"],
        "applied although the answer was lost"
    );

    s.admin("DELETE", "/faults", None);
    s.fault(rule(json!({"kind": "latency", "delay": "400ms"})));
    let started = std::time::Instant::now();
    assert_eq!(s.api("GET", &list, None).0, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));

    // Seeded probability: the same seed, the same choices.
    let pick = |seed: u64| {
        let mut c = fast_config();
        c.seed = seed;
        c.faults = vec![serde_json::from_value(json!({"path": "/v1/clouds", "probability": 0.5, "fault": {"kind": "status", "status": 503}})).unwrap()];
        let s = Sandbox::with(c);
        (0..20)
            .map(|_| s.api("GET", "/v1/clouds", None).0)
            .collect::<Vec<u16>>()
    };
    let a = pick(7);
    assert_eq!(a, pick(7));
    assert!(a.contains(&503) && a.contains(&200));
}

#[test]
fn service_faults_reject_and_never_ready() {
    let s = Sandbox::start();
    s.service_fault(json!({"name": "no-*", "reject": {"status": 403, "message": "Quota exceeded for this project"}}));
    assert_error(create(&s, pg("no-way")), 403, "Quota exceeded");
    s.service_fault(json!({"name": "stuck", "never_ready": true}));
    create(&s, pg("stuck"));
    // What is tested is that nothing happens: an hour later, and after a service
    // created since had time to start, it is still REBUILDING.
    s.advance_clock("1h");
    create(&s, pg("fine"));
    wait_running(&s, "fine");
    let (_, v) = s.api("GET", &format!("/v1/project/{PROJECT}/service/stuck"), None);
    assert_eq!(v["service"]["state"], "REBUILDING");
}

#[test]
fn the_clock_moves_forward_for_every_timer_and_timestamp_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config();
    config.provisioning_delay = Duration::from_secs(3600);
    config.name_reservation = Duration::from_secs(3600);
    config.state_file = Some(dir.path().join("sandbox.json"));
    let s = Sandbox::with(config.clone());
    let clock = s.admin("GET", "/clock", None);
    assert_eq!(clock["advanced"], "0s");
    let service = format!("/v1/project/{PROJECT}/service");
    create(&s, pg("slow"));
    let created = s.api("GET", &format!("{service}/slow"), None).1["service"].clone();
    assert_eq!(created["state"], "REBUILDING");
    assert_eq!(create(&s, pg("gone")).0, 200);
    assert_eq!(s.api("DELETE", &format!("{service}/gone"), None).0, 200);
    assert_error(create(&s, pg("gone")), 409, "already in use");

    let before = time::OffsetDateTime::now_utc();
    s.advance_clock("2h");
    // The hour-long provisioning and name reservation are over.
    let running = wait_running(&s, "slow");
    assert_eq!(running["create_time"], created["create_time"]);
    assert_eq!(create(&s, pg("gone")).0, 200);
    // Timestamps, the request log and `Date` read the moved clock.
    let at = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let two_hours = time::Duration::hours(2) - time::Duration::seconds(1);
    assert!(
        at(&running["update_time"]) - before >= two_hours,
        "{running}"
    );
    assert!(at(&s.requests().last().unwrap()["time"]) - before >= two_hours);
    let date = s.date();
    assert!(date - before >= two_hours, "Date: {date}");
    let clock = s.admin("GET", "/clock", None);
    assert_eq!(clock["advanced"], "2h");
    assert!(at(&clock["now"]) - before >= two_hours, "{clock}");

    // Forward only, in the sandbox's duration words.
    for bad in [
        json!({"advance": "-5s"}),
        json!({"advance": "soon"}),
        json!({"by": "1m"}),
    ] {
        let (status, _, body) = s.raw("POST", "/_sandbox/clock", Some(bad));
        assert_eq!(status, 400, "{body}");
    }
    assert_eq!(s.admin("GET", "/clock", None)["advanced"], "2h");
    // The next process of the same world keeps the time it reached.
    drop(s);
    let again = Sandbox::with(config);
    assert_eq!(again.admin("GET", "/clock", None)["advanced"], "2h");
}

#[test]
fn endpoints_accept_tls_only_while_running() {
    let s = Sandbox::start();
    let (_, v) = create(&s, pg("tls1"));
    let port = v["service"]["components"][0]["port"].as_u64().unwrap() as u16;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens while REBUILDING"
    );
    wait_running(&s, "tls1");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    s.api(
        "DELETE",
        &format!("/v1/project/{PROJECT}/service/tls1"),
        None,
    );
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "deleted: the port stays open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plan change rolls forward as Aiven documents it (new nodes beside the old ones,
/// which serve until the switch-over): REBUILDING, and still reachable meanwhile.
#[test]
fn a_plan_change_is_rebuilding_and_keeps_serving_until_the_switch_over() {
    let s = Sandbox::start();
    create(&s, pg("grow"));
    let svc = wait_running(&s, "grow");
    let port = svc["components"][0]["port"].as_u64().unwrap() as u16;
    let (status, v) = s.api(
        "PUT",
        &format!("/v1/project/{PROJECT}/service/grow"),
        Some(json!({"plan": "startup-4"})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["service"]["state"], "REBUILDING");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the old nodes serve while the new ones are built"
    );
    let (_, v) = s.api("GET", &format!("/v1/project/{PROJECT}/service/grow"), None);
    assert_eq!(
        v["service"]["state"], "REBUILDING",
        "connected during the rebuild"
    );
    let svc = wait_running(&s, "grow");
    assert_eq!(svc["plan"], "startup-4");
    let port = svc["components"][0]["port"].as_u64().unwrap() as u16;
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

#[test]
fn bad_config_gets_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        "provisioning_delay: soon\n",
        "faults:\n  - path: /v1/**\n    fault: {kind: teapot}\n",
        "faults:\n  - path: v1\n    fault: {kind: drop}\n",
        "projects:\n  - name: Bad\n",
        "tokne: x\n",
        "projects:\n  - {name: p, default_cloud: mars-1}\n",
    ];
    let mut said = Vec::new();
    for text in cases {
        let path = dir.path().join("sandbox.yaml");
        std::fs::write(&path, text).unwrap();
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["sandbox", "--config"])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let out = run(cmd);
        out.expect_code(2);
        said.push(format!("{text:?}\n{}", out.stderr));
    }
    pinned!(said.join("\n"), @r#"
    "provisioning_delay: soon\n"
    error: invalid sandbox config: line 1 column 21: invalid duration `soon` (expected number at 0); write e.g. `500ms`, `2s`, `1m`
     --> [TMP]/sandbox.yaml:1:21
      |
    1 | provisioning_delay: soon
      |                     ^ invalid duration `soon` (expected number at 0); write e.g. `500ms`, `2s`, `1m`

    "faults:\n  - path: /v1/**\n    fault: {kind: teapot}\n"
    error: invalid sandbox config: line 3 column 13: unknown variant `teapot`, expected one of rate_limit, status, drop, lost_response, latency, hold, body, slow_answer
     --> [TMP]/sandbox.yaml:3:13
      |
    1 | faults:
    2 |   - path: /v1/**
    3 |     fault: {kind: teapot}
      |             ^ unknown variant `teapot`, expected one of rate_limit, status, drop, lost_response, latency, hold, body, slow_answer

    "faults:\n  - path: v1\n    fault: {kind: drop}\n"
    error: sandbox config [TMP]/sandbox.yaml: faults[0]: path `v1` must start with `/`

    "projects:\n  - name: Bad\n"
    error: sandbox config [TMP]/sandbox.yaml: project name `Bad` must match ^[a-z][-a-z0-9]{0,62}$

    "tokne: x\n"
    error: invalid sandbox config: line 1 column 1: unknown field `tokne`, expected one of token, projects, accept_any_project, provisioning_delay, delays, power_on_delay, node_lag, name_reservation, delete_lag, topic_activation, create_lag, clock_offset_secs, rate_limit, seed, faults, service_faults, state_file, backends, tls, stop_drain
     --> [TMP]/sandbox.yaml:1:1
      |
    1 | tokne: x
      | ^ unknown field `tokne`, expected one of token, projects, accept_any_project, provisioning_delay, delays, power_on_delay, node_lag, name_reservation, delete_lag, topic_activation, create_lag, clock_offset_secs, rate_limit, seed, faults, service_faults, state_file, backends, tls, stop_drain

    "projects:\n  - {name: p, default_cloud: mars-1}\n"
    error: sandbox config [TMP]/sandbox.yaml: project `p`: unknown cloud `mars-1`; known clouds: google-europe-west1, google-us-east1, aws-eu-central-1, aws-us-east-1, azure-westeurope, do-ams, upcloud-fi-hel
    "#);
}

#[test]
fn the_sandbox_command_serves_and_prints_how_to_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["sandbox", "--port", "0"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let said: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    // Sourced by a shell, the variables reach the commands it runs next.
    std::fs::write(dir.path().join("sandbox.env"), said.join("\n")).unwrap();
    let seen = std::process::Command::new("sh")
        .args(["-c", ". ./sandbox.env && env"])
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&seen.stdout);
    let var = |name: &str| {
        seen.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} not exported: {said:?}"))
            .to_string()
    };
    let url = var("AIVEN_API_URL");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(!var("AIVEN_TOKEN").is_empty());
    assert_eq!(var("AIVEN_PROJECT"), "sandbox");
    let http = blocking_get(&format!("{url}/v1/clouds"));
    assert!(http.contains("google-europe-west1"));
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn pg_and_mysql_endpoints_speak_their_protocols_way_into_tls() {
    let s = Sandbox::start();
    create(&s, pg("proto-pg"));
    create(
        &s,
        json!({"service_name": "proto-my", "service_type": "mysql", "plan": "hobbyist", "project_vpc_id": null}),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &s.ca_pem).unwrap();
    for (name, starttls) in [("proto-pg", "postgres"), ("proto-my", "mysql")] {
        let svc = wait_running(&s, name);
        let port = svc["components"][0]["port"].as_u64().unwrap().to_string();
        // openssl speaks both preambles (-starttls) and then verifies the certificate.
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-starttls",
                starttls,
                "-connect",
                &format!("localhost:{port}"),
                "-brief",
                "-verify_return_error",
                "-CAfile",
            ])
            .arg(&ca)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("Verification: OK"), "{name}: {text}");
    }
}
