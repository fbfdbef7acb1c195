//! A hostile tenant: run A's code holds A's exports and tries to reach run B (the
//! victim) through the shared services' real PostgreSQL and Valkey, directly and through
//! what this tool does as the admin. Each test is one vector, and asserts that it is
//! refused: B's data unreadable and unchanged, B's `down` exiting 0, and nothing of any
//! run left after both `down`s.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::common::*;
use crate::shared::{Pool, SCHEMA, SEEDED, env_of, psql, redis, to_database};

const PG_ONLY: &str = "project: test-project
services:
  db: {type: pg, plan: hobbyist, shared: true, databases: [app]}
";

/// Two runs of `manifest`: A, the attacker, and B, the victim; (dir, env) each.
struct Runs {
    pool: Pool,
    a: PathBuf,
    b: PathBuf,
}

impl Runs {
    /// A is up; B is only a directory (tests decide when B comes up).
    fn new(manifest: &str, files: &[(&str, &str)]) -> Self {
        let pool = Pool::new();
        let mut all = vec![("aiven-ephemeral.yaml", manifest)];
        all.extend_from_slice(files);
        let a = pool.dir("a", &all);
        let b = pool.dir("b", &all);
        pool.up_all(std::slice::from_ref(&a));
        Self { pool, a, b }
    }

    fn a(&self) -> BTreeMap<String, String> {
        env_of(&self.a)
    }

    fn b(&self) -> BTreeMap<String, String> {
        env_of(&self.b)
    }

    /// SQL as run A in `database` (its own, unless named); must succeed.
    fn a_sql(&self, database: Option<&str>, sql: &str) -> String {
        let a = self.a();
        let uri = match database {
            Some(db) => to_database(&a["DB_URI"], &a["DB_DATABASE"], db),
            None => a["DB_URI"].clone(),
        };
        let (done, out) = psql(&uri, sql);
        assert!(done, "run A's SQL failed: {sql}\n{out}");
        out
    }

    /// Both `down`s exit 0, and nothing of either run is left.
    fn both_down_and_nothing_left(&self) {
        for dir in [&self.b, &self.a] {
            let down = run(self.pool.cmd(dir, &["down"]));
            down.expect_code(0);
        }
        assert_eq!(self.pool.leftovers(), Vec::<String>::new());
        let seed_roles = self.pool.admin_sql(
            "defaultdb",
            "select count(*) from pg_roles where rolname like 'aiven-ephemeral-seed-%' and rolcanlogin",
        );
        assert_eq!(seed_roles, "0", "a seed role may still log in");
    }

    /// The roles the hostile functions below would have made or granted as the admin.
    fn no_escalation(&self) {
        let (a, b) = (self.a(), self.b());
        let found = self.pool.admin_sql(
            "defaultdb",
            &format!(
                "select count(*) from pg_roles where rolname = 'pwned'; \
                 select pg_has_role('{}', '{}', 'MEMBER')",
                a["DB_USER"], b["DB_USER"]
            ),
        );
        assert_eq!(found, "0\nf", "A's function ran with the admin's rights");
        // B's table: unreadable to A, unchanged.
        let (read, out) = psql(
            &to_database(&a["DB_URI"], &a["DB_DATABASE"], &b["DB_DATABASE"]),
            "select count(*) from items",
        );
        assert!(!read, "A read B's table: {out}");
        let (done, out) = psql(&b["DB_URI"], "select id, made is not null from items");
        assert!(done, "{out}");
        assert_eq!(out, "1|t");
    }
}

/// Functions that, run by anyone but A, make a role `pwned` and grant A every run's
/// role; `shobj_description(oid, text)` and `starts_with(name, text)` in `public` are
/// better matches than `pg_catalog`'s for an unqualified call (CVE-2018-1058).
fn hostile(attacker: &str) -> String {
    format!(
        r#"
create function public.hostile() returns void language plpgsql as $f$
declare r text;
begin
  if current_user <> '{attacker}' then
    begin execute 'create role pwned'; exception when others then null; end;
    for r in select rolname from pg_catalog.pg_roles where rolname like 'run-%' and rolname <> '{attacker}' loop
      begin execute pg_catalog.format('grant %I to %I', r, '{attacker}'); exception when others then null; end;
    end loop;
  end if;
end $f$;
create function public.shobj_description(oid, text) returns text language plpgsql as $f$
begin perform public.hostile(); return pg_catalog.shobj_description($1, $2::name); end $f$;
create function public.starts_with(name, text) returns boolean language plpgsql as $f$
begin perform public.hostile(); return pg_catalog.starts_with($1::text, $2); end $f$;
"#
    )
}

