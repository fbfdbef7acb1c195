//! Signals sent to the real process: SIGINT, SIGTERM and SIGHUP during create, during
//! wait, and during `run`'s command; SIGKILL followed by `down`.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::common::*;

const THREE: &str = "project: test-project\nservices:\n  a: {type: pg, plan: hobbyist}\n  b: {type: mysql, plan: hobbyist}\n  c: {type: valkey, plan: hobbyist}\n";

fn creates(r: &[Value]) -> usize {
    r.iter()
        .filter(|r| {
            r["method"] == "POST"
                && r["path"] == format!("/v1/project/{PROJECT}/service")
                && r["status"] == 200
        })
        .count()
}

fn time_of(r: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        r["time"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

/// Sends `sig` once `ready` holds on the request log; checks the exit code, that every
/// DELETE went out within a second, and that nothing is left.
fn interrupt(env: &Env, args: &[&str], sig: Signal, code: i32, ready: impl Fn(&[Value]) -> bool) {
    let child = env.spawn(args);
    env.sandbox
        .wait_for("the moment to signal", Duration::from_secs(30), ready);
    let sent = time::OffsetDateTime::now_utc();
    signal(&child, sig);
    let out = wait(child, Duration::from_secs(120));
    out.expect_code(code);
    assert!(
        env.sandbox.live_names().is_empty(),
        "left behind: {:?}\n{}",
        env.sandbox.live_names(),
        out.stderr
    );
    let deletes: Vec<Value> = env
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "DELETE")
        .collect();
    assert_eq!(
        deletes.len(),
        creates(&env.sandbox.requests()),
        "one DELETE per service"
    );
    for delete in &deletes {
        let at = time_of(delete);
        assert!(
            at - sent < time::Duration::seconds(1),
            "DELETE {} at {at}, more than 1s after the signal {sent}",
            delete["path"]
        );
    }
    assert_eq!(env.state()["status"], "torn_down", "{}", out.stderr);
}

#[test]
fn sigint_during_wait() {
    during_wait(Signal::SIGINT, 130);
}

#[test]
fn sigterm_during_wait() {
    during_wait(Signal::SIGTERM, 143);
}

#[test]
fn sighup_during_wait() {
    during_wait(Signal::SIGHUP, 129);
}

fn during_wait(sig: Signal, code: i32) {
    let env = Env::new(THREE);
    env.sandbox
        .service_fault(json!({"name": "*", "ready_after": "60s"}));
    interrupt(&env, &["up"], sig, code, |r| creates(r) == 3);
}

#[test]
fn sigint_during_create_deletes_creates_still_in_flight() {
    signal_during_create(Signal::SIGINT, 130, "latency");
}

#[test]
fn sigterm_during_create_deletes_creates_still_in_flight() {
    signal_during_create(Signal::SIGTERM, 143, "latency");
}

#[test]
fn sigint_during_create_deletes_applied_creates_before_they_answer() {
    signal_during_create(Signal::SIGINT, 130, "slow_answer");
}

/// Creates take 1.5 s to answer, and the signal comes while they are in flight. With
/// `latency` the API applies them only then: teardown finds no service yet (404), waits
/// for each answer and deletes. With `slow_answer` they are applied at once: teardown
/// finds them with this run's owner tag and deletes them before they answer.
fn signal_during_create(sig: Signal, code: i32, kind: &str) {
    let env = Env::new(THREE);
    env.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service", "fault": {"kind": kind, "delay": "1500ms"}}));
    let child = env.spawn(&["up"]);
    // Every create is recorded as sent before it goes out.
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(env.path(".aiven-ephemeral/state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|s| {
            s["services"]
                .as_array()
                .is_some_and(|v| v.iter().all(|r| r["create_sent_at"].is_string()))
        })
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "creates never sent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // And has reached the sandbox: a create recorded but not yet written to the
    // connection when the signal comes never lands (teardown rightly deletes two).
    env.sandbox
        .wait_for("creates received", Duration::from_secs(30), |r| {
            r.iter().filter(|r| r["method"] == "POST").count() == 3
        });
    let sent = time::OffsetDateTime::now_utc();
    signal(&child, sig);
    let out = wait(child, Duration::from_secs(120));
    out.expect_code(code);
    assert!(
        env.sandbox.live_names().is_empty(),
        "left behind: {:?}\n{}",
        env.sandbox.live_names(),
        out.stderr
    );
    let requests = env.sandbox.requests();
    // Teardown's first request: the GET that checks a name, or a DELETE.
    let first = requests
        .iter()
        .filter(|r| {
            (r["method"] == "GET" || r["method"] == "DELETE")
                && r["path"].as_str().is_some_and(|p| p.contains("/service/"))
        })
        .map(time_of)
        .min()
        .expect("teardown sent requests");
    eprintln!(
        "signal to first teardown request: {} ms",
        (first - sent).whole_milliseconds()
    );
    assert!(first - sent < time::Duration::seconds(1));
    let service_calls = |method: &str, status: u64| {
        requests
            .iter()
            .filter(|r| {
                r["method"] == method
                    && r["status"] == status
                    && r["path"].as_str().is_some_and(|p| p.contains("/service/"))
            })
            .count()
    };
    // No DELETE ever went to a name not yet seen as this run's.
    assert_eq!(service_calls("DELETE", 200), 3, "{requests:#?}");
    assert_eq!(service_calls("DELETE", 404), 0, "{requests:#?}");
    if kind == "slow_answer" {
        assert_eq!(service_calls("GET", 200), 3, "{requests:#?}");
        let answered = requests
            .iter()
            .filter(|r| r["method"] == "POST")
            .map(time_of)
            .max()
            .unwrap()
            + time::Duration::milliseconds(1500);
        let deleted = requests
            .iter()
            .filter(|r| r["method"] == "DELETE")
            .map(time_of)
            .max()
            .unwrap();
        assert!(
            deleted < answered,
            "deleted only after the creates answered"
        );
    } else {
        assert!(service_calls("GET", 404) >= 1, "{requests:#?}");
    }
}

#[test]
fn a_second_signal_never_aborts_teardown() {
    let env = Env::new(THREE);
    env.sandbox
        .service_fault(json!({"name": "*", "ready_after": "60s"}));
    env.sandbox.fault(
        json!({"method": "DELETE", "path": "/v1/**", "fault": {"kind": "latency", "delay": "1s"}}),
    );
    let child = env.spawn(&["up", "--run-id", "twice1"]);
    env.sandbox
        .wait_for("creates", Duration::from_secs(30), |r| creates(r) == 3);
    signal(&child, Signal::SIGINT);
    env.sandbox
        .wait_for("deletes", Duration::from_secs(10), |r| {
            r.iter().any(|r| r["method"] == "DELETE")
        });
    signal(&child, Signal::SIGINT);
    signal(&child, Signal::SIGTERM);
    let out = wait(child, Duration::from_secs(120));
    out.expect_code(130);
    // What it said of the signals, and its last word. The two sent back to back reach
    // it in either order (each has its own handler): their lines are sorted.
    let mut said: Vec<&str> = out.stderr.lines().filter(|l| l.contains("SIG")).collect();
    said[1..3].sort();
    pinned!(said.join("\n"), @"
    [HH:MM:SS] warning: received SIGINT: tearing down
    [HH:MM:SS] warning: received SIGINT during teardown; still deleting: ae-a-twice1, ae-b-twice1, ae-c-twice1 (teardown is not interrupted)
    [HH:MM:SS] warning: received SIGTERM during teardown; still deleting: ae-a-twice1, ae-b-twice1, ae-c-twice1 (teardown is not interrupted)
    error: interrupted by SIGINT; everything this run created was deleted
    ");
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn sigint_during_run_tears_down_and_stops_the_command() {
    let env = Env::new(PG);
    let pid_file = env.path("command.pid");
    // The pid is written once the command ignores both signals (kept across the exec);
    // its output is not the test's pipes, which it would hold open.
    let script = format!(
        "trap '' INT TERM; echo $$ > {}; exec sleep 60 >/dev/null 2>&1",
        pid_file.display()
    );
    let child = env.spawn(&["run", "--", "sh", "-c", &script]);
    let pid = wait_for_pid(&pid_file);
    let started = std::time::Instant::now();
    signal(&child, Signal::SIGINT);
    let out = wait(child, Duration::from_secs(60));
    out.expect_code(130);
    // The command ignores signals: it is killed 5s after teardown starts, not before,
    // and run ends only once it is gone.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(20),
        "run ended {took:?} after the signal"
    );
    assert!(!alive(pid), "the command {pid} outlived run");
    assert!(env.sandbox.live_names().is_empty());
}

/// The pid a command wrote to `file`, once it has.
fn wait_for_pid(file: &std::path::Path) -> i32 {
    let start = std::time::Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            return pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` runs (a zombie waiting for whoever adopted it to reap it is gone).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(") ")
            .next()
            .is_some_and(|s| !s.starts_with('Z'))
    })
}

#[test]
fn sigkill_then_down_with_the_state_file() {
    let env = Env::new(THREE);
    env.sandbox
        .service_fault(json!({"name": "*", "ready_after": "60s"}));
    let child = env.spawn(&["up"]);
    env.sandbox
        .wait_for("creates", Duration::from_secs(30), |r| creates(r) == 3);
    signal(&child, Signal::SIGKILL);
    wait(child, Duration::from_secs(10));
    assert_eq!(
        env.sandbox.live_names().len(),
        3,
        "SIGKILL: nothing could clean up"
    );
    env.run(&["down"]).expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn sigkill_then_down_by_run_id_without_the_state_file() {
    let env = Env::new(THREE);
    env.sandbox
        .service_fault(json!({"name": "*", "ready_after": "60s"}));
    let child = env.spawn(&["up", "--run-id", "killed1"]);
    env.sandbox
        .wait_for("creates", Duration::from_secs(30), |r| creates(r) == 3);
    signal(&child, Signal::SIGKILL);
    wait(child, Duration::from_secs(10));
    std::fs::remove_dir_all(env.path(".aiven-ephemeral")).unwrap();
    env.run(&["down", "--run-id", "killed1"]).expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn sigkill_mid_create_then_down_rechecks_unanswered_creates() {
    let env = Env::new(PG);
    // The create is applied at once but its answer takes 5s: the process dies before it.
    env.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service", "fault": {"kind": "slow_answer", "delay": "5s"}}));
    let child = env.spawn(&["up"]);
    env.sandbox
        .wait_for("the create request", Duration::from_secs(30), |r| {
            r.iter().any(|r| r["method"] == "POST")
        });
    signal(&child, Signal::SIGKILL);
    wait(child, Duration::from_secs(10));
    // The service exists, and the state file knows its name although the create never
    // answered.
    assert_eq!(env.sandbox.live_names().len(), 1);
    assert_eq!(env.state()["services"][0]["status"], "creating");
    env.run(&["down"]).expect_code(0);
    assert!(
        env.sandbox.live_names().is_empty(),
        "{:?}",
        env.sandbox.live_names()
    );
}

/// What is said is what happened: when the DELETEs fail after a signal, nothing (not
/// even the GitHub error annotation written while the teardown starts) says that
/// everything was deleted.
#[test]
fn an_interrupted_run_whose_deletes_fail_never_says_they_were_deleted() {
    let env = Env::new(PG);
    env.sandbox
        .service_fault(json!({"name": "*", "ready_after": "60s"}));
    env.sandbox.fault(
        json!({"method": "DELETE", "path": "/v1/**", "fault": {"kind": "status", "status": 500}}),
    );
    let mut cmd = env.cmd(&[
        "up",
        "--run-id",
        "fails1",
        "--signal-teardown-timeout",
        "2s",
    ]);
    cmd.env("GITHUB_ACTIONS", "true");
    let child = cmd.spawn().expect("binary starts");
    env.sandbox
        .wait_for("the create", Duration::from_secs(30), |r| creates(r) == 1);
    signal(&child, Signal::SIGINT);
    let out = wait(child, Duration::from_secs(60));
    out.expect_code(5);
    pinned!(out.all(), @r"
    ::error::teardown incomplete: 1 service(s) could not be confirmed deleted: ae-db-fails1%0A  finish it with: aiven-ephemeral down (or `aiven-ephemeral reap --project test-project` once they expire)

    run fails1 in project test-project (1 service(s))
    ::group::Creating 1 service(s)
    ae-db-fails1: creating
    ::warning::received SIGINT: tearing down
    ::group::Deleting 1 service(s)
    ::endgroup::
    ::warning::ae-db-fails1: not confirmed deleted: HTTP 500: Internal Server Error
    error: teardown incomplete: 1 service(s) could not be confirmed deleted: ae-db-fails1
      finish it with: aiven-ephemeral down (or `aiven-ephemeral reap --project test-project` once they expire)
    ");
    assert_eq!(env.sandbox.live_names(), ["ae-db-fails1"]);
}

/// `kill -9` of `run` leaves its command without a parent, with the services'
/// credentials in its environment: the kernel ends it too (Linux: the parent-death
/// signal). `down` then deletes the services.
#[cfg(target_os = "linux")]
#[test]
fn sigkill_of_run_ends_its_command() {
    let env = Env::new(PG);
    let pid_file = env.path("command.pid");
    // Its output is not the test's pipes, which it would hold open.
    let script = format!(
        "echo $$ > {}; exec sleep 60 >/dev/null 2>&1",
        pid_file.display()
    );
    let child = env.spawn(&["run", "--", "sh", "-c", &script]);
    let pid = wait_for_pid(&pid_file);
    signal(&child, Signal::SIGKILL);
    wait(child, Duration::from_secs(10));
    let start = std::time::Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the command {pid} outlived run's SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    env.run(&["down"]).expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
}

/// A pipe whose buffer is full: the first write to it blocks until someone reads.
fn full_pipe() -> (std::io::PipeReader, std::io::PipeWriter) {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let (reader, mut writer) = std::io::pipe().expect("pipe");
    let fd = writer.as_raw_fd();
    let set = |flags: nix::libc::c_int| {
        // SAFETY: fcntl on a descriptor this function owns.
        assert_eq!(
            unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFL, flags) },
            0
        );
    };
    set(nix::libc::O_NONBLOCK);
    while writer.write(&[b'.'; 4096]).is_ok() {}
    set(0);
    (reader, writer)
}

/// Whether some thread of `pid` is blocked writing to a pipe.
fn writing_to_a_pipe(pid: u32) -> bool {
    blocked_in(pid, &["pipe"])
}

/// A signal while delivery is held (GitHub's masks go to a stdout nobody reads yet):
/// teardown removes the outputs, and the abandoned delivery, released afterwards, must
/// not write the env file with the deleted services' credentials again.
#[test]
fn a_delivery_released_after_teardown_writes_no_env_file() {
    let env = Env::new(PG);
    let github_env = env.path("github-env");
    let (reader, writer) = full_pipe();
    let mut cmd = env.cmd(&["up"]);
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_ENV", &github_env)
        .env("GITHUB_OUTPUT", env.path("github-output"))
        .env("GITHUB_STEP_SUMMARY", env.path("github-summary"))
        .stdout(writer);
    let child = cmd.spawn().expect("binary starts");
    drop(cmd);
    let start = std::time::Instant::now();
    // Nothing but the masks goes to stdout before delivery ends.
    while !writing_to_a_pipe(child.id()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "up never reached its masks"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, Signal::SIGTERM);
    let start = std::time::Instant::now();
    while env.state()["status"] != "torn_down" {
        assert!(start.elapsed() < Duration::from_secs(60), "never torn down");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Teardown has removed the outputs: the masks' write is released now.
    let drained = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut { reader }, &mut out);
        out
    });
    let out = wait(child, Duration::from_secs(60));
    out.expect_code(143);
    let stdout = drained.join().unwrap();
    assert!(
        stdout.contains("::add-mask::"),
        "the masks were held: {stdout}"
    );
    for file in [".aiven-ephemeral/env", ".aiven-ephemeral/env.sh"] {
        assert!(
            !env.path(file).exists(),
            "{file} written after teardown:\n{}",
            out.stderr
        );
    }
    assert!(
        !std::fs::read_to_string(&github_env)
            .unwrap_or_default()
            .contains("DATABASE_URL"),
        "$GITHUB_ENV got the deleted services' credentials"
    );
    assert!(env.sandbox.live_names().is_empty());
}

/// A state write that stalls (its temporary file is a FIFO nobody opens: the open
/// blocks, as on a disk that does not answer) when the signal comes: every DELETE still
/// goes out within a second, and the run ends torn down once the write is let go.
#[test]
fn a_stalled_state_write_does_not_hold_back_the_deletes() {
    let env = Env::new(PG);
    // Applied at once, answered later: the answer's record is the write that stalls.
    env.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service", "fault": {"kind": "slow_answer", "delay": "1s"}}));
    let child = env.spawn(&["up"]);
    env.sandbox
        .wait_for("the create", Duration::from_secs(30), |_| {
            !env.sandbox.live_names().is_empty()
        });
    let fifo = env.path(&format!(".aiven-ephemeral/.state.json.tmp{}", child.id()));
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let start = std::time::Instant::now();
    while !opening_a_fifo(child.id()) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no state write stalled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = time::OffsetDateTime::now_utc();
    signal(&child, Signal::SIGINT);
    let start = std::time::Instant::now();
    let deleted = loop {
        let deletes: Vec<Value> = env
            .sandbox
            .requests()
            .into_iter()
            .filter(|r| r["method"] == "DELETE")
            .collect();
        if !deletes.is_empty() || start.elapsed() > Duration::from_secs(3) {
            break deletes;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The write is let go (its fsync on a FIFO fails, and the file is removed).
    let released = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::fs::File::open(fifo).unwrap(), &mut bytes);
    });
    let out = wait(child, Duration::from_secs(60));
    released.join().unwrap();
    assert_eq!(deleted.len(), 1, "no DELETE within 3 s:\n{}", out.stderr);
    let at = time_of(&deleted[0]);
    assert!(
        at - sent < time::Duration::seconds(1),
        "DELETE at {at}, more than 1s after the signal {sent}"
    );
    out.expect_code(130);
    assert!(env.sandbox.live_names().is_empty());
    assert_eq!(env.state()["status"], "torn_down", "{}", out.stderr);
}

/// `--ca-cert` that never gives its contents (a FIFO nobody writes): a signal still
/// ends `up` at once (it read the file on the runtime, where no signal could stop it).
#[test]
fn a_signal_while_the_ca_cert_is_read_ends_up() {
    let env = Env::new(PG);
    let fifo = env.path("ca.pem");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let child = env.spawn(&["up", "--ca-cert", fifo.to_str().unwrap()]);
    let start = std::time::Instant::now();
    while !opening_a_fifo(child.id()) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "up never opened --ca-cert"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let signalled = std::time::Instant::now();
    signal(&child, Signal::SIGINT);
    // One that still waits after 3 s is killed, and the test fails.
    wait(child, Duration::from_secs(3)).expect_code(130);
    assert!(signalled.elapsed() < Duration::from_secs(3));
    assert!(env.sandbox.requests().is_empty(), "nothing was sent");
}
