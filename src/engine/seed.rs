//! Seeds: SQL files applied once the databases exist. On a dedicated service they run in
//! the first database. On a shared one they build, once, a template database named by
//! a hash of the files' contents; each run clones it (`CREATE DATABASE ... TEMPLATE`,
//! milliseconds where replaying the files takes seconds). Builders are serialised by an
//! advisory lock in the admin's own database (no run can take it); a build that died
//! half-way is found (no `ready` mark) and redone, or dropped by `reap`; a changed file
//! makes a new template, and `reap` drops templates nobody clones.
//!
//! A seed is run by a role of its own (`aiven-ephemeral-seed-<hash>`), logged in as
//! itself: a plain role with no CREATEROLE or CREATEDB, which can act on nothing but the
//! template (`RESET ROLE` leaves it what it is). It may log in only while it builds; it
//! owns the seed's objects in the template, and in each clone they are handed to the
//! run's role (`REASSIGN OWNED`), so the run owns its tables as if it had made them.

use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::manifest::ServiceSpec;
use crate::sql::{self, ident, literal};

/// Every template's name starts so (`reap` finds them by it).
pub const TEMPLATE_PREFIX: &str = "aiven-ephemeral-tpl-";
const SEED_ROLE_PREFIX: &str = "aiven-ephemeral-seed-";
/// A template's comment: `aiven-ephemeral template ready used=<RFC 3339>`.
pub const READY: &str = "aiven-ephemeral template ready used=";

/// The seed files' contents, in order.
fn read(spec: &ServiceSpec) -> Result<Vec<(String, String)>, String> {
    spec.seed
        .iter()
        .map(|f| f.read().map(|text| (f.path.display().to_string(), text)))
        .collect()
}

/// The first 16 hex digits of SHA-256 over the files' contents (each length-prefixed,
/// so that moving text between files changes it).
pub fn hash(files: &[(String, String)]) -> String {
    digest(files.iter().map(|(_, text)| text.as_bytes()))
}

/// The first 16 hex digits of SHA-256 over the parts, each length-prefixed.
pub fn digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Applies the seed files to `database` as the admin (a dedicated service).
pub async fn apply(target: &sql::Target, spec: &ServiceSpec, database: &str) -> Result<(), String> {
    let files = read(spec)?;
    let db = sql::connect(target, database, "aiven-ephemeral:seed", sql::Session::Code)
        .await
        .map_err(|e| e.to_string())?;
    for (path, text) in &files {
        db.batch_execute(text)
            .await
            .map_err(|e| failed(path, text, &e))?;
    }
    Ok(())
}

/// A seed file's error at its line, as the server placed it.
fn failed(path: &str, text: &str, e: &tokio_postgres::Error) -> String {
    let line = e.as_db_error().and_then(|db| match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(at)) => {
            let before: String = text.chars().take(*at as usize).collect();
            Some(before.matches('\n').count() + 1)
        }
        _ => None,
    });
    match line {
        Some(n) => format!("seed file {path}:{n}: {}", sql::said(e)),
        None => format!("seed file {path}: {}", sql::said(e)),
    }
}

/// The key of the advisory lock that serialises the builders of a template. It is taken
/// in the admin's own database, which no run can enter: knowing it gives nobody the lock.
fn lock_key(hash: &str) -> i64 {
    i64::from_str_radix(&hash[..15], 16).unwrap_or(0)
}

/// The ready template for the spec's seed files, built now if nobody has yet.
/// `admin` is the caller's admin session (in the admin's own database); `target` opens
/// the admin's session inside the template, and the seed role's.
pub async fn template(
    target: &sql::Target,
    admin: &tokio_postgres::Client,
    spec: &ServiceSpec,
    deadline: Instant,
) -> Result<String, String> {
    let files = read(spec)?;
    let hash = hash(&files);
    let name = format!("{TEMPLATE_PREFIX}{hash}");
    let key = lock_key(&hash);
    // Serialises builders of this template across runs and machines; the lock goes with
    // the session if this process dies.
    let locked = tokio::time::timeout_at(
        deadline.into(),
        admin.execute("SELECT pg_catalog.pg_advisory_lock($1)", &[&key]),
    )
    .await
    .map_err(|_| format!("waiting for another run to build template {name}: timed out"))?;
    locked.map_err(|e| sql::said(&e))?;
    let built = ready_or_build(target, admin, &name, &hash, &files).await;
    if let Err(e) = admin
        .execute("SELECT pg_catalog.pg_advisory_unlock($1)", &[&key])
        .await
    {
        tracing::warn!("unlocking template {name}: {}", sql::said(&e));
    }
    built.map(|()| name)
}

