//! A run's tenancy in a shared PostgreSQL service, over SQL as the admin user (the API's
//! database create has no owner, and the admin user is not a superuser):
//!
//! - a role `run-<id>` with a password and a connection limit, its comment naming the
//!   run and its owner (how teardown knows the role is the run's);
//! - `GRANT role TO admin`, which `CREATE DATABASE ... OWNER role` needs (PostgreSQL 16
//!   asks that the creator can `SET ROLE` to the owner);
//! - the databases `run-<id>_<db>` (or `run-<id>` when the manifest lists none), owned
//!   by the role, cloned from the seed template when there is one and from `template0`
//!   otherwise (never from `template1`, where runs may plant objects), with CONNECT and
//!   TEMP revoked from PUBLIC: no other run's role can connect to them.
//!
//! The admin works from a database of its own ([`ADMIN_DB`]), in sessions whose names
//! resolve in `pg_catalog` only ([`sql::Session::Admin`]).

use std::time::{Duration, Instant};

use super::{Acquire, Release, Tenancy, as_tenant, user};
use crate::api::{Client, Service};
use crate::delivery::Created;
use crate::engine::seed;
use crate::manifest::ServiceSpec;
use crate::secret::Secret;
use crate::sql::{self, ident, literal};

/// Where the admin user works for what is not inside a run's database: made by this
/// tool from `template0`, CONNECT and TEMP for nobody else, its `public` the admin's. No
/// run can plant an object, hold a session or take a lock there. (`defaultdb`'s and
/// `template1`'s `public` belong to `postgres` on Aiven, with CREATE for every role
/// unless Aiven says otherwise: the admin cannot take that away.)
pub const ADMIN_DB: &str = "aiven-ephemeral-admin";

/// The comment on a run's role: `aiven-ephemeral run=<id> owner=<digest>`. Every role
/// reads every role's comment: the owner nonce is there only as a digest.
fn marker(run_id: &str, owner: &str) -> String {
    format!(
        "aiven-ephemeral run={run_id} owner={}",
        seed::digest([owner.as_bytes()])
    )
}

/// An admin session in [`ADMIN_DB`], which is made on first use.
pub async fn admin_session(
    target: &sql::Target,
    application: &str,
) -> Result<tokio_postgres::Client, String> {
    let session = sql::connect(target, ADMIN_DB, application, sql::Session::Admin).await;
    match session {
        Ok(db) => return Ok(db),
        // 3D000: invalid_catalog_name (no such database).
        Err(e) if e.code.as_deref() == Some("3D000") => {}
        Err(e) => return Err(e.to_string()),
    }
    let first = sql::connect_as(target, "defaultdb", application).await?;
    let create = format!("CREATE DATABASE {} TEMPLATE template0", ident(ADMIN_DB));
    match first.batch_execute(&create).await {
        Ok(()) => {}
        // Another run made it a moment ago (42P04 duplicate_database, or 23505 when both
        // inserted at once).
        Err(e) if matches!(sql::code(&e), Some("42P04" | "23505")) => {}
        Err(e) => return Err(format!("creating database {ADMIN_DB}: {}", sql::said(&e))),
    }
    // Every first user closes it (the one that made it may have died since); runs that
    // meet here update the same catalog row, and all but one are told "tuple
    // concurrently updated" (XX000): that one's REVOKE is as good, so try again.
    let revoke = format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", ident(ADMIN_DB));
    let mut tries = 0;
    loop {
        match first.batch_execute(&revoke).await {
            Ok(()) => break,
            Err(e) if sql::code(&e) == Some("XX000") && tries < 10 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
            }
            Err(e) => return Err(format!("closing database {ADMIN_DB}: {}", sql::said(&e))),
        }
    }
    // One connection at a time: many runs' first `up`s meet here at once.
    std::mem::drop(first);
    sql::connect_as(target, ADMIN_DB, application).await
}

/// The admin user's way in.
pub fn admin(svc: &Service, ca_pem: Option<String>) -> Result<sql::Target, String> {
    let primary = svc
        .primary_component(crate::catalogue::primary_component(&svc.service_type))
        .ok_or_else(|| format!("{} has no primary component", svc.service_name))?;
    let admin = svc
        .admin()
        .ok_or_else(|| format!("{} has no admin user", svc.service_name))?;
    Ok(sql::Target {
        host: primary.host.clone(),
        port: primary.port,
        user: admin.username.clone(),
        password: admin.password.clone().ok_or_else(|| {
            format!(
                "the API gave no password for {}'s admin user",
                svc.service_name
            )
        })?,
        ca_pem,
    })
}

/// The run's database names, in the manifest's order.
pub fn databases(spec: &ServiceSpec, tenant: &str) -> Vec<String> {
    if spec.databases.is_empty() {
        vec![tenant.to_string()]
    } else {
        spec.databases
            .iter()
            .map(|d| format!("{tenant}_{d}"))
            .collect()
    }
}

/// Connections kept free of runs for the admin: this tool's own sessions (a few runs'
/// `up` and `down` at once) and the service's operators.
const ADMIN_ROOM: i64 = 5;
/// Runs a shared service makes room for at once, each at its connection limit.
const PLANNED_RUNS: i64 = 8;