/// Severity 1.1: functions planted in `defaultdb` (where every role may create) are
/// never called by the admin: not by a seeded `up` building a template, nor by `reap`,
/// nor by either `down`.
#[test]
fn functions_planted_in_defaultdb_never_run_as_the_admin() {
    let runs = Runs::new(SEEDED, &[("schema.sql", SCHEMA)]);
    let attacker = runs.a()["DB_USER"].clone();
    runs.a_sql(Some("defaultdb"), &hostile(&attacker));
    // B's seed is another: its template is built now, next to A's functions.
    std::fs::write(
        runs.b.join("schema.sql"),
        format!("{SCHEMA}create table b_only (x int);\n"),
    )
    .unwrap();
    runs.pool.up_all(std::slice::from_ref(&runs.b));
    runs.no_escalation();
    let reap = run(runs.pool.cmd(
        &runs.a,
        &["reap", "--project", PROJECT, "--templates-unused-for", "1h"],
    ));
    reap.expect_code(0);
    runs.no_escalation();
    runs.both_down_and_nothing_left();
    assert_eq!(
        runs.pool.admin_sql(
            "defaultdb",
            "select count(*) from pg_roles where rolname = 'pwned'"
        ),
        "0"
    );
}

/// Severity 1.2: what a run plants in `template1` reaches no database the tool makes: a
/// run's database without a seed, a seed template, or its clones (where the hand-over
/// runs as the admin).
#[test]
fn objects_planted_in_template1_reach_no_new_database() {
    let runs = Runs::new(PG_ONLY, &[("schema.sql", SCHEMA)]);
    let attacker = runs.a()["DB_USER"].clone();
    runs.a_sql(
        Some("template1"),
        &format!("{}create table public.planted (x int);", hostile(&attacker)),
    );
    // B: one database without a seed, and a seeded one on the same service.
    std::fs::write(
        runs.b.join("aiven-ephemeral.yaml"),
        "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist, shared: true, databases: [app], seed: [schema.sql]}\n",
    )
    .unwrap();
    runs.pool.up_all(std::slice::from_ref(&runs.b));
    runs.no_escalation();
    let b = runs.b();
    for db in [
        b["DB_DATABASE"].clone(),
        crate::shared::templates(&runs.pool)[0].clone(),
    ] {
        let planted = runs.pool.admin_sql(
            &db,
            "select count(*) from pg_class where relname = 'planted'; \
             select count(*) from pg_proc where proname in ('hostile', 'starts_with', 'shobj_description') and pronamespace = 'public'::regnamespace",
        );
        assert_eq!(planted, "0\n0", "A's objects are in {db}");
    }
    let a = runs.a();
    let own = runs.a_sql(
        None,
        "select count(*) from pg_class where relname = 'planted'",
    );
    assert_eq!(own, "0", "A's own new database was made from template1");
    drop(a);
    runs.both_down_and_nothing_left();
    // A's objects in template1 went with A's role.
    assert_eq!(
        runs.pool.admin_sql(
            "template1",
            "select count(*) from pg_class where relname = 'planted'"
        ),
        "0"
    );
}