/// The comment on a database, `None` if there is no such database.
async fn comment(admin: &tokio_postgres::Client, name: &str) -> Result<Option<String>, String> {
    Ok(sql::column(
        admin,
        "SELECT coalesce(pg_catalog.shobj_description(oid, 'pg_database'), '') FROM pg_catalog.pg_database WHERE datname = $1",
        &[&name],
    )
    .await?
    .pop())
}

/// Under the lock: the template is ready, or is built now.
async fn ready_or_build(
    target: &sql::Target,
    admin: &tokio_postgres::Client,
    name: &str,
    hash: &str,
    files: &[(String, String)],
) -> Result<(), String> {
    match comment(admin, name).await? {
        Some(c) if c.starts_with(READY) => return Ok(()),
        // A build that died half-way: its database is incomplete.
        Some(_) => drop_template(admin, name).await?,
        None => {}
    }
    let built = build(target, admin, name, hash, files).await;
    if built.is_err() {
        // What the failed build left (a role that may log in, half a database) is not
        // kept: the next builder starts afresh.
        if let Err(e) = drop_template(admin, name).await {
            tracing::warn!("{e}");
        }
    }
    built
}

/// Builds the template: the seed role logs in and runs the files.
async fn build(
    target: &sql::Target,
    admin: &tokio_postgres::Client,
    name: &str,
    hash: &str,
    files: &[(String, String)],
) -> Result<(), String> {
    tracing::info!("building seed template {name}");
    let role = format!("{SEED_ROLE_PREFIX}{hash}");
    // Known only to this process, for this build; sent as a verifier.
    let password = sql::password();
    let verifier = literal(&sql::scram(&password));
    let r = ident(&role);
    let exists: bool = sql::value(
        admin,
        "SELECT count(*) > 0 FROM pg_catalog.pg_roles WHERE rolname = $1",
        &[&role],
    )
    .await?;
    let login = if exists {
        format!("ALTER ROLE {r} LOGIN PASSWORD {verifier} CONNECTION LIMIT 1")
    } else {
        format!(
            "BEGIN; CREATE ROLE {r} LOGIN PASSWORD {verifier} CONNECTION LIMIT 1; GRANT {r} TO CURRENT_USER; COMMIT"
        )
    };
    admin
        .batch_execute(&login)
        .await
        .map_err(|e| format!("creating seed role {role}: {}", sql::said(&e)))?;
    // One statement a call: CREATE DATABASE cannot share a (implicit) transaction. From
    // template0, never template1: whatever anyone left in template1 is not in the seed.
    // No run's role may connect to the template: what it left there would be in every
    // later clone, and a session on it stalls every clone.
    let d = ident(name);
    for statement in [
        format!("CREATE DATABASE {d} TEMPLATE template0"),
        format!("REVOKE ALL ON DATABASE {d} FROM PUBLIC"),
        format!("GRANT CONNECT, CREATE, TEMP ON DATABASE {d} TO {r}"),
    ] {
        admin
            .batch_execute(&statement)
            .await
            .map_err(|e| format!("creating template {name}: {}", sql::said(&e)))?;
    }
    {
        let tpl = sql::connect_as(target, name, "aiven-ephemeral:seed").await?;
        tpl.batch_execute(&format!("GRANT USAGE, CREATE ON SCHEMA public TO {r}"))
            .await
            .map_err(|e| format!("preparing template {name}: {}", sql::said(&e)))?;
    }
    {
        let as_seed = sql::Target {
            user: role.clone(),
            password: crate::secret::Secret::new(password),
            ..target.clone()
        };
        let tpl = sql::connect(&as_seed, name, "aiven-ephemeral:seed", sql::Session::Code)
            .await
            .map_err(|e| e.to_string())?;
        for (path, text) in files {
            tpl.batch_execute(text)
                .await
                .map_err(|e| failed(path, text, &e))?;
        }
        // The session ends here: nobody may be connected to a template that is cloned.
    }
    admin
        .batch_execute(&format!("ALTER ROLE {r} NOLOGIN PASSWORD NULL"))
        .await
        .map_err(|e| format!("closing seed role {role}: {}", sql::said(&e)))?;
    mark_used(admin, name).await
}

/// Notes when a template was last cloned (`reap` drops long-unused ones).
pub async fn used(admin: &tokio_postgres::Client, name: &str) {
    if let Err(e) = mark_used(admin, name).await {
        tracing::warn!("noting the use of template {name}: {e}");
    }
}