/// A run role's connection limit: the planned runs, each at its limit, leave the admin
/// its room (Hobbyist's 25 connections give each run 2, Startup-4's 100 give 11).
fn connection_limit(max_connections: i64) -> i64 {
    ((max_connections - ADMIN_ROOM) / PLANNED_RUNS).clamp(1, 20)
}

pub(super) async fn create(
    a: &Acquire<'_>,
    spec: &ServiceSpec,
    svc: &Service,
    tenant: &str,
    step: &(dyn Fn(&str) + Sync),
) -> Result<Tenancy, String> {
    let target = admin(svc, a.project_ca.clone())?;
    let db = admin_session(&target, &format!("aiven-ephemeral:{tenant}")).await?;
    let template = if spec.seed.is_empty() {
        None
    } else {
        step("seed template");
        Some(seed::template(&target, &db, spec, a.deadline).await?)
    };
    step("role");
    let max: i64 = sql::value(
        &db,
        "SELECT pg_catalog.current_setting('max_connections')::bigint",
        &[],
    )
    .await
    .unwrap_or(100);
    let limit = connection_limit(max);
    let password = sql::password();
    let exists: bool = sql::value(
        &db,
        "SELECT count(*) > 0 FROM pg_catalog.pg_roles WHERE rolname = $1",
        &[&tenant],
    )
    .await?;
    // The role, its comment and the admin's membership at once: a role of a run always
    // carries its marker. (A resumed run's role only gets a new password.)
    let role = if exists {
        format!(
            "ALTER ROLE {r} PASSWORD {pw}",
            r = ident(tenant),
            pw = literal(&sql::scram(&password)),
        )
    } else {
        format!(
            "BEGIN; CREATE ROLE {r} LOGIN PASSWORD {pw} CONNECTION LIMIT {limit}; COMMENT ON ROLE {r} IS {m}; GRANT {r} TO CURRENT_USER; COMMIT",
            r = ident(tenant),
            pw = literal(&sql::scram(&password)),
            m = literal(&marker(a.run_id, a.owner)),
        )
    };
    db.batch_execute(&role)
        .await
        .map_err(|e| format!("creating role {tenant}: {}", sql::said(&e)))?;
    let names = databases(spec, tenant);
    for (i, name) in names.iter().enumerate() {
        step(&format!("databases {i}/{}", names.len()));
        let present: bool = sql::value(
            &db,
            "SELECT count(*) > 0 FROM pg_catalog.pg_database WHERE datname = $1",
            &[name],
        )
        .await?;
        if !present {
            let from = template.as_deref().unwrap_or("template0");
            let create = format!(
                "CREATE DATABASE {} OWNER {} TEMPLATE {}",
                ident(name),
                ident(tenant),
                ident(from)
            );
            clone_patiently(&db, &create, a.deadline)
                .await
                .map_err(|e| format!("creating database {name}: {e}"))?;
        }
        db.batch_execute(&format!(
            "REVOKE ALL ON DATABASE {} FROM PUBLIC",
            ident(name)
        ))
        .await
        .map_err(|e| format!("revoking CONNECT on {name} from PUBLIC: {}", sql::said(&e)))?;
        if let Some(t) = &template {
            seed::hand_over(&target, name, t, tenant).await?;
        }
    }
    if let Some(t) = &template {
        seed::used(&db, t).await;
    }
    let mut run_spec = spec.clone();
    run_spec.databases = names;
    Ok(Tenancy {
        service: as_tenant(svc.clone(), user(tenant, Secret::new(password))),
        spec: run_spec,
        created: Created::default(),
    })
}

/// `CREATE DATABASE ... TEMPLATE` fails while anyone is connected to the template (a
/// concurrent clone's brief look, a builder finishing): tried again for a while.
async fn clone_patiently(
    db: &tokio_postgres::Client,
    create: &str,
    deadline: Instant,
) -> Result<(), String> {
    let mut wait = Duration::from_millis(100);
    loop {
        match db.batch_execute(create).await {
            Ok(()) => return Ok(()),
            // 55006: object_in_use ("source database is being accessed by other users").
            Err(e) if sql::code(&e) == Some("55006") && Instant::now() + wait < deadline => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(sql::said(&e)),
        }
    }
}

