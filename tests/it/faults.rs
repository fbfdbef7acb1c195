//! Faults injected in the sandbox, and what the real binary makes of them: retries,
//! lost answers, never-ready services, failing deletes, bad tokens.

use serde_json::json;

use crate::common::*;

fn create_rule(fault: serde_json::Value, nth: &[u64]) -> serde_json::Value {
    json!({"method": "POST", "path": "/v1/project/*/service", "nth": nth, "fault": fault})
}

#[test]
fn rate_limited_with_retry_after() {
    let env = Env::new(PG);
    env.sandbox.fault(create_rule(
        json!({"kind": "rate_limit", "seconds": 1, "retry_after_header": true}),
        &[1, 2],
    ));
    env.run(&["up"]).expect_code(0);
    let creates = env
        .sandbox
        .requests()
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == format!("/v1/project/{PROJECT}/service"))
        .count();
    assert_eq!(creates, 3, "two 429s, then the create");
    env.run(&["down"]).expect_code(0);
}

#[test]
fn rate_limited_with_only_the_message() {
    let env = Env::new(PG);
    env.sandbox.fault(json!({"method": "GET", "path": "/v1/project/*/service", "nth": [1], "fault": {"kind": "rate_limit", "seconds": 2}}));
    let started = std::time::Instant::now();
    env.run(&["up"]).expect_code(0);
    // The "try again in 2s" text was honoured: the retry waited.
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    env.run(&["down"]).expect_code(0);
}

#[test]
fn server_errors_are_retried() {
    let env = Env::new(PG);
    for status in [500, 502, 503] {
        env.sandbox.fault(json!({"method": "GET", "path": "/v1/project/*/service", "nth": [1], "fault": {"kind": "status", "status": status}}));
    }
    env.sandbox
        .fault(create_rule(json!({"kind": "status", "status": 503}), &[1]));
    env.run(&["up"]).expect_code(0);
    env.run(&["down"]).expect_code(0);
}

#[test]
fn dropped_connections_are_retried() {
    let env = Env::new(PG);
    env.sandbox.fault(json!({"method": "GET", "path": "/v1/project/*/service", "nth": [2], "fault": {"kind": "drop"}}));
    env.run(&["up"]).expect_code(0);
    env.run(&["down"]).expect_code(0);
}

#[test]
fn a_lost_create_response_is_adopted_by_owner_tag() {
    let env = Env::new(PG);
    env.sandbox
        .fault(create_rule(json!({"kind": "lost_response"}), &[1]));
    let up = env.run(&["up", "-v", "--run-id", "lost1"]);
    up.expect_code(0);
    // The log line, after its time and level.
    let adopting: Vec<&str> = up
        .stderr
        .lines()
        .filter_map(|l| l.split_once(" INFO ").map(|(_, said)| said.trim()))
        .filter(|l| l.contains("adopt"))
        .collect();
    pinned!(adopting.join("\n"), @"ae-db-lost1: already exists with our owner tag; adopting it");
    let creates: Vec<u64> = env
        .sandbox
        .requests()
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == format!("/v1/project/{PROJECT}/service"))
        .filter_map(|r| r["status"].as_u64())
        .collect();
    assert_eq!(
        creates,
        vec![200, 409],
        "applied-but-lost, then the retry's conflict"
    );
    assert_eq!(env.sandbox.live_names().len(), 1);
    env.run(&["down"]).expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn a_conflict_with_someone_elses_service_is_not_adopted() {
    let env = Env::new(PG);
    env.sandbox.create_service(
        "ae-db-clash1",
        json!({"aiven-ephemeral-run": "x", "aiven-ephemeral-owner": "someone"}),
    );
    let up = env.run(&["up", "--run-id", "clash1"]);
    up.expect_code(1);
    pinned!(up.told(), @"error: creating ae-db-clash1 (services.db): HTTP 409: Service name is already in use in this project; the existing service belongs to someone else (its owner tag is not this run's), so it is left alone");
    assert_eq!(
        env.sandbox.live_names(),
        vec!["ae-db-clash1"],
        "the foreign service is untouched"
    );
}

