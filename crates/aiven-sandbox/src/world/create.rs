//! `POST /project/{p}/service`: the request is validated (`Kind`, then `NewService`
//! against the project), service faults and the name are checked, and `shape` gives the
//! new service its per-type form. Ports come from the caller.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::model::{Project, Service, ServiceState};
use super::{World, ids, shape};
use crate::catalogue::{self, Plan, ServiceType, catalogue};
use crate::error::{ApiError, ApiResult};
use crate::faults::ServiceFault;
use crate::rules::{check_tags, parse_recovery_time, valid_service_name};

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(400, message).code("bad_request")
}

/// The required fields: name, type and plan, each valid.
struct Kind {
    name: String,
    service_type: String,
    ty: &'static ServiceType,
    plan: &'static Plan,
}

impl Kind {
    fn parse(body: &Value) -> ApiResult<Self> {
        let required = |key: &str| {
            body.get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| bad_request(format!("Missing required field '{key}'")))
        };
        let name = required("service_name")?;
        let service_type = required("service_type")?;
        let plan_name = required("plan")?;
        if !valid_service_name(&name) {
            return Err(bad_request(
                "Service name must consist of 1-64 alphanumerical characters (lowercase letters, digits and '-'), starting with a letter",
            ));
        }
        let Some(ty) = catalogue().service_type(&service_type) else {
            return Err(
                ApiError::new(400, format!("Invalid service type '{service_type}'"))
                    .code("invalid_service_type"),
            );
        };
        let Some(plan) = ty.plan(&plan_name) else {
            return Err(bad_request(format!(
                "Invalid plan '{plan_name}' for service type '{service_type}'. Available plans: {}",
                ty.plan_names().join(", ")
            )));
        };
        Ok(Self {
            name,
            service_type,
            ty,
            plan,
        })
    }
}

/// A create request, validated against the project it is for.
struct NewService {
    kind: Kind,
    cloud: String,
    project_vpc_id: Option<String>,
    tags: BTreeMap<String, String>,
    user_config: Value,
    termination_protection: bool,
    disk_space_mb: u64,
    service_integrations: Vec<Value>,
    tech_emails: Vec<Value>,
}

impl NewService {
    fn parse(body: &Value, kind: Kind, project: &Project) -> ApiResult<Self> {
        let cloud = match body.get("cloud") {
            None | Some(Value::Null) => project.default_cloud.clone(),
            Some(Value::String(c)) => c.clone(),
            Some(other) => return Err(bad_request(format!("Invalid cloud {other}"))),
        };
        if catalogue().cloud(&cloud).is_none() {
            return Err(bad_request(format!("Invalid cloud '{cloud}'")));
        }
        let project_vpc_id = vpc(body.get("project_vpc_id"), project, &cloud)?;
        let tags: BTreeMap<String, String> = match body.get("tags") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(t) => serde_json::from_value(t.clone()).map_err(|_| {
                ApiError::new(400, "Invalid input for tags: must be an object of strings")
            })?,
        };
        check_tags(&tags)?;
        let user_config = match body.get("user_config") {
            None | Some(Value::Null) => json!({}),
            Some(c) => c.clone(),
        };
        catalogue::check_user_config(
            &kind.ty.user_config_schema(&kind.service_type),
            &user_config,
            "user_config",
        )
        .map_err(|m| ApiError::new(400, m).code("bad_request"))?;
        if let Some(time) = user_config
            .get("recovery_target_time")
            .and_then(Value::as_str)
            && parse_recovery_time(time).is_none()
        {
            return Err(
                ApiError::new(400, format!("Invalid recovery_target_time '{time}'"))
                    .code("invalid_date_format"),
            );
        }
        Ok(Self {
            cloud,
            project_vpc_id,
            tags,
            user_config,
            termination_protection: body
                .get("termination_protection")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            disk_space_mb: body
                .get("disk_space_mb")
                .and_then(Value::as_u64)
                .unwrap_or(kind.plan.disk_space_mb),
            service_integrations: array(body, "service_integrations"),
            tech_emails: array(body, "tech_emails"),
            kind,
        })
    }

    /// The service to fork from, named in `user_config`, if any.
    fn fork_source<'a>(&'a self, project: &'a str) -> Option<(&'a str, &'a str)> {
        let text = |key: &str| {
            self.user_config
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let source = text("service_to_fork_from")?;
        Some((text("project_to_fork_from").unwrap_or(project), source))
    }
}