/// Severity 1.3: a seed runs as a plain role logged in as itself: `RESET ROLE` leaves it
/// that role, so it cannot make a role; the failed build leaves no template and no seed
/// role behind.
#[test]
fn a_seed_cannot_leave_its_role_or_make_roles() {
    let evil = "create table t (x int);\nRESET ROLE;\nCREATE ROLE evil LOGIN CREATEROLE CREATEDB PASSWORD 'evil';\n";
    let runs = Runs::new(PG_ONLY, &[]);
    std::fs::write(
        runs.b.join("aiven-ephemeral.yaml"),
        "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist, shared: true, databases: [app], seed: [evil.sql]}\n",
    )
    .unwrap();
    std::fs::write(runs.b.join("evil.sql"), evil).unwrap();
    let up = run(runs.pool.cmd(&runs.b, &["up"]));
    up.expect_code(1);
    pinned!(up.told(), @"error: ae-db-shared (services.db): seed file evil.sql: permission denied to create role");
    let left = runs.pool.admin_sql(
        "defaultdb",
        "select rolname from pg_roles where rolname = 'evil' or rolname like 'aiven-ephemeral-seed-%' \
         union all select datname from pg_database where datname like 'aiven-ephemeral-tpl-%'",
    );
    assert_eq!(left, "", "the seed left something");
    // A seed that does not escalate still builds, as the seed role.
    std::fs::write(
        runs.b.join("evil.sql"),
        "create table who (name text default current_user, sess text default session_user);\ninsert into who default values;\n",
    )
    .unwrap();
    run(runs.pool.cmd(&runs.b, &["up"])).expect_code(0);
    let b = runs.b();
    let (done, out) = psql(&b["DB_URI"], "select name = sess, name from who");
    assert!(done, "{out}");
    assert!(
        out.starts_with("t|aiven-ephemeral-seed-"),
        "the seed ran as {out}"
    );
    runs.both_down_and_nothing_left();
}

