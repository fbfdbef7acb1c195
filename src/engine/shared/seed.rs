//! Seeds: SQL files applied once the databases exist. On a dedicated service they run in
//! the first database. On a shared one they build, once, a template database named by
//! a hash of the files' contents; each run clones it (`CREATE DATABASE ... TEMPLATE`,
//! milliseconds where replaying the files takes seconds). Builders are serialised by an
//! advisory lock; a build that died half-way is found (no `ready` mark) and redone; a
//! changed file makes a new template, and `reap` drops templates nobody clones.
//!
//! Inside the template the seed's objects belong to a role of their own
//! (`aiven-ephemeral-seed-<hash>`); in each clone they are handed to the run's role
//! (`REASSIGN OWNED`), so the run owns its tables as if it had made them.

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
        .map(|f| {
            std::fs::read_to_string(&f.path)
                .map(|text| (f.path.display().to_string(), text))
                .map_err(|e| format!("reading seed file {}: {e}", f.path.display()))
        })
        .collect()
}

/// The first 16 hex digits of SHA-256 over the files' contents (each length-prefixed,
/// so that moving text between files changes it).
pub fn hash(files: &[(String, String)]) -> String {
    let mut h = Sha256::new();
    for (_, text) in files {
        h.update((text.len() as u64).to_be_bytes());
        h.update(text.as_bytes());
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
    let db = sql::connect_as(target, database, "aiven-ephemeral:seed").await?;
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

/// The ready template for the spec's seed files, built now if nobody has yet.
/// `admin` is the caller's admin session (on `defaultdb`); `target` opens the one
/// that builds inside the template.
pub async fn template(
    target: &sql::Target,
    admin: &tokio_postgres::Client,
    spec: &ServiceSpec,
    deadline: Instant,
) -> Result<String, String> {
    let files = read(spec)?;
    let hash = hash(&files);
    let name = format!("{TEMPLATE_PREFIX}{hash}");
    let lock_key = i64::from_str_radix(&hash[..15], 16).unwrap_or(0);
    // Serialises builders of this template across runs and machines; the lock goes with
    // the session if this process dies.
    let locked = tokio::time::timeout_at(
        deadline.into(),
        admin.execute("SELECT pg_advisory_lock($1)", &[&lock_key]),
    )
    .await
    .map_err(|_| format!("waiting for another run to build template {name}: timed out"))?;
    locked.map_err(|e| sql::said(&e))?;
    let built = ready_or_build(target, admin, &name, &hash, &files).await;
    if let Err(e) = admin
        .execute("SELECT pg_advisory_unlock($1)", &[&lock_key])
        .await
    {
        tracing::warn!("unlocking template {name}: {}", sql::said(&e));
    }
    built.map(|()| name)
}

/// Under the lock: the template is ready, or is built now.
async fn ready_or_build(
    target: &sql::Target,
    admin: &tokio_postgres::Client,
    name: &str,
    hash: &str,
    files: &[(String, String)],
) -> Result<(), String> {
    let role = format!("{SEED_ROLE_PREFIX}{hash}");
    let state: Option<String> = sql::column(
        admin,
        "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $1",
        &[&name],
    )
    .await?
    .pop();
    match state {
        Some(comment) if comment.starts_with(READY) => return Ok(()),
        // A build that died half-way: its database is incomplete.
        Some(_) => admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", ident(name)))
            .await
            .map_err(|e| format!("dropping an unfinished template {name}: {}", sql::said(&e)))?,
        None => {}
    }
    tracing::info!("building seed template {name}");
    let role_exists: bool = sql::value(
        admin,
        "SELECT count(*) > 0 FROM pg_roles WHERE rolname = $1",
        &[&role],
    )
    .await?;
    if !role_exists {
        admin
            .batch_execute(&format!(
                "BEGIN; CREATE ROLE {r} NOLOGIN; GRANT {r} TO CURRENT_USER; COMMIT",
                r = ident(&role)
            ))
            .await
            .map_err(|e| format!("creating seed role {role}: {}", sql::said(&e)))?;
    }
    // One statement a call: CREATE DATABASE cannot share a (implicit) transaction.
    // No run's role may connect to the template: what it left there would be in every
    // later clone, and a session on it stalls every clone.
    for statement in [
        format!("CREATE DATABASE {}", ident(name)),
        format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", ident(name)),
        format!(
            "GRANT CREATE ON DATABASE {} TO {}",
            ident(name),
            ident(&role)
        ),
    ] {
        admin
            .batch_execute(&statement)
            .await
            .map_err(|e| format!("creating template {name}: {}", sql::said(&e)))?;
    }
    {
        let tpl = sql::connect_as(target, name, "aiven-ephemeral:seed").await?;
        tpl.batch_execute(&format!(
            "GRANT USAGE, CREATE ON SCHEMA public TO {r}; SET ROLE {r}",
            r = ident(&role)
        ))
        .await
        .map_err(|e| format!("preparing template {name}: {}", sql::said(&e)))?;
        for (path, text) in files {
            tpl.batch_execute(text)
                .await
                .map_err(|e| failed(path, text, &e))?;
        }
        // The session ends here: nobody may be connected to a template that is cloned.
    }
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
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
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

/// In a fresh clone: the seed's objects become the run's, and the seed role keeps no
/// rights there.
pub async fn hand_over(target: &sql::Target, database: &str, tenant: &str) -> Result<(), String> {
    let db = sql::connect_as(target, database, &format!("aiven-ephemeral:{tenant}")).await?;
    let roles: Vec<String> = sql::column(
        &db,
        "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)",
        &[&SEED_ROLE_PREFIX],
    )
    .await?;
    for role in roles {
        // Only roles the admin can act for (every seed role this tool made).
        db.batch_execute(&format!(
            "REASSIGN OWNED BY {s} TO {t}; REVOKE ALL ON SCHEMA public FROM {s}",
            s = ident(&role),
            t = ident(tenant)
        ))
        .await
        .map_err(|e| {
            format!(
                "handing the seeded objects of {database} to {tenant}: {}",
                sql::said(&e)
            )
        })?;
    }
    Ok(())
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
            "SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE starts_with(datname, $1)",
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
