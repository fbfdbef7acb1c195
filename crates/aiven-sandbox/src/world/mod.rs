//! The sandbox's world: projects, services and their sub-resources, with the real API's
//! validation rules and lifecycle. Pure state: it binds no port and starts no server
//! (ports come from the caller, servers from `endpoints`); the HTTP layer is in `routes`.

mod create;
mod ids;
mod model;
mod resources;
mod shape;

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::catalogue::{self, catalogue};
use crate::clock::Clock;
use crate::config::{Config, ProjectConfig};
use crate::error::{ApiError, ApiResult};
use crate::pki::Pki;
use crate::rules::{check_tags, rfc3339, valid_project_name};

pub use model::{
    Acl, Component, Persisted, Project, Serve, Service, ServiceState, Topic, User, Vpc,
};

/// The refusal as terraform-provider-aiven#506 quotes it (a 403 to a DELETE or power-off).
pub const TERMINATION_PROTECTED: &str =
    "Service is protected against termination and shutdown. Remove termination protection first.";

pub struct World {
    pub config: Config,
    pub clock: Clock,
    pub pki: Pki,
    pub projects: BTreeMap<String, Project>,
    pub rng: StdRng,
}

impl World {
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn project(&mut self, name: &str) -> ApiResult<&mut Project> {
        if !self.projects.contains_key(name)
            && self.config.accept_any_project
            && valid_project_name(name)
        {
            let now = self.now();
            let project = new_project(&ProjectConfig::named(name), &mut self.rng, now);
            self.projects.insert(name.to_string(), project);
        }
        // The code is in the spec's list of error codes; no source gives the wording,
        // and clients key on the code only.
        self.projects.get_mut(name).ok_or_else(|| {
            ApiError::new(404, format!("Project {name} does not exist")).code("project_not_found")
        })
    }

    /// A visible service, or the API's 404.
    pub fn service(&mut self, project: &str, name: &str) -> ApiResult<&mut Service> {
        let now = self.now();
        let lag = self.config.delete_lag;
        self.project(project)?
            .services
            .get_mut(name)
            .filter(|s| s.visible(now, lag))
            .ok_or_else(|| ApiError::service_not_found(name))
    }

    /// A service that sub-resource calls may act on: not deleted, past the create lag.
    fn live_service(&mut self, project: &str, name: &str) -> ApiResult<&mut Service> {
        let now = self.now();
        let create_lag = self.config.create_lag;
        let svc = self.service(project, name)?;
        if svc.deleted_at.is_some() || now < svc.create_time + create_lag {
            return Err(ApiError::service_not_found(name));
        }
        Ok(svc)
    }

    fn running_service(&mut self, project: &str, name: &str) -> ApiResult<&mut Service> {
        let svc = self.live_service(project, name)?;
        match svc.state {
            ServiceState::Running | ServiceState::Rebalancing => Ok(svc),
            // The spec's example error (its description, "Errors").
            ServiceState::Poweroff => {
                Err(ApiError::new(409, "Database not powered on").code("not_powered"))
            }
            // No source gives what the API answers here; clients key on nothing in it,
            // so it is a final 409 to them.
            ServiceState::Rebuilding => Err(ApiError::new(
                409,
                format!("Service {name} is not running yet, try again later"),
            )),
        }
    }

    /// Deletes a service. Returns whether it was live (endpoints must be stopped).
    pub fn delete_service(&mut self, project: &str, name: &str) -> ApiResult<bool> {
        let now = self.now();
        let reservation = self.config.name_reservation;
        let svc = self.service(project, name)?;
        if svc.deleted_at.is_some() {
            return Ok(false);
        }
        if svc.termination_protection {
            return Err(ApiError::new(403, TERMINATION_PROTECTED));
        }
        svc.deleted_at = Some(now);
        let project_ref = self.project(project)?;
        project_ref
            .reserved_names
            .insert(name.to_string(), now + reservation);
        Ok(true)
    }

