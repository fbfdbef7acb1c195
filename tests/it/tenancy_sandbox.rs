//! The sandbox where shared services decide isolation, checked with real clients
//! against its real PostgreSQL and Valkey/Redis servers: `avnadmin` is no superuser,
//! API users get nothing extra, Valkey users carry their `access_control` and nobody may
//! use `ACL`, the 50-user default of Kafka, what a power-off keeps, and tags.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// A sandbox with real servers behind pg and valkey services.
pub fn real_sandbox() -> Sandbox {
    for tool in ["psql", "redis-cli", "redis-server"] {
        require(tool);
    }
    Sandbox::with(aiven_sandbox::Config {
        backends: aiven_sandbox::BackendMode::Required,
        ..fast_config()
    })
}

fn svc_path(name: &str) -> String {
    format!("/v1/project/{PROJECT}/service/{name}")
}

#[track_caller]
pub fn ok(r: (u16, Value)) -> Value {
    assert_eq!(r.0, 200, "{}", r.1);
    r.1
}

fn create(s: &Sandbox, name: &str, ty: &str) {
    let plan = if ty == "kafka" {
        "startup-2"
    } else {
        "hobbyist"
    };
    ok(s.api(
        "POST",
        &format!("/v1/project/{PROJECT}/service"),
        Some(
            json!({"service_name": name, "service_type": ty, "plan": plan, "project_vpc_id": null}),
        ),
    ));
}