async fn mark_used(admin: &tokio_postgres::Client, name: &str) -> Result<(), String> {
    let now: String = sql::value(
        admin,
        "SELECT pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
        &[],
    )
    .await?;
    admin
        .batch_execute(&format!(
            "COMMENT ON DATABASE {} IS {}",
            ident(name),
            literal(&format!("{READY}{now}"))
        ))
        .await
        .map_err(|e| sql::said(&e))
}

/// In a fresh clone of `template`: the seed's objects become the run's, and the seed
/// role keeps no rights there.
pub async fn hand_over(
    target: &sql::Target,
    database: &str,
    template: &str,
    tenant: &str,
) -> Result<(), String> {
    let Some(hash) = template.strip_prefix(TEMPLATE_PREFIX) else {
        return Ok(());
    };
    let db = sql::connect_as(target, database, &format!("aiven-ephemeral:{tenant}")).await?;
    // DROP OWNED after REASSIGN OWNED: what is left are the seed role's grants and default
    // privileges, which would keep the role from being dropped.
    db.batch_execute(&format!(
        "REASSIGN OWNED BY {s} TO {t}; DROP OWNED BY {s}",
        s = ident(&format!("{SEED_ROLE_PREFIX}{hash}")),
        t = ident(tenant)
    ))
    .await
    .map_err(|e| {
        format!(
            "handing the seeded objects of {database} to {tenant}: {}",
            sql::said(&e)
        )
    })
}

/// A template on a shared service: its name and when it was last cloned.
pub struct Template {
    pub name: String,
    pub used: Option<time::OffsetDateTime>,
}

/// The templates on a shared service.
pub async fn list(admin: &tokio_postgres::Client) -> Result<Vec<Template>, String> {
    let rows = admin
        .query(
            "SELECT datname, coalesce(pg_catalog.shobj_description(oid, 'pg_database'), '') FROM pg_catalog.pg_database WHERE pg_catalog.starts_with(datname, $1)",
            &[&TEMPLATE_PREFIX],
        )
        .await
        .map_err(|e| sql::said(&e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let comment: String = r.get(1);
            Template {
                name: r.get(0),
                used: comment.strip_prefix(READY).and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                }),
            }
        })
        .collect())
}

/// What failed builds left: unfinished templates nobody is building (their lock is
/// free) and seed roles whose template is gone. Dropped unless `dry_run`; their names.
pub async fn leftovers(
    admin: &tokio_postgres::Client,
    dry_run: bool,
) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    for t in list(admin).await?.into_iter().filter(|t| t.used.is_none()) {
        let Some(hash) = t.name.strip_prefix(TEMPLATE_PREFIX) else {
            continue;
        };
        let key = lock_key(hash);
        let free: bool =
            sql::value(admin, "SELECT pg_catalog.pg_try_advisory_lock($1)", &[&key]).await?;
        if !free {
            continue;
        }
        let dropped = if dry_run {
            Ok(())
        } else {
            drop_template(admin, &t.name).await
        };
        if let Err(e) = admin
            .execute("SELECT pg_catalog.pg_advisory_unlock($1)", &[&key])
            .await
        {
            tracing::warn!("unlocking template {}: {}", t.name, sql::said(&e));
        }
        dropped?;
        found.push(t.name);
    }
    let orphans: Vec<String> = sql::column(
        admin,
        "SELECT r.rolname FROM pg_catalog.pg_roles r WHERE pg_catalog.starts_with(r.rolname, $1) \
         AND NOT EXISTS (SELECT FROM pg_catalog.pg_database d \
           WHERE d.datname = $2 || pg_catalog.substr(r.rolname, pg_catalog.length($1) + 1))",
        &[&SEED_ROLE_PREFIX, &TEMPLATE_PREFIX],
    )
    .await?;
    for role in orphans {
        if !dry_run
            && let Err(e) = admin
                .batch_execute(&format!("DROP ROLE IF EXISTS {}", ident(&role)))
                .await
        {
            // Still owning objects in a clone whose hand-over never ran (its run dies
            // with its databases, and the next sweep drops the role).
            tracing::warn!("seed role {role} stays: {}", sql::said(&e));
            continue;
        }
        found.push(role);
    }
    Ok(found)
}

/// Drops a template and its seed role (the role only once no clone still needs it).
pub async fn drop_template(admin: &tokio_postgres::Client, name: &str) -> Result<(), String> {
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            ident(name)
        ))
        .await
        .map_err(|e| format!("dropping template {name}: {}", sql::said(&e)))?;
    if let Some(hash) = name.strip_prefix(TEMPLATE_PREFIX) {
        let role = format!("{SEED_ROLE_PREFIX}{hash}");
        if let Err(e) = admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {}", ident(&role)))
            .await
        {
            tracing::warn!("seed role {role} stays: {}", sql::said(&e));
        }
    }
    Ok(())
}
