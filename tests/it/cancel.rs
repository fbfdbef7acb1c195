//! Cancellation always wins: a signal at each moment of a run (a slow credentials GET,
//! sub-resource creation, output delivery, the expiry refresh) sends the first DELETE
//! within a second; every other stop reason cancels creates still being retried; the
//! teardown budget holds against an API that never deletes; the lock is per state file;
//! a name whose create never answered is deleted only when its tags say it is ours.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::common::*;

const TWO: &str = "project: test-project\nservices:\n  a: {type: pg, plan: hobbyist}\n  b: {type: pg, plan: hobbyist}\n";

pub fn time_of(r: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        r["time"].as_str().expect("logged time"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339")
}

fn is(r: &Value, method: &str, path_part: &str) -> bool {
    r["method"] == method && r["path"].as_str().is_some_and(|p| p.contains(path_part))
}

/// Signals `child` once `moment` holds on the request log, then checks the exit code,
/// that the first DELETE came within a second, and that nothing is left. Returns the
/// signal-to-first-DELETE latency.
fn signal_at(
    env: &Env,
    child: std::process::Child,
    sig: Signal,
    moment: impl Fn(&[Value]) -> bool,
) -> (Run, Duration) {
    env.sandbox
        .wait_for("the moment to signal", Duration::from_secs(60), moment);
    let sent = time::OffsetDateTime::now_utc();
    signal(&child, sig);
    let out = wait(child, Duration::from_secs(60));
    out.expect_code(128 + sig as i32);
    assert!(
        env.sandbox.live_names().is_empty(),
        "left behind: {:?}\n{}",
        env.sandbox.live_names(),
        out.stderr
    );
    let first = env
        .sandbox
        .requests()
        .iter()
        .filter(|r| r["method"] == "DELETE")
        .map(time_of)
        .min()
        .expect("a DELETE was sent");
    let latency = Duration::try_from(first - sent).unwrap_or_default();
    eprintln!("signal to first DELETE: {} ms", latency.as_millis());
    assert!(
        latency < Duration::from_secs(1),
        "first DELETE {latency:?} after the signal\n{}",
        out.stderr
    );
    (out, latency)
}

#[test]
fn signal_during_a_slow_credentials_get_deletes_at_once() {
    for cmd in [&["up"][..], &["run", "--", "true"][..]] {
        let env = Env::new(PG);
        // The GET with secrets is seen by the sandbox at once and answered 20s later.
        env.sandbox.fault(json!({"method": "GET", "path": "/v1/project/*/service/*", "fault": {"kind": "slow_answer", "delay": "20s"}}));
        let child = env.spawn(cmd);
        signal_at(&env, child, Signal::SIGINT, |r| {
            r.iter().any(|r| {
                is(r, "GET", "/service/")
                    && r["query"]
                        .as_str()
                        .is_some_and(|q| q.contains("include_secrets"))
            })
        });
    }
}

#[test]
fn signal_during_sub_resource_creation_deletes_at_once() {
    let env = Env::new(PG);
    env.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service/*/db", "fault": {"kind": "slow_answer", "delay": "20s"}}));
    let child = env.spawn(&["up"]);
    signal_at(&env, child, Signal::SIGTERM, |r| {
        r.iter().any(|r| is(r, "POST", "/db"))
    });
}

#[test]
fn signal_during_output_delivery_deletes_at_once_and_the_command_never_starts() {
    let env = Env::new(PG);
    // $GITHUB_ENV is a pipe nobody reads: delivery blocks on it.
    let fifo = env.path("github-env");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let marker = env.path("command-ran");
    let mut cmd = env.cmd(&["run", "--", "touch", marker.to_str().unwrap()]);
    cmd.env("GITHUB_ACTIONS", "true").env("GITHUB_ENV", &fifo);
    let child = cmd.spawn().expect("binary starts");
    // Delivery starts once the database and the user are made.
    let (out, _) = signal_at(&env, child, Signal::SIGINT, populated);
    assert!(
        !marker.exists(),
        "the command ran after the signal\n{}",
        out.stderr
    );
}

#[test]
fn signal_during_a_slow_expiry_refresh_deletes_at_once() {
    let env = Env::new(PG);
    env.sandbox.fault(json!({"method": "PATCH", "path": "/v1/project/*/service/*/tags", "fault": {"kind": "slow_answer", "delay": "25s"}}));
    let mut cmd = env.cmd(&["run", "--", "sleep", "60"]);
    cmd.env("AIVEN_EPHEMERAL_REFRESH_EVERY", "1s");
    let child = cmd.spawn().expect("binary starts");
    signal_at(&env, child, Signal::SIGINT, |r| {
        r.iter().any(|r| is(r, "PATCH", "/tags"))
    });
}

#[test]
fn signal_while_creates_are_in_flight_then_run_never_starts_its_command() {
    let env = Env::new(TWO);
    env.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service", "fault": {"kind": "slow_answer", "delay": "2s"}}));
    let marker = env.path("command-ran");
    let child = env.spawn(&["run", "--", "touch", marker.to_str().unwrap()]);
    let (out, _) = signal_at(&env, child, Signal::SIGHUP, |r| {
        r.iter().filter(|r| r["method"] == "POST").count() == 2
    });
    assert!(
        !marker.exists(),
        "the command ran after the signal\n{}",
        out.stderr
    );
}

/// Creates of `service` so far.
fn creates_of(env: &Env, service: &str) -> usize {
    env.sandbox
        .requests()
        .iter()
        .filter(|r| {
            r["method"] == "POST"
                && r["path"] == format!("/v1/project/{PROJECT}/service")
                && r["body"]["service_name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&format!("ae-{service}-")))
        })
        .count()
}

/// After the run stopped for `reason`, the create that was being retried sends nothing
/// more and nothing appears.
fn no_create_outlives_the_run(env: &Env, out: &Run) {
    let sent = creates_of(env, "a");
    assert!(sent >= 1, "{}", out.stderr);
    // The process has exited: what can still land is only what the sandbox holds in
    // flight (logged, not yet answered).
    env.sandbox
        .wait_for("no request in flight", Duration::from_secs(30), |r| {
            r.iter().all(|r| r["status"] != 0 || !r["fault"].is_null())
        });
    assert_eq!(
        creates_of(env, "a"),
        sent,
        "a create was retried after the run stopped"
    );
    assert!(
        env.sandbox.live_names().is_empty(),
        "{:?}",
        env.sandbox.live_names()
    );
}

#[test]
fn a_rejected_sibling_cancels_a_create_being_retried() {
    let env = Env::new(TWO);
    env.sandbox.service_fault(json!({"name": "ae-a-*", "reject": {"status": 503, "message": "Service temporarily unavailable"}}));
    env.sandbox.service_fault(
        json!({"name": "ae-b-*", "reject": {"status": 400, "message": "Invalid plan"}}),
    );
    let out = env.run(&["up", "--run-id", "sib1"]);
    out.expect_code(1);
    // Without the retries' warnings (how many the sibling's failure leaves time for).
    let told = out.told();
    let errors: Vec<&str> = told.lines().filter(|l| !l.contains("warning:")).collect();
    pinned!(errors.join("\n"), @"error: creating ae-b-sib1 (services.b): HTTP 400: Invalid plan");
    no_create_outlives_the_run(&env, &out);
}

#[test]
fn the_readiness_timeout_cancels_a_create_being_retried() {
    let env = Env::new(TWO);
    env.sandbox.service_fault(json!({"name": "ae-a-*", "reject": {"status": 503, "message": "Service temporarily unavailable"}}));
    env.sandbox
        .service_fault(json!({"name": "ae-b-*", "never_ready": true}));
    let out = env.run(&["up", "--timeout", "2s"]);
    out.expect_code(4);
    no_create_outlives_the_run(&env, &out);
}

#[test]
fn teardown_against_a_delete_that_always_fails_keeps_its_budget() {
    let env = Env::new(PG);
    env.run(&["up", "--run-id", "fail1"]).expect_code(0);
    env.sandbox.admin("DELETE", "/requests", None);
    env.sandbox.fault(json!({"method": "DELETE", "path": "/v1/**", "fault": {"kind": "status", "status": 500, "message": "Internal server error"}}));
    let started = Instant::now();
    let out = env.run(&["down", "--teardown-timeout", "6s"]);
    let took = started.elapsed();
    out.expect_code(5);
    pinned!(out.told(), @"
    [HH:MM:SS] warning: ae-db-fail1: not confirmed deleted: HTTP 500: Internal server error
    error: teardown incomplete: 1 service(s) could not be confirmed deleted: ae-db-fail1
      finish it with: aiven-ephemeral down (or `aiven-ephemeral reap --project test-project` once they expire)
    ");
    assert!(
        took < Duration::from_secs(8),
        "down took {took:?} with a 6s budget\n{}",
        out.stderr
    );
    let deletes: Vec<time::OffsetDateTime> = env
        .sandbox
        .requests()
        .iter()
        .filter(|r| r["method"] == "DELETE")
        .map(time_of)
        .collect();
    // Backoff 1.5 s doubling: at most three DELETEs in any ten seconds.
    assert!(
        (2..=3).contains(&deletes.len()),
        "{} DELETEs in {took:?}",
        deletes.len()
    );
    // With the API healed, the printed command finishes it.
    env.sandbox.admin("DELETE", "/faults", None);
    env.run(&["down"]).expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn the_lock_is_per_state_file() {
    let env = Env::new(PG);
    let child = env.spawn(&["run", "--", "sleep", "30"]);
    env.sandbox
        .wait_for("the first run to be up", Duration::from_secs(30), populated);
    env.run(&["up", "--state-file", ".aiven-ephemeral/other.json"])
        .expect_code(0);
    env.run(&["down", "--state-file", ".aiven-ephemeral/other.json"])
        .expect_code(0);
    // The same state file is another matter: one live run.
    let busy = env.run(&["up"]);
    busy.expect_code(2);
    // The holder is named: the `run` this test started.
    pinned!(busy.stderr.replace(&format!("pid {})", child.id()), "pid [RUN'S PID])"), @"
    error: another aiven-ephemeral process (pid [RUN'S PID]) is using .aiven-ephemeral/state.json
      hint: wait for it to finish, or give this run its own --state-file
    ");
    signal(&child, Signal::SIGTERM);
    wait(child, Duration::from_secs(30)).expect_code(143);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn an_unanswered_create_whose_name_another_run_owns_is_left_alone() {
    let env = Env::new(PG);
    env.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service", "fault": {"kind": "slow_answer", "delay": "5s"}}));
    let child = env.spawn(&["up", "--run-id", "leg1"]);
    env.sandbox
        .wait_for("the create", Duration::from_secs(30), |r| {
            r.iter().any(|r| r["method"] == "POST")
        });
    signal(&child, Signal::SIGKILL);
    wait(child, Duration::from_secs(10));
    // Another leg with the same run id owns that name now (its create won).
    let name = env.sandbox.live_names()[0].clone();
    let (status, body) = env.sandbox.api(
        "PATCH",
        &format!("/v1/project/{PROJECT}/service/{name}/tags"),
        Some(json!({"tags": {"aiven-ephemeral-owner": "someone-else"}})),
    );
    assert_eq!(status, 200, "{body}");
    let down = env.run(&["down"]);
    down.expect_code(0);
    pinned!(down.stderr, @"
    [HH:MM:SS] warning: ae-db-leg1: exists but does not carry this run's owner tag; it is not this run's and is left alone
    [HH:MM:SS] run leg1 torn down
    ");
    assert_eq!(env.sandbox.live_names(), vec![name]);
    assert_eq!(
        env.sandbox
            .requests()
            .iter()
            .filter(|r| r["method"] == "DELETE")
            .count(),
        0
    );
}
