//! The other commands: validate, plan, env, extend, reap, completions, --help.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

#[test]
fn validate_points_at_file_line_and_column_and_sends_nothing() {
    let env =
        Env::new("project: test-project\nservices:\n  db:\n    type: pg\n    plna: hobbyist\n");
    let out = env.run(&["validate"]);
    out.expect_code(2);
    pinned!(out.stderr, @"
    error: aiven-ephemeral.yaml:5:5: unknown key `plna`
     --> aiven-ephemeral.yaml:5:5
      |
    5 |     plna: hobbyist
      |     ^ unknown key `plna`
      hint: did you mean `plan`? Keys here: type, plan, cloud, version, user_config, databases, users, topics, acls, default_acl, fork_from, probe, env_prefix, env, project_vpc_id, tags, shared, seed
    ");
    assert!(env.sandbox.requests().is_empty());
}

#[test]
fn validate_reports_semantic_problems_with_their_place() {
    let env = Env::new(
        "services:\n  db:\n    type: pg\n    plan: hobbyist\n    env: {DATABASE_URL: url}\n  cache:\n    type: valkey\n    plan: hobbyist\n    topics: [{name: x}]\n",
    );
    let out = env.run(&["validate"]);
    out.expect_code(2);
    pinned!(out.stderr, @"
    error: aiven-ephemeral.yaml:9:14: `topics` is for Kafka services, and `cache` is a valkey service
     --> aiven-ephemeral.yaml:9:14
      |
    9 |     topics: [{name: x}]
      |              ^ `topics` is for Kafka services, and `cache` is a valkey service
    ");
    let out = env.run(&["up"]);
    out.expect_code(2);
    assert!(
        env.sandbox.requests().is_empty(),
        "no API call for a bad manifest"
    );
}

#[test]
fn validate_names_both_sources_of_one_env_name() {
    let env = Env::new("services:\n  db: {type: pg, plan: hobbyist, env: {DB_HOST: uri}}\n");
    let out = env.run(&["validate"]);
    out.expect_code(2);
    pinned!(out.stderr, @"
    error: aiven-ephemeral.yaml:2:49: `DB_HOST` comes from both services.db (host) and services.db.env.DB_HOST (uri)
     --> aiven-ephemeral.yaml:2:49
      |
    2 |   db: {type: pg, plan: hobbyist, env: {DB_HOST: uri}}
      |                                                 ^ `DB_HOST` comes from both services.db (host) and services.db.env.DB_HOST (uri)
      hint: give one of the services an env_prefix, or rename the alias
    ");
}

#[test]
fn validate_in_github_actions_annotates() {
    let env = Env::new("services:\n  db:\n    type: pg\n    plan: hobbyist\n    probe: tpc\n");
    let mut cmd = env.cmd(&["validate"]);
    cmd.env("GITHUB_ACTIONS", "true");
    let out = run(cmd);
    out.expect_code(2);
    pinned!(out.stdout, @"::error file=aiven-ephemeral.yaml,line=5,col=12::`probe` cannot be `tpc`: it is one of none, tcp, tls");
}

#[test]
fn ttl_shorter_than_timeout_is_a_manifest_error() {
    let env =
        Env::new("project: test-project\nttl: 15m\nservices:\n  db: {type: pg, plan: hobbyist}\n");
    let out = env.run(&["up", "--timeout", "10m"]);
    out.expect_code(2);
    pinned!(out.stderr, @"
    error: aiven-ephemeral.yaml:2:6: ttl 15m is shorter than --timeout 10m plus 10m: services could be reaped while `up` still waits for them
     --> aiven-ephemeral.yaml:2:6
      |
    2 | ttl: 15m
      |      ^ ttl 15m is shorter than --timeout 10m plus 10m: services could be reaped while `up` still waits for them
      hint: raise ttl, or lower --timeout
    ");
    assert!(env.sandbox.requests().is_empty());
}

#[test]
fn bad_run_ids_are_usage_errors() {
    let env = Env::new(PG);
    let out = env.run(&["up", "--run-id", "Has_Caps"]);
    out.expect_code(2);
    pinned!(out.stderr.trim(), @"
    error: run id `Has_Caps` is invalid: 1-64 characters of [a-z0-9-], not starting or ending with `-` (over 20 it is shortened)
      hint: omit --run-id for a fresh random one, or use e.g. $GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT-<leg>
    ");
    let long = "a".repeat(65);
    let out = env.run(&["up", "--run-id", &long]);
    out.expect_code(2);
    pinned!(out.stderr.trim(), @r"
    error: run id `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa` is invalid: 1-64 characters of [a-z0-9-], not starting or ending with `-` (over 20 it is shortened)
      hint: omit --run-id for a fresh random one, or use e.g. $GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT-<leg>
    ");
    assert!(env.sandbox.requests().is_empty());
}

#[test]
fn ci_run_ids_over_20_characters_are_shortened_and_kept_apart() {
    // The shipped GitHub example's ids with an 11-digit run id: two legs of one run.
    let env =
        Env::new("project: test-project\nservices:\n  cache: {type: valkey, plan: hobbyist}\n");
    let mut first_lines = Vec::new();
    for leg in ["consumer", "producer"] {
        let id = format!("12345678901-1-{leg}");
        let up = env.run(&[
            "up",
            "--run-id",
            &id,
            "--state-file",
            &format!("{leg}/state.json"),
        ]);
        up.expect_code(0);
        first_lines.push(up.stderr.lines().next().unwrap_or_default().to_string());
    }
    // The run is announced by the id its names carry, and the id given.
    pinned!(first_lines.join("\n"), @"
    [HH:MM:SS] run 12345678901-1-e8bc27 (--run-id 12345678901-1-consumer, shortened: names and tags hold 20 characters) in project test-project (1 service(s))
    [HH:MM:SS] run 12345678901-1-2b4d34 (--run-id 12345678901-1-producer, shortened: names and tags hold 20 characters) in project test-project (1 service(s))
    ");
    let names = env.sandbox.live_names();
    assert_eq!(names.len(), 2, "{names:?}");
    for name in &names {
        assert!(
            name.starts_with("ae-cache-12345678901-1-") && name.len() == 29,
            "{name}"
        );
    }
    // `down --run-id` with the same long id, no state file: finds that leg's only.
    env.run(&[
        "down",
        "--run-id",
        "12345678901-1-consumer",
        "--state-file",
        "none/state.json",
    ])
    .expect_code(0);
    assert_eq!(env.sandbox.live_names().len(), 1);
    env.run(&["down", "--state-file", "producer/state.json"])
        .expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn plan_shows_names_env_and_prices_from_the_catalogue() {
    let env = Env::new(
        "project: test-project\nservices:\n  db: {type: pg, plan: startup-4}\n  events: {type: kafka, plan: startup-2, cloud: aws-eu-central-1}\n",
    );
    let out = env.run(&["plan", "--json", "--run-id", "p1"]);
    out.expect_code(0);
    let plan: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["services"][0]["name"], "ae-db-p1");
    assert_eq!(plan["services"][0]["cloud"], "google-europe-west1");
    // The sandbox catalogue: pg startup-4 95 USD/month (x1.00), kafka startup-2 290 (x1.05).
    let pg = plan["services"][0]["hourly_usd"].as_f64().unwrap();
    let kafka = plan["services"][1]["hourly_usd"].as_f64().unwrap();
    assert!((pg - 0.130).abs() < 1e-9, "{pg}");
    assert!((kafka - 0.417).abs() < 1e-9, "{kafka}");
    assert!((plan["total_hourly_usd"].as_f64().unwrap() - 0.547).abs() < 1e-9);
    assert!(
        plan["services"][0]["env"]
            .as_array()
            .unwrap()
            .contains(&json!("DB_URI"))
    );
    assert_eq!(env.sandbox.count("POST", "/v1"), 0);
    let text = env.run(&["plan"]);
    text.expect_code(0);
    pinned!(text.stdout, @"
    run id xxxxxxxx, project test-project
    KEY     NAME                TYPE   PLAN       CLOUD                USD/H
    db      ae-db-xxxxxxxx      pg     startup-4  google-europe-west1  0.130
      env: DB_SERVICE_NAME DB_URI DB_HOST DB_PORT DB_USER DB_PASSWORD DB_DATABASE
           DB_SSLMODE DB_CA_CERT DB_URI_VERIFY
    events  ae-events-xxxxxxxx  kafka  startup-2  aws-eu-central-1     0.417
      env: EVENTS_SERVICE_NAME EVENTS_URI EVENTS_HOST EVENTS_PORT
           EVENTS_BOOTSTRAP_SERVERS EVENTS_ACCESS_CERT EVENTS_ACCESS_KEY
           EVENTS_CA_CERT EVENTS_SECURITY_PROTOCOL
    total: 0.547 USD/h (4.38 USD per 8h working day)
    ");
}

#[test]
fn plan_flags_plans_that_do_not_exist() {
    let env = Env::new("project: test-project\nservices:\n  db: {type: pg, plan: gigantic-9000}\n");
    let out = env.run(&["plan"]);
    out.expect_code(2);
    pinned!(out.all(), @"
    run id xxxxxxxx, project test-project
    KEY  NAME            TYPE  PLAN           CLOUD                USD/H
    db   ae-db-xxxxxxxx  pg    gigantic-9000  google-europe-west1    n/a
      problem: plan gigantic-9000 of pg is not available in google-europe-west1:
               Service plan 'gigantic-9000' does not exist for service type 'pg'
      env: DB_SERVICE_NAME DB_URI DB_HOST DB_PORT DB_USER DB_PASSWORD DB_DATABASE
           DB_SSLMODE DB_CA_CERT DB_URI_VERIFY
    total: unknown (see the problems above)

    error: some services cannot be created or used as planned (see above)
    ");
}

/// A topic asking more replicas than its plan has brokers: the API would refuse it only
/// once the service runs. `plan` shows it as a problem, `up` refuses it before any
/// create, both from the plan's node count (one request, then the cache); `validate`
/// cannot know it offline (plan names do not state it) and does not guess.
#[test]
fn replication_above_the_plans_brokers_is_caught_before_any_create() {
    let env = Env::new(
        "project: test-project\nservices:\n  events:\n    type: kafka\n    plan: startup-2\n    topics:\n      - {name: orders, replication: 5}\n      - {name: audit}\n",
    );
    env.run(&["validate"]).expect_code(0);
    let plan = env.run(&["plan", "--run-id", "r1"]);
    plan.expect_code(2);
    pinned!(plan.stdout, @r"
    run id r1, project test-project
    KEY     NAME          TYPE   PLAN       CLOUD                USD/H
    events  ae-events-r1  kafka  startup-2  google-europe-west1  0.397
      problem: aiven-ephemeral.yaml:7:37: topic `orders`: replication 5 is more than
               the 3 brokers of kafka plan startup-2; set replication to at most 3,
               or choose a plan with more nodes
      env: EVENTS_SERVICE_NAME EVENTS_URI EVENTS_HOST EVENTS_PORT
           EVENTS_BOOTSTRAP_SERVERS EVENTS_ACCESS_CERT EVENTS_ACCESS_KEY
           EVENTS_CA_CERT EVENTS_SECURITY_PROTOCOL
    total: 0.397 USD/h (3.18 USD per 8h working day)
    ");
    pinned!(plan.stderr, @"error: some services cannot be created or used as planned (see above)");
    let up = env.run(&["up", "--run-id", "r1"]);
    up.expect_code(2);
    pinned!(up.stderr, @r"
    [HH:MM:SS] run r1 in project test-project (1 service(s))
    error: aiven-ephemeral.yaml:7:37: topic `orders`: replication 5 is more than the 3 brokers of kafka plan startup-2
     --> aiven-ephemeral.yaml:7:37
      |
    7 |       - {name: orders, replication: 5}
      |                                     ^ topic `orders`: replication 5 is more than the 3 brokers of kafka plan startup-2
      hint: set replication to at most 3, or choose a plan with more nodes
    ");
    assert_eq!(env.sandbox.count("POST", "/v1"), 0, "a create was sent");
    assert_eq!(
        env.sandbox.count(
            "GET",
            "/v1/project/test-project/service-types/kafka/plans/startup-2"
        ),
        1,
        "the node count is read once, then cached"
    );
}

#[test]
fn plan_without_a_token_is_offline() {
    let env = Env::new(PG);
    let mut cmd = env.cmd(&["plan"]);
    cmd.env_remove("AIVEN_TOKEN");
    let out = run(cmd);
    out.expect_code(0);
    pinned!(out.all(), @"
    run id xxxxxxxx, project test-project
    KEY  NAME            TYPE  PLAN      CLOUD              USD/H
    db   ae-db-xxxxxxxx  pg    hobbyist  (project default)      -
      env: DB_SERVICE_NAME DB_URI DB_HOST DB_PORT DB_USER DB_PASSWORD DB_DATABASE
           DB_SSLMODE DB_CA_CERT DB_URI_VERIFY DB_USER_APP_USER_PASSWORD
           DB_USER_APP_USER_URI
    prices: set AIVEN_TOKEN (or use --sandbox) to check plans and prices
    ");
    assert!(env.sandbox.requests().is_empty());
}

#[test]
fn cost_guard_blocks_before_any_write() {
    let env = Env::new(
        "project: test-project\nservices:\n  a: {type: pg, plan: business-8}\n  b: {type: kafka, plan: business-8}\nlimits:\n  max_hourly_usd: 1.0\n",
    );
    let out = env.run(&["up", "--run-id", "cost1"]);
    out.expect_code(2);
    pinned!(out.stderr, @"
    [HH:MM:SS] run cost1 in project test-project (2 service(s))
    error: this run would cost 2.425 USD/h, over the limit of 1.000 USD/h:
      a                        pg           business-8        0.781 USD/h
      b                        kafka        business-8        1.644 USD/h
      hint: choose smaller plans, or raise limits.max_hourly_usd / --max-hourly-usd
    ");
    let writes = env
        .sandbox
        .requests()
        .iter()
        .filter(|r| r["method"] != "GET")
        .count();
    assert_eq!(writes, 0);
    // The flag lowers the limit further.
    let env = Env::new(PG);
    let out = env.run(&["up", "--run-id", "cost2", "--max-hourly-usd", "0.001"]);
    out.expect_code(2);
    pinned!(out.stderr, @"
    [HH:MM:SS] run cost2 in project test-project (1 service(s))
    error: this run would cost 0.026 USD/h, over the limit of 0.001 USD/h:
      db                       pg           hobbyist          0.026 USD/h
      hint: choose smaller plans, or raise limits.max_hourly_usd / --max-hourly-usd
    ");
    assert_eq!(env.sandbox.count("POST", "/v1"), 0);
}

#[test]
fn the_cost_guard_passes_no_price_or_limit_that_is_not_a_number() {
    let env = Env::new(PG);
    for price in ["NaN", "inf", "-1"] {
        env.sandbox.admin("DELETE", "/faults", None);
        env.sandbox.fault(json!({
            "method": "GET",
            "path": "/v1/project/*/pricing/service-types/*/plans/*/clouds/*",
            "fault": {"kind": "body", "body": {"base_price_usd": price, "extra_disk_price_per_gb_usd": "0.000"}},
        }));
        let up = env.run(&["up", "--max-hourly-usd", "1000"]);
        up.expect_code(2);
        assert_eq!(
            // After the line naming the run: the error, whole.
            up.stderr.lines().skip(1).collect::<Vec<_>>(),
            [
                format!("error: cannot check the cost limit: no price for services.db (unreadable price `{price}`)").as_str(),
                "  hint: try again: without prices the limit cannot be checked, and nothing was created",
            ],
            "{}",
            up.stderr
        );
    }
    for limit in ["NaN", "inf", "0"] {
        let up = env.run(&["up", "--max-hourly-usd", limit]);
        up.expect_code(2);
        assert_eq!(
            up.stderr,
            format!(
                "error: invalid value '{limit}' for '--max-hourly-usd <USD>': `{limit}` is not a positive number of US dollars; write e.g. `2.5`\n\nFor more information, try '--help'.\n"
            )
        );
    }
    assert_eq!(env.sandbox.count("POST", "/v1"), 0, "nothing was created");
}

#[test]
fn env_rebuilds_a_live_runs_env_from_the_api() {
    let env = Env::new(
        "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist, users: [app_user]}\n  events: {type: kafka, plan: startup-2, users: [svc]}\n",
    );
    env.run(&["up", "--run-id", "envr1"]).expect_code(0);
    let original = env.env_file();
    // Another job: no state file, only the run id.
    std::fs::remove_dir_all(env.path(".aiven-ephemeral")).unwrap();
    let out_dir = env.path("later-job");
    let out = env.run(&[
        "env",
        "--run-id",
        "envr1",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    out.expect_code(0);
    let rebuilt = std::fs::read_to_string(out_dir.join("env")).unwrap();
    let strip_paths = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| {
                !l.contains("CA_CERT") && !l.contains("ACCESS_") && !l.contains("URI_VERIFY")
            })
            .map(str::to_string)
            .collect()
    };
    assert_eq!(strip_paths(&rebuilt), strip_paths(&original));
    assert_eq!(mode(&out_dir.join("env")), 0o600);
    assert!(out_dir.join("certs/events-svc-access.key").exists());
    // Without --out it writes into the state directory and prints no secret.
    let written = env.run(&["env", "--run-id", "envr1", "--format", "json"]);
    written.expect_code(0);
    assert!(written.stdout.is_empty(), "{}", written.stdout);
    let parsed: Value = serde_json::from_str(
        &std::fs::read_to_string(env.path(".aiven-ephemeral/env.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(parsed["DB_SERVICE_NAME"], "ae-db-envr1");
    assert_eq!(mode(&env.path(".aiven-ephemeral/env.json")), 0o600);
    let password = parsed["DB_PASSWORD"].as_str().unwrap();
    assert!(!written.all().contains(password));
    // Printing is explicit, and warned about.
    let printed = env.run(&["env", "--run-id", "envr1", "--format", "json", "--stdout"]);
    printed.expect_code(0);
    pinned!(printed.stderr, @"warning: --stdout prints passwords and URIs with credentials; a CI job log keeps them in clear text");
    let parsed: Value = serde_json::from_str(&printed.stdout).unwrap();
    assert_eq!(parsed["DB_PASSWORD"], password);
    env.run(&["down", "--run-id", "envr1"]).expect_code(0);
}

#[test]
fn extend_moves_the_expiry_tag() {
    let env = Env::new(PG);
    env.run(&["up", "--run-id", "ext1"]).expect_code(0);
    let expiry = |env: &Env| -> String {
        env.sandbox.live_services()[0]["tags"]["aiven-ephemeral-expires"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = expiry(&env);
    env.run(&["extend", "--ttl", "30h"]).expect_code(0);
    let after = expiry(&env);
    assert!(after > before, "{after} > {before}");
    let parsed =
        time::OffsetDateTime::parse(&after, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let delta = parsed - time::OffsetDateTime::now_utc();
    assert!(delta > time::Duration::hours(29) && delta < time::Duration::hours(31));
    assert_eq!(env.state()["expires_at"], after.as_str());
    env.run(&["down"]).expect_code(0);
}

#[test]
fn reap_deletes_exactly_the_expired_tagged_services() {
    let env = Env::new(PG);
    // Nothing of this tool yet: said, not a bare header.
    let none = env.run(&["reap", "--dry-run"]);
    none.expect_code(0);
    pinned!(none.stdout, @"no services of aiven-ephemeral in project test-project");
    let none = env.run(&["status", "--all"]);
    none.expect_code(0);
    pinned!(none.stdout, @"no runs of aiven-ephemeral in project test-project");
    let owned = |run: &str, expires: &str| json!({"aiven-ephemeral-run": run, "aiven-ephemeral-owner": "o", "aiven-ephemeral-key": "db", "aiven-ephemeral-expires": expires});
    env.sandbox
        .create_service("expired-one", owned("r1", "2020-01-01T00:00:00Z"));
    env.sandbox
        .create_service("expired-two", owned("r2", "2021-06-01T00:00:00Z"));
    env.sandbox
        .create_service("still-live", owned("r3", "2999-01-01T00:00:00Z"));
    env.sandbox.create_service(
        "foreign",
        json!({"aiven-ephemeral-expires": "2020-01-01T00:00:00Z"}),
    );
    let mut kept = owned("r4", "2020-01-01T00:00:00Z");
    kept["aiven-ephemeral-keep"] = json!("true");
    env.sandbox.create_service("kept", kept);

    // Without --project, the manifest's; untagged services are not even listed.
    let dry = env.run(&["reap", "--dry-run"]);
    dry.expect_code(0);
    pinned!(dry.stdout, @"
    SERVICE      RUN  EXPIRES               VERDICT
    expired-one  r1   [TIME]  expired
    expired-two  r2   [TIME]  expired
    kept         r4   [TIME]  kept
    still-live   r3   [TIME]  live
    ");
    assert_eq!(
        env.sandbox.count("DELETE", "/v1"),
        0,
        "dry run deletes nothing"
    );

    env.run(&["reap", "--project", PROJECT]).expect_code(0);
    assert_eq!(
        env.sandbox.live_names(),
        vec!["foreign", "kept", "still-live"]
    );

    // Neither a project nor a manifest: said before any request.
    std::fs::remove_file(env.path("aiven-ephemeral.yaml")).unwrap();
    let before = env.sandbox.count("GET", "/v1");
    pinned!(env.run(&["reap"]).expect_code(2).stderr, @"
    error: no Aiven project given
      hint: set `project:` in the manifest, or pass --project / AIVEN_PROJECT
    ");
    assert_eq!(env.sandbox.count("GET", "/v1"), before);
}

#[test]
fn reap_older_than_and_protected() {
    let env = Env::new(PG);
    let owned = json!({"aiven-ephemeral-run": "r", "aiven-ephemeral-owner": "o", "aiven-ephemeral-expires": "2999-01-01T00:00:00Z"});
    env.sandbox.create_service("young", owned.clone());
    env.sandbox.create_service("guarded", json!({"aiven-ephemeral-run": "r", "aiven-ephemeral-owner": "o", "aiven-ephemeral-expires": "2000-01-01T00:00:00Z"}));
    env.sandbox.api(
        "PUT",
        &format!("/v1/project/{PROJECT}/service/guarded"),
        Some(json!({"termination_protection": true})),
    );
    // An hour later on the API's clock (its `Date`), both are older than 30m.
    env.sandbox.advance_clock("1h");
    let out = env.run(&["reap", "--project", PROJECT, "--older-than", "30m"]);
    out.expect_code(5);
    pinned!(out.all(), @"
    SERVICE  RUN  EXPIRES               VERDICT
    guarded  r    [TIME]  protected
    young    r    [TIME]  too_old

    [HH:MM:SS] Deleting 1 service(s)
    [HH:MM:SS] young: deleting
    [HH:MM:SS] young: deleted
    [HH:MM:SS] reaped 1 service(s), released 0 expired tenancy(ies), powered off 0 idle shared service(s), dropped 0 seed template(s); 1 protected, 0 failed
    error: teardown incomplete: 1 service(s) could not be confirmed deleted: guarded
      finish it with: aiven-ephemeral reap --project test-project --force
    ");
    assert_eq!(env.sandbox.live_names(), vec!["guarded"]);
    env.run(&["reap", "--project", PROJECT, "--force"])
        .expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn reap_uses_the_apis_clock() {
    let mut config = fast_config();
    config.clock_offset_secs = 7200;
    let env = Env::with(PG, Sandbox::with(config));
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    env.sandbox.create_service("by-server-time", json!({"aiven-ephemeral-run": "r", "aiven-ephemeral-owner": "o", "aiven-ephemeral-expires": soon}));
    // On this machine's clock it has an hour left; on the API's it expired an hour ago.
    env.run(&["reap", "--project", PROJECT]).expect_code(0);
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn expiry_is_computed_from_the_apis_date_header() {
    let mut config = fast_config();
    config.clock_offset_secs = 86400;
    let env = Env::with(PG, Sandbox::with(config));
    env.run(&["up", "--timeout", "1m"]).expect_code(0);
    let expires = env.sandbox.live_services()[0]["tags"]["aiven-ephemeral-expires"]
        .as_str()
        .unwrap()
        .to_string();
    let t = time::OffsetDateTime::parse(&expires, &time::format_description::well_known::Rfc3339)
        .unwrap();
    let ahead = t - time::OffsetDateTime::now_utc();
    // Server clock + 1 day, ttl default = timeout + 1h.
    assert!(
        ahead > time::Duration::hours(24) && ahead < time::Duration::hours(26),
        "{ahead}"
    );
    env.run(&["down"]).expect_code(0);
}

#[test]
fn completions_and_help() {
    let env = Env::new(PG);
    let out = env.run(&["completions", "bash"]);
    out.expect_code(0);
    assert!(out.stdout.contains("aiven-ephemeral"));
    let help = env.run(&["--help"]);
    help.expect_code(0);
    assert!(help.stdout.contains("Exit codes"));
}

#[test]
fn every_example_manifest_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml")
            && !path.to_string_lossy().contains("gitlab")
        {
            let env = Env::new(PG);
            env.run(&["validate", "-f", path.to_str().unwrap()])
                .expect_code(0);
            checked += 1;
        }
    }
    assert!(checked >= 4, "examples checked: {checked}");
}

#[test]
fn the_dotenv_report_holds_only_non_secrets_within_gitlabs_limits() {
    let env = Env::new(PG);
    let mut cmd = env.cmd(&["up", "--run-id", "rep1", "--dotenv-report", "up.env"]);
    cmd.env("GITLAB_CI", "true");
    run(cmd).expect_code(0);
    let report = std::fs::read_to_string(env.path("up.env")).unwrap();
    let port = env.sandbox.live_services()[0]["components"][0]["port"].to_string();
    pinned!(report.replace(&format!("DB_PORT={port}\n"), "DB_PORT=[PORT]\n"), @"
    AIVEN_EPHEMERAL_RUN_ID=rep1
    AIVEN_PROJECT=test-project
    DB_SERVICE_NAME=ae-db-rep1
    DB_HOST=localhost
    DB_PORT=[PORT]
    DB_USER=avnadmin
    DB_DATABASE=app
    DB_SSLMODE=require
    ");
    assert!(!report.contains("AVNS_"), "no password: {report}");
    assert!(
        !report.contains("PASSWORD") && !report.contains("_URI") && !report.contains("CA_CERT"),
        "{report}"
    );
    assert!(report.len() <= 5120 && report.lines().count() <= 20);
    assert!(
        report
            .lines()
            .all(|l| !l.is_empty() && !l.starts_with('#') && !l.contains('"') && l.contains('='))
    );
    assert_eq!(mode(&env.path("up.env")), 0o600);
    env.run(&["down"]).expect_code(0);

    // Too many variables: refused before anything is created, naming what does not fit.
    let before = env.sandbox.requests().len();
    let out = env.run(&["up", "--dotenv-report", "up2.env", "--dotenv-max-vars", "4"]);
    out.expect_code(2);
    pinned!(out.stderr, @"
    error: the dotenv report up2.env would hold 8 variables, more than --dotenv-max-vars 4; these do not fit: DB_PORT, DB_USER, DB_DATABASE, DB_SSLMODE
      hint: raise --dotenv-max-vars (GitLab's own limit allowing), or use `aiven-ephemeral env` in later jobs
    ");
    assert_eq!(env.sandbox.requests().len(), before, "no API call at all");
}

#[test]
fn a_reader_that_goes_away_never_stops_a_run() {
    let env = Env::new(PG);
    // Both output pipes closed before the run writes anything: every write fails.
    let mut child = env.spawn(&["run", "--", "true"]);
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(env.sandbox.live_names().is_empty());
    assert_eq!(env.state()["status"], "torn_down");
}

#[test]
fn a_plan_that_does_not_exist_is_refused_before_any_create() {
    let env = Env::new(
        "project: test-project\nservices:\n  cache: {type: valkey, plan: hobbyist}\n  db: {type: pg, plan: startup-3}\n",
    );
    let out = env.run(&["up", "--run-id", "nope1"]);
    out.expect_code(2);
    pinned!(out.stderr, @"
    [HH:MM:SS] run nope1 in project test-project (2 service(s))
    error: services.db: plan startup-3 of pg is not available in google-europe-west1: Service plan 'startup-3' does not exist for service type 'pg'
      hint: choose a plan of that type that exists in that cloud (`aiven-ephemeral plan` shows each service's plan, cloud and price)
    ");
    // The good sibling was not created (and billed) first.
    assert_eq!(
        env.sandbox
            .count("POST", "/v1/project/test-project/service"),
        0
    );
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn status_says_when_a_live_runs_expiry_has_passed() {
    let env = Env::new(PG);
    env.run(&["up"]).expect_code(0);
    let run_id = env.state()["run_id"].as_str().unwrap().to_string();
    let first_line = |out: &Run| {
        out.stdout
            .lines()
            .next()
            .unwrap_or("")
            .replace(&run_id, "[RUN]")
    };
    let fresh = env.run(&["status"]);
    fresh.expect_code(0);
    pinned!(first_line(&fresh), @"run [RUN] in project test-project: up, expires [TIME]");
    // Past its ttl (20m timeout + 1h) on the API's clock, which `reap` goes by,
    // whatever this machine's says.
    env.sandbox.advance_clock("2h");
    let stale = env.run(&["status"]);
    stale.expect_code(0);
    pinned!(first_line(&stale), @"run [RUN] in project test-project: up, expires [TIME] (passed: `reap` may delete it; `extend` moves it)");
    env.run(&["down"]).expect_code(0);
}

#[test]
fn status_says_which_services_were_deleted_outside_the_run() {
    let env = Env::new(PG);
    env.run(&["up", "--run-id", "gone1"]).expect_code(0);
    // Someone else deletes it: the console, `reap`, a `down --run-id` elsewhere.
    let (code, body) = env.sandbox.api(
        "DELETE",
        &format!("/v1/project/{PROJECT}/service/ae-db-gone1"),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let status = env.run(&["status"]);
    status.expect_code(0);
    pinned!(status.stdout, @"
    run gone1 in project test-project: up, expires [TIME]
    SERVICE      KEY  TYPE  PLAN      RECORDED  API STATE   NODES
    ae-db-gone1  db   pg    hobbyist  ready     not listed  -
    warning: the API does not list ae-db-gone1: deleted outside this run (by `reap`, a `down --run-id` elsewhere, or the console); `aiven-ephemeral down` deletes what is left and closes the run
    ");
    env.run(&["down"]).expect_code(0);
    assert_eq!(env.state()["status"], "torn_down");
}

/// The state file's inode and contents: a write (even of the same text) replaces it.
fn state_file_identity(env: &Env) -> (u64, String) {
    use std::os::unix::fs::MetadataExt;
    let path = env.path(".aiven-ephemeral/state.json");
    let ino = std::fs::metadata(&path).expect("state file").ino();
    (ino, std::fs::read_to_string(&path).expect("state file"))
}

#[test]
fn env_reads_the_state_file_and_never_writes_it() {
    let env = Env::new(PG);
    env.run(&["up", "--run-id", "envro"]).expect_code(0);
    let before = state_file_identity(&env);
    env.run(&["env"]).expect_code(0);
    assert_eq!(state_file_identity(&env), before);
    env.run(&["down"]).expect_code(0);
}

#[test]
fn extend_during_a_live_run_is_kept_by_its_expiry_refresh() {
    let env = Env::new(PG);
    let mut cmd = env.cmd(&[
        "run",
        "--run-id",
        "extrun",
        "--",
        "sh",
        "-c",
        "while [ ! -e go ]; do sleep 0.05; done",
    ]);
    cmd.env("AIVEN_EPHEMERAL_REFRESH_EVERY", "1s");
    let child = cmd.spawn().expect("binary starts");
    let refreshes = |r: &[Value]| {
        r.iter()
            .filter(|r| {
                r["method"] == "PATCH" && r["path"].as_str().is_some_and(|p| p.ends_with("/tags"))
            })
            .count()
    };
    env.sandbox
        .wait_for("a first expiry refresh", Duration::from_secs(60), |r| {
            refreshes(r) >= 1
        });
    let extend = env.run(&["extend", "--ttl", "30h"]);
    extend.expect_code(0);
    assert!(
        extend.stderr.lines().any(|l| l
            .ends_with("run extrun is held by another process (its `run`): it keeps the new ttl")),
        "{}",
        extend.stderr
    );
    let after = refreshes(&env.sandbox.requests());
    env.sandbox.wait_for(
        "two refreshes after the extension",
        Duration::from_secs(10),
        |r| refreshes(r) >= after + 2,
    );
    let (_, svc) = env.sandbox.api(
        "GET",
        &format!("/v1/project/{PROJECT}/service/ae-db-extrun"),
        None,
    );
    let expires = svc["service"]["tags"]["aiven-ephemeral-expires"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let expires =
        time::OffsetDateTime::parse(&expires, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("expiry tag `{expires}`: {e}"));
    assert!(
        expires > time::OffsetDateTime::now_utc() + Duration::from_secs(29 * 3600),
        "the refresh undid the extension: expires {expires}"
    );
    std::fs::write(env.path("go"), "").expect("go");
    wait(child, Duration::from_secs(60)).expect_code(0);
    assert_eq!(env.sandbox.live_names(), Vec::<String>::new());
}

#[test]
fn plan_fits_80_columns() {
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pg-kafka-valkey.yaml"),
    )
    .unwrap()
    .replace("project: my-ci-project", "project: test-project");
    let env = Env::new(&example);
    let out = env.run(&["plan", "--run-id", "p1"]);
    out.expect_code(0);
    for line in out.stdout.lines() {
        assert!(line.chars().count() <= 80, "{} columns: {line}", line.len());
    }
    pinned!(out.stdout, @r"
    run id p1, project test-project
    KEY     NAME          TYPE    PLAN       CLOUD                USD/H
    db      ci-db-p1      pg      startup-4  google-europe-west1  0.130
      env: DB_SERVICE_NAME DB_URI DB_HOST DB_PORT DB_USER DB_PASSWORD DB_DATABASE
           DB_SSLMODE DB_CA_CERT DB_URI_VERIFY DB_USER_APP_USER_PASSWORD
           DB_USER_APP_USER_URI DATABASE_URL
    events  ci-events-p1  kafka   startup-2  google-europe-west1  0.397
      env: EVENTS_SERVICE_NAME EVENTS_URI EVENTS_HOST EVENTS_PORT
           EVENTS_BOOTSTRAP_SERVERS EVENTS_ACCESS_CERT EVENTS_ACCESS_KEY
           EVENTS_CA_CERT EVENTS_SECURITY_PROTOCOL EVENTS_SASL_BOOTSTRAP_SERVERS
           EVENTS_SASL_MECHANISM EVENTS_USER EVENTS_PASSWORD
           EVENTS_SCHEMA_REGISTRY_URI EVENTS_USER_APP_USER_PASSWORD
           EVENTS_USER_APP_USER_ACCESS_CERT EVENTS_USER_APP_USER_ACCESS_KEY
    cache   ci-cache-p1   valkey  hobbyist   google-europe-west1  0.026
      env: CACHE_SERVICE_NAME CACHE_URI CACHE_HOST CACHE_PORT CACHE_USER
           CACHE_PASSWORD
    total: 0.553 USD/h (4.42 USD per 8h working day)
    ");
}

#[test]
fn status_all_without_a_manifest_takes_the_state_files_project() {
    // No -f, no aiven-ephemeral.yaml: the state file's run names the project, as for
    // reap.
    let env = Env::new(PG);
    env.run(&["up", "--run-id", "s1"]).expect_code(0);
    std::fs::remove_file(env.path("aiven-ephemeral.yaml")).unwrap();
    let all = env.run(&["status", "--all"]);
    all.expect_code(0);
    pinned!(all.stdout.lines().next().unwrap_or_default(), @"runs of aiven-ephemeral in project test-project:");
    env.run(&["down"]).expect_code(0);
}