#[test]
fn never_ready_times_out_and_tears_down() {
    let env = Env::new(
        "project: test-project\nservices:\n  a: {type: pg, plan: hobbyist}\n  slow: {type: pg, plan: hobbyist}\n",
    );
    env.sandbox
        .service_fault(json!({"name": "ae-slow-*", "never_ready": true}));
    let up = env.run(&["up", "--run-id", "slow1", "--timeout", "3s"]);
    up.expect_code(4);
    pinned!(up.told(), @"
    error: timed out after [T] waiting for: ae-slow-slow1 (REBUILDING)
      hint: raise --timeout, or check the service in the Aiven console; everything created was deleted
    ");
    // Counted from the command's start: never less than --timeout said.
    let said: f64 = up
        .stderr
        .split("timed out after ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .expect("a duration");
    assert!((3.0..10.0).contains(&said), "{}", up.stderr);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn poweroff_is_a_failure() {
    let env = Env::new(PG);
    env.sandbox
        .service_fault(json!({"name": "*", "poweroff_after": "1ms", "ready_after": "300ms"}));
    let up = env.run(&["up", "--run-id", "off1"]);
    up.expect_code(1);
    pinned!(up.told(), @"error: ae-db-off1 (db) is powered off (state POWEROFF)");
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn an_unreachable_endpoint_is_exit_4_with_causes() {
    let env = Env::new(PG);
    env.sandbox
        .service_fault(json!({"name": "*", "unreachable": true}));
    let up = env.run(&["up", "--run-id", "far1", "--timeout", "6s"]);
    up.expect_code(4);
    pinned!(up.told(), @"
    error: ae-db-far1 (db): the API reports it ready, but localhost:[PORT] is not reachable: TCP connect to localhost:[PORT]: Connection refused (os error 111). Likely causes: this runner's egress rules, the service's ip_filter, or a project VPC (set `probe: none` to skip the check)
      hint: raise --timeout, or check the service in the Aiven console; everything created was deleted
    ");
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn deletes_that_keep_failing_are_exit_5_with_names() {
    let env = Env::new(PG);
    env.run(&["up", "--run-id", "stuck1"]).expect_code(0);
    env.sandbox.fault(
        json!({"method": "DELETE", "path": "/v1/**", "fault": {"kind": "status", "status": 500}}),
    );
    // A plain `down` would keep trying for its 10 minutes: a short budget ends it.
    let down = env.run(&["down", "--teardown-timeout", "5s"]);
    down.expect_code(5);
    pinned!(down.told(), @"
    [HH:MM:SS] warning: ae-db-stuck1: not confirmed deleted: HTTP 500: Internal Server Error
    error: teardown incomplete: 1 service(s) could not be confirmed deleted: ae-db-stuck1
      finish it with: aiven-ephemeral down (or `aiven-ephemeral reap --project test-project` once they expire)
    ");
    assert_eq!(env.state()["status"], "tearing_down");
    env.sandbox.admin("DELETE", "/faults", None);
    env.run(&["down"]).expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn a_bad_token_is_exit_3_before_anything_is_created() {
    let env = Env::new(PG);
    let mut cmd = env.cmd(&["up"]);
    cmd.env("AIVEN_TOKEN", "wrong");
    let up = run(cmd);
    up.expect_code(3);
    pinned!(up.told(), @"
    error: reading project test-project: HTTP 403: Authentication failed (authentication_failed)
      hint: check AIVEN_TOKEN (or AIVEN_AUTH_TOKEN / --token-file): it must be a valid, unexpired Aiven token with access to the project
    ");
    assert_eq!(env.sandbox.count("POST", "/v1"), 0);
}

/// The spec's example of a failed response, 403 "Authentication failed", without the
/// `error_code` the spec makes optional: still a bad token (exit 3), not a permission.
#[test]
fn the_specs_authentication_failure_without_its_code_is_exit_3() {
    let env = Env::new(PG);
    env.sandbox.fault(json!({"method": "GET", "path": "/v1/project/*/service", "nth": [1], "fault": {"kind": "status", "status": 403, "message": "Authentication failed"}}));
    let up = env.run(&["up", "--run-id", "auth1"]);
    up.expect_code(3);
    pinned!(up.stderr.trim(), @r"
    [HH:MM:SS] run auth1 in project test-project (1 service(s))
    error: listing the services of project test-project: HTTP 403: Authentication failed
      hint: check AIVEN_TOKEN (or AIVEN_AUTH_TOKEN / --token-file): it must be a valid, unexpired Aiven token with access to the project
    ");
    assert_eq!(env.sandbox.count("POST", "/v1"), 0);
}

/// An unknown project is told by the spec's error code, whatever the message says.
#[test]
fn an_unknown_project_is_told_by_its_error_code() {
    let env = Env::new(PG);
    env.sandbox.fault(json!({"method": "GET", "path": "/v1/project/*/service", "fault": {"kind": "status", "status": 404, "message": "Not found", "error_code": "project_not_found"}}));
    let up = env.run(&["up", "--run-id", "proj1"]);
    up.expect_code(1);
    pinned!(up.stderr.trim(), @r"
    [HH:MM:SS] run proj1 in project test-project (1 service(s))
    error: listing the services of project test-project: HTTP 404: Not found (project_not_found)
      hint: check the project name (manifest `project`, --project or AIVEN_PROJECT)
    ");
    assert_eq!(env.sandbox.count("POST", "/v1"), 0);
}

#[test]
fn a_missing_token_is_exit_2_naming_aiven_token() {
    let env = Env::new(PG);
    let mut cmd = env.cmd(&["up"]);
    cmd.env_remove("AIVEN_TOKEN");
    let up = run(cmd);
    up.expect_code(2);
    pinned!(up.stderr, @"
    error: no Aiven API token: set AIVEN_TOKEN (or AIVEN_AUTH_TOKEN, or pass --token-file)
      hint: create a token in the Aiven console (User profile > Tokens), or try the manifest with --sandbox, which needs none
    ");
    assert!(env.sandbox.requests().is_empty());
}

#[test]
fn sub_resources_survive_transient_answers_and_are_created_once() {
    let env = Env::new(
        "project: test-project\nservices:\n  db:\n    type: pg\n    plan: hobbyist\n    databases: [app, audit]\n    users: [app_user]\n",
    );
    env.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service/*/db", "nth": [1], "fault": {"kind": "status", "status": 503}}));
    env.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service/*/user", "nth": [1], "fault": {"kind": "lost_response"}}));
    env.run(&["up"]).expect_code(0);
    let svc = &env.sandbox.live_services()[0];
    assert_eq!(svc["databases"], json!(["defaultdb", "app", "audit"]));
    assert_eq!(svc["users"], json!(["avnadmin", "app_user"]));
    assert!(env.env_file().contains("DB_USER_APP_USER_PASSWORD=AVNS_"));
    env.run(&["down"]).expect_code(0);
}

#[test]
fn pacing_by_rate_limit_headers_avoids_429s() {
    let mut config = fast_config();
    config.rate_limit = Some(aiven_sandbox::config::RateLimit {
        requests: 12,
        per: std::time::Duration::from_secs(3),
        retry_after_header: false,
    });
    let env = Env::with(
        "project: test-project\nservices:\n  a: {type: pg, plan: hobbyist}\n  b: {type: pg, plan: hobbyist}\n  c: {type: pg, plan: hobbyist}\n",
        Sandbox::with(config),
    );
    env.run(&["up", "--poll-interval", "1s"]).expect_code(0);
    let limited = env
        .sandbox
        .requests()
        .iter()
        .filter(|r| r["status"] == 429)
        .count();
    assert_eq!(
        limited, 0,
        "the client paced itself by X-RateLimit-Remaining"
    );
    env.run(&["down"]).expect_code(0);
}

#[test]
fn an_https_api_behind_a_private_ca_needs_ca_cert() {
    let mut config = fast_config();
    config.tls = true;
    let env = Env::with(PG, Sandbox::with(config));
    assert!(env.sandbox.url.starts_with("https://localhost:"));
    let untrusted = env.run(&["up"]);
    untrusted.expect_code(1);
    pinned!(untrusted.told(), @"
    error: reading project test-project: error sending request for url (https://localhost:[PORT]/v1/project/test-project): client error (Connect): invalid peer certificate: UnknownIssuer
      hint: the API's TLS certificate is not trusted: behind a TLS-inspecting proxy, pass its CA with --ca-cert (AIVEN_CA_CERT)
    ");
    assert!(
        env.sandbox.requests().is_empty(),
        "no request got through the handshake"
    );

    let ca = env.path("corporate-ca.pem");
    std::fs::write(&ca, &env.sandbox.ca_pem).unwrap();
    env.run(&["up", "--ca-cert", ca.to_str().unwrap()])
        .expect_code(0);
    let mut down = env.cmd(&["down"]);
    down.env("AIVEN_CA_CERT", &ca);
    run(down).expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
}

/// A topic asking more replicas than the cluster has brokers: once every broker of the
/// service answers, the API's 409 cannot change, and the run ends at once with its
/// words, naming the service (it used to wait out the whole --timeout). The plan's node
/// count, which `up` checks first, is unreadable here (an answer without it).
#[test]
fn a_topic_with_more_replicas_than_brokers_fails_at_once_with_the_apis_words() {
    let env = Env::new(
        "project: test-project\nservices:\n  events:\n    type: kafka\n    plan: startup-2\n    topics:\n      - {name: orders, replication: 5}\n",
    );
    env.sandbox.fault(json!({
        "method": "GET",
        "path": "/v1/project/*/service-types/kafka/plans/*",
        "fault": {"kind": "body", "body": {}},
    }));
    let started = std::time::Instant::now();
    let up = env.run(&["up", "--run-id", "repl1", "--timeout", "3m"]);
    up.expect_code(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "waited {:?}",
        started.elapsed()
    );
    let said = up
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect::<Vec<_>>();
    pinned!(said.join("\n"), @"error: ae-events-repl1 (services.events): creating topic `orders` in ae-events-repl1: HTTP 409: Cluster only has 3 broker(s), cannot set replication factor to 5");
    assert!(env.sandbox.live_names().is_empty());
}

/// The state file replaced by a directory: no write of it lands any more, as on a full
/// or read-only disk (a read-only mode would not stop root).
fn state_becomes_unwritable(env: &Env) {
    let state = env.path(".aiven-ephemeral/state.json");
    std::fs::remove_file(&state).expect("the state file exists");
    std::fs::create_dir_all(state.join("in-the-way")).expect("a directory in its place");
}

/// `up` in GitHub Actions whose `$GITHUB_ENV` is a FIFO nobody reads: it waits there with
/// every service ready and the env file written. The state file becomes unwritable, then
/// the FIFO is opened and `up` goes on to record that the run is up.
fn up_losing_its_state_file_at_delivery(env: &Env, extra: &[&str]) -> Run {
    let fifo = env.path("github-env");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let mut args = vec!["up"];
    args.extend(extra);
    let mut cmd = env.cmd(&args);
    cmd.env("GITHUB_ACTIONS", "true").env("GITHUB_ENV", &fifo);
    let mut child = cmd.spawn().expect("binary starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !env.path(".aiven-ephemeral/env.sh").exists() {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "up ended before delivery:\n{}",
            wait(child, std::time::Duration::from_secs(1)).stderr
        );
        assert!(std::time::Instant::now() < deadline, "no env file in 60s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    state_becomes_unwritable(env);
    // A reader that never blocks: `up` opens the FIFO, writes (a few KiB fit in the pipe)
    // and goes on.
    let _reader = std::os::unix::fs::OpenOptionsExt::custom_flags(
        std::fs::OpenOptions::new().read(true),
        nix::libc::O_NONBLOCK,
    )
    .open(&fifo)
    .expect("FIFO opens");
    wait(child, std::time::Duration::from_secs(60))
}

/// The lines that speak of the state file, whole.
fn state_lines(text: &str) -> String {
    text.lines()
        .filter(|l| l.contains("state.json"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn up_whose_last_state_write_fails_tears_its_services_down_and_says_what_the_record_lost() {
    let env = Env::new(PG);
    let out = up_losing_its_state_file_at_delivery(&env, &[]);
    out.expect_code(1);
    pinned!(state_lines(&out.stderr), @r"
    ::warning::cannot write state file .aiven-ephemeral/state.json: Is a directory (os error 21); it does not say teardown started; `down` finds the run's services all the same
    ::warning::cannot write state file .aiven-ephemeral/state.json: Is a directory (os error 21); it does not say which services were deleted; `down` finds them gone
    error: cannot write state file .aiven-ephemeral/state.json: Is a directory (os error 21)
    ");
    assert_eq!(
        env.sandbox.live_names(),
        Vec::<String>::new(),
        "{}",
        out.stderr
    );
    assert_eq!(
        env.sandbox
            .count("DELETE", "/v1/project/test-project/service/"),
        1
    );
    assert!(
        !env.path(".aiven-ephemeral/env").exists(),
        "the env file with the deleted services' credentials is gone"
    );
}

#[test]
fn a_kept_run_whose_record_cannot_say_so_is_warned_about() {
    let env = Env::new(PG);
    let out = up_losing_its_state_file_at_delivery(&env, &["--keep-on-failure"]);
    out.expect_code(1);
    pinned!(state_lines(&out.stderr), @r"
    ::warning::cannot write state file .aiven-ephemeral/state.json: Is a directory (os error 21); it does not say the run was kept: a plain `aiven-ephemeral down` deletes its services
    error: cannot write state file .aiven-ephemeral/state.json: Is a directory (os error 21)
    ");
    assert_eq!(env.sandbox.live_services().len(), 1, "kept, as asked");
    assert_eq!(
        env.sandbox
            .count("DELETE", "/v1/project/test-project/service/"),
        0
    );
}

#[test]
fn an_expiry_refresh_that_cannot_be_recorded_is_warned_about() {
    let env = Env::new(PG);
    let mut cmd = env.cmd(&[
        "run",
        "--",
        "sh",
        "-c",
        "rm \"$AIVEN_EPHEMERAL_STATE_FILE\" && mkdir \"$AIVEN_EPHEMERAL_STATE_FILE\" && while [ ! -e go ]; do sleep 0.05; done",
    ]);
    cmd.env("AIVEN_EPHEMERAL_REFRESH_EVERY", "1s");
    let child = cmd.spawn().expect("binary starts");
    let state = env.path(".aiven-ephemeral/state.json");
    let refreshes = |r: &[serde_json::Value]| {
        r.iter()
            .filter(|r| {
                r["method"] == "PATCH" && r["path"].as_str().is_some_and(|p| p.ends_with("/tags"))
            })
            .count()
    };
    env.sandbox.wait_for(
        "the command to take the state file away",
        std::time::Duration::from_secs(60),
        |_| state.is_dir(),
    );
    let before = refreshes(&env.sandbox.requests());
    // The second round starts once the first has written (or failed to write) its record.
    env.sandbox.wait_for(
        "two expiry refreshes",
        std::time::Duration::from_secs(10),
        |r| refreshes(r) >= before + 2,
    );
    std::fs::write(env.path("go"), "").expect("go");
    let out = wait(child, std::time::Duration::from_secs(60));
    out.expect_code(0);
    // One warning per round, however many rounds came: without their times.
    let mut lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("state.json"))
        .map(|l| l.split_once("] ").map_or(l, |(_, said)| said))
        .collect();
    lines.dedup();
    pinned!(lines.join("\n"), @r"
    warning: cannot write state file .aiven-ephemeral/state.json: Is a directory (os error 21); it keeps the previous expiry; the services' tags have the new one
    warning: cannot write state file .aiven-ephemeral/state.json: Is a directory (os error 21); it does not say teardown started; `down` finds the run's services all the same
    warning: cannot write state file .aiven-ephemeral/state.json: Is a directory (os error 21); it does not say which services were deleted; `down` finds them gone
    ");
    assert_eq!(env.sandbox.live_names(), Vec::<String>::new());
}

#[test]
fn an_answer_whose_field_changed_type_is_refused_without_quoting_the_value() {
    let env = Env::new(PG);
    // A field that became a string holding a password, where a list is read.
    env.sandbox.fault(json!({
        "method": "GET",
        "path": "/v1/project/*/service",
        "fault": {"kind": "body", "body": {"services": [{
            "service_name": "other", "service_type": "pg", "state": "RUNNING",
            "users": "avnadmin:S3cretPassw0rd",
        }]}},
    }));
    let up = env.run(&["up", "-vv"]);
    up.expect_code(1);
    assert!(!up.all().contains("S3cretPassw0rd"), "{}", up.all());
    pinned!(up.stderr.lines().last().unwrap_or_default(), @"error: listing the services of project test-project: unexpected response: GET /project/test-project/service: `services[0].users`: expected a sequence (the value is not shown: it may be a secret)");
    assert_eq!(env.sandbox.count("POST", "/v1"), 0, "nothing was created");
}

#[test]
fn termination_protection_is_read_from_the_service_whatever_the_refusal_says() {
    let env = Env::new(PG);
    env.run(&["up", "--run-id", "prot2"]).expect_code(0);
    let (status, _) = env.sandbox.api(
        "PUT",
        &format!("/v1/project/{PROJECT}/service/ae-db-prot2"),
        Some(json!({"termination_protection": true})),
    );
    assert_eq!(status, 200);
    // A wording the tool has never seen: only the service's own field says why.
    let reworded = |times: Option<u64>| {
        json!({
            "method": "DELETE",
            "path": "/v1/project/*/service/ae-db-prot2",
            "times": times,
            "fault": {"kind": "status", "status": 403, "message": "Termination protection is enabled for this service"},
        })
    };
    env.sandbox.fault(reworded(None));
    let down = env.run(&["down"]);
    down.expect_code(5);
    let mut named: Vec<&str> = down
        .stderr
        .lines()
        .filter(|l| l.contains("ae-db-prot2"))
        .map(|l| l.split_once("] ").map_or(l, |(_, said)| said))
        .collect();
    named.dedup();
    pinned!(named.join("\n"), @r"
    warning: ae-db-prot2: termination protection is on; not deleted (someone set it on purpose; `down --force` clears it)
    error: teardown incomplete: 1 service(s) could not be confirmed deleted: ae-db-prot2
    ");
    assert_eq!(env.sandbox.live_names(), vec!["ae-db-prot2"]);
    env.sandbox.admin("DELETE", "/faults", None);
    env.sandbox.fault(reworded(Some(1)));
    env.run(&["down", "--force"]).expect_code(0);
    assert_eq!(env.sandbox.live_names(), Vec::<String>::new());
}