    /// Partial update. Returns whether the service was powered off: its endpoints stop,
    /// keeping what a power-on restores (PostgreSQL's data, as from a backup).
    pub fn update_service(&mut self, project: &str, name: &str, body: &Value) -> ApiResult<bool> {
        let now = self.now();
        let svc = self.live_service(project, name)?;
        let ty = catalogue()
            .service_type(&svc.service_type)
            .expect("created with a known type");
        let mut rebuild = false;
        let mut powering_on = false;
        let mut stopped = false;
        if let Some(plan) = body.get("plan").and_then(Value::as_str)
            && plan != svc.plan
        {
            if ty.plan(plan).is_none() {
                return Err(ApiError::new(
                    400,
                    format!(
                        "Invalid plan '{plan}' for service type '{}'",
                        svc.service_type
                    ),
                ));
            }
            svc.plan = plan.to_string();
            rebuild = true;
        }
        if let Some(cloud) = body.get("cloud").and_then(Value::as_str)
            && cloud != svc.cloud
        {
            if catalogue().cloud(cloud).is_none() {
                return Err(ApiError::new(400, format!("Invalid cloud '{cloud}'")));
            }
            svc.cloud = cloud.to_string();
            rebuild = true;
        }
        if let Some(uc) = body.get("user_config").and_then(Value::as_object) {
            let mut merged = svc.user_config.as_object().cloned().unwrap_or_default();
            merged.extend(uc.clone());
            let merged = Value::Object(merged);
            catalogue::check_user_config(
                &ty.user_config_schema(&svc.service_type),
                &merged,
                "user_config",
            )
            .map_err(|m| ApiError::new(400, m).code("bad_request"))?;
            svc.user_config = merged;
        }
        if let Some(tp) = body.get("termination_protection").and_then(Value::as_bool) {
            svc.termination_protection = tp;
        }
        if let Some(powered) = body.get("powered").and_then(Value::as_bool) {
            if !powered && svc.state != ServiceState::Poweroff {
                if svc.termination_protection {
                    return Err(ApiError::new(403, TERMINATION_PROTECTED));
                }
                svc.state = ServiceState::Poweroff;
                svc.ready_at = None;
                svc.starting = false;
                stopped = true;
            } else if powered && svc.state == ServiceState::Poweroff {
                rebuild = true;
                powering_on = true;
            }
        }
        if rebuild {
            let service_type = svc.service_type.clone();
            // A power-on builds new nodes and restores them from backup.
            let delay = if powering_on {
                self.config.power_on_delay_for(&service_type)
            } else {
                self.config.delay_for(&service_type)
            };
            // A plan or cloud change rolls forward: new nodes are built beside the old
            // ones, which serve until the switch-over (the service is REBUILDING
            // meanwhile; aiven.io/docs/platform/concepts/maintenance-window, "Preparing
            // for upgrades and maintenance" in Aiven's help center). The endpoints stop
            // only when the new ones start (`Sandbox::bring_up`).
            // A service faulted never to be ready stays REBUILDING after a rebuild too.
            let ready_at = (!self.service_fault(name).never_ready).then(|| now + delay);
            let svc = self.live_service(project, name)?;
            svc.state = ServiceState::Rebuilding;
            svc.ready_at = ready_at;
            svc.starting = false;
            svc.poweroff_at = None;
            svc.failure = None;
            for node in &mut svc.nodes {
                node.running_at = ready_at;
            }
        }
        self.live_service(project, name)?.update_time = now;
        Ok(stopped)
    }

    pub fn replace_tags(
        &mut self,
        project: &str,
        name: &str,
        tags: BTreeMap<String, String>,
    ) -> ApiResult<()> {
        check_tags(&tags)?;
        let svc = self.live_service(project, name)?;
        svc.tags = tags;
        Ok(())
    }

    pub fn update_tags(
        &mut self,
        project: &str,
        name: &str,
        changes: BTreeMap<String, Option<String>>,
    ) -> ApiResult<()> {
        let svc = self.live_service(project, name)?;
        let mut tags = svc.tags.clone();
        for (k, v) in changes {
            match v {
                Some(v) => tags.insert(k, v),
                None => tags.remove(&k),
            };
        }
        check_tags(&tags)?;
        self.live_service(project, name)?.tags = tags;
        Ok(())
    }

