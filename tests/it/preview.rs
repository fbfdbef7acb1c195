//! Environments per pull request (`up --reuse`): pushes from different machines (empty
//! directories) converge on one set of services, concurrent pushes too; manifest
//! changes between pushes; `--reset`; the close from anywhere; `reap` when the close
//! was missed; and the one comment on the pull / merge request, against local servers
//! that answer as GitHub's and GitLab's APIs do.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::forge::{Forge, Kind};
use crate::common::*;

const RUN: &str = "pr-42";
const DB: &str = "ci-db-pr-42";

fn manifest(extra: &str) -> String {
    format!(
        "project: test-project\nname_prefix: ci\nservices:\n  db:\n    type: pg\n    plan: hobbyist\n    databases: [app]\n    users: [app_user]\n{extra}"
    )
}

/// A fresh directory (another machine, or a CI job with a clean workspace) holding
/// `manifest`.
fn machine(manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("aiven-ephemeral.yaml"), manifest).unwrap();
    dir
}

fn push(sandbox: &Sandbox, dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["up", "--reuse", "--run-id", RUN];
    args.extend_from_slice(extra);
    run(cmd_in(dir, sandbox, &args))
}

/// One exported value of a directory's env file.
fn exported(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(".aiven-ephemeral/env")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} not in the env file:\n{text}"))
        .to_string()
}

