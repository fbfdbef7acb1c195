//! Shared services: runs on one long-lived PostgreSQL, Valkey and Kafka service, each
//! through its own tenancy, checked with real clients against the sandbox's real
//! PostgreSQL and Valkey: one run's credentials reach nothing of another's, teardown
//! leaves only the shared services, a killed run's tenancy is reaped after its lease
//! expires, and seeds are built once into a template that runs clone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use crate::tenancy_sandbox::{ok, real_sandbox};

pub(crate) const SHARED: &str = "project: test-project
services:
  db: {type: pg, plan: hobbyist, shared: true, databases: [app]}
  cache: {type: valkey, plan: hobbyist, shared: true}
  events:
    type: kafka
    plan: startup-2
    shared: true
    topics: [{name: orders, partitions: 1, replication: 1}]
";

const NAMES: [&str; 3] = ["ae-cache-shared", "ae-db-shared", "ae-events-shared"];

/// Runs side by side on one sandbox, each in a directory of its own.
pub(crate) struct Pool {
    pub(crate) sandbox: Sandbox,
    root: tempfile::TempDir,
}

impl Pool {
    pub(crate) fn new() -> Self {
        Self {
            sandbox: real_sandbox(),
            root: tempfile::tempdir().unwrap(),
        }
    }

    /// A run's directory with `manifest` (and any other files).
    pub(crate) fn dir(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        dir
    }

    pub(crate) fn cmd(&self, dir: &Path, args: &[&str]) -> Command {
        cmd_in(dir, &self.sandbox, args)
    }

    fn spawn(&self, dir: &Path, args: &[&str]) -> Child {
        self.cmd(dir, args).spawn().unwrap()
    }

    /// `up` in every directory at once; each must succeed.
    pub(crate) fn up_all(&self, dirs: &[PathBuf]) {
        let children: Vec<Child> = dirs.iter().map(|d| self.spawn(d, &["up"])).collect();
        for (child, dir) in children.into_iter().zip(dirs) {
            let out = wait(child, Duration::from_secs(120));
            assert_eq!(out.code, Some(0), "up in {}: {}", dir.display(), out.all());
        }
    }

    pub(crate) fn down_all(&self, dirs: &[PathBuf]) {
        let children: Vec<Child> = dirs.iter().map(|d| self.spawn(d, &["down"])).collect();
        for child in children {
            let out = wait(child, Duration::from_secs(60));
            assert_eq!(out.code, Some(0), "down: {}", out.all());
        }
    }

    /// A shared service, with secrets.
    pub(crate) fn service(&self, name: &str) -> Value {
        ok(self.sandbox.api(
            "GET",
            &format!("/v1/project/{PROJECT}/service/{name}?include_secrets=true"),
            None,
        ))["service"]
            .clone()
    }

    /// SQL as the shared PostgreSQL service's admin, on `db`.
    pub(crate) fn admin_sql(&self, db: &str, sql: &str) -> String {
        let svc = self.service("ae-db-shared");
        let uri = svc["service_uri"]
            .as_str()
            .unwrap()
            .replace("/defaultdb?", &format!("/{db}?"));
        let out = psql(&uri, sql);
        assert!(out.0, "admin SQL {sql}: {}", out.1);
        out.1
    }

    /// What is left of runs in the shared services: pg roles and databases, Valkey and
    /// Kafka users, Kafka topics and ACLs (Aiven's and Kafka-native), and leases.
    pub(crate) fn leftovers(&self) -> Vec<String> {
        let pg = format!("/v1/project/{PROJECT}/service/ae-db-shared");
        let mut left: Vec<String> = if self.sandbox.api("GET", &pg, None).0 == 404 {
            Vec::new()
        } else {
            self.admin_sql(
                "defaultdb",
                "select rolname from pg_roles where rolname like 'run-%' union all select datname from pg_database where datname like 'run-%'",
            )
            .lines()
            .map(|l| format!("pg {l}"))
            .collect()
        };
        for name in NAMES {
            let (status, found) = self.sandbox.api(
                "GET",
                &format!("/v1/project/{PROJECT}/service/{name}"),
                None,
            );
            if status == 404 {
                continue;
            }
            let svc = ok((status, found))["service"].clone();
            for u in svc["users"].as_array().unwrap() {
                let u = u["username"].as_str().unwrap();
                if u.starts_with("run-") {
                    left.push(format!("{name} user {u}"));
                }
            }
            for (k, _) in svc["tags"].as_object().unwrap() {
                if k.starts_with("aiven-ephemeral-lease-") {
                    left.push(format!("{name} tag {k}"));
                }
            }
        }
        let kafka = format!("/v1/project/{PROJECT}/service/ae-events-shared");
        if self.sandbox.api("GET", &kafka, None).0 == 404 {
            return left;
        }
        for t in ok(self.sandbox.api("GET", &format!("{kafka}/topic"), None))["topics"]
            .as_array()
            .unwrap()
        {
            left.push(format!("topic {}", t["topic_name"]));
        }
        let acls = ok(self.sandbox.api("GET", &format!("{kafka}/kafka/acl"), None));
        for a in acls["acl"].as_array().unwrap() {
            if a["username"].as_str().unwrap().starts_with("run-") {
                left.push(format!("acl {a}"));
            }
        }
        for a in acls["kafka_acl"].as_array().unwrap() {
            if a["principal"].as_str().unwrap().starts_with("User:run-") {
                left.push(format!("kafka-native acl {a}"));
            }
        }
        left
    }

    /// The shared services are all there, running, and nothing else is.
    fn only_shared_services_running(&self) {
        let mut live = self.sandbox.live_names();
        live.sort();
        assert_eq!(live, NAMES);
        for name in NAMES {
            assert_eq!(self.service(name)["state"], "RUNNING", "{name}");
        }
    }
}

