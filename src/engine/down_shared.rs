//! `down --shared`: the removal of shared services of their own, refused while a run
//! holds a live lease on one. Apart from the tenancy, which it tears down like any run's
//! services.

use std::path::Path;

use time::OffsetDateTime;

use super::teardown::{self, Force, Options, Target};
use super::tenancy::standing::{live_leases, remove_command};
use crate::api::Service;
use crate::connection::Connection;
use crate::error::{Error, Result, Status};
use crate::manifest::{Manifest, Shared};
use crate::progress::Reporter;
use crate::settings;
use crate::tags;

/// `down --shared`: deletes the shared services this tool created that `--service`
/// names, or else the manifest's `shared: true` ones. Nothing is deleted while one of
/// them is refused: not created by this tool as shared, or leased by a live run
/// (unless `--force`).
pub async fn down_shared(
    global: &settings::Api,
    args: &settings::Down,
    services: &[String],
    reporter: &Reporter,
    signals: &crate::signals::Signals,
) -> Result<Status> {
    let manifest = if services.is_empty() {
        Some(crate::manifest::load(&args.run.manifest)?)
    } else {
        crate::manifest::load_if_present(&args.run.manifest)?
    };
    let names = names(manifest.as_ref(), services, &args.run.manifest, reporter)?;
    let project = global.project(manifest.as_ref())?;
    let conn = Connection::open(global, args.run.backend, &args.run.state.dir).await?;
    let listed = conn.list_services(&project).await?;
    let now = conn
        .client
        .server_time()
        .unwrap_or_else(OffsetDateTime::now_utc);
    let targets = match targets(&listed, &names, now, args.force, &project, reporter) {
        Ok(targets) => targets,
        Err(e) => {
            conn.close().await;
            return Err(e);
        }
    };
    let options = Options {
        force: Force::No,
        owner: None,
        budget: args.budget,
        releases: Vec::new(),
    };
    let report = teardown::teardown(
        &conn.client,
        &project,
        targets,
        options,
        reporter,
        Some(signals),
    )
    .await;
    conn.close().await;
    if !report.complete() {
        return Err(Error::TeardownIncomplete {
            names: report.unconfirmed(),
            command: remove_command(
                &project,
                args.run.backend.is_sandbox(),
                &report
                    .unconfirmed()
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            ),
        });
    }
    reporter.info(format!(
        "deleted {} shared service(s) in project {project}",
        report.deleted.len()
    ));
    Ok(Status::Success)
}

/// The shared services to delete: `--service`'s, else the manifest's `shared: true`
/// ones (saying that a service you manage is never deleted).
fn names(
    manifest: Option<&Manifest>,
    services: &[String],
    file: &Path,
    reporter: &Reporter,
) -> Result<Vec<String>> {
    let names: Vec<String> = match (manifest, services.is_empty()) {
        (Some(m), true) => {
            for spec in &m.services {
                if let Some(Shared::Existing(name)) = &spec.shared {
                    reporter.info(format!(
                        "{name} (services.{}): a service you manage; never deleted by aiven-ephemeral",
                        spec.key
                    ));
                }
            }
            m.services
                .iter()
                .filter(|s| matches!(s.shared, Some(Shared::Managed)))
                .map(|s| s.service_name(&m.name_prefix, "x").map_err(Error::usage))
                .collect::<Result<_>>()?
        }
        _ => services.to_vec(),
    };
    if names.is_empty() {
        return Err(Error::usage_hint(
            format!(
                "{} has no `shared: true` service: nothing to delete",
                file.display()
            ),
            "name the services with --service NAME",
        ));
    }
    Ok(names)
}

/// The listed services among `names`; nothing if one of them is refused: not created
/// by this tool as shared, or leased by a live run (unless `force`).
fn targets(
    listed: &[Service],
    names: &[String],
    now: OffsetDateTime,
    force: bool,
    project: &str,
    reporter: &Reporter,
) -> Result<Vec<Target>> {
    let mut targets = Vec::new();
    let (mut not_ours, mut leased) = (Vec::new(), Vec::new());
    for name in names {
        let Some(svc) = listed.iter().find(|s| &s.service_name == name) else {
            reporter.info(format!(
                "{name}: not in project {project}; nothing to delete"
            ));
            continue;
        };
        if svc.tag(tags::TAG_SHARED).is_none() {
            not_ours.push(format!(
                "{name} is not a shared service aiven-ephemeral created (no {} tag); it is left alone",
                tags::TAG_SHARED
            ));
            continue;
        }
        let live = live_leases(svc, now);
        if !live.is_empty() && !force {
            leased.push(format!(
                "{name}: run(s) {} hold a live lease on it",
                live.join(", ")
            ));
            continue;
        }
        if !live.is_empty() {
            reporter.warn(format!(
                "{name}: --force: deleting it under run(s) {}, which lose everything in it",
                live.join(", ")
            ));
        }
        targets.push(Target::existing(name.clone()));
    }
    if !not_ours.is_empty() || !leased.is_empty() {
        let hint = [
            (!not_ours.is_empty()).then_some(
                "a service you manage is yours to delete (the console, or `avn service terminate NAME`)",
            ),
            (!leased.is_empty()).then_some(
                "wait for those runs to end (`aiven-ephemeral reap` releases expired leases), or pass --force to delete it under them",
            ),
        ];
        return Err(Error::usage_hint(
            format!(
                "not deleting anything: {}",
                not_ours
                    .iter()
                    .chain(&leased)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            hint.into_iter().flatten().collect::<Vec<_>>().join("; "),
        ));
    }
    Ok(targets)
}