/// The service once RUNNING, with its secrets.
fn wait_running(s: &Sandbox, name: &str) -> Value {
    let start = Instant::now();
    loop {
        let v = ok(s.api(
            "GET",
            &format!("{}?include_secrets=true", svc_path(name)),
            None,
        ));
        if v["service"]["state"] == "RUNNING" {
            return v["service"].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name} never ran: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn user_password(svc: &Value, username: &str) -> String {
    svc["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == username)
        .and_then(|u| u["password"].as_str())
        .unwrap_or_else(|| panic!("{username} in {svc}"))
        .to_string()
}

struct Pg {
    port: String,
}

/// What a client sees: success, stdout, stderr.
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Pg {
    fn of(svc: &Value) -> Self {
        Self {
            port: svc["service_uri_params"]["port"]
                .as_str()
                .unwrap()
                .to_string(),
        }
    }

    /// psql over TLS, as a user would run it.
    fn sql(&self, user: &str, password: &str, db: &str, sql: &str) -> Out {
        let o = Command::new("psql")
            .arg(format!(
                "host=localhost port={} user={user} dbname={db} sslmode=require connect_timeout=5",
                self.port
            ))
            .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", password)
            .output()
            .unwrap();
        Out {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).trim().to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        }
    }

    #[track_caller]
    fn ok(&self, user: &str, password: &str, db: &str, sql: &str) -> String {
        let o = self.sql(user, password, db, sql);
        assert!(o.ok, "{user}@{db}: {sql}: {}", o.stderr);
        o.stdout
    }

    /// The statement fails with exactly this error.
    #[track_caller]
    fn refused(&self, user: &str, password: &str, db: &str, sql: &str, error: &str) {
        let o = self.sql(user, password, db, sql);
        assert!(
            !o.ok && o.stderr.contains(error),
            "{user}@{db}: {sql}: expected {error:?}, got ok={} {:?} {:?}",
            o.ok,
            o.stdout,
            o.stderr
        );
    }
}

#[test]
fn postgres_admin_is_no_superuser_and_api_users_get_nothing_extra() {
    let s = real_sandbox();
    create(&s, "shared-pg", "pg");
    let svc = wait_running(&s, "shared-pg");
    let pg = Pg::of(&svc);
    let admin = user_password(&svc, "avnadmin");
    let a = |sql: &str| pg.ok("avnadmin", &admin, "defaultdb", sql);

    // avnadmin as on Aiven: no superuser, can create databases and roles, replicate.
    assert_eq!(
        a(
            "select rolsuper, rolcreatedb, rolcreaterole, rolreplication from pg_roles where rolname = current_user"
        ),
        "f|t|t|t"
    );
    assert_eq!(
        a(
            "select string_agg(b.rolname, ',' order by b.rolname) from pg_auth_members m join pg_roles b on b.oid = m.roleid where m.member = 'avnadmin'::regrole"
        ),
        "pg_read_all_stats,pg_stat_scan_tables"
    );
    pg.refused(
        "avnadmin",
        &admin,
        "defaultdb",
        "alter role avnadmin superuser",
        "must be superuser",
    );
    pg.refused(
        "avnadmin",
        &admin,
        "defaultdb",
        "copy (select 1) to program 'true'",
        "must be superuser or have privileges of the pg_execute_server_program role",
    );
    // defaultdb is avnadmin's, its public schema postgres', and avnadmin creates tables.
    assert_eq!(
        a("select pg_get_userbyid(datdba) from pg_database where datname = 'defaultdb'"),
        "avnadmin"
    );
    assert_eq!(
        a("select pg_get_userbyid(nspowner) from pg_namespace where nspname = 'public'"),
        "postgres"
    );
    a("create table shared (x int); insert into shared values (1)");

    // A run's tenancy, created over SQL by avnadmin.
    a("create role run1 login password 'run1-secret-pw' connection limit 5");
    a("grant run1 to avnadmin");
    a("create database run1db owner run1");
    a("create database tmpl");
    a("create database run1copy owner run1 template tmpl");
    a("revoke connect on database run1db from public");
    assert_eq!(
        a("select pg_get_userbyid(datdba) from pg_database where datname = 'run1db'"),
        "run1"
    );
    // In its database the run role creates tables, but the schema is not its own.
    pg.ok(
        "run1",
        "run1-secret-pw",
        "run1db",
        "create table t (x int); insert into t values (7)",
    );
    assert_eq!(
        pg.ok(
            "run1",
            "run1-secret-pw",
            "run1db",
            "select pg_get_userbyid(nspowner) from pg_namespace where nspname = 'public'"
        ),
        "postgres"
    );
    pg.refused(
        "run1",
        "run1-secret-pw",
        "run1db",
        "drop schema public",
        "must be owner of schema public",
    );
    pg.refused(
        "run1",
        "run1-secret-pw",
        "defaultdb",
        "select * from shared",
        "permission denied for table shared",
    );

    // An API user: a plain LOGIN role, granted nothing.
    let created = ok(s.api(
        "POST",
        &format!("{}/user", svc_path("shared-pg")),
        Some(json!({"username": "api_user"})),
    ));
    let api_pw = created["user"]["password"].as_str().unwrap().to_string();
    assert_eq!(
        a(
            "select rolsuper, rolcreatedb, rolcreaterole, rolreplication, (select count(*) from pg_auth_members where member = 'api_user'::regrole) from pg_roles where rolname = 'api_user'"
        ),
        "f|f|f|f|0"
    );
    pg.refused(
        "api_user",
        &api_pw,
        "defaultdb",
        "create database mine",
        "permission denied to create database",
    );
    pg.refused(
        "api_user",
        &api_pw,
        "defaultdb",
        "create role other",
        "permission denied to create role",
    );
    pg.refused(
        "api_user",
        &api_pw,
        "run1db",
        "select 1",
        "permission denied for database \"run1db\"",
    );
    // PUBLIC's defaults still apply elsewhere.
    assert_eq!(pg.ok("api_user", &api_pw, "run1copy", "select 1"), "1");

    // API databases belong to avnadmin; API deletes reach the server.
    ok(s.api(
        "POST",
        &format!("{}/db", svc_path("shared-pg")),
        Some(json!({"database": "apidb"})),
    ));
    assert_eq!(
        a("select pg_get_userbyid(datdba) from pg_database where datname = 'apidb'"),
        "avnadmin"
    );
    ok(s.api(
        "DELETE",
        &format!("{}/db/apidb", svc_path("shared-pg")),
        None,
    ));
    assert_eq!(
        a("select count(*) from pg_database where datname = 'apidb'"),
        "0"
    );
    ok(s.api(
        "DELETE",
        &format!("{}/user/api_user", svc_path("shared-pg")),
        None,
    ));
    assert_eq!(
        a("select count(*) from pg_roles where rolname = 'api_user'"),
        "0"
    );

    // The run's teardown, by avnadmin.
    pg.ok(
        "avnadmin",
        &admin,
        "run1db",
        "reassign owned by run1 to avnadmin",
    );
    a("drop database run1db with (force)");
    a("drop database run1copy with (force)");
    a("drop role run1");
    assert_eq!(
        a("select count(*) from pg_roles where rolname = 'run1'"),
        "0"
    );
}

/// redis-cli over TLS as `user`; the reply (errors included, as redis-cli prints them).
fn redis(svc: &Value, ca: &std::path::Path, user: &str, password: &str, args: &[&str]) -> String {
    let o = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(ca)
        .args([
            "-h",
            "localhost",
            "-p",
            &svc["service_uri_params"]["port"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| svc["components"][0]["port"].to_string()),
            "--user",
            user,
            "--pass",
            password,
            "--no-auth-warning",
        ])
        .args(args)
        .output()
        .unwrap();
    said(&o)
}

#[test]
fn valkey_users_get_their_access_control_and_nobody_may_use_acl() {
    let s = real_sandbox();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = ca_dir.path().join("ca.pem");
    std::fs::write(&ca, &s.ca_pem).unwrap();
    create(&s, "shared-kv", "valkey");
    let svc = wait_running(&s, "shared-kv");
    let admin = user_password(&svc, "default");
    let r = |user: &str, pw: &str, args: &[&str]| redis(&svc, &ca, user, pw, args);
    assert_eq!(r("default", &admin, &["SET", "p2:x", "secret"]), "OK");

    let acl = json!({
        "valkey_acl_keys": ["p1:*"],
        "valkey_acl_categories": ["+@all"],
        "valkey_acl_commands": ["-flushall", "-keys", "-scan", "-select", "-flushdb"],
    });
    let created = ok(s.api(
        "POST",
        &format!("{}/user", svc_path("shared-kv")),
        Some(json!({"username": "run1", "access_control": acl})),
    ));
    let pw = created["user"]["password"].as_str().unwrap().to_string();
    // GET answers the access control as given (no channels: none invented).
    let got = ok(s.api("GET", &format!("{}/user/run1", svc_path("shared-kv")), None));
    assert_eq!(got["user"]["access_control"], acl);

    assert_eq!(r("run1", &pw, &["SET", "p1:a", "1"]), "OK");
    assert_eq!(r("run1", &pw, &["GET", "p1:a"]), "1");
    for args in [
        &["GET", "p2:x"][..],
        &["FLUSHALL"],
        &["FLUSHDB"],
        &["KEYS", "*"],
        &["SCAN", "0"],
        &["SELECT", "1"],
    ] {
        let reply = r("run1", &pw, args);
        assert!(reply.starts_with("NOPERM"), "{args:?}: {reply}");
    }
    // Channels were not restricted: all of them, as `valkey_acl_channels_default`.
    assert_eq!(r("run1", &pw, &["PUBLISH", "anything", "hi"]), "0");
    // `ACL` is disabled for every client user, the admin included.
    for (user, password) in [("run1", pw.as_str()), ("default", admin.as_str())] {
        for args in [
            &["ACL", "WHOAMI"][..],
            &["ACL", "LIST"],
            &["CONFIG", "GET", "*"],
        ] {
            let reply = r(user, password, args);
            assert!(
                reply.starts_with("ERR unknown command"),
                "{user} {args:?}: {reply}"
            );
        }
    }
    assert_eq!(r("default", &admin, &["GET", "p2:x"]), "secret");

    // set-access-control reaches the server.
    let acl2 = json!({
        "valkey_acl_keys": ["p2:*"],
        "valkey_acl_categories": ["+@read"],
        "valkey_acl_commands": [],
        "valkey_acl_channels": ["run1.*"],
    });
    ok(s.api(
        "PUT",
        &format!("{}/user/run1", svc_path("shared-kv")),
        Some(json!({"operation": "set-access-control", "access_control": acl2})),
    ));
    assert_eq!(r("run1", &pw, &["GET", "p2:x"]), "secret");
    assert!(r("run1", &pw, &["SET", "p2:x", "2"]).starts_with("NOPERM"));
    assert!(r("run1", &pw, &["GET", "p1:a"]).starts_with("NOPERM"));
    let got = ok(s.api("GET", &format!("{}/user/run1", svc_path("shared-kv")), None));
    assert_eq!(
        got["user"]["access_control"],
        json!({"valkey_acl_keys": ["p2:*"], "valkey_acl_categories": ["+@read"], "valkey_acl_channels": ["run1.*"]}),
        "empty lists are left out"
    );
    // A rule the server refuses is the client's error, and nothing changes.
    let (status, body) = s.api(
        "PUT",
        &format!("{}/user/run1", svc_path("shared-kv")),
        Some(json!({"operation": "set-access-control", "access_control": {"valkey_acl_commands": ["+nosuchcommand"]}})),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(r("run1", &pw, &["GET", "p2:x"]), "secret");

    // Without access_control: everything, as Aiven gives.
    let full = ok(s.api(
        "POST",
        &format!("{}/user", svc_path("shared-kv")),
        Some(json!({"username": "full"})),
    ));
    let full_pw = full["user"]["password"].as_str().unwrap();
    assert_eq!(r("full", full_pw, &["GET", "p2:x"]), "secret");

    // DELETE removes the user from the server.
    ok(s.api(
        "DELETE",
        &format!("{}/user/run1", svc_path("shared-kv")),
        None,
    ));
    let reply = r("run1", &pw, &["PING"]);
    assert!(reply.contains("WRONGPASS"), "{reply}");
}

#[test]
fn kafka_refuses_the_51st_user_counting_avnadmin_and_pg_has_no_such_limit() {
    let s = Sandbox::start();
    create(&s, "shared-kafka", "kafka");
    create(&s, "shared-pg", "pg");
    wait_running(&s, "shared-kafka");
    wait_running(&s, "shared-pg");
    let add = |svc: &str, i: usize| {
        s.api(
            "POST",
            &format!("{}/user", svc_path(svc)),
            Some(json!({"username": format!("run{i}")})),
        )
    };
    // avnadmin is the first of the 50.
    for i in 2..=50 {
        ok(add("shared-kafka", i));
    }
    let (status, body) = add("shared-kafka", 51);
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["errors"][0]["error_code"],
        "service_user_limit_reached"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("maximum of 50 users"),
        "{body}"
    );
    // Deleting one frees a place.
    ok(s.api(
        "DELETE",
        &format!("{}/user/run2", svc_path("shared-kafka")),
        None,
    ));
    ok(add("shared-kafka", 51));
    // PostgreSQL is exempt.
    for i in 2..=55 {
        ok(add("shared-pg", i));
    }
}

fn power(s: &Sandbox, name: &str, on: bool) -> Value {
    ok(s.api("PUT", &svc_path(name), Some(json!({"powered": on}))))
}

#[test]
fn power_off_and_on_keeps_postgres_data_and_users_but_not_valkey_data() {
    let s = real_sandbox();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = ca_dir.path().join("ca.pem");
    std::fs::write(&ca, &s.ca_pem).unwrap();
    for (name, ty) in [("p-pg", "pg"), ("p-kv", "valkey"), ("p-kafka", "kafka")] {
        create(&s, name, ty);
    }
    let pg_svc = wait_running(&s, "p-pg");
    let kv = wait_running(&s, "p-kv");
    wait_running(&s, "p-kafka");
    let pg = Pg::of(&pg_svc);
    let admin = user_password(&pg_svc, "avnadmin");
    pg.ok(
        "avnadmin",
        &admin,
        "defaultdb",
        "create table kept (x int); insert into kept values (42)",
    );
    let app = ok(s.api(
        "POST",
        &format!("{}/user", svc_path("p-pg")),
        Some(json!({"username": "app"})),
    ))["user"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    let kv_admin = user_password(&kv, "default");
    let worker = ok(s.api(
        "POST",
        &format!("{}/user", svc_path("p-kv")),
        Some(json!({"username": "worker", "access_control": {"valkey_acl_keys": ["w:*"], "valkey_acl_categories": ["+@all"]}})),
    ))["user"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        redis(&kv, &ca, "worker", &worker, &["SET", "w:1", "v"]),
        "OK"
    );
    ok(s.api(
        "POST",
        &format!("{}/topic", svc_path("p-kafka")),
        Some(json!({"topic_name": "run1.events", "partitions": 1, "replication": 2})),
    ));
    ok(s.api(
        "POST",
        &format!("{}/user", svc_path("p-kafka")),
        Some(json!({"username": "run1"})),
    ));
    ok(s.api(
        "POST",
        &format!("{}/acl", svc_path("p-kafka")),
        Some(json!({"permission": "readwrite", "topic": "run1.*", "username": "run1"})),
    ));

    for name in ["p-pg", "p-kv", "p-kafka"] {
        assert_eq!(power(&s, name, false)["service"]["state"], "POWEROFF");
    }
    // Nothing is left serving: the servers stop as the API answers (shutting down takes
    // them a moment, as the VMs take theirs on Aiven).
    let gone = |check: &dyn Fn() -> (bool, String)| {
        let start = Instant::now();
        loop {
            let (refused, said) = check();
            if refused {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "still serving: {said}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    gone(&|| {
        let off = pg.sql("avnadmin", &admin, "defaultdb", "select 1");
        (
            !off.ok && off.stderr.contains("Connection refused"),
            off.stderr,
        )
    });
    gone(&|| {
        let reply = redis(&kv, &ca, "default", &kv_admin, &["PING"]);
        (reply.contains("Connection refused"), reply)
    });

    for name in ["p-pg", "p-kv", "p-kafka"] {
        assert_eq!(power(&s, name, true)["service"]["state"], "REBUILDING");
    }
    let pg_svc = wait_running(&s, "p-pg");
    let kv = wait_running(&s, "p-kv");
    wait_running(&s, "p-kafka");
    // PostgreSQL comes back with its data and users.
    let pg = Pg::of(&pg_svc);
    assert_eq!(
        pg.ok("avnadmin", &admin, "defaultdb", "select x from kept"),
        "42"
    );
    assert_eq!(
        pg.ok("app", &app, "defaultdb", "select current_user"),
        "app"
    );
    // Valkey comes back empty, with its users and their ACLs.
    assert_eq!(redis(&kv, &ca, "default", &kv_admin, &["DBSIZE"]), "0");
    assert_eq!(redis(&kv, &ca, "worker", &worker, &["GET", "w:1"]), "");
    assert_eq!(
        redis(&kv, &ca, "worker", &worker, &["SET", "w:2", "v"]),
        "OK"
    );
    assert!(redis(&kv, &ca, "worker", &worker, &["GET", "x"]).starts_with("NOPERM"));
    // Kafka keeps topics, users and ACLs (restored from config backups).
    let topics = ok(s.api("GET", &format!("{}/topic", svc_path("p-kafka")), None));
    assert_eq!(topics["topics"][0]["topic_name"], "run1.events");
    let user = s.api("GET", &format!("{}/user/run1", svc_path("p-kafka")), None);
    assert_eq!(user.0, 200, "{}", user.1);
    let acls = ok(s.api("GET", &format!("{}/acl", svc_path("p-kafka")), None));
    assert!(
        acls["acl"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["topic"] == "run1.*" && a["username"] == "run1"),
        "{acls}"
    );
}

#[test]
fn a_power_on_takes_twice_the_provisioning_delay_unless_configured() {
    let s = Sandbox::with(aiven_sandbox::Config {
        provisioning_delay: Duration::from_millis(400),
        ..fast_config()
    });
    create(&s, "slow", "pg");
    wait_running(&s, "slow");
    power(&s, "slow", false);
    let started = Instant::now();
    power(&s, "slow", true);
    wait_running(&s, "slow");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    let s = Sandbox::with(aiven_sandbox::Config {
        provisioning_delay: Duration::from_secs(30),
        power_on_delay: Some(Duration::from_millis(100)),
        ..fast_config()
    });
    create(&s, "quick", "pg");
    let (_, v) = s.api("GET", &svc_path("quick"), None);
    assert_eq!(v["service"]["state"], "REBUILDING");
    power(&s, "quick", false);
    let started = Instant::now();
    power(&s, "quick", true);
    wait_running(&s, "quick");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn tags_patch_merges_each_key_and_null_deletes_also_when_concurrent() {
    let s = std::sync::Arc::new(Sandbox::start());
    create(&s, "tagged", "pg");
    let tags = format!("{}/tags", svc_path("tagged"));
    ok(s.api(
        "PUT",
        &tags,
        Some(json!({"tags": {"keep": "1", "drop": "2"}})),
    ));
    ok(s.api(
        "PATCH",
        &tags,
        Some(json!({"tags": {"drop": null, "new": "3"}})),
    ));
    assert_eq!(
        ok(s.api("GET", &tags, None))["tags"],
        json!({"keep": "1", "new": "3"})
    );
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            let tags = tags.clone();
            std::thread::spawn(move || {
                ok(s.api(
                    "PATCH",
                    &tags,
                    Some(json!({"tags": {format!("run{i}"): format!("{i}"), "new": null}})),
                ));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let got = ok(s.api("GET", &tags, None))["tags"].clone();
    let mut want = serde_json::Map::new();
    want.insert("keep".into(), json!("1"));
    for i in 0..16 {
        want.insert(format!("run{i}"), json!(format!("{i}")));
    }
    assert_eq!(got, Value::Object(want));
}
