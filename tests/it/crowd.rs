//! Many runs at once on one rate-limited project, and teardown budgets by what started
//! the teardown: every process exits 0 and nothing is left; a plain `down` waits
//! through the API's "try again in 10s"; a signal still gets the short budget.

use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::common::*;

const TWO: &str = "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist}\n  cache: {type: valkey, plan: hobbyist}\n";

fn deletes(requests: &[Value]) -> Vec<&Value> {
    requests
        .iter()
        .filter(|r| r["method"] == "DELETE")
        .collect()
}

#[test]
fn twelve_runs_at_once_on_a_rate_limited_project_all_succeed_and_leave_nothing() {
    let mut config = fast_config();
    config.provisioning_delay = Duration::from_secs(2);
    // Far fewer requests a window than twelve runs want at once (each needs about ten).
    config.rate_limit = Some(aiven_sandbox::config::RateLimit {
        requests: 40,
        per: Duration::from_secs(4),
        retry_after_header: false,
    });
    let sandbox = Sandbox::with(config);
    let dirs: Vec<tempfile::TempDir> = (0..12).map(|_| tempfile::tempdir().unwrap()).collect();
    for d in &dirs {
        std::fs::write(d.path().join("aiven-ephemeral.yaml"), TWO).unwrap();
    }
    let all_at_once = |args: &[&str]| -> Vec<Run> {
        let children: Vec<Child> = dirs
            .iter()
            .map(|d| cmd_in(d.path(), &sandbox, args).spawn().unwrap())
            .collect();
        children
            .into_iter()
            .map(|c| wait(c, Duration::from_secs(300)))
            .collect()
    };
    for (i, up) in all_at_once(&["up"]).iter().enumerate() {
        up.expect_code(0);
        assert!(
            dirs[i].path().join(".aiven-ephemeral/env").exists(),
            "run {i}: no env file\n{}",
            up.stderr
        );
    }
    assert_eq!(sandbox.live_names().len(), 24);
    let limited_up = sandbox
        .requests()
        .iter()
        .filter(|r| r["status"] == 429)
        .count();
    eprintln!("429s during the ups: {limited_up}");
    sandbox.admin("DELETE", "/requests", None);
    for down in all_at_once(&["down"]) {
        down.expect_code(0);
    }
    assert!(
        sandbox.live_names().is_empty(),
        "left behind: {:?}",
        sandbox.live_names()
    );
    // Every service was deleted once: DELETEs went out only when the budget let them
    // through, not again and again into 429s.
    let accepted = deletes(&sandbox.requests())
        .iter()
        .filter(|r| r["status"] == 200)
        .count();
    assert_eq!(accepted, 24);
}

#[test]
fn a_plain_down_waits_out_a_delete_told_to_try_again_in_10s() {
    let env = Env::new(PG);
    env.run(&["up"]).expect_code(0);
    let name = env.sandbox.live_names()[0].clone();
    env.sandbox.admin("DELETE", "/requests", None);
    env.sandbox.fault(json!({"method": "DELETE", "path": "/v1/**", "nth": [1], "fault": {"kind": "rate_limit", "seconds": 10}}));
    let started = Instant::now();
    let down = env.run(&["down"]);
    down.expect_code(0);
    assert!(
        env.sandbox.live_names().is_empty(),
        "{name} left\n{}",
        down.stderr
    );
    let requests = env.sandbox.requests();
    let deletes = deletes(&requests);
    assert_eq!(
        deletes.len(),
        2,
        "one 429, then the DELETE that went through"
    );
    assert_eq!(deletes[0]["status"], 429);
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "the API's wait was honoured"
    );
    assert_eq!(env.state()["status"], "torn_down");
}

