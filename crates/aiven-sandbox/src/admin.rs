//! `/_sandbox/...`: endpoints for tests and curious users. Not part of the Aiven API, not
//! authenticated (the sandbox listens on loopback), never subject to faults.
//!
//! - `GET /_sandbox/health`
//! - `GET /_sandbox/requests`, `DELETE /_sandbox/requests`: the request log
//! - `GET /_sandbox/services`: every service that exists, deleted-but-visible ones included
//! - `GET|POST|DELETE /_sandbox/faults`: request-level fault rules (POST one rule or a list)
//! - `POST|DELETE /_sandbox/service-faults`: service-level behaviour
//! - `POST /_sandbox/projects`: add a project
//! - `POST /_sandbox/reset`: forget all services, reservations, the log and added faults
//! - `GET /_sandbox/clock`, `POST /_sandbox/clock` `{"advance": "31m"}`: the sandbox's
//!   time, and moving it forward: every timer (provisioning, power-off, reservations,
//!   the rate window), `Date` header and timestamp follows, as if that time had passed

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::faults::{FaultRule, ServiceFault};
use crate::rules::rfc3339;
use crate::{Shared, lock};

type S = State<Arc<Shared>>;

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/requests", get(requests).delete(clear_requests))
        .route("/services", get(services))
        .route("/faults", get(faults).post(add_faults).delete(clear_faults))
        .route(
            "/service-faults",
            post(add_service_fault).delete(clear_service_faults),
        )
        .route("/projects", post(add_project))
        .route("/reset", post(reset))
        .route("/clock", get(clock).post(advance_clock))
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"message": message}))).into_response()
}

/// Accepts one item or a list.
fn one_or_many<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<Vec<T>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    match value {
        Value::Array(_) => serde_json::from_value(value).map_err(|e| e.to_string()),
        other => serde_json::from_value(other)
            .map(|one| vec![one])
            .map_err(|e| e.to_string()),
    }
}

async fn requests(State(s): S) -> Response {
    Json(json!({"requests": *lock(&s.log)})).into_response()
}

async fn clear_requests(State(s): S) -> Response {
    lock(&s.log).clear();
    Json(json!({"message": "cleared"})).into_response()
}

async fn services(State(s): S) -> Response {
    let world = lock(&s.world);
    let services: Vec<Value> = world
        .projects
        .iter()
        .flat_map(|(project, p)| {
            p.services.values().map(move |svc| {
                json!({
                    "project": project,
                    "service_name": svc.name,
                    "service_type": svc.service_type,
                    "plan": svc.plan,
                    "cloud_name": svc.cloud,
                    "state": svc.state,
                    "deleted": svc.deleted_at.is_some(),
                    "termination_protection": svc.termination_protection,
                    "project_vpc_id": svc.project_vpc_id,
                    "tags": svc.tags,
                    "user_config": svc.user_config,
                    "create_time": rfc3339(svc.create_time),
                    "databases": svc.databases,
                    "users": svc.users.iter().map(|u| &u.username).collect::<Vec<_>>(),
                    "topics": svc.topics.iter().map(|t| &t.topic_name).collect::<Vec<_>>(),
                    "acls": svc.acls,
                    "kafka_acls": svc.kafka_acls,
                    "components": svc.components.iter().map(|c| json!({"component": c.component, "host": c.host, "port": c.port})).collect::<Vec<_>>(),
                })
            })
        })
        .collect();
    Json(json!({"services": services})).into_response()
}

async fn faults(State(s): S) -> Response {
    let book = lock(&s.faults);
    Json(json!({"faults": book.rules().collect::<Vec<_>>()})).into_response()
}

async fn add_faults(State(s): S, body: Bytes) -> Response {
    let rules: Vec<FaultRule> = match one_or_many(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    for rule in &rules {
        if let Err(e) = rule.validate() {
            return bad_request(e);
        }
    }
    let mut book = lock(&s.faults);
    for rule in rules {
        book.add(rule);
    }
    Json(json!({"message": "added"})).into_response()
}

async fn clear_faults(State(s): S) -> Response {
    lock(&s.faults).clear();
    Json(json!({"message": "cleared"})).into_response()
}

async fn add_service_fault(State(s): S, body: Bytes) -> Response {
    let faults: Vec<ServiceFault> = match one_or_many(&body) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    for fault in &faults {
        if let Err(e) = fault.validate() {
            return bad_request(e);
        }
    }
    lock(&s.world).config.service_faults.extend(faults);
    Json(json!({"message": "added"})).into_response()
}

async fn clear_service_faults(State(s): S) -> Response {
    lock(&s.world).config.service_faults.clear();
    Json(json!({"message": "cleared"})).into_response()
}

async fn add_project(State(s): S, body: Bytes) -> Response {
    let config: crate::config::ProjectConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return bad_request(e.to_string()),
    };
    let mut world = lock(&s.world);
    let now = world.now();
    let project = crate::world::new_project(&config, &mut world.rng, now);
    world.projects.insert(config.name.clone(), project);
    Json(json!({"message": "added"})).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    #[serde(with = "crate::durations::duration")]
    advance: std::time::Duration,
}

async fn clock(State(s): S) -> Response {
    let clock = lock(&s.world).clock.clone();
    Json(json!({
        "now": rfc3339(clock.now()),
        "advanced": humantime::format_duration(clock.advanced()).to_string(),
    }))
    .into_response()
}

async fn advance_clock(State(s): S, body: Bytes) -> Response {
    let Advance { advance } = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return bad_request(e.to_string()),
    };
    lock(&s.world).clock.advance(advance);
    // What became due happens now, not at the next tick.
    s.tick();
    s.persist();
    clock(State(s)).await
}

async fn reset(State(s): S) -> Response {
    {
        let mut world = lock(&s.world);
        for p in world.projects.values_mut() {
            p.services.clear();
            p.reserved_names.clear();
        }
    }
    lock(&s.endpoints).stop_all();
    lock(&s.log).clear();
    lock(&s.faults).clear();
    s.persist();
    Json(json!({"message": "reset"})).into_response()
}
