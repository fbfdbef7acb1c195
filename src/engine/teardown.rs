//! Confirmed teardown. Every DELETE goes out at once (no waiting for creates); a 404
//! counts as deleted only for a service known to exist; a name whose create has not
//! answered is deleted again once it does, and re-checked until the create's request
//! timeout has passed; the end is confirmed with a list. A termination-protected
//! service is listed, not deleted, unless forced. What cannot be confirmed is reported
//! (exit 5).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::{Client, Retry, Service};
use crate::naming;
use crate::progress::Reporter;
use crate::signals::Signals;

/// How long teardown keeps checking that deleted services are gone from the list.
const CONFIRM_WINDOW: Duration = Duration::from_secs(60);
const RECHECK_EVERY: Duration = Duration::from_millis(1000);

/// Where a create stands, as far as this process knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// The request is out; no answer yet.
    InFlight,
    /// Answered: the service exists.
    Created,
    /// Answered: the service was never created.
    Rejected,
    /// No answer came (lost, timed out) at this instant: the API may still act on it.
    Lost(Instant),
}

/// A service to delete.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// Known to exist (its create was answered, or it was listed): a 404 means gone.
    pub exists: bool,
    /// A 404 may be a create the API has not processed yet, until this instant.
    pub recheck_until: Option<Instant>,
    /// A create of this process that has not answered yet: teardown waits for it.
    pub create: Option<watch::Receiver<Create>>,
}

impl Target {
    pub fn existing(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            exists: true,
            recheck_until: None,
            create: None,
        }
    }
}

/// Which protected services `--force` may unprotect: those whose tags say this.
#[derive(Debug, Clone)]
pub enum Force {
    No,
    /// Services tagged with this owner nonce.
    Owner(String),
    /// Services tagged with this run id.
    Run(String),
    /// Any service carrying this tool's tags (`reap --force`).
    Ours,
}