/// Severity 3: a seed path never leaves the manifest's directory (`../`, an absolute
/// path, a symlink), and what is outside is never quoted.
#[test]
fn seed_paths_stay_inside_the_manifests_directory() {
    let pool = Pool::new();
    let dir = pool.dir("s", &[("aiven-ephemeral.yaml", PG_ONLY)]);
    let outside = dir.parent().unwrap().join("outside.sql");
    std::fs::write(&outside, "secret-outside-text\n").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link.sql")).unwrap();
    let mut said = Vec::new();
    for seed in [
        "../outside.sql".to_string(),
        outside.display().to_string(),
        "link.sql".to_string(),
        "/etc/passwd".to_string(),
    ] {
        std::fs::write(
            dir.join("aiven-ephemeral.yaml"),
            format!("project: test-project\nservices:\n  db: {{type: pg, plan: hobbyist, shared: true, seed: [\"{seed}\"]}}\n"),
        )
        .unwrap();
        for cmd in ["validate", "up"] {
            let out = run(pool.cmd(&dir, &[cmd]));
            out.expect_code(2);
            assert!(!out.all().contains("secret-outside-text"), "{}", out.all());
            assert!(!out.all().contains("root:"), "{}", out.all());
            said.push(format!("{cmd}: {}", out.told()));
        }
    }
    pinned!(said.join("\n"), @r#"
    validate: error: aiven-ephemeral.yaml:3:55: seed file ../outside.sql is outside the manifest's directory
     --> aiven-ephemeral.yaml:3:55
      |
    3 |   db: {type: pg, plan: hobbyist, shared: true, seed: ["../outside.sql"]}
      |                                                       ^ seed file ../outside.sql is outside the manifest's directory
      hint: seed paths are relative to the manifest's directory, and stay inside it
    up: error: aiven-ephemeral.yaml:3:55: seed file ../outside.sql is outside the manifest's directory
     --> aiven-ephemeral.yaml:3:55
      |
    3 |   db: {type: pg, plan: hobbyist, shared: true, seed: ["../outside.sql"]}
      |                                                       ^ seed file ../outside.sql is outside the manifest's directory
      hint: seed paths are relative to the manifest's directory, and stay inside it
    validate: error: aiven-ephemeral.yaml:3:55: seed file [TMP]/outside.sql is outside the manifest's directory
     --> aiven-ephemeral.yaml:3:55
      |
    3 |   db: {type: pg, plan: hobbyist, shared: true, seed: ["[TMP]/outside.sql"]}
      |                                                       ^ seed file [TMP]/outside.sql is outside the manifest's directory
      hint: seed paths are relative to the manifest's directory, and stay inside it
    up: error: aiven-ephemeral.yaml:3:55: seed file [TMP]/outside.sql is outside the manifest's directory
     --> aiven-ephemeral.yaml:3:55
      |
    3 |   db: {type: pg, plan: hobbyist, shared: true, seed: ["[TMP]/outside.sql"]}
      |                                                       ^ seed file [TMP]/outside.sql is outside the manifest's directory
      hint: seed paths are relative to the manifest's directory, and stay inside it
    validate: error: aiven-ephemeral.yaml:3:55: seed file link.sql is outside the manifest's directory
     --> aiven-ephemeral.yaml:3:55
      |
    3 |   db: {type: pg, plan: hobbyist, shared: true, seed: ["link.sql"]}
      |                                                       ^ seed file link.sql is outside the manifest's directory
      hint: seed paths are relative to the manifest's directory, and stay inside it
    up: error: aiven-ephemeral.yaml:3:55: seed file link.sql is outside the manifest's directory
     --> aiven-ephemeral.yaml:3:55
      |
    3 |   db: {type: pg, plan: hobbyist, shared: true, seed: ["link.sql"]}
      |                                                       ^ seed file link.sql is outside the manifest's directory
      hint: seed paths are relative to the manifest's directory, and stay inside it
    validate: error: aiven-ephemeral.yaml:3:55: seed file /etc/passwd is outside the manifest's directory
     --> aiven-ephemeral.yaml:3:55
      |
    3 |   db: {type: pg, plan: hobbyist, shared: true, seed: ["/etc/passwd"]}
      |                                                       ^ seed file /etc/passwd is outside the manifest's directory
      hint: seed paths are relative to the manifest's directory, and stay inside it
    up: error: aiven-ephemeral.yaml:3:55: seed file /etc/passwd is outside the manifest's directory
     --> aiven-ephemeral.yaml:3:55
      |
    3 |   db: {type: pg, plan: hobbyist, shared: true, seed: ["/etc/passwd"]}
      |                                                       ^ seed file /etc/passwd is outside the manifest's directory
      hint: seed paths are relative to the manifest's directory, and stay inside it
    "#);
    assert_eq!(pool.sandbox.live_names(), Vec::<String>::new());
}

/// Severity 2: B's `down` succeeds whatever A granted B in A's database, even once A
/// has closed that database (its own CONNECT revoked, connections disallowed) and set
/// it up to steer the admin's session (its role, read-only transactions, a statement
/// timeout).
#[test]
fn a_neighbours_grants_do_not_keep_a_run_from_going() {
    let runs = Runs::new(PG_ONLY, &[]);
    runs.pool.up_all(std::slice::from_ref(&runs.b));
    let (a, b) = (runs.a(), runs.b());
    let (ra, rb, da) = (&a["DB_USER"], &b["DB_USER"], &a["DB_DATABASE"]);
    runs.a_sql(
        None,
        &format!("create table bait (x int); grant select on bait to \"{rb}\";"),
    );
    runs.a_sql(
        Some("defaultdb"),
        &format!("create table bait2 (x int); grant select on bait2 to \"{rb}\";"),
    );
    runs.a_sql(
        None,
        &format!(
            "alter database \"{da}\" set default_transaction_read_only = on; \
             alter database \"{da}\" set statement_timeout = 1; \
             alter database \"{da}\" set role = \"{rb}\"; \
             alter database \"{da}\" connection limit 0; \
             revoke connect on database \"{da}\" from \"{ra}\";"
        ),
    );
    runs.a_sql(
        Some("defaultdb"),
        &format!("alter database \"{da}\" allow_connections false"),
    );
    let down = run(runs.pool.cmd(&runs.b, &["down"]));
    down.expect_code(0);
    let left = runs.pool.admin_sql(
        "defaultdb",
        &format!("select count(*) from pg_roles where rolname = '{rb}'"),
    );
    assert_eq!(left, "0", "B's role is still there");
    runs.both_down_and_nothing_left();
}

/// Severity 2: no run can take the seed template's build lock or stall the tool's
/// `CREATE DATABASE`: the admin's own database is closed to runs, and a session held
/// on `template1` is no template of the tool's.
#[test]
fn no_run_can_hold_the_build_lock_or_stall_database_creation() {
    let runs = Runs::new(PG_ONLY, &[("schema.sql", SCHEMA)]);
    let a = runs.a();
    let (entered, out) = psql(
        &to_database(&a["DB_URI"], &a["DB_DATABASE"], "aiven-ephemeral-admin"),
        "select 1",
    );
    assert!(
        !entered && out.contains("permission denied for database"),
        "{out}"
    );
    // A holds every key the lock could have in defaultdb, and a session on template1.
    let hold = std::process::Command::new("psql")
        .args([
            &to_database(&a["DB_URI"], &a["DB_DATABASE"], "template1"),
            "-X",
            "-q",
            "-c",
            "select pg_advisory_lock(k) from generate_series(0, 1000) k; select pg_sleep(120)",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut hold = KillOnDrop(hold);
    // Until A's session holds them all (a session that failed would attack nothing).
    let held = "select count(*) from pg_locks l join pg_database d on d.oid = l.database \
                where l.locktype = 'advisory' and l.granted and d.datname = 'template1'";
    let start = std::time::Instant::now();
    while runs.pool.admin_sql("defaultdb", held) != "1001" {
        assert!(
            hold.0.try_wait().unwrap().is_none(),
            "A's session on template1 ended"
        );
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "A's session never held the locks"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::fs::write(
        runs.b.join("aiven-ephemeral.yaml"),
        "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist, shared: true, databases: [app, other], seed: [schema.sql]}\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    run(runs.pool.cmd(&runs.b, &["up", "--timeout", "60s"])).expect_code(0);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "B's up took {:?}",
        started.elapsed()
    );
    let _ = hold.0.kill();
    let _ = hold.0.wait();
    runs.both_down_and_nothing_left();
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Severity 2: what every role can read of other runs (role and database comments)
/// carries no owner nonce.
#[test]
fn comments_every_run_reads_hold_no_owner_nonce() {
    let runs = Runs::new(PG_ONLY, &[]);
    runs.pool.up_all(std::slice::from_ref(&runs.b));
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.b.join(".aiven-ephemeral/state.json")).unwrap(),
    )
    .unwrap();
    let owner = state["owner"].as_str().expect("the state has an owner");
    let seen = runs.a_sql(
        None,
        "select string_agg(coalesce(description, ''), ' ') from pg_shdescription",
    );
    assert!(seen.contains("aiven-ephemeral run="), "{seen}");
    assert!(!seen.contains(owner), "B's owner nonce is readable: {seen}");
    runs.both_down_and_nothing_left();
}

const VALKEY_ONLY: &str = "project: test-project
services:
  cache: {type: valkey, plan: hobbyist, shared: true}
";

/// Severity 1.4, 1.5 and 2: the Valkey commands that act on the whole server are refused
/// to a run: the replication stream (every key, then every write), functions and the
/// script cache (another run's code, kept after every `down`), key-name tracking by
/// prefix, the slow log, pausing or unblocking everyone's clients. What runs need still
/// works on their own keys.
#[test]
fn valkey_server_wide_commands_are_refused_to_a_run() {
    let runs = Runs::new(VALKEY_ONLY, &[]);
    runs.pool.up_all(std::slice::from_ref(&runs.b));
    let (a, b) = (runs.a(), runs.b());
    // The sandbox signs Valkey's certificate with the project CA (`redis` reads it from
    // DB_CA_CERT).
    let ca = runs.a.join("ca.pem");
    std::fs::write(&ca, &runs.pool.sandbox.ca_pem).unwrap();
    let with_ca = |env: &BTreeMap<String, String>| {
        let mut env = env.clone();
        env.insert("DB_CA_CERT".into(), ca.display().to_string());
        env
    };
    let (a, b) = (with_ca(&a), with_ca(&b));
    let (pa, pb) = (&a["CACHE_KEY_PREFIX"], &b["CACHE_KEY_PREFIX"]);
    assert_eq!(redis(&b, &["SET", &format!("{pb}secret"), "b"]), "OK");
    for args in [
        &["SYNC"][..],
        &["PSYNC", "?", "-1"],
        &["REPLCONF", "listening-port", "1"],
        &[
            "FUNCTION",
            "LOAD",
            "REPLACE",
            "#!lua name=evil\nredis.register_function('f', function() return 1 end)",
        ],
        &["FUNCTION", "FLUSH"],
        &["FUNCTION", "DELETE", "x"],
        &["FUNCTION", "RESTORE", "x"],
        &["SCRIPT", "FLUSH"],
        &["SCRIPT", "KILL"],
        &["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", pb],
        &["SLOWLOG", "GET"],
        &["SLOWLOG", "RESET"],
        &["CLIENT", "PAUSE", "10"],
        &["CLIENT", "UNPAUSE"],
        &["CLIENT", "UNBLOCK", "1"],
        &["CLIENT", "NO-EVICT", "ON"],
        &["LATENCY", "LATEST"],
        &["MODULE", "LIST"],
        &["RESTORE", &format!("{pa}k"), "0", "x"],
    ] {
        // (redis-cli says SYNC's refusal after a line of its own.)
        let said = redis(&a, args);
        assert!(said.contains("NOPERM"), "{args:?}: {said}");
    }
    // SORT with BY or GET would read any key: refused to a user with key patterns.
    assert_eq!(redis(&a, &["RPUSH", &format!("{pa}l"), "secret"]), "1");
    let said = redis(&a, &["SORT", &format!("{pa}l"), "BY", &format!("{pb}*")]);
    assert!(said.contains("denied"), "{said}");
    let said = redis(&a, &["SORT", &format!("{pa}l"), "GET", &format!("{pb}*")]);
    assert!(said.contains("denied"), "{said}");
    // What runs need works.
    assert_eq!(redis(&a, &["SORT", &format!("{pa}l"), "ALPHA"]), "secret");
    assert_eq!(
        redis(
            &a,
            &[
                "EVAL",
                "return redis.call('GET', KEYS[1])",
                "1",
                &format!("{pa}l2")
            ]
        ),
        ""
    );
    assert!(redis(&a, &["INFO", "server"]).contains("redis_version"));
    assert_eq!(redis(&b, &["GET", &format!("{pb}secret")]), "b");
    runs.pool.down_all(&[runs.a.clone(), runs.b.clone()]);
    assert_eq!(runs.pool.leftovers(), Vec::<String>::new());
}

/// Severity 2: a run holding every connection its role may open leaves room for the
/// planned runs and for the admin: B's `up` and `down` still work.
#[test]
fn a_run_cannot_take_the_connections_of_others_or_the_admins() {
    let runs = Runs::new(PG_ONLY, &[]);
    let a = runs.a();
    let limit: usize = runs
        .pool
        .admin_sql(
            "defaultdb",
            &format!(
                "select rolconnlimit from pg_roles where rolname = '{}'",
                a["DB_USER"]
            ),
        )
        .parse()
        .unwrap();
    let max: usize = runs
        .pool
        .admin_sql("defaultdb", "show max_connections")
        .parse()
        .unwrap();
    assert!(limit * 8 + 5 <= max, "limit {limit} of {max}");
    let held: Vec<KillOnDrop> = (0..limit)
        .map(|_| {
            KillOnDrop(
                std::process::Command::new("psql")
                    .args([&a["DB_URI"], "-X", "-q", "-c", "select pg_sleep(120)"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    // Once all of them are in (seen from the admin's side: a probe of A's own while
    // they connect would take one's place, and that one would fail and leave a slot
    // free), one more is refused.
    let started = std::time::Instant::now();
    let sessions = format!(
        "select count(*) from pg_stat_activity where usename = '{}'",
        a["DB_USER"]
    );
    while runs
        .pool
        .admin_sql("defaultdb", &sessions)
        .parse::<usize>()
        .unwrap()
        < limit
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "A's {limit} sessions never all connected"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (more, out) = psql(&a["DB_URI"], "select 1");
    assert!(!more, "A opened more than {limit} connections");
    assert!(out.contains("too many connections for role"), "{out}");
    runs.pool.up_all(std::slice::from_ref(&runs.b));
    let b = runs.b();
    assert!(psql(&b["DB_URI"], "select 1").0);
    drop(held);
    runs.both_down_and_nothing_left();
}

const KAFKA_ONLY: &str = "project: test-project
services:
  events: {type: kafka, plan: startup-2, shared: true, topics: [{name: orders, partitions: 1, replication: 1}]}
";

/// Whether Kafka lets `user` do `op` on `resource_type` `name`, by the ACLs `GET
/// .../kafka/acl` lists, as aiven-docs `kafka/concepts/acl.md` and
/// `kafka/howto/manage-acls.md` say they combine: a DENY of either kind wins; an Aiven
/// ACL that matches the user gives it every consumer group and its topics by
/// permission; a native ALLOW gives its operation (Read or Write give Describe, as in
/// Kafka), on its name (LITERAL, `*` any) or its prefix (PREFIXED).
fn kafka_may(acls: &Value, user: &str, resource_type: &str, name: &str, op: &str) -> bool {
    fn glob(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], n) || (!n.is_empty() && glob(p, &n[1..])),
            (Some(b'?'), Some(_)) => glob(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => glob(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let native = acls["kafka_acl"].as_array().unwrap().iter().filter(|a| {
        let principal = a["principal"].as_str().unwrap();
        let resource = a["resource_name"].as_str().unwrap();
        let granted = a["operation"].as_str().unwrap();
        principal
            .strip_prefix("User:")
            .is_some_and(|p| glob(p.as_bytes(), user.as_bytes()))
            && a["resource_type"] == resource_type
            && match a["pattern_type"].as_str().unwrap() {
                "PREFIXED" => name.starts_with(resource),
                _ => resource == "*" || resource == name,
            }
            && (granted == op
                || granted == "All"
                || (op == "Describe" && ["Read", "Write", "Delete", "Alter"].contains(&granted)))
    });
    let (mut allow, mut deny) = (false, false);
    for a in native {
        match a["permission_type"].as_str().unwrap() {
            "DENY" => deny = true,
            _ => allow = true,
        }
    }
    let aiven = acls["acl"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| glob(a["username"].as_str().unwrap().as_bytes(), user.as_bytes()));
    for a in aiven {
        let permission = a["permission"].as_str().unwrap();
        allow |= match resource_type {
            "Group" => true,
            "Topic" => {
                glob(a["topic"].as_str().unwrap().as_bytes(), name.as_bytes())
                    && match op {
                        "Read" => permission.contains("read") || permission == "admin",
                        "Write" => permission.contains("write") || permission == "admin",
                        "Describe" => true,
                        _ => permission == "admin",
                    }
            }
            _ => permission == "admin",
        };
    }
    allow && !deny
}

/// Issue 23: run A's Kafka user is confined to its own prefix: it may consume in its
/// own groups, use its own transactional ids and topics, and none of B's (nor any
/// unprefixed group). The sandbox's Kafka listener is simulated, so what is checked is
/// what Kafka decides from: the ACLs the service holds, read through the API.
#[test]
fn a_kafka_run_cannot_use_another_runs_groups_transactions_or_topics() {
    let runs = Runs::new(KAFKA_ONLY, &[]);
    runs.pool.up_all(std::slice::from_ref(&runs.b));
    let (a, b) = (runs.a(), runs.b());
    let (pa, pb) = (&a["EVENTS_TOPIC_PREFIX"], &b["EVENTS_TOPIC_PREFIX"]);
    let user = pa.trim_end_matches('.');
    let acls = runs.pool.sandbox.api(
        "GET",
        &format!("/v1/project/{PROJECT}/service/ae-events-shared/kafka/acl"),
        None,
    );
    assert_eq!(acls.0, 200, "{}", acls.1);
    let may = |resource_type: &str, name: &str, op: &str| {
        kafka_may(&acls.1, user, resource_type, name, op)
    };
    // What a run needs, on its own names.
    for (resource_type, name, op) in [
        ("Topic", format!("{pa}orders"), "Read"),
        ("Topic", format!("{pa}orders"), "Write"),
        ("Topic", format!("{pa}orders"), "Describe"),
        ("Group", format!("{pa}app"), "Read"),
        ("Group", format!("{pa}app"), "Describe"),
        ("TransactionalId", format!("{pa}tx"), "Write"),
    ] {
        assert!(
            may(resource_type, &name, op),
            "A may not {op} its own {resource_type} {name}: {}",
            acls.1
        );
    }
    // B's names, unprefixed ones, and making topics.
    for (resource_type, name, op) in [
        ("Topic", format!("{pb}orders"), "Read"),
        ("Topic", format!("{pb}orders"), "Write"),
        ("Group", format!("{pb}app"), "Read"),
        ("Group", format!("{pb}app"), "Describe"),
        ("Group", format!("{pb}app"), "Delete"),
        ("Group", "app".to_string(), "Read"),
        ("TransactionalId", format!("{pb}tx"), "Write"),
        ("TransactionalId", format!("{pb}tx"), "Describe"),
        ("Topic", format!("{pa}more"), "Create"),
        ("Cluster", "kafka-cluster".to_string(), "Create"),
    ] {
        assert!(
            !may(resource_type, &name, op),
            "A may {op} {resource_type} {name}: {}",
            acls.1
        );
    }
    runs.pool.down_all(&[runs.a.clone(), runs.b.clone()]);
    assert_eq!(runs.pool.leftovers(), Vec::<String>::new());
}
