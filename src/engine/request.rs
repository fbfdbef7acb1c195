//! What a run sends to create a service, and what it shows of the answer: shared by
//! dedicated services (provision) and shared ones (tenancy).

use std::collections::BTreeMap;

use crate::api::{CreateService, Service};
use crate::manifest::ServiceSpec;
use crate::progress::Reporter;

/// The create request of a manifest entry, named `name`, carrying `tags` (the tags go
/// in the create itself: a service never exists untagged); never termination-protected.
pub(crate) fn create_body<'a>(
    name: &'a str,
    spec: &'a ServiceSpec,
    tags: &'a BTreeMap<String, String>,
) -> CreateService<'a> {
    CreateService {
        service_name: name,
        service_type: &spec.service_type,
        plan: &spec.plan,
        cloud: spec.cloud.as_deref(),
        project_vpc_id: spec.project_vpc_id.as_deref(),
        termination_protection: false,
        tags,
        user_config: &spec.user_config,
    }
}

/// What the API tells about a service (an end-of-life version, say) is for the user's
/// eyes.
pub(crate) fn say_notifications(reporter: &Reporter, name: &str, svc: &Service) {
    for n in &svc.service_notifications {
        reporter.warn(format!("{name}: {}", n.message));
    }
}