    /// Services whose endpoints are due to start, marked as starting.
    pub fn due_to_start(&mut self) -> Vec<(String, Service)> {
        let now = self.now();
        let mut due = Vec::new();
        for (project, p) in &mut self.projects {
            for svc in p.services.values_mut() {
                if svc.deleted_at.is_none()
                    && svc.state == ServiceState::Rebuilding
                    && !svc.starting
                    && svc.ready_at.is_some_and(|t| now >= t)
                {
                    svc.starting = true;
                    due.push((project.clone(), svc.clone()));
                }
            }
        }
        due
    }

    /// A service as stored, deleted or not: for the transitions its servers drive.
    fn stored(&mut self, project: &str, name: &str) -> Option<&mut Service> {
        self.projects
            .get_mut(project)
            .and_then(|p| p.services.get_mut(name))
    }

    /// Marks a service running once its endpoints listen. The ports may have moved.
    pub fn mark_running(&mut self, project: &str, name: &str, ports: &[u16]) {
        let now = self.now();
        if let Some(svc) = self.stored(project, name)
            && svc.starting
            && svc.deleted_at.is_none()
        {
            svc.state = ServiceState::Running;
            svc.starting = false;
            svc.update_time = now;
            svc.poweroff_at = svc.poweroff_after.map(|d| now + d);
            for (component, port) in svc.components.iter_mut().zip(ports) {
                component.port = *port;
            }
            // Nodes that were due before the endpoints were up come up now.
            for node in &mut svc.nodes {
                if let Some(t) = node.running_at
                    && t < now
                {
                    node.running_at = Some(now);
                }
            }
            if svc.service_type == "pg" || svc.service_type == "mysql" {
                svc.backups = vec![json!({
                    "backup_name": format!("{}-basebackup-1", svc.name),
                    "backup_time": rfc3339(now),
                    "data_size": 33554432,
                    "storage_location": "sandbox",
                })];
            }
        }
    }

    /// Keeps what the sandbox must tell about a service's server, for its notifications.
    pub fn set_notice(&mut self, project: &str, name: &str, notice: String) {
        if let Some(svc) = self.stored(project, name) {
            svc.notice = Some(notice);
        }
    }

    /// A service whose server could not start stops, as the API's only terminal state
    /// (`POWEROFF`) says, and keeps the cause for its notifications.
    pub fn mark_failed(&mut self, project: &str, name: &str, cause: &str) {
        let now = self.now();
        if let Some(svc) = self.stored(project, name)
            && svc.starting
        {
            svc.state = ServiceState::Poweroff;
            svc.starting = false;
            svc.ready_at = None;
            svc.update_time = now;
            svc.failure = Some(cause.to_string());
        }
    }

    /// Applies time-driven transitions. Returns the services whose endpoints must stop.
    pub fn advance(&mut self) -> Vec<(String, String)> {
        let now = self.now();
        let lag = self.config.delete_lag;
        let mut stop = Vec::new();
        for (project, p) in &mut self.projects {
            p.reserved_names.retain(|_, until| *until > now);
            p.services.retain(|name, svc| {
                if svc.deleted_at.is_some() {
                    return svc.visible(now, lag);
                }
                if svc.state == ServiceState::Running && svc.poweroff_at.is_some_and(|t| now >= t) {
                    svc.state = ServiceState::Poweroff;
                    svc.ready_at = None;
                    svc.update_time = now;
                    stop.push((project.clone(), name.clone()));
                }
                true
            });
        }
        stop
    }

    pub fn snapshot(&self) -> Persisted {
        Persisted {
            pki: self.pki.clone(),
            projects: self.projects.clone(),
            clock_advanced: self.clock.advanced(),
        }
    }
}

pub fn new_project(config: &ProjectConfig, rng: &mut StdRng, now: OffsetDateTime) -> Project {
    Project {
        name: config.name.clone(),
        default_cloud: config.default_cloud.clone(),
        vpcs: config
            .vpcs
            .iter()
            .map(|v| Vpc {
                project_vpc_id: ids::random_uuid(rng),
                cloud_name: v.cloud.clone(),
                network_cidr: v.network_cidr.clone(),
                create_time: now,
            })
            .collect(),
        services: BTreeMap::new(),
        reserved_names: BTreeMap::new(),
    }
}