/// Requests logged since `from`: (method, path).
fn since(sandbox: &Sandbox, from: usize) -> Vec<(String, String)> {
    sandbox.requests()[from..]
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_string(),
                r["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn creates(requests: &[(String, String)]) -> usize {
    let path = format!("/v1/project/{PROJECT}/service");
    requests
        .iter()
        .filter(|(m, p)| m == "POST" && *p == path)
        .count()
}

/// The error and its hint, as a person reads them.
fn errors(out: &Run) -> String {
    out.stderr
        .lines()
        .filter(|l| l.starts_with("error") || l.starts_with("  hint"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn service(sandbox: &Sandbox, name: &str) -> Value {
    sandbox
        .live_services()
        .into_iter()
        .find(|s| s["service_name"] == name)
        .unwrap_or_else(|| panic!("{name} is not live"))
}

fn set_expiry(sandbox: &Sandbox, name: &str, at: &str) {
    let (status, body) = sandbox.api(
        "PATCH",
        &format!("/v1/project/{PROJECT}/service/{name}/tags"),
        Some(json!({"tags": {"aiven-ephemeral-expires": at}})),
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn push_then_push_from_another_machine_adopts_and_creates_nothing() {
    let sandbox = Sandbox::start();
    let first = machine(&manifest(""));
    push(&sandbox, first.path(), &[]).expect_code(0);
    let tags = service(&sandbox, DB)["tags"].clone();
    assert_eq!(tags["aiven-ephemeral-reuse"], "true");
    assert_eq!(tags["aiven-ephemeral-owner"], "reuse-pr-42");

    // A week later, as far as the run's expiry knows.
    set_expiry(&sandbox, DB, "2001-01-01T00:00:00Z");
    let second = machine(&manifest(""));
    let before = sandbox.requests().len();
    let out = push(&sandbox, second.path(), &[]);
    out.expect_code(0);
    pinned!(reuse_plan(&out), @"[HH:MM:SS] keep    ci-db-pr-42");
    let requests = since(&sandbox, before);
    assert_eq!(creates(&requests), 0, "{requests:#?}");
    // What the second push costs, from an empty directory (no cache): the project, its
    // CA, the list, the price, the expiry, a poll, the credentials. The database and the
    // user (with its password) are known from the service's read.
    let methods: Vec<&str> = requests.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        methods,
        ["GET", "GET", "GET", "GET", "PATCH", "GET", "GET"],
        "{requests:#?}"
    );
    assert_eq!(
        exported(first.path(), "DB_PASSWORD"),
        exported(second.path(), "DB_PASSWORD")
    );
    assert_eq!(
        exported(first.path(), "DB_USER_APP_USER_PASSWORD"),
        exported(second.path(), "DB_USER_APP_USER_PASSWORD")
    );
    // The expiry followed the push.
    let expires = service(&sandbox, DB)["tags"]["aiven-ephemeral-expires"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(expires.as_str() > "2026-", "{expires}");
    assert_eq!(sandbox.live_names(), vec![DB]);

    // The close, from a third machine.
    let third = machine(&manifest(""));
    run(cmd_in(third.path(), &sandbox, &["down", "--run-id", RUN])).expect_code(0);
    assert!(sandbox.live_names().is_empty());
}

#[test]
fn concurrent_pushes_create_each_service_once_and_both_succeed() {
    let sandbox = Sandbox::start();
    // The first create is held until the other push's create arrives: both pushes have
    // listed a project without the service, and both send a create.
    sandbox.fault(json!({
        "method": "POST",
        "path": format!("/v1/project/{PROJECT}/service"),
        "nth": [1],
        "fault": {"kind": "hold", "until": 2}
    }));
    let (a, b) = (machine(&manifest("")), machine(&manifest("")));
    let one = cmd_in(a.path(), &sandbox, &["up", "--reuse", "--run-id", RUN])
        .spawn()
        .unwrap();
    let two = cmd_in(b.path(), &sandbox, &["up", "--reuse", "--run-id", RUN])
        .spawn()
        .unwrap();
    let (one, two) = (
        wait(one, Duration::from_secs(120)),
        wait(two, Duration::from_secs(120)),
    );
    one.expect_code(0);
    two.expect_code(0);
    let mut statuses: Vec<u64> = sandbox
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"] == format!("/v1/project/{PROJECT}/service"))
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, [200, 409], "one create made it, the other met it");
    assert_eq!(sandbox.live_names(), vec![DB]);
    // The one that met it adopted the winner's service: both hand out its credentials.
    for name in ["DB_PASSWORD", "DB_USER_APP_USER_PASSWORD"] {
        assert_eq!(exported(a.path(), name), exported(b.path(), name), "{name}");
    }
}

#[test]
fn a_test_run_is_never_adopted_and_a_pull_requests_run_is_not_a_test_run() {
    let sandbox = Sandbox::start();
    let test_run = machine(&manifest(""));
    run(cmd_in(
        test_run.path(),
        &sandbox,
        &["up", "--run-id", "pr-7"],
    ))
    .expect_code(0);
    let other = machine(&manifest(""));
    let before = sandbox.requests().len();
    let out = run(cmd_in(
        other.path(),
        &sandbox,
        &["up", "--reuse", "--run-id", "pr-7"],
    ));
    out.expect_code(2);
    assert_eq!(creates(&since(&sandbox, before)), 0);
    pinned!(errors(&out), @r"
    error: run pr-7 in project test-project was made without --reuse (services ci-db-pr-7): `up --reuse` adopts only runs made with --reuse, never a test run
      hint: delete it with `aiven-ephemeral down --run-id pr-7` first, or give the pull request's environment its own run id
    ");

    push(&sandbox, other.path(), &[]).expect_code(0);
    let third = machine(&manifest(""));
    let out = run(cmd_in(third.path(), &sandbox, &["up", "--run-id", RUN]));
    out.expect_code(2);
    pinned!(errors(&out), @r"
    error: run pr-42 in project test-project is an environment per pull request, made with --reuse (services ci-db-pr-42)
      hint: bring it up with `up --reuse`, or give this run another run id
    ");
    // `run` never keeps anything.
    let out = run(cmd_in(
        third.path(),
        &sandbox,
        &["run", "--reuse", "--run-id", RUN, "--", "true"],
    ));
    out.expect_code(2);
    pinned!(out.stderr, @"
    error: `run` deletes its services when the command ends; --reuse keeps them for a pull request's later pushes
      hint: use `aiven-ephemeral up --reuse --run-id pr-<number>`, then the command; the pull request's close runs `down`
    ");
}

/// What a push says it does to each service (`keep`, `create`, `change`, `delete` lines).
fn reuse_plan(out: &Run) -> String {
    out.stderr
        .lines()
        .filter(|l| {
            ["] keep ", "] create ", "] change ", "] delete "]
                .iter()
                .any(|verb| l.contains(verb))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn manifest_changes_between_pushes_are_created_changed_or_deleted() {
    let sandbox = Sandbox::start();
    let dir = machine(&manifest(""));
    push(&sandbox, dir.path(), &[]).expect_code(0);

    // Next push: a cache is added, the database gets a bigger plan and a setting.
    let changed = manifest("  cache:\n    type: valkey\n    plan: hobbyist\n").replace(
        "    plan: hobbyist\n    databases",
        "    plan: startup-4\n    user_config: {ip_filter: [0.0.0.0/0, 10.0.0.0/8]}\n    databases",
    );
    std::fs::write(dir.path().join("aiven-ephemeral.yaml"), &changed).unwrap();
    let plan = run(cmd_in(
        dir.path(),
        &sandbox,
        &["plan", "--reuse", "--run-id", RUN],
    ));
    plan.expect_code(0);
    let said: Vec<&str> = plan
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("up --reuse would"))
        .collect();
    pinned!(said.join("\n"), @r"
    up --reuse would:
      create  ci-cache-pr-42
      change  ci-db-pr-42: plan hobbyist → startup-4, user_config.ip_filter
    ");
    let before = sandbox.requests().len();
    push(&sandbox, dir.path(), &[]).expect_code(0);
    let requests = since(&sandbox, before);
    assert_eq!(creates(&requests), 1, "{requests:#?}");
    let db = service(&sandbox, DB);
    assert_eq!(db["plan"], "startup-4");
    // The change rebuilt it (REBUILDING from the PUT on), and the push waited.
    assert_eq!(db["state"], "RUNNING");
    assert_eq!(
        db["user_config"]["ip_filter"],
        json!(["0.0.0.0/0", "10.0.0.0/8"])
    );
    assert!(exported(dir.path(), "CACHE_URI").starts_with("rediss://"));

    // Next push: the cache is gone from the manifest, so it goes.
    std::fs::write(
        dir.path().join("aiven-ephemeral.yaml"),
        changed.split("  cache:").next().unwrap(),
    )
    .unwrap();
    let before = sandbox.requests().len();
    let out = push(&sandbox, dir.path(), &[]);
    out.expect_code(0);
    pinned!(reuse_plan(&out), @"
    [HH:MM:SS] keep    ci-db-pr-42
    [HH:MM:SS] delete  ci-cache-pr-42 (services.cache is no longer in the manifest)
    ");
    let requests = since(&sandbox, before);
    assert_eq!(creates(&requests), 0);
    assert!(
        requests
            .iter()
            .any(|(m, p)| m == "DELETE" && p.ends_with("/service/ci-cache-pr-42")),
        "{requests:#?}"
    );
    assert!(
        !requests.iter().any(|(m, _)| m == "PUT"),
        "nothing else changed: {requests:#?}"
    );
    assert_eq!(sandbox.live_names(), vec![DB]);

    // A type change is refused before anything is sent.
    std::fs::write(
        dir.path().join("aiven-ephemeral.yaml"),
        manifest("").replace("type: pg", "type: mysql"),
    )
    .unwrap();
    let out = push(&sandbox, dir.path(), &[]);
    out.expect_code(2);
    pinned!(out.told(), @"
    error: services.db: ci-db-pr-42 is a pg service, and the manifest now says mysql: a service cannot change its type
      hint: give the new service another key (the old one is then deleted on this push)
    ");
}

#[test]
fn reset_empties_the_databases_and_keeps_the_services() {
    let sandbox = crate::tenancy_sandbox::real_sandbox();
    let seed = "create table migrations (v int); insert into migrations values (1);\n";
    let dir = machine(&manifest("    seed: [seed.sql]\n"));
    std::fs::write(dir.path().join("seed.sql"), seed).unwrap();
    push(&sandbox, dir.path(), &[]).expect_code(0);
    let uri = exported(dir.path(), "DB_URI");
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql")
            .args([uri.as_str(), "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql])
            .env("PGSSLMODE", "require")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // A half-done migration after the first push.
    psql("create table half_done (x int); insert into migrations values (2);");

    // The next push keeps the data (and does not seed again).
    let other = machine(&manifest("    seed: [seed.sql]\n"));
    std::fs::write(other.path().join("seed.sql"), seed).unwrap();
    push(&sandbox, other.path(), &[]).expect_code(0);
    assert_eq!(psql("select count(*) from migrations"), "2");

    let before = sandbox.requests().len();
    push(&sandbox, other.path(), &["--reset"]).expect_code(0);
    let requests = since(&sandbox, before);
    assert_eq!(creates(&requests), 0, "{requests:#?}");
    assert!(
        !requests
            .iter()
            .any(|(m, p)| m == "DELETE" && p.ends_with(DB))
    );
    assert_eq!(psql("select count(*) from migrations"), "1");
    assert_eq!(
        psql("select count(*) from pg_tables where tablename = 'half_done'"),
        "0"
    );
    assert_eq!(sandbox.live_names(), vec![DB]);
    run(cmd_in(other.path(), &sandbox, &["down", "--run-id", RUN])).expect_code(0);
}

#[test]
fn reset_refuses_what_it_cannot_reset_before_any_call() {
    let sandbox = Sandbox::start();
    let dir = machine(&manifest(
        "  cache:\n    type: valkey\n    plan: hobbyist\n",
    ));
    let out = push(&sandbox, dir.path(), &["--reset"]);
    out.expect_code(2);
    assert!(sandbox.requests().is_empty());
    pinned!(errors(&out), @r"
    error: services.cache: --reset cannot empty a valkey service through the API (it recreates databases and Kafka topics only)
      hint: to start it afresh, remove the service from the manifest for one push (it is deleted), then add it back
    ");
}

#[test]
fn a_missed_close_is_reaped_once_the_last_push_expires() {
    let sandbox = Sandbox::start();
    let dir = machine(&manifest(""));
    push(&sandbox, dir.path(), &[]).expect_code(0);
    // Not expired: reap leaves it.
    run(cmd_in(dir.path(), &sandbox, &["reap"])).expect_code(0);
    assert_eq!(sandbox.live_names(), vec![DB]);
    // A test run beside it, with the longest run id there is.
    let test_run = machine(&manifest(""));
    let long_id = "12345678901-1-e2e-ab";
    run(cmd_in(
        test_run.path(),
        &sandbox,
        &["up", "--run-id", long_id],
    ))
    .expect_code(0);
    let status = || {
        let out = run(cmd_in(dir.path(), &sandbox, &["status", "--all"]));
        out.expect_code(0);
        for line in out.stdout.lines() {
            assert!(line.chars().count() <= 80, "wider than 80 columns: {line}");
        }
        out.stdout
    };
    pinned!(status(), @r"
    runs of aiven-ephemeral in project test-project:
    RUN                   KIND   SVCS  AGE  EXPIRES   USD/H  SO FAR
    pr-42                 reuse  1     [T]   in [T]  0.026  0.000
    12345678901-1-e2e-ab  run    1     [T]   in [T]  0.026  0.000
    ");
    // The close was missed, and the ttl passed since the last push.
    set_expiry(&sandbox, DB, "2001-01-01T00:00:00Z");
    pinned!(status(), @r"
    runs of aiven-ephemeral in project test-project:
    RUN                   KIND   SVCS  AGE  EXPIRES   USD/H  SO FAR
    pr-42                 reuse  1     [T]   passed    0.026  0.000
    12345678901-1-e2e-ab  run    1     [T]   in [T]  0.026  0.000
    ");
    run(cmd_in(dir.path(), &sandbox, &["reap"])).expect_code(0);
    assert_eq!(sandbox.live_names(), vec![format!("ci-db-{long_id}")]);
}

fn with_forge(cmd: &mut std::process::Command, forge: &Forge, dir: &Path) {
    for (k, v) in forge.ci_env(dir) {
        cmd.env(k, v);
    }
    cmd.env("AIVEN_EPHEMERAL_COMMENT", "true");
}

/// Push, push, manifest change, close: one comment, edited each time, never a secret.
fn one_comment_per_change(kind: Kind) {
    let sandbox = Sandbox::start();
    let forge = Forge::start(kind, 130);
    let dir = machine(&manifest(""));
    let marker = format!("<!-- aiven-ephemeral run={RUN} -->");
    let pushes = [
        manifest(""),
        manifest(""),
        manifest("  cache:\n    type: valkey\n    plan: hobbyist\n"),
    ];
    for m in &pushes {
        std::fs::write(dir.path().join("aiven-ephemeral.yaml"), m).unwrap();
        let mut cmd = cmd_in(dir.path(), &sandbox, &["up", "--reuse", "--run-id", RUN]);
        with_forge(&mut cmd, &forge, dir.path());
        run(cmd).expect_code(0).expect_stderr("comment updated");
        assert_eq!(forge.ours(&marker).len(), 1);
    }
    let body = &forge.ours(&marker)[0];
    assert!(
        body.contains("| `ci-cache-pr-42` | valkey | hobbyist | ready |"),
        "{body}"
    );
    assert!(
        body.contains("aiven-ephemeral env --run-id pr-42"),
        "{body}"
    );
    let mut cmd = cmd_in(dir.path(), &sandbox, &["down", "--run-id", RUN]);
    with_forge(&mut cmd, &forge, dir.path());
    run(cmd).expect_code(0);
    let closed = forge.ours(&marker);
    assert_eq!(closed.len(), 1);
    assert!(closed[0].contains("Deleted at 20"), "{}", closed[0]);
    assert!(closed[0].contains("Total cost: about "), "{}", closed[0]);
    assert_eq!(forge.count("POST"), 1, "posted once, then edited");
    assert_eq!(
        forge.count(if kind == Kind::Github { "PATCH" } else { "PUT" }),
        3
    );
    // Never a secret, in any version.
    let env = std::fs::read_to_string(dir.path().join(".aiven-ephemeral/env")).unwrap_or_default();
    let secrets: Vec<String> = env
        .lines()
        .filter(|l| l.contains("PASSWORD=") || l.contains("_URI="))
        .filter_map(|l| l.split_once('=').map(|(_, v)| v.to_string()))
        .collect();
    for version in forge.sent_bodies() {
        assert!(
            !version.contains("PASSWORD") && !version.contains("postgres://"),
            "{version}"
        );
        for s in &secrets {
            assert!(!version.contains(s.as_str()), "a secret in {version}");
        }
    }
    // Each of the 4 commands read the list's two pages: the comment is past the first
    // 100 of the 130 others.
    assert_eq!(forge.count("GET"), 4 * 2);
}

#[test]
fn github_shows_one_comment_edited_on_every_push_and_on_close() {
    one_comment_per_change(Kind::Github);
}

#[test]
fn gitlab_shows_one_note_edited_on_every_push_and_on_close() {
    one_comment_per_change(Kind::Gitlab);
}

#[test]
fn a_comment_refused_or_deleted_or_rate_limited_never_fails_the_job() {
    let sandbox = Sandbox::start();
    let forge = Forge::start(Kind::Github, 3);
    let dir = machine(&manifest(""));
    let marker = format!("<!-- aiven-ephemeral run={RUN} -->");
    let up = |extra: &[(&str, &str)]| {
        let mut cmd = cmd_in(dir.path(), &sandbox, &["up", "--reuse", "--run-id", RUN]);
        with_forge(&mut cmd, &forge, dir.path());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        run(cmd)
    };
    // A fork's pull request: a read-only token.
    forge.world.lock().unwrap().read_only = true;
    let out = up(&[]);
    out.expect_code(0);
    let warning: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("--comment"))
        .collect();
    pinned!(warning.join("\n"), @"::warning::--comment: posting the pull request's comment: 403 Resource not accessible by integration: the token may not write here (a fork's pull request gets a read-only GITHUB_TOKEN; GitLab needs a token with the `api` scope); the job goes on");
    forge.world.lock().unwrap().read_only = false;

    // Rate limited for a moment: waited out, then posted.
    forge.world.lock().unwrap().rate_limited = 1;
    up(&[]).expect_code(0).expect_stderr("comment updated");
    assert_eq!(forge.ours(&marker).len(), 1);

    // Someone deleted it: the next push posts it again.
    forge.delete_ours(&marker);
    up(&[]).expect_code(0).expect_stderr("comment updated");
    assert_eq!(forge.ours(&marker).len(), 1);

    // No token at all: said, and the job goes on.
    let out = up(&[("GITHUB_TOKEN", "")]);
    out.expect_code(0);
    let said: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("GITHUB_TOKEN"))
        .collect();
    pinned!(said.join("\n"), @"::warning::--comment: no comment written: GITHUB_TOKEN is not set: give the step `env: GITHUB_TOKEN: ${{ github.token }}` and the job `permissions: pull-requests: write`");
    run(cmd_in(dir.path(), &sandbox, &["down", "--run-id", RUN])).expect_code(0);
}

#[test]
fn a_failed_push_comments_what_failed_and_which_services_are_ready() {
    let sandbox = Sandbox::start();
    let forge = Forge::start(Kind::Github, 0);
    let dir = machine(&manifest(""));
    let marker = format!("<!-- aiven-ephemeral run={RUN} -->");
    let up = |extra: &[&str]| {
        let mut args = vec!["up", "--reuse", "--run-id", RUN];
        args.extend_from_slice(extra);
        let mut cmd = cmd_in(dir.path(), &sandbox, &args);
        with_forge(&mut cmd, &forge, dir.path());
        run(cmd)
    };
    up(&[]).expect_code(0);
    // The next push adds a cache that never becomes ready.
    sandbox.service_fault(json!({"name": "ci-cache-pr-42", "never_ready": true}));
    std::fs::write(
        dir.path().join("aiven-ephemeral.yaml"),
        manifest("  cache:\n    type: valkey\n    plan: hobbyist\n"),
    )
    .unwrap();
    up(&["--timeout", "10s"]).expect_code(4);
    let body = &forge.ours(&marker)[0];
    let said: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("**") || l.starts_with('|'))
        .collect();
    // How long it waited varies by a few milliseconds.
    let said = said.join("\n");
    let (head, tail) = said.split_once("after ").unwrap();
    let said = format!("{head}after [T]{}", &tail[tail.find(' ').unwrap()..]);
    pinned!(said, @r"
    **The last push failed:** timed out after [T] waiting for: ci-cache-pr-42 (REBUILDING). The services stay as they are; the next push tries again.
    | service | type | plan | state | ready in | USD/h |
    |---|---|---|---|---|---|
    | `ci-db-pr-42` | pg | hobbyist | ready | - | 0.026 |
    | `ci-cache-pr-42` | valkey | hobbyist | not ready | - | ? |
    ");
    run(cmd_in(dir.path(), &sandbox, &["down", "--run-id", RUN])).expect_code(0);
}

#[test]
fn reuse_refuses_shared_services_before_any_call() {
    let sandbox = Sandbox::start();
    let dir = machine(&manifest(
        "  cache: {type: valkey, plan: hobbyist, shared: true}\n",
    ));
    let out = push(&sandbox, dir.path(), &[]);
    out.expect_code(2);
    assert!(sandbox.requests().is_empty());
    pinned!(errors(&out), @r"
    error: services.cache: --reuse does not keep a tenancy in a shared service across pushes (it is made for one run, and no later push adopts it)
      hint: give the pull request a dedicated service (remove `shared:`), or run the shared services in a job without --reuse
    ");
}

#[test]
fn reset_recreates_kafka_topics_once_the_old_ones_are_gone() {
    let sandbox = Sandbox::start();
    let kafka = "ci-events-pr-42";
    let dir = machine(&format!(
        "{}  events:\n    type: kafka\n    plan: startup-2\n    topics: [{{name: orders, partitions: 1, replication: 1}}]\n",
        manifest("")
    ));
    push(&sandbox, dir.path(), &[]).expect_code(0);
    let topics = format!("/v1/project/{PROJECT}/service/{kafka}/topic");
    // Kafka deletes a topic in the background: the first list after the delete still
    // shows it.
    sandbox.fault(json!({
        "method": "GET",
        "path": topics,
        "nth": [1],
        "fault": {"kind": "body", "body": {"topics": [{"topic_name": "orders", "state": "ACTIVE"}]}}
    }));
    let before = sandbox.requests().len();
    push(&sandbox, dir.path(), &["--reset"]).expect_code(0);
    let requests = since(&sandbox, before);
    let on_topics: Vec<String> = requests
        .iter()
        .filter(|(_, p)| p.starts_with(&topics))
        .map(|(m, p)| format!("{m} {}", &p[topics.len()..]))
        .collect();
    // Deleted, listed until gone (the first list still showed it), created again, and
    // listed until active.
    assert_eq!(
        on_topics,
        ["DELETE /orders", "GET ", "GET ", "POST ", "GET "],
        "{requests:#?}"
    );
    assert_eq!(creates(&requests), 0, "{requests:#?}");
    assert!(
        !requests
            .iter()
            .any(|(m, p)| m == "DELETE" && p.rsplit('/').nth(1) == Some("service")),
        "no service deleted: {requests:#?}"
    );
    let (status, listed) = sandbox.api("GET", &topics, None);
    assert_eq!(status, 200);
    assert_eq!(listed["topics"][0]["topic_name"], "orders", "{listed}");
    run(cmd_in(dir.path(), &sandbox, &["down", "--run-id", RUN])).expect_code(0);
}