#[test]
fn after_a_signal_the_short_budget_holds_however_long_the_api_asks_to_wait() {
    let mut config = fast_config();
    config.provisioning_delay = Duration::from_secs(60);
    let env = Env::with(PG, Sandbox::with(config));
    // Every DELETE is told to come back in 30 s.
    env.sandbox.fault(json!({"method": "DELETE", "path": "/v1/**", "fault": {"kind": "rate_limit", "seconds": 30}}));
    let child = env.spawn(&["up", "--run-id", "budget1"]);
    env.sandbox
        .wait_for("the create", Duration::from_secs(30), |r| {
            r.iter()
                .any(|r| r["method"] == "POST" && r["status"] == 200)
        });
    let signalled = Instant::now();
    signal(&child, Signal::SIGTERM);
    let out = wait(child, Duration::from_secs(60));
    let took = signalled.elapsed();
    // Not confirmed within the 8 s after the signal: exit 5, naming what is left.
    out.expect_code(5);
    pinned!(out.told(), @"
    [HH:MM:SS] warning: received SIGTERM: tearing down
    [HH:MM:SS] warning: ae-db-budget1: not confirmed deleted: HTTP 429: Too many requests in a given amount of time: Rate limit 120 exceeded - try again in 30s (past what is left of the teardown budget)
    error: teardown incomplete: 1 service(s) could not be confirmed deleted: ae-db-budget1
      finish it with: aiven-ephemeral down (or `aiven-ephemeral reap --project test-project` once they expire)
    ");
    assert!(
        took < Duration::from_secs(10),
        "teardown took {took:?} after SIGTERM\n{}",
        out.stderr
    );
    let first = deletes(&env.sandbox.requests()).len();
    assert!(first >= 1, "a DELETE was sent at once\n{}", out.stderr);

    // A plain `down` afterwards waits as long as the API asks.
    env.sandbox.admin("DELETE", "/faults", None);
    env.run(&["down"]).expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn a_signal_during_a_long_down_cuts_it_to_the_short_budget() {
    let env = Env::new(PG);
    env.run(&["up", "--run-id", "budget2"]).expect_code(0);
    // Told to come back in 30 s: after the signal, that wait is not the budget's.
    env.sandbox.fault(json!({"method": "DELETE", "path": "/v1/**", "fault": {"kind": "rate_limit", "seconds": 30}}));
    let child = env.spawn(&["down", "--signal-teardown-timeout", "2s"]);
    // Once told so: without the signal this `down` would keep trying for ten minutes.
    env.sandbox
        .wait_for("a DELETE answered 429", Duration::from_secs(30), |r| {
            r.iter()
                .any(|r| r["method"] == "DELETE" && r["status"] == 429)
        });
    let signalled = Instant::now();
    signal(&child, Signal::SIGINT);
    let out = wait(child, Duration::from_secs(60));
    let took = signalled.elapsed();
    out.expect_code(5);
    pinned!(out.told(), @"
    [HH:MM:SS] warning: received SIGINT during teardown; still deleting: ae-db-budget2 (teardown is not interrupted)
    [HH:MM:SS] warning: ae-db-budget2: not confirmed deleted: HTTP 429: Too many requests in a given amount of time: Rate limit 120 exceeded - try again in 30s
    error: teardown incomplete: 1 service(s) could not be confirmed deleted: ae-db-budget2
      finish it with: aiven-ephemeral down (or `aiven-ephemeral reap --project test-project` once they expire)
    ");
    assert!(
        took < Duration::from_secs(4),
        "down took {took:?} after SIGINT with a 2s short budget\n{}",
        out.stderr
    );
    env.sandbox.admin("DELETE", "/faults", None);
    env.run(&["down"]).expect_code(0);
}

#[test]
fn bad_durations_are_refused_before_any_call_whichever_way_they_came() {
    let env = Env::new(PG);
    let flag = env.run(&["down", "--run-id", "x1", "--teardown-timeout", "bogus"]);
    flag.expect_code(2);
    pinned!(flag.stderr, @r"
    error: invalid value 'bogus' for '--teardown-timeout <DUR>': `bogus` is not a duration; write e.g. `90s`, `20m`, `2h` (set by the flag or AIVEN_EPHEMERAL_TEARDOWN_TIMEOUT)

    For more information, try '--help'.
    ");
    // `reap` sweeps (and drops seed templates) before it tears anything down: the
    // budget is refused before any of that.
    let reap = env.run(&["reap", "--teardown-timeout", "bogus"]);
    reap.expect_code(2);
    pinned!(reap.stderr, @r"
    error: invalid value 'bogus' for '--teardown-timeout <DUR>': `bogus` is not a duration; write e.g. `90s`, `20m`, `2h` (set by the flag or AIVEN_EPHEMERAL_TEARDOWN_TIMEOUT)

    For more information, try '--help'.
    ");
    let mut cmd = env.cmd(&["down", "--run-id", "x1"]);
    cmd.env("AIVEN_EPHEMERAL_SIGNAL_TEARDOWN_TIMEOUT", "10");
    let from_env = run(cmd);
    from_env.expect_code(2);
    pinned!(from_env.stderr, @r"
    error: invalid value '10' for '--signal-teardown-timeout <DUR>': `10` is not a duration (a unit is needed); write e.g. `90s`, `20m`, `2h` (set by the flag or AIVEN_EPHEMERAL_SIGNAL_TEARDOWN_TIMEOUT)

    For more information, try '--help'.
    ");
    // Each refresh round re-tags every service: none at all, or a moment apart, would be
    // a loop spending the project's request budget.
    for (every, said) in [
        ("0s", "`0s` is zero; give a positive duration"),
        (
            "10ms",
            "`10ms` is shorter than 1s; each round re-tags every service of the run",
        ),
    ] {
        let mut cmd = env.cmd(&["run", "--", "true"]);
        cmd.env("AIVEN_EPHEMERAL_REFRESH_EVERY", every);
        let refresh = run(cmd);
        refresh.expect_code(2);
        assert_eq!(
            refresh.stderr,
            format!(
                "error: invalid value '{every}' for '--refresh-every <DUR>': {said} (set by the flag or AIVEN_EPHEMERAL_REFRESH_EVERY)\n\nFor more information, try '--help'.\n"
            ),
        );
    }
    assert!(env.sandbox.requests().is_empty(), "nothing was sent");
}
