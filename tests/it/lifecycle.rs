//! The core lifecycle against the sandbox: up, status, down, run; names, tags, state.

use serde_json::json;

use crate::common::*;

#[test]
fn up_status_down_leaves_nothing() {
    let env = Env::new(PG);
    let up = env.run(&["up", "--run-id", "lc1"]);
    up.expect_code(0);
    assert_eq!(env.sandbox.live_names(), vec!["ae-db-lc1"]);

    // Tags: ownership in the create request itself, never added afterwards.
    let creates: Vec<_> = env
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"] == format!("/v1/project/{PROJECT}/service"))
        .collect();
    assert_eq!(creates.len(), 1);
    let body = &creates[0]["body"];
    assert_eq!(
        body["project_vpc_id"],
        serde_json::Value::Null,
        "project_vpc_id must be sent as null"
    );
    assert!(body.as_object().unwrap().contains_key("project_vpc_id"));
    assert_eq!(body["termination_protection"], false);
    let tags = &body["tags"];
    assert_eq!(tags["aiven-ephemeral-run"], "lc1");
    assert_eq!(tags["aiven-ephemeral-key"], "db");
    let owner = env.state()["owner"].as_str().unwrap().to_string();
    assert_eq!(tags["aiven-ephemeral-owner"], owner.as_str());
    assert!(
        tags["aiven-ephemeral-expires"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(
        env.sandbox.count("PATCH", "/v1"),
        0,
        "tags are never added afterwards"
    );

    // Env file: the documented variables, 0600; state file 0600; .gitignore.
    let envfile = env.env_file();
    for name in [
        "DB_SERVICE_NAME=ae-db-lc1",
        "DB_URI=postgres://avnadmin:",
        "DB_HOST=localhost",
        "DB_DATABASE=app",
        "DB_SSLMODE=require",
        "DB_USER_APP_USER_PASSWORD=AVNS_",
    ] {
        assert!(envfile.contains(name), "{name} missing:\n{envfile}");
    }
    assert!(
        envfile.contains("/app?sslmode=require"),
        "DB_URI points at the first database"
    );
    assert_eq!(mode(&env.path(".aiven-ephemeral/env")), 0o600);
    assert_eq!(mode(&env.path(".aiven-ephemeral/state.json")), 0o600);
    assert_eq!(mode(&env.path(".aiven-ephemeral/certs/ca.pem")), 0o600);
    assert_eq!(
        std::fs::read_to_string(env.path(".aiven-ephemeral/.gitignore")).unwrap(),
        "*\n"
    );
    assert_eq!(env.state()["status"], "up");

    let status = env.run(&["status", "--json"]);
    status.expect_code(0);
    let s: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(s["services"][0]["state"], "RUNNING");
    assert_eq!(s["live"], true);

    env.run(&["down"]).expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
    assert_eq!(env.state()["status"], "torn_down");
    // Idempotent: CI clean-up steps run twice.
    let again = env.run(&["down"]);
    again.expect_code(0);
    pinned!(again.stderr, @"[HH:MM:SS] run lc1 is already torn down: nothing to do");
}

#[test]
fn polling_is_one_list_per_tick_without_secrets() {
    let env = Env::new(
        "project: test-project\nservices:\n  a: {type: pg, plan: hobbyist}\n  b: {type: mysql, plan: hobbyist}\n  c: {type: valkey, plan: hobbyist}\n",
    );
    env.run(&["up", "--run-id", "poll1"]).expect_code(0);
    let requests = env.sandbox.requests();
    let lists: Vec<_> = requests
        .iter()
        .filter(|r| r["method"] == "GET" && r["path"] == format!("/v1/project/{PROJECT}/service"))
        .collect();
    assert!(!lists.is_empty());
    assert!(lists.iter().all(|r| {
        !r["query"]
            .as_str()
            .unwrap_or("")
            .contains("include_secrets")
    }));
    // Exactly one GET with secrets per service, none without.
    let gets: Vec<_> = requests
        .iter()
        .filter(|r| {
            r["method"] == "GET"
                && r["path"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("/v1/project/{PROJECT}/service/ae-"))
        })
        .filter(|r| {
            !r["path"].as_str().unwrap().contains("/db")
                && !r["path"].as_str().unwrap().contains("/user")
        })
        .collect();
    assert_eq!(gets.len(), 3, "{gets:#?}");
    assert!(gets.iter().all(|r| r["query"] == "include_secrets=true"));
    env.run(&["down"]).expect_code(0);
}

#[test]
fn run_passes_the_exit_code_and_withholds_the_token() {
    let env = Env::new(PG);
    let run = env.run(&[
        "run",
        "--run-id",
        "run1",
        "--",
        "sh",
        "-c",
        "test -n \"$DB_URI\" || exit 90; test -z \"$AIVEN_TOKEN$AIVEN_AUTH_TOKEN$AIVEN_EPHEMERAL_RUN_ID\" || exit 91; exit 7",
    ]);
    run.expect_code(7);
    assert!(
        env.sandbox.live_names().is_empty(),
        "run tears down after the command"
    );
    assert_eq!(env.state()["status"], "torn_down");
}

#[test]
fn run_with_pass_token_keeps_it() {
    let env = Env::new(PG);
    env.run(&[
        "run",
        "--pass-token",
        "--",
        "sh",
        "-c",
        "test -n \"$AIVEN_TOKEN\"",
    ])
    .expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn run_child_killed_by_a_signal_gives_128_plus_n() {
    let env = Env::new(PG);
    env.run(&["run", "--", "sh", "-c", "kill -TERM $$"])
        .expect_code(143);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn run_when_up_fails_never_starts_the_command() {
    let env = Env::new(PG);
    // The API refuses the create (a plan that `up` could not know to be wrong).
    env.sandbox.service_fault(
        json!({"name": "ae-db-*", "reject": {"status": 400, "message": "Invalid plan 'startup-4' for this project"}}),
    );
    let marker = env.path("started");
    let run = env.run(&["run", "--", "touch", marker.to_str().unwrap()]);
    run.expect_code(1);
    assert!(!marker.exists());
}

#[test]
fn a_rejected_service_fails_the_run_and_the_others_are_deleted() {
    let env = Env::new(
        "project: test-project\nservices:\n  good: {type: pg, plan: hobbyist}\n  bad: {type: pg, plan: hobbyist}\n  fine: {type: valkey, plan: hobbyist}\n",
    );
    env.sandbox.service_fault(
        json!({"name": "ae-bad-rej1", "reject": {"status": 400, "message": "Service quota exceeded"}}),
    );
    let up = env.run(&["up", "--run-id", "rej1"]);
    up.expect_code(1);
    // The error, after progress whose order the three creates decide.
    let said: Vec<&str> = up.stderr.lines().filter(|l| !l.starts_with('[')).collect();
    pinned!(said.join("\n"), @"error: creating ae-bad-rej1 (services.bad): HTTP 400: Service quota exceeded");
    assert!(
        env.sandbox.live_names().is_empty(),
        "{:?}",
        env.sandbox.live_names()
    );
    assert_eq!(env.state()["status"], "torn_down");
}

#[test]
fn two_ups_sharing_a_run_id_the_second_refuses() {
    let sandbox = Sandbox::start();
    let first = Env::with(PG, sandbox);
    first.run(&["up", "--run-id", "shared1"]).expect_code(0);
    let second_dir = tempfile::tempdir().unwrap();
    std::fs::write(second_dir.path().join("aiven-ephemeral.yaml"), PG).unwrap();
    let mut cmd = first.cmd(&["up", "--run-id", "shared1"]);
    cmd.current_dir(second_dir.path());
    let second = run(cmd);
    second.expect_code(2);
    pinned!(second.stderr, @"
    [HH:MM:SS] run shared1 in project test-project (1 service(s))
    error: run id shared1 is already used by another run in project test-project (services ae-db-shared1); they are not this run's to adopt or delete
      hint: matrix legs and re-runs need distinct run ids: omit --run-id, or use $GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT-<leg>
    ");
    assert_eq!(
        first.sandbox.live_names(),
        vec!["ae-db-shared1"],
        "the first run's services survive"
    );
    first.run(&["down"]).expect_code(0);
}

#[test]
fn one_state_file_holds_one_live_run() {
    let env = Env::new(PG);
    env.run(&["up", "--run-id", "one1"]).expect_code(0);
    let other = env.run(&["up", "--run-id", "one2"]);
    other.expect_code(2);
    pinned!(other.stderr, @"
    error: .aiven-ephemeral/state.json holds live run one1 (project test-project); one state file holds one live run
      hint: tear it down with `aiven-ephemeral down`, resume it with --run-id one1, or give this run its own --state-file
    ");
    // The same run id resumes (adopts its services) instead.
    env.run(&["up", "--run-id", "one1"]).expect_code(0);
    assert_eq!(env.sandbox.live_names(), vec!["ae-db-one1"]);
    env.run(&["down"]).expect_code(0);
}

#[test]
fn runs_whose_state_files_share_a_directory_share_no_file() {
    let env = Env::new(
        "project: test-project\nservices:\n  events: {type: kafka, plan: startup-2, users: [app]}\n",
    );
    env.run(&["up", "--run-id", "runa"]).expect_code(0);
    let b = ["--state-file", ".aiven-ephemeral/b.json"];
    env.run(&[&["up", "--run-id", "runb"][..], &b].concat())
        .expect_code(0);
    // Each run's env file, shell env file and certificates are its own.
    let value = |file: &str, name: &str| {
        std::fs::read_to_string(env.path(file))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_string))
            .unwrap()
    };
    let dir = env.path(".aiven-ephemeral").canonicalize().unwrap();
    let dir = dir.display();
    for (file, certs) in [
        (".aiven-ephemeral/env", format!("{dir}/certs")),
        (".aiven-ephemeral/b.env", format!("{dir}/b.certs")),
    ] {
        for name in [
            "EVENTS_ACCESS_CERT",
            "EVENTS_CA_CERT",
            "EVENTS_USER_APP_ACCESS_KEY",
        ] {
            let path = value(file, name);
            assert!(
                path.starts_with(&format!("{certs}/")),
                "{file}: {name}={path}"
            );
        }
    }
    assert!(env.path(".aiven-ephemeral/b.env.sh").exists());
    // `env` for run b writes beside b's state file, not over a's files.
    let a_env = std::fs::read_to_string(env.path(".aiven-ephemeral/env")).unwrap();
    env.run(&[&["env"][..], &b].concat()).expect_code(0);
    assert_eq!(
        std::fs::read_to_string(env.path(".aiven-ephemeral/env")).unwrap(),
        a_env
    );
    // Tearing b down removes b's files only: a still has its own, and they work.
    env.run(&[&["down"][..], &b].concat()).expect_code(0);
    for gone in ["b.env", "b.env.sh", "b.certs"] {
        assert!(
            !env.path(&format!(".aiven-ephemeral/{gone}")).exists(),
            "{gone}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(env.path(".aiven-ephemeral/env")).unwrap(),
        a_env
    );
    env.run(&["check"]).expect_code(0);
    env.run(&["down"]).expect_code(0);
    for gone in ["env", "env.sh", "certs"] {
        assert!(
            !env.path(&format!(".aiven-ephemeral/{gone}")).exists(),
            "{gone}"
        );
    }
}

#[test]
fn down_by_run_id_without_a_state_file_deletes_only_tagged_services() {
    let env = Env::new(PG);
    env.run(&["up", "--run-id", "tag1"]).expect_code(0);
    env.sandbox
        .create_service("someone-elses", json!({"team": "x"}));
    env.sandbox.create_service(
        "ae-other-tag1",
        json!({"aiven-ephemeral-run": "tag2", "aiven-ephemeral-owner": "zz"}),
    );
    std::fs::remove_dir_all(env.path(".aiven-ephemeral")).unwrap();
    env.run(&["down", "--run-id", "tag1", "--project", PROJECT])
        .expect_code(0);
    assert_eq!(
        env.sandbox.live_names(),
        vec!["ae-other-tag1", "someone-elses"]
    );
}

#[test]
fn down_without_state_or_run_id() {
    let env = Env::new(PG);
    let down = env.run(&["down"]);
    down.expect_code(2);
    pinned!(down.stderr, @"
    error: no state file at .aiven-ephemeral/state.json and no --run-id: nothing says what to delete
      hint: pass --state-file, or --run-id to delete a run's services by tag (--missing-ok makes this a no-op)
    ");
    env.run(&["down", "--missing-ok"]).expect_code(0);
    assert!(env.sandbox.requests().is_empty(), "no API call");
}

#[test]
fn keep_on_failure_keeps_and_down_skips_without_force() {
    let env = Env::new(PG);
    env.sandbox
        .service_fault(json!({"name": "ae-db-*", "never_ready": true}));
    let up = env.run(&[
        "up",
        "--run-id",
        "keep1",
        "--timeout",
        "2s",
        "--keep-on-failure",
    ]);
    up.expect_code(4);
    pinned!(up.stderr, @"
    [HH:MM:SS] run keep1 in project test-project (1 service(s))
    [HH:MM:SS] Creating 1 service(s)
    [HH:MM:SS] ae-db-keep1: creating
    [HH:MM:SS] ae-db-keep1: REBUILDING
    [HH:MM:SS] warning: --keep-on-failure: the run's services (and its tenancies in shared services) were NOT deleted and keep costing money until `aiven-ephemeral down --force` (or `reap`) deletes them
    error: timed out after [T] waiting for: ae-db-keep1 (REBUILDING)
      hint: raise --timeout, or check the service in the Aiven console; everything created was deleted
    ");
    assert_eq!(env.state()["status"], "kept");
    assert_eq!(env.sandbox.live_names().len(), 1);
    let down = env.run(&["down"]);
    down.expect_code(0);
    pinned!(down.stderr, @"[HH:MM:SS] warning: run keep1 was kept on failure (--keep-on-failure); not deleting it. `aiven-ephemeral down --force` deletes it");
    assert_eq!(env.sandbox.live_names().len(), 1);
    env.run(&["down", "--force"]).expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn termination_protection_is_respected_unless_forced() {
    let env = Env::new(PG);
    env.run(&["up", "--run-id", "prot1"]).expect_code(0);
    let (status, _) = env.sandbox.api(
        "PUT",
        &format!("/v1/project/{PROJECT}/service/ae-db-prot1"),
        Some(json!({"termination_protection": true})),
    );
    assert_eq!(status, 200);
    let down = env.run(&["down"]);
    down.expect_code(5);
    pinned!(down.stderr, @"
    [HH:MM:SS] Deleting 1 service(s)
    [HH:MM:SS] warning: ae-db-prot1: termination protection is on; not deleted (someone set it on purpose; `down --force` clears it)
    error: teardown incomplete: 1 service(s) could not be confirmed deleted: ae-db-prot1
      finish it with: aiven-ephemeral down --force (or `aiven-ephemeral reap --project test-project` once they expire)
    ");
    assert_eq!(env.sandbox.live_names(), vec!["ae-db-prot1"]);
    env.run(&["down", "--force"]).expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn sandbox_mode_needs_no_account_and_persists_between_commands() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("aiven-ephemeral.yaml"), PG).unwrap();
    let cmd = |args: &[&str]| run(sandbox_cmd(dir.path(), args));
    cmd(&["up", "--sandbox", "--run-id", "sb1"]).expect_code(0);
    let status = |cmd: &dyn Fn(&[&str]) -> Run| {
        let out = cmd(&["status", "--json"]);
        out.expect_code(0);
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()
    };
    let up = status(&cmd);
    assert_eq!(
        (&up["status"], &up["services"][0]["state"]),
        (&json!("up"), &json!("RUNNING")),
        "{up}"
    );
    cmd(&["down"]).expect_code(0);
    assert_eq!(status(&cmd)["status"], "torn_down");
    assert_no_sandbox_process(dir.path());

    // A run that fails before anything exists (the cost guard) leaves no process either.
    let refused = cmd(&[
        "up",
        "--sandbox",
        "--run-id",
        "sb2",
        "--max-hourly-usd",
        "0.0001",
    ]);
    refused.expect_code(2);
    pinned!(refused.stderr, @"
    [HH:MM:SS] sandbox: every type: simulated TCP/TLS listeners (`backends: simulated`)
    [HH:MM:SS] run sb2 in project test-project (1 service(s))
    error: this run would cost 0.026 USD/h, over the limit of 0.000 USD/h:
      db                       pg           hobbyist          0.026 USD/h
      hint: choose smaller plans, or raise limits.max_hourly_usd / --max-hourly-usd
    ");
    assert_no_sandbox_process(dir.path());
}

/// Each state directory's sandbox is a world of its own: `down --sandbox --run-id` from
/// another directory finds nothing, and says where it looked and where the run is.
#[test]
fn down_by_run_id_in_another_directorys_sandbox_says_where_the_run_is() {
    let made = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    for dir in [&made, &other] {
        std::fs::write(dir.path().join("aiven-ephemeral.yaml"), PG).unwrap();
    }
    run(sandbox_cmd(
        made.path(),
        &["up", "--sandbox", "--run-id", "sb2"],
    ))
    .expect_code(0);
    let down = run(sandbox_cmd(
        other.path(),
        &["down", "--sandbox", "--run-id", "sb2"],
    ));
    down.expect_code(0);
    pinned!(down.stderr.trim(), @"[HH:MM:SS] no service tagged with run sb2 in project test-project: nothing to delete in the sandbox of .aiven-ephemeral (a run made with --sandbox elsewhere is in that directory's sandbox: run this there, or give its --state-file)");
    assert_no_sandbox_process(other.path());
    run(sandbox_cmd(made.path(), &["down"])).expect_code(0);
    assert_no_sandbox_process(made.path());
}

#[test]
fn two_sandbox_runs_started_at_once_in_one_directory_share_one_sandbox_process() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = "project: test-project\nservices:\n  db: {type: mysql, plan: hobbyist}\n";
    std::fs::write(dir.path().join("aiven-ephemeral.yaml"), manifest).unwrap();
    let ups: Vec<_> = ["a", "b"]
        .iter()
        .map(|id| {
            let file = format!(".aiven-ephemeral/{id}.json");
            sandbox_cmd(dir.path(), &["up", "--sandbox", "--state-file", &file])
                .spawn()
                .unwrap()
        })
        .collect();
    for up in ups {
        wait(up, std::time::Duration::from_secs(60)).expect_code(0);
    }
    assert_eq!(
        sandbox_processes(dir.path()).len(),
        1,
        "one process per state directory"
    );
    for id in ["a", "b"] {
        let file = format!(".aiven-ephemeral/{id}.json");
        run(sandbox_cmd(dir.path(), &["down", "--state-file", &file])).expect_code(0);
    }
    assert_no_sandbox_process(dir.path());
}

#[test]
fn the_sandbox_process_is_not_stopped_while_another_command_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("aiven-ephemeral.yaml"), PG).unwrap();
    // The first API request waits 3 s in the sandbox: `plan` is using the process then,
    // and no state file says so.
    let config = dir.path().join("slow-sandbox.yaml");
    std::fs::write(
        &config,
        "provisioning_delay: 300ms\nbackends: simulated\nfaults:\n  - {path: \"/v1/**\", nth: [1], fault: {kind: latency, delay: 3s}}\n",
    )
    .unwrap();
    let cmd = |args: &[&str]| {
        let mut c = sandbox_cmd(dir.path(), args);
        c.env("AIVEN_EPHEMERAL_SANDBOX_CONFIG", &config);
        c
    };
    let plan = cmd(&["plan", "--sandbox"]).spawn().unwrap();
    let server_file = dir.path().join(".aiven-ephemeral/sandbox-server.json");
    let start = std::time::Instant::now();
    // Held: the sandbox logged the request and has not answered it (status 0).
    while !std::fs::read(&server_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|s| {
            Some(blocking_get(&format!(
                "{}/_sandbox/requests",
                s["url"].as_str()?
            )))
        })
        .and_then(|log| serde_json::from_str::<serde_json::Value>(&log).ok())
        .is_some_and(|log| {
            log["requests"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["status"] == 0)
        })
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "plan's first request never reached the sandbox"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // `down --sandbox` with no state file stops the directory's process, unless in use.
    let down = run(cmd(&["down", "--sandbox"]));
    down.expect_code(0);
    pinned!(down.stderr.trim(), @"[HH:MM:SS] no state file (.aiven-ephemeral/state.json): nothing to delete; the sandbox process of .aiven-ephemeral is in use by another command, left running");
    let plan = wait(plan, std::time::Duration::from_secs(60));
    plan.expect_code(0);
    // The last user stopped it.
    assert_no_sandbox_process(dir.path());
}

/// The sandbox processes serving `dir`'s state directory, by pid and command line.
fn sandbox_process_list(dir: &std::path::Path) -> Vec<(u32, String)> {
    let state_dir = dir.join(".aiven-ephemeral");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let pid = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
        .filter(|(_, c)| c.contains("--detach-for") && c.contains(&*state_dir.to_string_lossy()))
        .collect()
}

fn sandbox_processes(dir: &std::path::Path) -> Vec<String> {
    sandbox_process_list(dir)
        .into_iter()
        .map(|(_, c)| c)
        .collect()
}

fn sandbox_pids(dir: &std::path::Path) -> Vec<u32> {
    sandbox_process_list(dir)
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// No sandbox process serves `dir` (it may take a moment to stop after a failure).
fn assert_no_sandbox_process(dir: &std::path::Path) {
    let state_dir = dir.join(".aiven-ephemeral");
    let start = std::time::Instant::now();
    loop {
        let serving = sandbox_processes(dir);
        if serving.is_empty() && !state_dir.join("sandbox-server.json").exists() {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "a sandbox process still serves {}: {serving:?}",
            state_dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The binary in `dir` with `--sandbox`'s process made fast, and no account.
#[test]
fn a_command_right_after_the_last_one_never_uses_the_sandbox_process_that_is_going() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("aiven-ephemeral.yaml"), PG).unwrap();
    // It keeps answering 2 s after it was asked to stop, as a server draining does.
    let config = dir.path().join("draining-sandbox.yaml");
    std::fs::write(
        &config,
        "provisioning_delay: 300ms\nbackends: simulated\nstop_drain: 2s\n",
    )
    .unwrap();
    let cmd = |args: &[&str]| {
        let mut c = sandbox_cmd(dir.path(), args);
        c.env("AIVEN_EPHEMERAL_SANDBOX_CONFIG", &config);
        c
    };
    // A command that fails lets the process go as it ends, without waiting for it
    // (as after a signal); `up` comes at once.
    run(cmd(&["up", "--sandbox", "--max-hourly-usd", "0.0001"])).expect_code(2);
    let going = sandbox_pids(dir.path());
    assert_eq!(going.len(), 1, "{going:?}");
    let up = run(cmd(&["up", "--sandbox"]));
    up.expect_code(0);
    // It ran on a process of its own, which still serves its run and recorded its
    // create; the one that was going is gone.
    let serving = sandbox_pids(dir.path());
    assert_eq!(serving.len(), 1, "{}", up.stderr);
    assert_ne!(serving, going);
    let server: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(".aiven-ephemeral/sandbox-server.json")).unwrap(),
    )
    .unwrap();
    let log: serde_json::Value = serde_json::from_str(&blocking_get(&format!(
        "{}/_sandbox/requests",
        server["url"].as_str().unwrap()
    )))
    .unwrap();
    assert!(
        log["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["method"] == "POST" && r["path"] == "/v1/project/test-project/service"),
        "{log}"
    );
    run(cmd(&["down", "--sandbox"])).expect_code(0);
    assert_no_sandbox_process(dir.path());
    assert!(
        !dir.path()
            .join(".aiven-ephemeral/sandbox-stopping")
            .exists()
    );
}

fn sandbox_cmd(dir: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(BIN);
    c.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env(
            "AIVEN_EPHEMERAL_SANDBOX_CONFIG",
            write_fast_sandbox_config(dir),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

fn write_fast_sandbox_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("sandbox-config.yaml");
    std::fs::write(
        &path,
        "provisioning_delay: 300ms\ntopic_activation: 200ms\nbackends: simulated\n",
    )
    .unwrap();
    path
}

#[test]
fn down_confirms_with_a_list_that_services_are_gone() {
    let mut config = fast_config();
    // Deleted services stay listed for a while, as the real API may do.
    config.delete_lag = std::time::Duration::from_millis(2500);
    let env = Env::with(PG, Sandbox::with(config));
    env.run(&["up", "--run-id", "lag1"]).expect_code(0);
    let started = std::time::Instant::now();
    env.run(&["down"]).expect_code(0);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "down waited until the list no longer showed it"
    );
    let lists_after_delete = env
        .sandbox
        .requests()
        .iter()
        .skip_while(|r| r["method"] != "DELETE")
        .filter(|r| r["method"] == "GET" && r["path"] == format!("/v1/project/{PROJECT}/service"))
        .count();
    assert!(lists_after_delete >= 2, "confirmed by repeated lists");
    assert_eq!(env.state()["status"], "torn_down");
}

#[test]
fn json_log_format_gives_one_json_event_per_line() {
    let env = Env::new(PG);
    let up = env.run(&["up", "--log-format", "json"]);
    up.expect_code(0);
    let events: Vec<serde_json::Value> = up
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(events.iter().any(|e| {
        e["fields"]["state"] == "ready"
            && e["fields"]["service"]
                .as_str()
                .unwrap()
                .starts_with("ae-db-")
    }));
    env.run(&["down"]).expect_code(0);
}

/// `up --sandbox` whose sandbox process reads its configuration from a FIFO, so that it
/// cannot answer before the test writes it; returned once that process waits for it
/// (opening the FIFO, its signal handlers installed).
fn up_with_a_sandbox_held_starting(
    dir: &std::path::Path,
) -> (std::process::Child, std::path::PathBuf) {
    std::fs::write(dir.join("aiven-ephemeral.yaml"), PG).unwrap();
    let config = dir.join("config-fifo");
    let made = std::process::Command::new("mkfifo").arg(&config).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let mut up = sandbox_cmd(dir, &["up", "--sandbox"]);
    up.env("AIVEN_EPHEMERAL_SANDBOX_CONFIG", &config);
    let child = up.spawn().unwrap();
    let start = std::time::Instant::now();
    while !sandbox_pids(dir).into_iter().any(opening_a_fifo) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "no sandbox process waits for its configuration"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (child, config)
}

#[test]
fn a_signal_while_the_sandbox_process_starts_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let (child, config) = up_with_a_sandbox_held_starting(dir.path());
    signal(&child, nix::sys::signal::Signal::SIGINT);
    // Its configuration comes only after the signal: whether `up` stopped the process
    // before it (no reader left: ENXIO) or it goes on to start with it, it must stop.
    // Opened without blocking, so that a reader that went away cannot hang the test.
    match std::os::unix::fs::OpenOptionsExt::custom_flags(
        std::fs::OpenOptions::new().write(true),
        nix::libc::O_NONBLOCK,
    )
    .open(&config)
    {
        Ok(mut fifo) => {
            std::io::Write::write_all(&mut fifo, b"backends: simulated\n").expect("written")
        }
        Err(e) => assert_eq!(e.raw_os_error(), Some(nix::libc::ENXIO), "{e}"),
    }
    wait(child, std::time::Duration::from_secs(30)).expect_code(130);
    assert_no_sandbox_process(dir.path());
}

/// A sandbox process stalled while it starts (its configuration never comes, and
/// SIGTERM does not interrupt the wait): after SIGINT, `up` still ends within seconds,
/// the process killed (it waited for it for ever).
#[test]
fn a_signal_while_the_sandbox_process_stalls_starting_ends_up_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let (child, _config) = up_with_a_sandbox_held_starting(dir.path());
    let signalled = std::time::Instant::now();
    signal(&child, nix::sys::signal::Signal::SIGINT);
    wait(child, std::time::Duration::from_secs(10)).expect_code(130);
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(4),
        "up took {:?} to end after the signal",
        signalled.elapsed()
    );
    assert_no_sandbox_process(dir.path());
}

#[test]
fn the_shell_env_file_sources_in_bash_and_teardown_removes_the_env_files() {
    let env = Env::new(PG);
    env.run(&["up"]).expect_code(0);
    let shell = env.path(".aiven-ephemeral/env.sh");
    assert_eq!(mode(&shell), 0o600);
    // Every value arrives whole (a URI with `&` in it too) and exported to children.
    let dotenv: Vec<(String, String)> = env
        .env_file()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let script = format!(". {} && env", shell.display());
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .env_clear()
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    for (k, v) in &dotenv {
        assert!(
            seen.lines().any(|l| l == format!("{k}={v}")),
            "{k} in a child: {seen}"
        );
    }
    assert!(
        dotenv.iter().any(|(_, v)| v.contains('&')),
        "a value with & was tried"
    );
    env.run(&["down"]).expect_code(0);
    for left in [
        ".aiven-ephemeral/env",
        ".aiven-ephemeral/env.sh",
        ".aiven-ephemeral/certs",
    ] {
        assert!(!env.path(left).exists(), "{left} outlived the run");
    }
}

#[test]
fn a_finished_runs_state_file_does_not_stand_in_the_way_of_down_by_run_id() {
    let env = Env::new(PG);
    env.run(&["up", "--run-id", "old1"]).expect_code(0);
    env.run(&["down"]).expect_code(0);
    // Another run, whose state file is elsewhere (another job's, say).
    env.run(&[
        "up",
        "--run-id",
        "new2",
        "--state-file",
        "elsewhere/state.json",
    ])
    .expect_code(0);
    env.run(&["down", "--run-id", "new2"]).expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
    // A live run in the state file is another matter.
    env.run(&["up", "--run-id", "old3"]).expect_code(0);
    let down = env.run(&["down", "--run-id", "new4"]);
    down.expect_code(2);
    pinned!(down.stderr, @"
    error: .aiven-ephemeral/state.json holds run old3 (up), not new4
      hint: pass the --state-file run new4 was made with, or `--state-file` naming a file that does not exist to find it by its tags; keep this file: it is run old3's
    ");
    env.run(&["down"]).expect_code(0);
}

#[test]
fn a_recorded_pid_that_is_not_the_sandbox_process_is_never_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("aiven-ephemeral.yaml"), PG).unwrap();
    let state_dir = dir.path().join(".aiven-ephemeral");
    std::fs::create_dir_all(&state_dir).unwrap();
    // A dead sandbox's pid, now another process's.
    let mut other = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("sleep starts");
    let server = json!({
        "pid": other.id(), "url": "http://127.0.0.1:9", "token": "t", "backends": "simulated",
        "dir": std::fs::canonicalize(&state_dir).unwrap(),
    });
    let registry = tmp.path().join("aiven-ephemeral-sandboxes");
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&registry)
        .unwrap();
    for file in [
        state_dir.join("sandbox-server.json"),
        registry.join(format!("{}.json", other.id())),
    ] {
        std::fs::write(file, server.to_string()).unwrap();
    }
    let mut down = sandbox_cmd(dir.path(), &["down", "--sandbox", "--missing-ok"]);
    down.env("TMPDIR", tmp.path());
    run(down).expect_code(0);
    assert!(
        other.try_wait().expect("wait").is_none(),
        "the process that got the pid was signalled"
    );
    other.kill().expect("kill");
    other.wait().expect("reaped");
}

#[test]
fn a_sandbox_on_an_earlier_ones_address_is_probed_with_its_own_ca() {
    // Each sandbox makes a CA of its own; a later one on the same address (a restart
    // on a fixed --port, or a port the system hands out again) must not be checked
    // against the earlier one's CA from the disk cache.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("aiven-ephemeral.yaml"),
        "project: test-project\nservices:\n  cache: {type: valkey, plan: hobbyist, probe: tls}\n",
    )
    .unwrap();
    let first = Sandbox::start();
    let port: u16 = first.url.rsplit(':').next().unwrap().parse().unwrap();
    run(cmd_in(dir.path(), &first, &["up", "--run-id", "one"])).expect_code(0);
    run(cmd_in(dir.path(), &first, &["down"])).expect_code(0);
    drop(first);
    let second = Sandbox::on_port(fast_config(), port);
    assert_eq!(second.url, format!("http://127.0.0.1:{port}"));
    run(cmd_in(dir.path(), &second, &["up", "--run-id", "two"])).expect_code(0);
    run(cmd_in(dir.path(), &second, &["down"])).expect_code(0);
}

#[test]
fn down_says_it_waits_for_the_runs_up_and_a_signal_stops_the_wait() {
    let env = Env::with(
        PG,
        Sandbox::with(aiven_sandbox::Config {
            provisioning_delay: std::time::Duration::from_secs(60),
            ..fast_config()
        }),
    );
    let up = env.spawn(&["up", "--run-id", "held"]);
    env.sandbox
        .wait_for("the create", std::time::Duration::from_secs(30), |reqs| {
            reqs.iter()
                .any(|r| r["method"] == "POST" && r["path"] == "/v1/project/test-project/service")
        });
    // Its stderr in a file, read while it waits.
    let log = env.path("down.log");
    let mut cmd = env.cmd(&["down"]);
    cmd.stderr(std::fs::File::create(&log).unwrap());
    let down = cmd.spawn().unwrap();
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&log).unwrap().contains("to finish") {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "down never said what it waits for"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    signal(&down, nix::sys::signal::Signal::SIGINT);
    wait(down, std::time::Duration::from_secs(10)).expect_code(130);
    pinned!(std::fs::read_to_string(&log).unwrap(), @"
    [HH:MM:SS] waiting up to 30s for the command that holds .aiven-ephemeral/state.json (this run's up or run, or another down) to finish
    error: interrupted by SIGINT while waiting for .aiven-ephemeral/state.json; nothing was changed
    ");
    // The wait changed nothing: `up` still holds its run, and tears it down itself.
    assert_eq!(env.sandbox.count("DELETE", "/v1"), 0);
    signal(&up, nix::sys::signal::Signal::SIGINT);
    wait(up, std::time::Duration::from_secs(30)).expect_code(130);
    assert!(env.sandbox.live_names().is_empty());
}
