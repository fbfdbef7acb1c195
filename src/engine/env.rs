//! `env`'s work with the API: a live run's credentials, read again (the files are the
//! command's to write).

use std::collections::BTreeMap;

use super::locate::RunRef;
use crate::api::Service;
use crate::delivery::Created;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, ServiceSpec};
use crate::tags;

/// Each manifest service as the API has it, with its users' credentials, and the
/// project's CA.
pub struct Credentials<'m> {
    pub services: Vec<(&'m ServiceSpec, Service, Created)>,
    pub ca: String,
}

/// Reads the run's credentials; a shared service's are not the API's to give.
pub async fn credentials<'m>(run: &RunRef, manifest: &'m Manifest) -> Result<Credentials<'m>> {
    let client = &run.conn.client;
    let project = &run.project;
    let listed = run.services().await?;
    let mut services = Vec::new();
    for spec in &manifest.services {
        if spec.shared.is_some() {
            return Err(Error::usage_hint(
                format!(
                    "services.{} is shared: the run's own credentials there exist only in the env file `up` wrote (the API never shows them), so `env` cannot rebuild them",
                    spec.key
                ),
                "hand the env file to later jobs (a CI artifact), or run the tests in the job that ran `up`",
            ));
        }
        let svc = listed
            .iter()
            .find(|s| s.tag(tags::TAG_KEY) == Some(spec.key.as_str()))
            .ok_or_else(|| {
                Error::usage(format!(
                    "run {} has no live service for services.{} (was it torn down?)",
                    run.key.run_id, spec.key
                ))
            })?;
        let full = client
            .get_service(project, &svc.service_name, true)
            .await
            .map_err(|e| Error::api(format!("reading {}", svc.service_name), e))?;
        let mut users = BTreeMap::new();
        for user in &spec.users {
            let u = client
                .get_user(project, &svc.service_name, user)
                .await
                .map_err(|e| {
                    Error::api(format!("reading user {user} of {}", svc.service_name), e)
                })?;
            users.insert(user.clone(), u);
        }
        services.push((spec, full, Created { users }));
    }
    let ca = client
        .project_ca(project)
        .await
        .map_err(|e| Error::api("reading the project CA", e))?;
    Ok(Credentials { services, ca })
}