/// Drops the run's databases and role: first ends the sessions of an abandoned create
/// (so nothing of the run lands after), then only what carries the run's marker (and,
/// given an owner, that owner's).
pub(super) async fn drop(
    client: &Client,
    project: &str,
    svc: &Service,
    r: &Release,
    tenant: &str,
    deadline: Instant,
) -> Result<(), String> {
    let target = admin(svc, crate::cache::project_ca(client, project).await.ok())?;
    let db = admin_session(&target, "aiven-ephemeral:teardown").await?;
    db.execute(
        "SELECT pg_catalog.pg_terminate_backend(pid, 5000) FROM pg_catalog.pg_stat_activity WHERE application_name = $1 AND pid <> pg_catalog.pg_backend_pid()",
        &[&format!("aiven-ephemeral:{tenant}")],
    )
    .await
    .map_err(|e| format!("ending the run's own sessions: {}", sql::said(&e)))?;
    let row = db
        .query_opt(
            "SELECT oid::bigint, coalesce(pg_catalog.shobj_description(oid, 'pg_authid'), '') FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&tenant],
        )
        .await
        .map_err(|e| sql::said(&e))?;
    let Some(row) = row else { return Ok(()) };
    let (oid, comment): (i64, String) = (row.get(0), row.get(1));
    let ours = match &r.owner {
        Some(owner) => comment == marker(&r.run_id, owner),
        None => comment.starts_with(&format!("aiven-ephemeral run={} ", r.run_id)),
    };
    if !ours {
        return Err(format!(
            "role {tenant} does not carry run {}'s marker (its comment is {comment:?}); it is left alone",
            r.run_id
        ));
    }
    let dbs: Vec<String> = sql::column(
        &db,
        "SELECT datname FROM pg_catalog.pg_database WHERE datdba = $1::bigint::oid",
        &[&oid],
    )
    .await?;
    for name in dbs {
        drop_database(&db, &name, deadline).await?;
    }
    let drop_role = format!("DROP ROLE IF EXISTS {}", ident(tenant));
    match db.batch_execute(&drop_role).await {
        Ok(()) => Ok(()),
        // 2BP01: the role still owns something (or holds a grant) in another database,
        // a run's table in defaultdb, say. It is the run's: dropped wherever it is.
        Err(e) if sql::code(&e) == Some("2BP01") => {
            drop_owned_everywhere(&target, &db, tenant).await?;
            db.batch_execute(&drop_role)
                .await
                .map_err(|e| format!("dropping role {tenant}: {}", one_line(&sql::said(&e))))
        }
        Err(e) => Err(format!(
            "dropping role {tenant}: {}",
            one_line(&sql::said(&e))
        )),
    }
}

/// A server message on one line (PostgreSQL's details span several).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `DROP OWNED BY` the run's role in every database where it owns something or holds a
/// grant. Another run may have granted it something in a database of its own and then
/// closed that database (its CONNECT revoked, connections disallowed, a limit of 0):
/// such a database is opened to the admin first (the admin acts for every run's role),
/// or the role could never be dropped.
async fn drop_owned_everywhere(
    target: &sql::Target,
    admin: &tokio_postgres::Client,
    tenant: &str,
) -> Result<(), String> {
    let rows = admin
        .query(
            "SELECT DISTINCT d.datname, \
               (NOT d.datallowconn OR d.datconnlimit <> -1 \
                  OR NOT pg_catalog.has_database_privilege(d.oid, 'CONNECT')) \
               AND pg_catalog.pg_has_role(d.datdba, 'USAGE') \
               AND pg_catalog.starts_with(o.rolname, 'run-') \
             FROM pg_catalog.pg_shdepend s \
             JOIN pg_catalog.pg_database d ON d.oid = s.dbid \
             JOIN pg_catalog.pg_roles o ON o.oid = d.datdba \
             WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass \
               AND s.refobjid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1) \
             ORDER BY 1",
            &[&tenant],
        )
        .await
        .map_err(|e| sql::said(&e))?;
    for row in rows {
        let (name, closed): (String, bool) = (row.get(0), row.get(1));
        if closed {
            let d = ident(&name);
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {d} ALLOW_CONNECTIONS true; \
                     ALTER DATABASE {d} CONNECTION LIMIT -1; \
                     GRANT CONNECT ON DATABASE {d} TO CURRENT_USER"
                ))
                .await
                .map_err(|e| format!("opening {name} to the admin: {}", sql::said(&e)))?;
        }
        let db = sql::connect_as(target, &name, "aiven-ephemeral:teardown").await?;
        db.batch_execute(&format!("DROP OWNED BY {}", ident(tenant)))
            .await
            .map_err(|e| {
                format!(
                    "dropping what {tenant} owns in {name}: {}",
                    one_line(&sql::said(&e))
                )
            })?;
    }
    Ok(())
}

/// `DROP DATABASE ... WITH (FORCE)` fails on sessions it cannot end (another user's, a
/// prepared transaction, a replication slot): said, and tried again until the deadline.
async fn drop_database(
    db: &tokio_postgres::Client,
    name: &str,
    deadline: Instant,
) -> Result<(), String> {
    let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name));
    let mut wait = Duration::from_millis(300);
    loop {
        match db.batch_execute(&statement).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let why = sql::said(&e);
                if Instant::now() + wait >= deadline {
                    return Err(format!("dropping database {name}: {why}"));
                }
                tracing::warn!("dropping database {name}: {why}; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_planned_runs_at_their_limit_leave_the_admin_its_room() {
        for max in [15, 25, 40, 100, 400] {
            let limit = super::connection_limit(max);
            assert!(limit >= 1);
            assert!(
                limit * super::PLANNED_RUNS + super::ADMIN_ROOM <= max,
                "max_connections {max}: limit {limit}"
            );
        }
        assert_eq!(super::connection_limit(25), 2);
        assert_eq!(super::connection_limit(100), 11);
    }
}