pub(crate) fn env_of(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(dir.join(".aiven-ephemeral/env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// psql with `uri` (TLS required); (succeeded, output with errors).
pub(crate) fn psql(uri: &str, sql: &str) -> (bool, String) {
    let o = Command::new("psql")
        .args([
            uri,
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .unwrap();
    (o.status.success(), said(&o))
}

/// redis-cli over TLS with a run's exported credentials; the reply, errors included.
pub(crate) fn redis(env: &BTreeMap<String, String>, args: &[&str]) -> String {
    // A command the server streams for (SYNC, were it allowed) ends the test, not CI.
    let o = Command::new("timeout")
        .args(["10", "redis-cli"])
        // The sandbox signs every endpoint with its project CA (on Aiven, Valkey has a
        // publicly trusted certificate and no CA_CERT export).
        .args(["--tls", "--cacert", &env["DB_CA_CERT"]])
        .args(["-u", &env["CACHE_URI"], "--no-auth-warning"])
        .args(args)
        .output()
        .unwrap();
    said(&o)
}

/// `run` in `dir` SIGKILLed while its command runs (the command is ended too: no test
/// leaves a process behind).
fn kill_during_run(pool: &Pool, dir: &Path) {
    let child = pool.spawn(
        dir,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "echo $$ > command.pid; exec sleep 600",
        ],
    );
    let pid_file = dir.join("command.pid");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&pid_file).map_or(true, |p| p.trim().is_empty()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run's command never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, nix::sys::signal::Signal::SIGKILL);
    // The command holds the run's output pipes: it goes first, or the wait lasts as
    // long as it does.
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = wait(child, Duration::from_secs(10));
}

/// A run's URI pointed at another database.
pub(crate) fn to_database(uri: &str, own: &str, other: &str) -> String {
    uri.replace(&format!("/{own}?"), &format!("/{other}?"))
}

#[test]
fn two_runs_on_shared_services_reach_nothing_of_each_other_and_leave_nothing() {
    require("psql");
    let pool = Pool::new();
    let dirs = vec![
        pool.dir("a", &[("aiven-ephemeral.yaml", SHARED)]),
        pool.dir("b", &[("aiven-ephemeral.yaml", SHARED)]),
    ];
    // Both find the services missing at once: one creates, the other adopts.
    pool.up_all(&dirs);
    pool.only_shared_services_running();
    let (a, b) = (env_of(&dirs[0]), env_of(&dirs[1]));
    assert_ne!(a["DB_USER"], b["DB_USER"]);
    assert_eq!(a["DB_SERVICE_NAME"], "ae-db-shared");

    // The run's own credentials, never the admin's.
    for name in NAMES {
        let svc = pool.service(name);
        let admin = svc["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["type"] == "primary")
            .unwrap();
        let secret = admin["password"].as_str().unwrap();
        for env in [&a, &b] {
            assert!(
                env.values().all(|v| !v.contains(secret)),
                "{name}'s admin password exported"
            );
        }
    }

    // PostgreSQL: each run owns its database; the other's is closed to it.
    let (ok_a, out) = psql(
        &a["DB_URI_VERIFY"],
        "create table t (x int); insert into t values (1); select current_user",
    );
    assert!(ok_a, "{out}");
    assert_eq!(out, a["DB_USER"]);
    let (reached, out) = psql(
        &to_database(&a["DB_URI"], &a["DB_DATABASE"], &b["DB_DATABASE"]),
        "select 1",
    );
    assert!(!reached, "run A reached run B's database: {out}");
    assert!(
        out.contains(&format!(
            "permission denied for database \"{}\"",
            b["DB_DATABASE"]
        )),
        "{out}"
    );
    // Whatever a run makes outside its databases (PUBLIC may create in defaultdb's
    // public schema, as on Aiven) is the run's and goes with it.
    let defaultdb = to_database(&a["DB_URI"], &a["DB_DATABASE"], "defaultdb");
    let (made, out) = psql(&defaultdb, "create table a_was_here (x int)");
    assert!(made, "{out}");

    // Valkey: only keys and channels under the run's prefix, and none of the commands
    // that see or wipe other runs' keys.
    let (pa, pb) = (&a["CACHE_KEY_PREFIX"], &b["CACHE_KEY_PREFIX"]);
    assert_eq!(redis(&b, &["SET", &format!("{pb}k"), "b"]), "OK");
    assert_eq!(redis(&a, &["SET", &format!("{pa}k"), "a"]), "OK");
    assert_eq!(redis(&a, &["GET", &format!("{pa}k")]), "a");
    for args in [
        vec!["GET".to_string(), format!("{pb}k")],
        vec!["SET".to_string(), format!("{pb}k"), "x".into()],
        vec!["PUBLISH".to_string(), format!("{pb}chan"), "x".into()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let said = redis(&a, &args);
        assert!(said.starts_with("NOPERM"), "{args:?}: {said}");
    }
    for args in [
        &["FLUSHALL"][..],
        &["FLUSHDB"],
        &["KEYS", "*"],
        &["SCAN", "0"],
        &["RANDOMKEY"],
        &["SELECT", "1"],
        &["CLIENT", "LIST"],
        &["CLIENT", "KILL", "ID", "1"],
        &["PUBSUB", "CHANNELS"],
    ] {
        let said = redis(&a, args);
        assert!(said.starts_with("NOPERM"), "{args:?}: {said}");
    }
    assert_eq!(redis(&b, &["GET", &format!("{pb}k")]), "b");

    // Kafka: each run's topics carry its prefix, and its user's ACLs are
    // Kafka-native ones on that prefix (checked in `attacks`).
    let kafka = format!("/v1/project/{PROJECT}/service/ae-events-shared");
    let mut topics: Vec<String> =
        ok(pool.sandbox.api("GET", &format!("{kafka}/topic"), None))["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["topic_name"].as_str().unwrap().to_string())
            .collect();
    topics.sort();
    let mut expected = vec![
        format!("{}orders", a["EVENTS_TOPIC_PREFIX"]),
        format!("{}orders", b["EVENTS_TOPIC_PREFIX"]),
    ];
    expected.sort();
    assert_eq!(topics, expected);
    let acls = ok(pool.sandbox.api("GET", &format!("{kafka}/kafka/acl"), None));
    for env in [&a, &b] {
        let prefix = &env["EVENTS_TOPIC_PREFIX"];
        let principal = format!("User:{}", prefix.trim_end_matches('.'));
        let mine: Vec<&Value> = acls["kafka_acl"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["principal"] == principal.as_str())
            .collect();
        assert_eq!(mine.len(), 4, "{acls}");
        assert!(
            mine.iter()
                .all(|x| x["resource_name"] == prefix.as_str() && x["pattern_type"] == "PREFIXED"),
            "{acls}"
        );
    }
    let acls = acls["acl"].clone();
    // Aiven's wildcard ACL would give every run every topic: gone.
    assert!(
        acls.as_array()
            .unwrap()
            .iter()
            .all(|x| x["username"] != "*"),
        "{acls}"
    );

    // `extend` moves the run's lease.
    let lease_of = |env: &BTreeMap<String, String>| {
        let run = env["DB_USER"].trim_start_matches("run-").to_string();
        pool.service("ae-db-shared")["tags"][format!("aiven-ephemeral-lease-{run}")]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = lease_of(&a);
    run(pool.cmd(&dirs[0], &["extend", "--ttl", "5h"])).expect_code(0);
    let after = lease_of(&a);
    assert!(after > before, "{before} -> {after}");

    pool.down_all(&dirs);
    assert_eq!(pool.leftovers(), Vec::<String>::new());
    assert_eq!(
        pool.admin_sql(
            "defaultdb",
            "select count(*) from pg_tables where tablename = 'a_was_here'"
        ),
        "0"
    );
    pool.only_shared_services_running();
    // A second `down` is a no-op.
    let again = run(pool.cmd(&dirs[0], &["down"]));
    again.expect_code(0);
}

#[test]
fn twenty_runs_at_once_then_a_killed_run_is_reaped_when_its_lease_expires() {
    require("psql");
    let pool = Pool::new();
    let dirs: Vec<PathBuf> = (0..20)
        .map(|i| pool.dir(&format!("r{i}"), &[("aiven-ephemeral.yaml", SHARED)]))
        .collect();
    pool.up_all(&dirs);
    pool.only_shared_services_running();
    let envs: Vec<BTreeMap<String, String>> = dirs.iter().map(|d| env_of(d)).collect();
    let users: std::collections::BTreeSet<&String> = envs.iter().map(|e| &e["DB_USER"]).collect();
    assert_eq!(users.len(), 20, "every run has a role of its own");
    // No interference: each run writes its own name and reads back only that.
    for env in &envs {
        let (done, out) = psql(
            &env["DB_URI"],
            &format!(
                "create table who (name text); insert into who values ('{}')",
                env["DB_USER"]
            ),
        );
        assert!(done, "{out}");
        assert_eq!(
            redis(
                env,
                &[
                    "SET",
                    &format!("{}who", env["CACHE_KEY_PREFIX"]),
                    &env["DB_USER"]
                ]
            ),
            "OK"
        );
    }
    each_sees_only_its_own(&envs);

    // A run killed while its command runs: nothing tears it down. Its ttl is shorter
    // than the others' (20m timeout + 1h).
    let killed = pool.dir(
        "killed",
        &[("aiven-ephemeral.yaml", &format!("ttl: 30m\n{SHARED}"))],
    );
    kill_during_run(&pool, &killed);
    let victim = env_of(&killed);
    let run_id = victim["DB_USER"].trim_start_matches("run-").to_string();

    // Before the lease expires, reap leaves the run alone.
    let reap = run(pool.cmd(&killed, &["reap", "--project", PROJECT]));
    reap.expect_code(0);
    assert!(
        psql(&victim["DB_URI"], "select 1").0,
        "reap released a live lease"
    );

    // Its lease expires: 31 minutes pass on the API's clock.
    pool.sandbox.advance_clock("31m");
    let reap = run(pool.cmd(&killed, &["reap", "--project", PROJECT]));
    reap.expect_code(0);
    let expired: Vec<String> = reap
        .stdout
        .lines()
        .filter(|l| l.contains(&run_id))
        .map(|l| l.replace(&run_id, "[RUN]"))
        .collect();
    pinned!(expired.join("\n"), @"
    ae-cache-shared   [RUN]  [TIME]  lease_expired
    ae-db-shared      [RUN]  [TIME]  lease_expired
    ae-events-shared  [RUN]  [TIME]  lease_expired
    ");
    let live = reap.stdout.lines().filter(|l| l.ends_with(" live")).count();
    assert_eq!(live, 20 * NAMES.len(), "{}", reap.all());
    let left = pool.leftovers();
    assert!(
        left.iter().all(|l| !l.contains(&format!("run-{run_id}"))),
        "the killed run's tenancy is still there: {left:?}"
    );
    // The others are untouched.
    each_sees_only_its_own(&envs);
    pool.down_all(&dirs);
    assert_eq!(pool.leftovers(), Vec::<String>::new());
    pool.only_shared_services_running();
}

/// Each run reads back, from its database and its keys, only the name it wrote.
fn each_sees_only_its_own(envs: &[BTreeMap<String, String>]) {
    for env in envs {
        assert_eq!(
            psql(&env["DB_URI"], "select string_agg(name, ',') from who").1,
            env["DB_USER"]
        );
        assert_eq!(
            redis(env, &["GET", &format!("{}who", env["CACHE_KEY_PREFIX"])]),
            env["DB_USER"]
        );
    }
}

pub(crate) const SEEDED: &str = "project: test-project
services:
  db: {type: pg, plan: hobbyist, shared: true, databases: [app], seed: [schema.sql]}
";

pub(crate) const SCHEMA: &str = "create table items (id int primary key, made text);\ninsert into items values (1, clock_timestamp()::text);\n";

pub(crate) fn templates(pool: &Pool) -> Vec<String> {
    pool.admin_sql(
        "defaultdb",
        "select datname from pg_database where datname like 'aiven-ephemeral-tpl-%' order by 1",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn a_seed_is_built_once_into_a_template_that_runs_clone_and_reap_drops_the_unused_one() {
    require("psql");
    let pool = Pool::new();
    let dirs: Vec<PathBuf> = (0..10)
        .map(|i| {
            pool.dir(
                &format!("s{i}"),
                &[("aiven-ephemeral.yaml", SEEDED), ("schema.sql", SCHEMA)],
            )
        })
        .collect();
    pool.up_all(&dirs);
    // Built once: every clone holds the very row the one build wrote.
    let mut made = std::collections::BTreeSet::new();
    for d in &dirs {
        let env = env_of(d);
        let (done, out) = psql(
            &env["DB_URI"],
            "select made from items; select tableowner from pg_tables where tablename = 'items'",
        );
        assert!(done, "{out}");
        let (row, owner) = out.split_once('\n').unwrap();
        assert_eq!(owner, env["DB_USER"], "the run owns the seeded table");
        made.insert(row.to_string());
        // Owning it, the run may change it.
        assert!(psql(&env["DB_URI"], "alter table items add column note text").0);
    }
    assert_eq!(made.len(), 1, "the seed ran more than once: {made:?}");
    let first = templates(&pool);
    assert_eq!(first.len(), 1, "{first:?}");

    // A changed file makes a new template.
    let changed = pool.dir(
        "changed",
        &[
            ("aiven-ephemeral.yaml", SEEDED),
            (
                "schema.sql",
                &format!("{SCHEMA}create table more (x int);\n"),
            ),
        ],
    );
    pool.up_all(std::slice::from_ref(&changed));
    let env = env_of(&changed);
    assert!(psql(&env["DB_URI"], "select count(*) from more").0);
    let both = templates(&pool);
    assert_eq!(both.len(), 2, "{both:?}");
    let newer: Vec<&String> = both.iter().filter(|t| !first.contains(t)).collect();

    // reap drops the template nobody clones any more; the newest stays.
    let reap = run(pool.cmd(
        &changed,
        &["reap", "--project", PROJECT, "--templates-unused-for", "1s"],
    ));
    reap.expect_code(0);
    // The eleven runs' live leases, then what it dropped.
    let older = first[0].as_str();
    let said = reap.all().replace(older, "[OLDER]");
    let (live, rest): (Vec<&str>, Vec<&str>) = said.lines().partition(|l| l.ends_with(" live"));
    assert_eq!(live.len(), 11, "{said}");
    pinned!(rest.join("\n"), @"
    SERVICE                                            RUN       EXPIRES               VERDICT
    ae-db-shared/[OLDER]  -         -                     unused_template

    [HH:MM:SS] reaped 0 service(s), released 0 expired tenancy(ies), powered off 0 idle shared service(s), dropped 1 seed template(s); 0 protected, 0 failed
    ");
    assert_eq!(templates(&pool), vec![newer[0].clone()]);
    // No run may enter a template: what it left there would be in every later clone.
    let (entered, out) = psql(
        &to_database(&env["DB_URI"], &env["DB_DATABASE"], newer[0]),
        "select 1",
    );
    assert!(
        !entered && out.contains("permission denied for database"),
        "{out}"
    );
    let mut all = dirs.clone();
    all.push(changed);
    pool.down_all(&all);
    assert_eq!(pool.leftovers(), Vec::<String>::new());

    // On a dedicated service the seed runs in its first database.
    let dedicated = pool.dir(
        "dedicated",
        &[
            ("aiven-ephemeral.yaml", "project: test-project\nservices:\n  solo: {type: pg, plan: hobbyist, databases: [app], seed: [schema.sql]}\n"),
            ("schema.sql", SCHEMA),
        ],
    );
    let out = run(pool.cmd(
        &dedicated,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "psql \"$SOLO_URI\" -tAc 'select id from items'",
        ],
    ));
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "1", "{}", out.all());
}

#[test]
fn a_full_shared_kafka_is_refused_before_any_write() {
    let pool = Pool::new();
    let manifest = "project: test-project\nservices:\n  events: {type: kafka, plan: startup-2, shared: true}\n";
    let first = pool.dir("first", &[("aiven-ephemeral.yaml", manifest)]);
    pool.up_all(std::slice::from_ref(&first));
    pool.down_all(std::slice::from_ref(&first));
    // avnadmin and 49 more: Aiven's default limit of 50 is reached.
    let users = format!("/v1/project/{PROJECT}/service/ae-events-shared/user");
    for i in 0..49 {
        ok(pool.sandbox.api(
            "POST",
            &users,
            Some(json!({"username": format!("team-{i}")})),
        ));
    }
    let before = pool.sandbox.requests().len();
    let full = pool.dir("full", &[("aiven-ephemeral.yaml", manifest)]);
    let out = run(pool.cmd(&full, &["up"]));
    out.expect_code(1);
    let said: Vec<&str> = out.stderr.lines().filter(|l| l.contains("error")).collect();
    pinned!(said.join("\n"), @"error: shared Kafka service ae-events-shared has 50 users (avnadmin included), Aiven's default limit is 50: no room for this run's user. Nothing was written. Wait for other runs to end, run `aiven-ephemeral reap` to release expired ones, or ask Aiven support to raise the limit");
    let writes: Vec<Value> = pool.sandbox.requests()[before..]
        .iter()
        .filter(|r| r["method"] != "GET")
        .cloned()
        .collect();
    assert_eq!(writes, Vec::<Value>::new(), "a write before the refusal");
}

#[test]
fn shared_is_refused_where_it_cannot_work_before_any_api_call() {
    let env = Env::new(
        "project: test-project
services:
  search: {type: opensearch, plan: startup-4, shared: true}
  db: {type: pg, plan: hobbyist, shared: true, users: [app]}
  cache: {type: valkey, plan: hobbyist, seed: [x.sql]}
",
    );
    let out = env.run(&["up"]);
    out.expect_code(2);
    pinned!(out.stderr, @r"
    error: aiven-ephemeral.yaml:3:55: `shared` is not supported for opensearch services (yet): services.search cannot be shared
     --> aiven-ephemeral.yaml:3:55
      |
    3 |   search: {type: opensearch, plan: startup-4, shared: true}
      |                                                       ^ `shared` is not supported for opensearch services (yet): services.search cannot be shared
      hint: runs can share kafka, pg and valkey services; remove `shared` to give each run its own opensearch
    error: aiven-ephemeral.yaml:4:56: `users` cannot be used with `shared`: each run gets one user of its own
     --> aiven-ephemeral.yaml:4:56
      |
    4 |   db: {type: pg, plan: hobbyist, shared: true, users: [app]}
      |                                                        ^ `users` cannot be used with `shared`: each run gets one user of its own
      hint: its credentials are exported as DB_USER and DB_PASSWORD; remove `users`
    error: aiven-ephemeral.yaml:5:48: `seed` is for PostgreSQL services, and `cache` is a valkey service
     --> aiven-ephemeral.yaml:5:48
      |
    5 |   cache: {type: valkey, plan: hobbyist, seed: [x.sql]}
      |                                                ^ `seed` is for PostgreSQL services, and `cache` is a valkey service
    ");
    // Two entries on one shared service.
    std::fs::write(
        env.path("aiven-ephemeral.yaml"),
        "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist, shared: true}\n  x: {type: pg, plan: hobbyist, shared: {service: ae-db-shared}}\n",
    )
    .unwrap();
    let out = env.run(&["up"]);
    out.expect_code(2);
    pinned!(out.stderr, @"
    error: aiven-ephemeral.yaml:4:3: services.db and services.x are both shared service ae-db-shared
     --> aiven-ephemeral.yaml:4:3
      |
    4 |   x: {type: pg, plan: hobbyist, shared: {service: ae-db-shared}}
      |   ^ services.db and services.x are both shared service ae-db-shared
      hint: one manifest entry per shared service: a run has one tenancy in each
    ");
    assert_eq!(env.sandbox.requests().len(), 0);
}

#[test]
fn sigint_while_a_run_takes_its_tenancy_releases_it_at_once_and_a_sigkill_is_finished_by_down_run_id()
 {
    require("psql");
    let pool = Pool::new();
    let warm = pool.dir("warm", &[("aiven-ephemeral.yaml", SHARED)]);
    pool.up_all(std::slice::from_ref(&warm));
    pool.down_all(std::slice::from_ref(&warm));

    // The Kafka user's create is applied at once but answered late: the run is inside
    // its tenancy when the signal comes. The user is deleted at once; the lease goes
    // once the create has answered (within the teardown budget), since until then the
    // run cannot know that the create will not land again.
    pool.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service/ae-events-shared/user", "fault": {"kind": "slow_answer", "delay": "3s"}}));
    let dir = pool.dir("signalled", &[("aiven-ephemeral.yaml", SHARED)]);
    let before = pool.sandbox.requests().len();
    let child = pool.spawn(&dir, &["up"]);
    // This run's create applied (the log's status is set), its answer not yet sent.
    pool.sandbox.wait_for(
        "the Kafka user create applied",
        Duration::from_secs(30),
        |reqs| {
            reqs[before..].iter().any(|r| {
                r["method"] == "POST"
                    && r["path"]
                        .as_str()
                        .unwrap_or("")
                        .ends_with("ae-events-shared/user")
                    && r["status"] != 0
            })
        },
    );
    let sent = time::OffsetDateTime::now_utc();
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = wait(child, Duration::from_secs(30));
    assert_eq!(out.code, Some(130), "{}", out.all());
    // The run's Kafka user, made but not yet answered, is deleted within a second.
    let first = pool
        .sandbox
        .requests()
        .iter()
        .filter(|r| {
            r["method"] == "DELETE" && r["path"].as_str().unwrap_or("").contains("/user/run-")
        })
        .map(crate::cancel::time_of)
        .min()
        .expect("the run's user was deleted");
    let latency = Duration::try_from(first - sent).unwrap_or_default();
    assert!(
        latency < Duration::from_secs(1),
        "first DELETE {latency:?} after the signal\n{}",
        out.stderr
    );
    assert_eq!(pool.leftovers(), Vec::<String>::new());
    pool.sandbox.admin("DELETE", "/faults", None);

    // SIGKILL after `up` made everything: `down --run-id` finds the run by its leases.
    let dir = pool.dir("killed", &[("aiven-ephemeral.yaml", SHARED)]);
    kill_during_run(&pool, &dir);
    let run_id = env_of(&dir)["DB_USER"]
        .trim_start_matches("run-")
        .to_string();
    std::fs::remove_dir_all(dir.join(".aiven-ephemeral")).unwrap();
    let down = run(pool.cmd(&dir, &["down", "--run-id", &run_id, "--project", PROJECT]));
    down.expect_code(0);
    assert_eq!(pool.leftovers(), Vec::<String>::new());
    pool.only_shared_services_running();
}

/// A Valkey user create that the API applies only 2 s after it came, whatever became of
/// the client meanwhile.
fn slow_valkey_user(pool: &Pool) {
    pool.sandbox.admin("DELETE", "/faults", None);
    pool.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service/ae-cache-shared/user", "fault": {"kind": "latency", "delay": "2s"}}));
}

/// `up` in `dir`, once its Valkey user create is out (and not yet applied).
fn up_until_the_valkey_user_is_sent(pool: &Pool, dir: &Path) -> Child {
    let before = pool.sandbox.requests().len();
    let child = pool.spawn(dir, &["up"]);
    pool.sandbox
        .wait_for("the Valkey user create", Duration::from_secs(60), |reqs| {
            reqs[before..].iter().any(|r| {
                r["method"] == "POST"
                    && r["path"]
                        .as_str()
                        .unwrap_or("")
                        .ends_with("ae-cache-shared/user")
            })
        });
    child
}

/// Until every Valkey user create sent so far has landed (the request log's status is
/// set when the API applies it, whether or not anyone still waits for the answer): a
/// user that lands after its run let go would be left behind.
fn valkey_user_creates_applied(pool: &Pool) {
    pool.sandbox.wait_for(
        "the Valkey user creates applied",
        Duration::from_secs(30),
        |reqs| {
            reqs.iter()
                .filter(|r| {
                    r["method"] == "POST"
                        && r["path"]
                            .as_str()
                            .unwrap_or("")
                            .ends_with("ae-cache-shared/user")
                })
                .all(|r| r["status"] != 0)
        },
    );
}

#[test]
fn a_tenancy_write_that_lands_after_the_signal_is_waited_for_and_released() {
    let pool = Pool::new();
    let warm = pool.dir("warm", &[("aiven-ephemeral.yaml", SHARED)]);
    pool.up_all(std::slice::from_ref(&warm));
    pool.down_all(std::slice::from_ref(&warm));

    // SIGINT while the user create is out: the run does not let go of the lease until
    // the create has answered, then deletes the user it made.
    slow_valkey_user(&pool);
    let dir = pool.dir("signalled", &[("aiven-ephemeral.yaml", SHARED)]);
    let child = up_until_the_valkey_user_is_sent(&pool, &dir);
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = wait(child, Duration::from_secs(30));
    assert_eq!(out.code, Some(130), "{}", out.all());
    // The shared services stay: the last word says so, and waiting for the write is
    // no cause for a warning.
    assert_eq!(
        out.stderr.lines().last(),
        Some(
            "error: interrupted by SIGINT; everything this run created was deleted, except shared services (they stay; its tenancy in them was released)"
        ),
        "{}",
        out.all()
    );
    assert!(!out.stderr.contains("warning: ae-"), "{}", out.all());
    valkey_user_creates_applied(&pool);
    assert_eq!(pool.leftovers(), Vec::<String>::new(), "{}", out.all());

    // SIGKILL while it is out: the state file says until when it may land, and `down`
    // waits that out before it lets go of the lease.
    let dir = pool.dir("killed", &[("aiven-ephemeral.yaml", SHARED)]);
    let child = up_until_the_valkey_user_is_sent(&pool, &dir);
    signal(&child, nix::sys::signal::Signal::SIGKILL);
    wait(child, Duration::from_secs(30));
    let down = run(pool.cmd(&dir, &["down"]));
    down.expect_code(0);
    valkey_user_creates_applied(&pool);
    assert_eq!(pool.leftovers(), Vec::<String>::new(), "{}", down.all());
    pool.sandbox.admin("DELETE", "/faults", None);
    pool.only_shared_services_running();
}

#[test]
fn reap_powers_off_an_idle_shared_service_and_the_next_run_powers_it_on() {
    let pool = Pool::new();
    let manifest = "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist, version: \"16\", shared: true}\n  cache: {type: valkey, plan: hobbyist, shared: true}\n";
    let dir = pool.dir("idle", &[("aiven-ephemeral.yaml", manifest)]);
    pool.up_all(std::slice::from_ref(&dir));
    // A short lease is warned about in the words of shared services.
    let short = run(pool.cmd(&dir, &["extend", "--ttl", "5m"]));
    short.expect_code(0);
    let run_id = env_of(&dir)["DB_USER"]
        .trim_start_matches("run-")
        .to_string();
    let warning = short
        .stderr
        .lines()
        .last()
        .unwrap_or("")
        .replace(&run_id, "[RUN]");
    pinned!(warning, @"[HH:MM:SS] warning: run [RUN] now expires in 5m, at [TIME]: from then on `reap` may release its tenancy in shared services while they are in use");
    // A live lease keeps the services on, however idle; reap lists it. Two minutes
    // pass (the lease has five), as the API's clock tells.
    pool.sandbox.advance_clock("2m");
    let reap = run(pool.cmd(&dir, &["reap", "--shared-idle", "1m"]));
    reap.expect_code(0);
    pinned!(reap.stdout.replace(&run_id, "[RUN]"), @"
    SERVICE          RUN       EXPIRES               VERDICT
    ae-cache-shared  [RUN]  [TIME]  live
    ae-db-shared     [RUN]  [TIME]  live
    ");
    assert_eq!(pool.service("ae-db-shared")["state"], "RUNNING");
    pool.down_all(std::slice::from_ref(&dir));
    pool.sandbox.advance_clock("2m");
    let dry = run(pool.cmd(
        &dir,
        &[
            "reap",
            "--project",
            PROJECT,
            "--shared-idle",
            "1m",
            "--dry-run",
        ],
    ));
    dry.expect_code(0);
    pinned!(dry.all(), @"
    SERVICE          RUN  EXPIRES                          VERDICT
    ae-cache-shared  -    idle since [TIME]  idle
    ae-db-shared     -    idle since [TIME]  idle

    [HH:MM:SS] dry run: would delete 0 service(s), release 0 expired tenancy(ies), power off 2 idle shared service(s) and drop 0 seed template(s); nothing was changed
    ");
    assert_eq!(pool.service("ae-db-shared")["state"], "RUNNING");
    let reap = run(pool.cmd(&dir, &["reap", "--project", PROJECT, "--shared-idle", "1m"]));
    reap.expect_code(0);
    pinned!(reap.all(), @"
    SERVICE          RUN  EXPIRES                          VERDICT
    ae-cache-shared  -    idle since [TIME]  idle
    ae-db-shared     -    idle since [TIME]  idle

    [HH:MM:SS] ae-cache-shared: unused since [TIME] (over --shared-idle 1m); powered off: Aiven bills nothing while it is off, and deletes services off for more than 180 days; its data comes back only if a backup exists
    [HH:MM:SS] ae-db-shared: unused since [TIME] (over --shared-idle 1m); powered off: Aiven bills nothing while it is off, and deletes services off for more than 180 days; its data comes back from backups when the next run powers it on
    [HH:MM:SS] reaped 0 service(s), released 0 expired tenancy(ies), powered off 2 idle shared service(s), dropped 0 seed template(s); 0 protected, 0 failed
    ");
    for name in ["ae-db-shared", "ae-cache-shared"] {
        assert_eq!(pool.service(name)["state"], "POWEROFF", "{name}");
    }
    // The next run powers them on, and says that this takes minutes on Aiven.
    let again = run(pool.cmd(
        &dir,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "psql \"$DB_URI\" -tAc 'select current_user'",
        ],
    ));
    again.expect_code(0);
    let mut powering_on: Vec<&str> = again
        .stderr
        .lines()
        .filter(|l| l.contains("powering it on"))
        .collect();
    // The two are looked at at once: in either order, at any second.
    powering_on.sort_by_key(|l| l.split_once("] ").map_or(*l, |(_, said)| said));
    pinned!(powering_on.join("\n"), @"
    [HH:MM:SS] warning: shared service ae-cache-shared is powered off (`reap` powers idle ones off); powering it on. This takes minutes on Aiven: it is rebuilt, and its data comes back only if a backup exists
    [HH:MM:SS] warning: shared service ae-db-shared is powered off (`reap` powers idle ones off); powering it on. This takes minutes on Aiven: it is rebuilt, and its data comes back from backups when the next run powers it on
    ");
    assert!(again.stdout.trim().starts_with("run-"), "{}", again.all());
    // What the API says of the shared service reaches the user, as for a service of the
    // run's own: here, that PostgreSQL 16 is asked for where the sandbox has another.
    assert_eq!(
        again.stderr.contains(
            "ae-db-shared: PostgreSQL 16 is asked for but not installed where the sandbox runs"
        ),
        !std::path::Path::new("/usr/lib/postgresql/16/bin/postgres").exists(),
        "{}",
        again.all()
    );
    assert_eq!(pool.service("ae-db-shared")["state"], "RUNNING");
}

#[test]
fn a_service_you_manage_is_used_as_it_is_and_never_created_or_powered_off() {
    let pool = Pool::new();
    pool.sandbox
        .create_service("team-pg", json!({"team": "payments"}));
    let manifest = "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist, shared: {service: team-pg}}\n";
    let dir = pool.dir("yours", &[("aiven-ephemeral.yaml", manifest)]);
    let out = run(pool.cmd(
        &dir,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "echo $DB_SERVICE_NAME; psql \"$DB_URI\" -tAc 'select current_user'",
        ],
    ));
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "team-pg");
    assert!(lines[1].starts_with("run-"), "{}", out.all());
    // Unused for two minutes, as the API's clock tells: idle, were it one of ours.
    pool.sandbox.advance_clock("2m");
    run(pool.cmd(&dir, &["reap", "--project", PROJECT, "--shared-idle", "1m"])).expect_code(0);
    assert_eq!(
        pool.service("team-pg")["state"],
        "RUNNING",
        "a service you manage is never powered off"
    );
    assert_eq!(pool.service("team-pg")["tags"]["team"], "payments");

    let missing = pool.dir(
        "missing",
        &[("aiven-ephemeral.yaml", "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist, shared: {service: nope}}\n")],
    );
    let out = run(pool.cmd(&missing, &["up"]));
    out.expect_code(1);
    let said: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect();
    pinned!(said.join("\n"), @"error: shared service nope (services.db) does not exist in project test-project; `shared: {service: nope}` uses a service you manage. Create it, or write `shared: true` to let aiven-ephemeral create and keep one");
    assert_eq!(pool.sandbox.live_names(), vec!["team-pg".to_string()]);
}

#[test]
fn run_keeps_its_leases_alive_while_its_command_runs() {
    let pool = Pool::new();
    let manifest =
        "project: test-project\nservices:\n  cache: {type: valkey, plan: hobbyist, shared: true}\n";
    let dir = pool.dir("refresh", &[("aiven-ephemeral.yaml", manifest)]);
    // The command ends when the test has seen the lease move.
    let mut cmd = pool.cmd(
        &dir,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "while [ ! -e go ]; do sleep 0.05; done",
        ],
    );
    cmd.env("AIVEN_EPHEMERAL_REFRESH_EVERY", "1s");
    let child = cmd.spawn().unwrap();
    // The lease's expiry (`<expiry>/<owner>`).
    let lease = || {
        let tags = pool.service("ae-cache-shared")["tags"].clone();
        tags.as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.starts_with("aiven-ephemeral-lease-"))
            .map(|(_, v)| {
                let expiry = v.as_str().unwrap().split_once('/').unwrap().0;
                time::OffsetDateTime::parse(expiry, &time::format_description::well_known::Rfc3339)
                    .unwrap()
            })
    };
    let started = std::time::Instant::now();
    let first = loop {
        if let Some(l) = pool.sandbox.live_names().first().and_then(|_| lease()) {
            break l;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no lease");
        std::thread::sleep(Duration::from_millis(100));
    };
    // An hour passes on the API's clock: the refresh moves the lease past it.
    pool.sandbox.advance_clock("1h");
    let started = std::time::Instant::now();
    loop {
        let later = lease().expect("the lease is still there");
        if later >= first + time::Duration::hours(1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the lease did not move with the API's clock: {first} -> {later}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(dir.join("go"), "").unwrap();
    assert_eq!(wait(child, Duration::from_secs(30)).code, Some(0));
    assert_eq!(lease(), None, "the lease outlived the run");
}

#[test]
fn plan_shows_shared_services_apart_with_their_standing_cost() {
    let env = Env::new(
        "project: test-project
services:
  db: {type: pg, plan: hobbyist, shared: true}
  events: {type: kafka, plan: startup-2, shared: {service: team-kafka}, topics: [{name: orders}]}
  search: {type: opensearch, plan: startup-4}
",
    );
    // Yours, and running; ae-db-shared is not there yet.
    ok(env.sandbox.api(
        "POST",
        &format!("/v1/project/{PROJECT}/service"),
        Some(json!({"service_name": "team-kafka", "service_type": "kafka", "plan": "startup-2", "project_vpc_id": null})),
    ));
    let start = std::time::Instant::now();
    while env
        .sandbox
        .api(
            "GET",
            &format!("/v1/project/{PROJECT}/service/team-kafka"),
            None,
        )
        .1["service"]["state"]
        != "RUNNING"
    {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = env.run(&["plan"]);
    out.expect_code(0);
    pinned!(out.stdout, @r"
    run id xxxxxxxx, project test-project
    this run's own services (deleted by `down`):
    KEY     NAME                TYPE        PLAN       CLOUD                USD/H
    search  ae-search-xxxxxxxx  opensearch  startup-4  google-europe-west1  0.130
      env: SEARCH_SERVICE_NAME SEARCH_URI SEARCH_HOST SEARCH_PORT SEARCH_USER
           SEARCH_PASSWORD
    shared services: they outlive the run and are billed per hour while powered on,
    whether or not a run uses them; the run gets its own tenancy inside:
    KEY     NAME          TYPE   PLAN       CLOUD                USD/H
    db      ae-db-shared  pg     hobbyist   google-europe-west1  0.026
      this run: role run-xxxxxxxx owning database(s) run-xxxxxxxx
      now: not there yet: the first `up` creates it (minutes on Aiven)
      env: DB_SERVICE_NAME DB_URI DB_HOST DB_PORT DB_USER DB_PASSWORD DB_DATABASE
           DB_SSLMODE DB_CA_CERT DB_URI_VERIFY
    events  team-kafka    kafka  startup-2  google-europe-west1  0.397
      this run: user run-xxxxxxxx, topics run-xxxxxxxx.* (run-xxxxxxxx.orders)
      now: running; 0 run(s) hold a lease
      env: EVENTS_SERVICE_NAME EVENTS_URI EVENTS_HOST EVENTS_PORT
           EVENTS_BOOTSTRAP_SERVERS EVENTS_ACCESS_CERT EVENTS_ACCESS_KEY
           EVENTS_CA_CERT EVENTS_SECURITY_PROTOCOL EVENTS_TOPIC_PREFIX
      note: `reap` powers idle shared services off; Kafka topic data does not
      survive power-off (PostgreSQL data comes back from backups)
    total: 0.553 USD/h
      this run's own services: 0.130 USD/h (1.04 USD per 8h working day)
      shared services: 0.423 USD/h, billed around the clock while powered
      on: 10.15 USD per day
    ");
    let json: Value = serde_json::from_str(&env.run(&["plan", "--json"]).stdout).unwrap();
    let shared: Vec<(&str, &Value)> = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].as_str().unwrap(), &s["shared"]))
        .collect();
    assert_eq!(
        shared,
        [
            ("db", &json!("this_tool")),
            ("events", &json!("yours")),
            ("search", &Value::Null)
        ]
    );
    // A service you manage that is not there stops `up`: `plan` says so first.
    std::fs::write(
        env.path("missing.yaml"),
        "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist, shared: {service: team-pg}}\n",
    )
    .unwrap();
    let missing = env.run(&["plan", "-f", "missing.yaml"]);
    missing.expect_code(2);
    // The problem with its wrapped lines, and the error.
    let mut in_problem = false;
    let problem: Vec<&str> = missing
        .stdout
        .lines()
        .chain(missing.stderr.lines())
        .filter(|l| {
            in_problem = l.contains("problem:") || (in_problem && l.starts_with("           "));
            in_problem || l.starts_with("error")
        })
        .collect();
    pinned!(problem.join("\n"), @"
      problem: shared service team-pg (services.db) does not exist in project
               test-project; `shared: {service: team-pg}` uses a service you manage.
               Create it, or write `shared: true` to let aiven-ephemeral create and
               keep one
    error: some services cannot be created or used as planned (see above)
    ");
}

#[test]
fn no_secret_of_a_shared_run_or_service_in_any_output_at_trace() {
    let pool = Pool::new();
    let dir = pool.dir("secret", &[("aiven-ephemeral.yaml", SHARED)]);
    let mut up = pool.cmd(&dir, &["up", "-vv"]);
    up.env("RUST_LOG", "trace");
    let up = run(up);
    up.expect_code(0);
    assert!(up.stderr.contains("TRACE"), "trace logging was on");
    let env = env_of(&dir);
    let mut secrets = vec![
        pool.sandbox.token.clone(),
        env["DB_PASSWORD"].clone(),
        env["CACHE_PASSWORD"].clone(),
    ];
    secrets.extend(
        std::fs::read_to_string(&env["EVENTS_ACCESS_KEY"])
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_string),
    );
    for name in NAMES {
        for u in pool.service(name)["users"].as_array().unwrap() {
            secrets.push(u["password"].as_str().unwrap().to_string());
        }
    }
    let mut down = pool.cmd(&dir, &["down", "-vv"]);
    down.env("RUST_LOG", "trace");
    let down = run(down);
    down.expect_code(0);
    let state = std::fs::read_to_string(dir.join(".aiven-ephemeral/state.json")).unwrap();
    for (what, text) in [
        ("up", up.all()),
        ("down", down.all()),
        ("the state file", state),
    ] {
        // A verifier is no password, but it is what an offline guess is checked against.
        assert!(
            !text.contains("SCRAM-SHA-256$"),
            "{what} shows a password verifier"
        );
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{what} leaks a secret ({}...)",
                &s[..6.min(s.len())]
            );
        }
    }
}

const VALKEY_SHARED: &str =
    "project: test-project\nservices:\n  cache: {type: valkey, plan: hobbyist, shared: true}\n";

/// A sandbox whose services take `delay` to build.
fn building(delay: Duration) -> Env {
    Env::with(
        VALKEY_SHARED,
        Sandbox::with(aiven_sandbox::Config {
            provisioning_delay: delay,
            ..fast_config()
        }),
    )
}

/// The lines a user reads on stderr, with the run id hidden.
fn lines_of(out: &Run, run_id: &str) -> String {
    out.stderr.replace(run_id, "[RUN]").trim_end().to_string()
}

#[test]
fn an_interrupted_first_shared_run_deletes_the_service_it_created_for_nobody() {
    // Ctrl-C while the first run's shared service is still being built: nobody can
    // hold a lease on it yet, so it goes with the run instead of being billed for
    // nobody.
    let env = building(Duration::from_secs(60));
    let child = env.spawn(&["up", "--run-id", "first"]);
    env.sandbox
        .wait_for("the create", Duration::from_secs(30), |reqs| {
            reqs.iter()
                .any(|r| r["method"] == "POST" && r["path"] == "/v1/project/test-project/service")
        });
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = wait(child, Duration::from_secs(30));
    assert_eq!(out.code, Some(130), "{}", out.all());
    assert_eq!(
        env.sandbox.live_names(),
        Vec::<String>::new(),
        "{}",
        out.all()
    );
    // Whether a poll showed the state before the signal is a matter of timing.
    let said = lines_of(&out, "first")
        .lines()
        .filter(|l| !l.ends_with("ae-cache-shared: REBUILDING"))
        .collect::<Vec<_>>()
        .join("\n");
    pinned!(said, @"
    [HH:MM:SS] run [RUN] in project test-project (1 service(s))
    [HH:MM:SS] Joining 1 shared service(s)
    [HH:MM:SS] ae-cache-shared: shared: looking up
    [HH:MM:SS] warning: creating shared service ae-cache-shared (valkey hobbyist): it outlives this run and is billed while powered on, until `aiven-ephemeral reap` powers it off when idle
    [HH:MM:SS] warning: received SIGINT: tearing down
    [HH:MM:SS] Releasing 1 shared service tenancy(ies)
    [HH:MM:SS] ae-cache-shared: releasing the run's tenancy
    [HH:MM:SS] ae-cache-shared: deleting
    [HH:MM:SS] ae-cache-shared: deleted (this run created the shared service and no run holds a lease on it)
    error: interrupted by SIGINT; everything this run created was deleted
    ");
}

#[test]
fn a_failed_first_shared_run_leaves_the_service_to_a_run_that_leased_it_meanwhile() {
    // While the first run's service is being built another run writes its lease on it;
    // then the first run's user create is refused: the service stays for the other run,
    // and the first run says why.
    let env = building(Duration::from_secs(2));
    env.sandbox.fault(json!({"method": "POST", "path": "/v1/project/*/service/ae-cache-shared/user", "fault": {"kind": "status", "status": 400, "message": "refused for the test"}}));
    let child = env.spawn(&["up", "--run-id", "first"]);
    env.sandbox
        .wait_for("the create", Duration::from_secs(30), |reqs| {
            reqs.iter()
                .any(|r| r["method"] == "POST" && r["path"] == "/v1/project/test-project/service")
        });
    let lease =
        json!({"tags": {"aiven-ephemeral-lease-neighbour": "2999-01-01T00:00:00Z/someoneelse"}});
    ok(env.sandbox.api(
        "PATCH",
        "/v1/project/test-project/service/ae-cache-shared/tags",
        Some(lease),
    ));
    let out = wait(child, Duration::from_secs(30));
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert_eq!(
        env.sandbox.live_names(),
        vec!["ae-cache-shared"],
        "{}",
        out.all()
    );
    pinned!(lines_of(&out, "first"), @"
    [HH:MM:SS] run [RUN] in project test-project (1 service(s))
    [HH:MM:SS] Joining 1 shared service(s)
    [HH:MM:SS] ae-cache-shared: shared: looking up
    [HH:MM:SS] warning: creating shared service ae-cache-shared (valkey hobbyist): it outlives this run and is billed while powered on, until `aiven-ephemeral reap` powers it off when idle
    [HH:MM:SS] ae-cache-shared: REBUILDING
    [HH:MM:SS] ae-cache-shared: lease
    [HH:MM:SS] Releasing 1 shared service tenancy(ies)
    [HH:MM:SS] ae-cache-shared: releasing the run's tenancy
    [HH:MM:SS] ae-cache-shared: this run created it, and run(s) neighbour now hold a lease on it: it stays for them
    [HH:MM:SS] ae-cache-shared: released (the shared service stays)
    error: ae-cache-shared (services.cache): creating user run-[RUN]: HTTP 400: refused for the test
    ");
    // Its own removal is refused while that lease lives, and --force overrides it.
    let refused = env.run(&["down", "--shared"]);
    refused.expect_code(2);
    pinned!(refused.stderr, @"
    error: not deleting anything: ae-cache-shared: run(s) neighbour hold a live lease on it
      hint: wait for those runs to end (`aiven-ephemeral reap` releases expired leases), or pass --force to delete it under them
    ");
    assert_eq!(env.sandbox.live_names(), vec!["ae-cache-shared"]);
    let forced = env.run(&[
        "down",
        "--shared",
        "--service",
        "ae-cache-shared",
        "--project",
        PROJECT,
        "--force",
    ]);
    forced.expect_code(0);
    pinned!(forced.stderr, @"
    [HH:MM:SS] warning: ae-cache-shared: --force: deleting it under run(s) neighbour, which lose everything in it
    [HH:MM:SS] Deleting 1 service(s)
    [HH:MM:SS] ae-cache-shared: deleting
    [HH:MM:SS] ae-cache-shared: deleted
    [HH:MM:SS] deleted 1 shared service(s) in project test-project
    ");
    assert_eq!(env.sandbox.live_names(), Vec::<String>::new());
}

#[test]
fn down_says_what_keeps_running_and_down_shared_removes_it() {
    let env = building(Duration::from_millis(300));
    env.run(&["up", "--run-id", "one"]).expect_code(0);
    let down = env.run(&["down"]);
    down.expect_code(0);
    pinned!(lines_of(&down, "one"), @"
    [HH:MM:SS] Releasing 1 shared service tenancy(ies)
    [HH:MM:SS] ae-cache-shared: releasing the run's tenancy
    [HH:MM:SS] ae-cache-shared: released (the shared service stays)
    [HH:MM:SS] run [RUN] torn down
    [HH:MM:SS] shared services keep running after this run, billed while powered on whether or not a run uses them:
      ae-cache-shared (valkey hobbyist): 0.026 USD/h, no run holds a lease
      together 0.026 USD/h, 0.62 USD per day
      `aiven-ephemeral reap --project test-project` powers them off once no run has used them for --shared-idle (24h); `aiven-ephemeral down --shared --project test-project --service ae-cache-shared` deletes them now
    ");
    // A service this tool did not create as shared is never deleted, even forced.
    env.sandbox.create_service("team-pg", json!({}));
    let theirs = env.run(&[
        "down",
        "--shared",
        "--project",
        PROJECT,
        "--service",
        "team-pg",
        "--force",
    ]);
    theirs.expect_code(2);
    pinned!(theirs.stderr, @"
    error: not deleting anything: team-pg is not a shared service aiven-ephemeral created (no aiven-ephemeral-shared tag); it is left alone
      hint: a service you manage is yours to delete (the console, or `avn service terminate NAME`)
    ");
    let removed = env.run(&["down", "--shared"]);
    removed.expect_code(0);
    pinned!(removed.stderr, @"
    [HH:MM:SS] Deleting 1 service(s)
    [HH:MM:SS] ae-cache-shared: deleting
    [HH:MM:SS] ae-cache-shared: deleted
    [HH:MM:SS] deleted 1 shared service(s) in project test-project
    ");
    assert_eq!(env.sandbox.live_names(), vec!["team-pg"]);
    // At once again: the API keeps the deleted service's name a while (409, then 404);
    // with no time to wait it out, said.
    let again = env.run(&["up", "--run-id", "two", "--timeout", "4s"]);
    again.expect_code(1);
    pinned!(lines_of(&again, "two"), @"
    [HH:MM:SS] run [RUN] in project test-project (1 service(s))
    [HH:MM:SS] Joining 1 shared service(s)
    [HH:MM:SS] ae-cache-shared: shared: looking up
    [HH:MM:SS] warning: creating shared service ae-cache-shared (valkey hobbyist): it outlives this run and is billed while powered on, until `aiven-ephemeral reap` powers it off when idle
    [HH:MM:SS] Releasing 1 shared service tenancy(ies)
    [HH:MM:SS] ae-cache-shared: releasing the run's tenancy
    [HH:MM:SS] ae-cache-shared: nothing of this run there yet
    error: shared service ae-cache-shared (services.cache) cannot be created yet: its name belongs to a service deleted moments ago, and Aiven keeps a deleted service's name for a while; run again in a minute
    ");
    assert_eq!(env.sandbox.live_names(), vec!["team-pg"]);
    // With --timeout to spare (a CI re-run right after a cancel), it waits the name out.
    let create = "/v1/project/test-project/service";
    let refused = |reqs: &[Value]| {
        reqs.iter()
            .filter(|r| r["method"] == "POST" && r["path"] == create && r["status"] == 409)
            .count()
    };
    let before = refused(&env.sandbox.requests());
    let child = env.spawn(&["up", "--run-id", "three"]);
    env.sandbox
        .wait_for("a refused create", Duration::from_secs(30), |reqs| {
            refused(reqs) > before
        });
    env.sandbox.advance_clock("1m");
    let waited = wait(child, Duration::from_secs(60));
    waited.expect_code(0);
    pinned!(lines_of(&waited, "three"), @"
    [HH:MM:SS] run [RUN] in project test-project (1 service(s))
    [HH:MM:SS] Joining 1 shared service(s)
    [HH:MM:SS] ae-cache-shared: shared: looking up
    [HH:MM:SS] warning: creating shared service ae-cache-shared (valkey hobbyist): it outlives this run and is billed while powered on, until `aiven-ephemeral reap` powers it off when idle
    [HH:MM:SS] ae-cache-shared: the name is still held by a service deleted moments ago; trying again in 5s
    [HH:MM:SS] ae-cache-shared: REBUILDING
    [HH:MM:SS] ae-cache-shared: lease
    [HH:MM:SS] ae-cache-shared: ready
    [HH:MM:SS] run [RUN] is up: 1 service(s); env file [TMP]/.aiven-ephemeral/env (in a shell: . [TMP]/.aiven-ephemeral/env.sh)
    [HH:MM:SS] release the shared services with: aiven-ephemeral down (they stay for other runs)
    ");
    env.run(&["down"]).expect_code(0);
}

#[test]
fn up_ends_saying_what_down_does_to_own_and_to_shared_services() {
    let own = Env::new("project: test-project\nservices:\n  db: {type: pg, plan: hobbyist}\n");
    let up = own.run(&["up", "--run-id", "own1"]);
    up.expect_code(0);
    // A create that takes longer than the build (a busy machine) shows REBUILDING first.
    let told = lines_of(&up, "own1");
    let told: Vec<&str> = told
        .lines()
        .filter(|l| !l.ends_with(": REBUILDING"))
        .collect();
    pinned!(told.join("\n"), @"
    [HH:MM:SS] run [RUN] in project test-project (1 service(s))
    [HH:MM:SS] Creating 1 service(s)
    [HH:MM:SS] ae-db-[RUN]: creating
    [HH:MM:SS] ae-db-[RUN]: RUNNING
    [HH:MM:SS] ae-db-[RUN]: probing
    [HH:MM:SS] ae-db-[RUN]: ready
    [HH:MM:SS] run [RUN] is up: 1 service(s); env file [TMP]/.aiven-ephemeral/env (in a shell: . [TMP]/.aiven-ephemeral/env.sh)
    [HH:MM:SS] tear down with: aiven-ephemeral down
    ");
    own.run(&["down"]).expect_code(0);
    // One of each: the closing line says both (progress lines of the two interleave).
    let mixed = Env::new(
        "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist}\n  cache: {type: valkey, plan: hobbyist, shared: true}\n",
    );
    let up = mixed.run(&["up", "--run-id", "mixed1"]);
    up.expect_code(0);
    pinned!(up.stderr.lines().last().unwrap_or_default(), @"[HH:MM:SS] tear down with: aiven-ephemeral down (shared services are released, not deleted)");
    mixed.run(&["down"]).expect_code(0);
    assert_eq!(mixed.sandbox.live_names(), vec!["ae-cache-shared"]);
}

#[test]
fn a_shared_service_whose_plan_the_manifest_changed_is_shown_as_the_api_has_it() {
    let env = building(Duration::from_millis(300));
    env.run(&["up", "--run-id", "one"]).expect_code(0);
    env.run(&["down"]).expect_code(0);
    std::fs::write(
        env.path("aiven-ephemeral.yaml"),
        VALKEY_SHARED.replace("hobbyist", "startup-4"),
    )
    .unwrap();
    let plan = env.run(&["plan", "--run-id", "two"]);
    plan.expect_code(0);
    pinned!(plan.stdout, @"
    run id two, project test-project
    shared services: they outlive the run and are billed per hour while powered on,
    whether or not a run uses them; the run gets its own tenancy inside:
    KEY    NAME             TYPE    PLAN      CLOUD                USD/H
    cache  ae-cache-shared  valkey  hobbyist  google-europe-west1  0.026
      this run: user run-two, keys and channels run-two:*
      now: running; 0 run(s) hold a lease
      warning: shared service ae-cache-shared has plan hobbyist, not the manifest's
               startup-4 (the manifest only matters when the first run creates it);
               `avn service update ae-cache-shared --plan startup-4` changes the
               service (Aiven rebuilds its nodes), or write `plan: hobbyist` in the
               manifest
      env: CACHE_SERVICE_NAME CACHE_URI CACHE_HOST CACHE_PORT CACHE_USER
           CACHE_PASSWORD CACHE_KEY_PREFIX
    total: 0.026 USD/h
      shared services: 0.026 USD/h, billed around the clock while powered
      on: 0.62 USD per day
    ");
    let up = env.run(&["up", "--run-id", "two"]);
    up.expect_code(0);
    let warned: Vec<&str> = up
        .stderr
        .lines()
        .filter(|l| l.contains("warning"))
        .collect();
    pinned!(warned.join("\n"), @"[HH:MM:SS] warning: shared service ae-cache-shared has plan hobbyist, not the manifest's startup-4 (the manifest only matters when the first run creates it); `avn service update ae-cache-shared --plan startup-4` changes the service (Aiven rebuilds its nodes), or write `plan: hobbyist` in the manifest");
    let status = env.run(&["status"]);
    status.expect_code(0);
    pinned!(status.stdout, @"
    run two in project test-project: up, expires [TIME]
    SERVICE          KEY    TYPE    PLAN      RECORDED  API STATE                          NODES
    ae-cache-shared  cache  valkey  hobbyist  ready     RUNNING (shared; tenancy run-two)  1/1
    warning: shared service ae-cache-shared has plan hobbyist, not the manifest's startup-4 (the manifest only matters when the first run creates it); `avn service update ae-cache-shared --plan startup-4` changes the service (Aiven rebuilds its nodes), or write `plan: hobbyist` in the manifest
    ");
    let json: Value = serde_json::from_str(&env.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(
        (
            &json["services"][0]["plan"],
            &json["services"][0]["asked_plan"]
        ),
        (&json!("hobbyist"), &json!("startup-4"))
    );
    env.run(&["down"]).expect_code(0);
}

#[test]
fn status_and_reap_dry_run_show_the_shared_services_that_keep_running_and_until_when() {
    let env = building(Duration::from_millis(300));
    env.run(&["up", "--run-id", "one"]).expect_code(0);
    // Every run of the project: one with a tenancy counts, found by its lease.
    let all = env.run(&["status", "--all"]);
    all.expect_code(0);
    pinned!(all.stdout, @"
    shared services (billed while powered on, used or not):
    SERVICE          USD/H  RUNS
    ae-cache-shared  0.026  1
    runs of aiven-ephemeral in project test-project:
    RUN  KIND    SVCS  AGE  EXPIRES   USD/H  SO FAR
    one  shared  1     -    in [T]  -      -
    ");
    env.run(&["down"]).expect_code(0);
    let all = env.run(&["status", "--all"]);
    all.expect_code(0);
    pinned!(all.stdout, @"
    shared services (billed while powered on, used or not):
    SERVICE          USD/H  RUNS
    ae-cache-shared  0.026  0
    no runs of aiven-ephemeral in project test-project
    ");
    let status = env.run(&["status"]);
    status.expect_code(0);
    pinned!(status.stdout, @"
    run one in project test-project: torn down, expires [TIME]
    SERVICE          KEY    TYPE    PLAN      RECORDED  API STATE                                 NODES
    ae-cache-shared  cache  valkey  hobbyist  released  RUNNING (shared; no tenancy of this run)  -
    ae-cache-shared: keeps running (and costing) after this run; `reap` powers it off after [TIME] if no run uses it (--shared-idle 24h); `aiven-ephemeral down --shared --project test-project --service ae-cache-shared` deletes it
    ");
    let json: Value = serde_json::from_str(&env.run(&["status", "--json"]).stdout).unwrap();
    let used = env
        .sandbox
        .api(
            "GET",
            "/v1/project/test-project/service/ae-cache-shared",
            None,
        )
        .1["service"]["tags"]["aiven-ephemeral-used"]
        .clone();
    let off = time::OffsetDateTime::parse(
        used.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
        + time::Duration::hours(24);
    assert_eq!(
        json["services"][0]["powered_off_after"],
        json!(
            off.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        ),
        "{json}"
    );
    // The run's tenancy is gone, not the service: `released`, as the table says.
    assert_eq!(json["services"][0]["recorded"], json!("released"), "{json}");
    let dry = env.run(&["reap", "--dry-run"]);
    dry.expect_code(0);
    pinned!(dry.stdout, @"
    SERVICE          RUN  EXPIRES                                             VERDICT
    ae-cache-shared  -    powered off after [TIME] unless used  running
    ");
    // Rebuilding (a maintenance, a power-on; a sandbox restarting its backend) is
    // billed as much as running: still listed as keeping running.
    env.sandbox
        .service_fault(json!({"name": "ae-cache-shared", "never_ready": true}));
    let svc = "/v1/project/test-project/service/ae-cache-shared";
    for powered in [false, true] {
        assert_eq!(
            env.sandbox
                .api("PUT", svc, Some(json!({"powered": powered})))
                .0,
            200
        );
    }
    let status = env.run(&["status"]);
    status.expect_code(0);
    pinned!(status.stdout, @"
    run one in project test-project: torn down, expires [TIME]
    SERVICE          KEY    TYPE    PLAN      RECORDED  API STATE                                    NODES
    ae-cache-shared  cache  valkey  hobbyist  released  REBUILDING (shared; no tenancy of this run)  -
    ae-cache-shared: keeps running (and costing) after this run; `reap` powers it off after [TIME] if no run uses it (--shared-idle 24h); `aiven-ephemeral down --shared --project test-project --service ae-cache-shared` deletes it
    ");
}

#[test]
fn a_state_file_whose_tenancy_a_down_by_run_id_released_is_torn_down_as_released_already() {
    // A later job released the run by its id; the first machine's state file then
    // goes down without finding anything of the run, and says so.
    let env = building(Duration::from_millis(300));
    env.run(&["up", "--run-id", "one", "--state-file", "a/state.json"])
        .expect_code(0);
    env.run(&["down", "--run-id", "one", "--state-file", "b/state.json"])
        .expect_code(0);
    let down = env.run(&["down", "--state-file", "a/state.json"]);
    down.expect_code(0);
    let said: Vec<&str> = down
        .stderr
        .lines()
        .filter(|l| l.contains("ae-cache-shared:") || l.contains("torn down"))
        .collect();
    pinned!(said.join("\n"), @"
    [HH:MM:SS] ae-cache-shared: releasing the run's tenancy
    [HH:MM:SS] ae-cache-shared: released already
    [HH:MM:SS] run one torn down
    ");
    assert!(
        !env.path("a/env").exists(),
        "the run's credentials stay on disk"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&std::fs::read_to_string(env.path("a/state.json")).unwrap())
            .unwrap()["status"],
        "torn_down"
    );
}