fn array(body: &Value, key: &str) -> Vec<Value> {
    body.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The VPC trap: an absent key means "the project's VPC in this cloud, if any".
fn vpc(field: Option<&Value>, project: &Project, cloud: &str) -> ApiResult<Option<String>> {
    match field {
        Some(Value::Null) => Ok(None),
        None => Ok(project
            .vpcs
            .iter()
            .find(|v| v.cloud_name == cloud)
            .map(|v| v.project_vpc_id.clone())),
        Some(Value::String(id)) => {
            let vpc = project
                .vpcs
                .iter()
                .find(|v| &v.project_vpc_id == id)
                .ok_or_else(|| bad_request(format!("Project VPC {id} does not exist")))?;
            if vpc.cloud_name != cloud {
                return Err(ApiError::new(
                    400,
                    format!(
                        "Project VPC {id} is in cloud {}, not {cloud}",
                        vpc.cloud_name
                    ),
                ));
            }
            Ok(Some(id.clone()))
        }
        Some(other) => Err(ApiError::new(
            400,
            format!("Invalid project_vpc_id {other}"),
        )),
    }
}

impl World {
    /// Creates a service in `REBUILDING`; `port` gives each component its port. Returns
    /// the service's name.
    pub fn create_service(
        &mut self,
        project: &str,
        body: &Value,
        port: impl FnMut() -> u16,
    ) -> ApiResult<String> {
        let now = self.now();
        let kind = Kind::parse(body)?;
        let new = NewService::parse(body, kind, self.project(project)?)?;
        let fault = self.service_fault(&new.kind.name);
        if let Some(reject) = &fault.reject {
            return Err(ApiError::new(reject.status, reject.message.clone()));
        }
        let forked_databases = self.forked_databases(project, &new)?;
        self.check_name_free(project, &new.kind.name, now)?;
        let service = self.shape(new, &fault, forked_databases, now, port)?;
        let name = service.name.clone();
        self.project(project)?
            .services
            .insert(name.clone(), service);
        Ok(name)
    }

    pub(super) fn service_fault(&self, name: &str) -> ServiceFault {
        self.config
            .service_faults
            .iter()
            .find(|f| f.matches(name))
            .cloned()
            .unwrap_or_default()
    }

    /// A fork starts with its source's databases; the source must exist, of the same type.
    fn forked_databases(&self, project: &str, new: &NewService) -> ApiResult<Option<Vec<String>>> {
        let Some((source_project, source)) = new.fork_source(project) else {
            return Ok(None);
        };
        let src = self
            .projects
            .get(source_project)
            .and_then(|p| p.services.get(source))
            .filter(|s| s.deleted_at.is_none())
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    format!(
                        "Cannot fork: Service {source} does not exist in project {source_project}"
                    ),
                )
            })?;
        let service_type = &new.kind.service_type;
        if &src.service_type != service_type {
            return Err(ApiError::new(
                400,
                format!(
                    "Cannot fork a {} service from a {} service",
                    service_type, src.service_type
                ),
            ));
        }
        Ok(Some(src.databases.clone()))
    }

    /// Live services and recently deleted ones hold their names.
    fn check_name_free(&mut self, project: &str, name: &str, now: OffsetDateTime) -> ApiResult<()> {
        let project = self.project(project)?;
        project.reserved_names.retain(|_, until| *until > now);
        if project.services.contains_key(name) || project.reserved_names.contains_key(name) {
            return Err(
                ApiError::new(409, "Service name is already in use in this project")
                    .code("bad_request"),
            );
        }
        Ok(())
    }

    /// The new service in its per-type shape (`shape`), timed by config and fault.
    fn shape(
        &mut self,
        new: NewService,
        fault: &ServiceFault,
        forked_databases: Option<Vec<String>>,
        now: OffsetDateTime,
        port: impl FnMut() -> u16,
    ) -> ApiResult<Service> {
        let NewService {
            kind,
            cloud,
            project_vpc_id,
            tags,
            user_config,
            termination_protection,
            disk_space_mb,
            service_integrations,
            tech_emails,
        } = new;
        let ty = kind.service_type.as_str();
        let delay = fault
            .ready_after
            .unwrap_or_else(|| self.config.delay_for(ty));
        let ready_at = (!fault.never_ready).then(|| now + delay);
        let cert = (ty == "kafka")
            .then(|| self.pki.issue_client(shape::admin_username(ty)))
            .transpose()
            .map_err(|e| ApiError::new(500, format!("certificate issue failed: {e}")))?;
        let password = ids::generate_password(&mut self.rng);
        Ok(Service {
            nodes: shape::nodes(
                &kind.name,
                &cloud,
                kind.plan.node_count,
                ready_at,
                self.config.node_lag,
            ),
            users: vec![shape::admin_user(ty, password, cert, now)],
            databases: shape::databases(ty, forked_databases),
            acls: shape::default_acls(ty),
            kafka_acls: Vec::new(),
            components: shape::components(ty, &user_config, project_vpc_id.is_some(), port),
            name: kind.name,
            plan: kind.plan.service_plan.clone(),
            service_type: kind.service_type,
            cloud,
            project_vpc_id,
            user_config,
            tags,
            termination_protection,
            disk_space_mb,
            state: ServiceState::Rebuilding,
            create_time: now,
            update_time: now,
            ready_at,
            starting: false,
            failure: None,
            notice: None,
            poweroff_after: fault.poweroff_after,
            poweroff_at: None,
            deleted_at: None,
            unreachable: fault.unreachable,
            topics: Vec::new(),
            service_integrations,
            maintenance: json!({"dow": "sunday", "time": "04:00:00", "updates": []}),
            tech_emails,
            backups: Vec::new(),
        })
    }
}