impl Force {
    fn allows(&self, svc: &Service) -> bool {
        match self {
            Force::No => false,
            Force::Owner(o) => svc.tag(naming::TAG_OWNER) == Some(o),
            Force::Run(r) => svc.tag(naming::TAG_RUN) == Some(r),
            Force::Ours => naming::is_ours(&svc.tags),
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub deleted: Vec<String>,
    /// Protected against termination and not forced: left in place.
    pub protected: Vec<String>,
    /// Not confirmed deleted, with the last reason.
    pub failed: Vec<(String, String)>,
}

impl Report {
    pub fn complete(&self) -> bool {
        self.protected.is_empty() && self.failed.is_empty()
    }

    pub fn unconfirmed(&self) -> Vec<String> {
        let mut names: Vec<String> = self.protected.clone();
        names.extend(self.failed.iter().map(|(n, _)| n.clone()));
        names.sort();
        names
    }
}

enum Outcome {
    Deleted,
    NotFound,
    Protected,
    Failed(String),
}

async fn delete_one(client: &Client, project: &str, name: &str, force: &Force) -> Outcome {
    match client.delete_service(project, name, Retry::Teardown).await {
        Ok(()) => Outcome::Deleted,
        Err(e) if e.is_not_found() => Outcome::NotFound,
        Err(e) if e.is_termination_protected() => {
            unprotect_and_delete(client, project, name, force).await
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

async fn unprotect_and_delete(
    client: &Client,
    project: &str,
    name: &str,
    force: &Force,
) -> Outcome {
    if matches!(force, Force::No) {
        return Outcome::Protected;
    }
    let svc = match client.get_service(project, name, false).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return Outcome::NotFound,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    if !force.allows(&svc) {
        return Outcome::Protected;
    }
    tracing::warn!("{name}: clearing termination protection (--force)");
    if let Err(e) = client
        .set_termination_protection(project, name, false)
        .await
    {
        return Outcome::Failed(format!("clearing termination protection: {e}"));
    }
    match client.delete_service(project, name, Retry::Teardown).await {
        Ok(()) => Outcome::Deleted,
        Err(e) if e.is_not_found() => Outcome::NotFound,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Resolves a target whose first DELETE found nothing: waits for its create to answer,
/// then deletes until it is gone or can no longer appear. `None`: never created.
async fn settle(client: &Client, project: &str, t: &Target, force: &Force) -> Option<Outcome> {
    let mut until = t.recheck_until.unwrap_or_else(Instant::now);
    if let Some(mut create) = t.create.clone() {
        let answered = create.wait_for(|c| *c != Create::InFlight);
        let state = match tokio::time::timeout(crate::api::REQUEST_TIMEOUT * 2, answered).await {
            Ok(Ok(state)) => *state,
            _ => Create::Lost(Instant::now()),
        };
        match state {
            Create::Rejected => return None,
            Create::Lost(at) => until = until.max(at + crate::api::REQUEST_TIMEOUT),
            Create::Created | Create::InFlight => {}
        }
    }
    loop {
        match delete_one(client, project, &t.name, force).await {
            Outcome::NotFound if Instant::now() < until => tokio::time::sleep(RECHECK_EVERY).await,
            outcome => return Some(outcome),
        }
    }
}

/// Deletes every target and confirms it is gone.
pub async fn teardown(
    client: &Client,
    project: &str,
    targets: Vec<Target>,
    force: Force,
    reporter: &Reporter,
    signals: Option<&Signals>,
) -> Report {
    if targets.is_empty() {
        return Report::default();
    }
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    reporter.group(&format!("Deleting {} service(s)", targets.len()));
    let still = std::sync::Arc::new(std::sync::Mutex::new(
        names.iter().cloned().collect::<BTreeSet<String>>(),
    ));
    // Later signals never stop teardown; they are told what it is still doing.
    let watcher = signals.map(|s| {
        let mut rx = s.subscribe();
        let still = still.clone();
        tokio::spawn(async move {
            while let Ok(sig) = rx.recv().await {
                let pending: Vec<String> = still.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
                eprintln!(
                    "received {sig} during teardown; still deleting: {} (teardown is not interrupted)",
                    pending.join(", ")
                );
            }
        })
    });

    let mut report = Report::default();
    let mut pending: Vec<Target> = Vec::new();
    let mut to_confirm: BTreeSet<String> = BTreeSet::new();
    let mut wave = JoinSet::new();
    for t in targets {
        let client = client.clone();
        let project = project.to_string();
        let force = force.clone();
        wave.spawn(async move {
            let outcome = delete_one(&client, &project, &t.name, &force).await;
            (t, outcome)
        });
    }
    while let Some(joined) = wave.join_next().await {
        let Ok((t, outcome)) = joined else { continue };
        match outcome {
            Outcome::Deleted => {
                reporter.service(&t.name, "deleting");
                to_confirm.insert(t.name.clone());
            }
            Outcome::NotFound if t.exists && t.create.is_none() => {
                to_confirm.insert(t.name.clone());
            }
            Outcome::NotFound => pending.push(t),
            Outcome::Protected => {
                reporter.warn(format!(
                    "{}: termination protection is on; not deleted (someone set it on purpose; `down --force` clears it)",
                    t.name
                ));
                report.protected.push(t.name.clone());
            }
            Outcome::Failed(e) => {
                to_confirm.insert(t.name.clone());
                report.failed.push((t.name.clone(), e));
            }
        }
    }

    // Creates still in flight: wait for their answer, then delete again. Names whose
    // create never answered: re-check until the request could no longer land.
    let mut rechecks = JoinSet::new();
    for t in pending {
        let client = client.clone();
        let project = project.to_string();
        let force = force.clone();
        rechecks.spawn(async move {
            let outcome = settle(&client, &project, &t, &force).await;
            (t.name, outcome)
        });
    }
    while let Some(joined) = rechecks.join_next().await {
        let Ok((name, outcome)) = joined else {
            continue;
        };
        match outcome {
            Some(Outcome::Protected) => report.protected.push(name),
            Some(Outcome::Failed(e)) => {
                to_confirm.insert(name.clone());
                report.failed.push((name, e));
            }
            Some(_) => {
                to_confirm.insert(name);
            }
            // The create was refused: there is nothing to delete.
            None => {
                report.deleted.push(name.clone());
                still
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&name);
            }
        }
    }

    // Confirm with a list; delete again whatever is still there.
    let confirm_until = Instant::now() + CONFIRM_WINDOW;
    loop {
        match client.list_services_with(project, Retry::Teardown).await {
            Ok(list) => {
                let present: BTreeSet<&str> =
                    list.iter().map(|s| s.service_name.as_str()).collect();
                let remaining: Vec<String> = to_confirm
                    .iter()
                    .filter(|n| present.contains(n.as_str()))
                    .cloned()
                    .collect();
                for gone in to_confirm.iter().filter(|n| !present.contains(n.as_str())) {
                    report.failed.retain(|(n, _)| n != gone);
                    if !report.deleted.contains(gone) {
                        report.deleted.push(gone.clone());
                        reporter.service_done(gone, "deleted");
                    }
                    still.lock().unwrap_or_else(|e| e.into_inner()).remove(gone);
                }
                if remaining.is_empty() {
                    break;
                }
                if Instant::now() >= confirm_until {
                    for name in remaining {
                        if !report.failed.iter().any(|(n, _)| *n == name) {
                            report
                                .failed
                                .push((name, "still listed after DELETE".into()));
                        }
                    }
                    break;
                }
                for name in &remaining {
                    if let Outcome::Failed(e) = delete_one(client, project, name, &force).await {
                        report.failed.retain(|(n, _)| n != name);
                        report.failed.push((name.clone(), e));
                    }
                }
                to_confirm = remaining.into_iter().collect();
                tokio::time::sleep(RECHECK_EVERY).await;
            }
            Err(e) if Instant::now() < confirm_until => {
                tracing::warn!("confirming teardown: {e}; retrying");
                tokio::time::sleep(RECHECK_EVERY).await;
            }
            Err(e) => {
                for name in &to_confirm {
                    if !report.failed.iter().any(|(n, _)| n == name) {
                        report
                            .failed
                            .push((name.clone(), format!("could not confirm: {e}")));
                    }
                }
                break;
            }
        }
    }
    if let Some(w) = watcher {
        w.abort();
    }
    reporter.end_group();
    report.deleted.sort();
    report
}
