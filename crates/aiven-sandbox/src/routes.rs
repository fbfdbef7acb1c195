//! The HTTP surface: `/v1/...` as the real API, plus `/_sandbox/...` admin endpoints.
//!
//! Every `/v1` request passes the middleware in `layers` (request log, injected faults,
//! authentication, rate limit, persistence, `Date`) before its handler.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::catalogue::catalogue;
use crate::error::{ApiError, ApiResult};
use crate::render::{acl_json, service_json, topic_json, user_json};
use crate::rules::rfc3339;
use crate::{Shared, lock};

type S = State<Arc<Shared>>;

/// Every route served under `/v1`: one table builds the router and lets the tests check
/// each path against the official description.
fn api_routes() -> Vec<(&'static str, MethodRouter<Arc<Shared>>)> {
    vec![
        ("/clouds", get(clouds_public)),
        ("/service_types", get(public_service_types)),
        ("/service_versions", get(service_versions)),
        // avn's `service versions --account-id`; newer than the committed description.
        ("/account/{account}/service_versions", get(service_versions)),
        ("/me", get(me)),
        ("/project", get(project_list)),
        ("/project/{p}", get(project_get)),
        ("/project/{p}/clouds", get(clouds)),
        ("/project/{p}/vpcs", get(vpcs)),
        ("/project/{p}/kms/ca", get(project_ca)),
        ("/project/{p}/service_types", get(project_service_types)),
        ("/project/{p}/service-types", get(project_service_types)),
        ("/project/{p}/service-types/{ty}", get(service_type_get)),
        ("/project/{p}/service-types/{ty}/plans", get(plan_list)),
        (
            "/project/{p}/service-types/{ty}/plans/{plan}",
            get(plan_get),
        ),
        (
            "/project/{p}/pricing/service-types/{ty}/plans/{plan}/clouds/{cloud}",
            get(plan_price),
        ),
        (
            "/project/{p}/service",
            get(service_list).post(service_create),
        ),
        (
            "/project/{p}/service/{s}",
            get(service_get).put(service_update).delete(service_delete),
        ),
        (
            "/project/{p}/service/{s}/tags",
            get(tags_get).put(tags_replace).patch(tags_update),
        ),
        ("/project/{p}/service/{s}/db", get(db_list).post(db_create)),
        ("/project/{p}/service/{s}/db/{db}", delete(db_delete)),
        ("/project/{p}/service/{s}/user", post(user_create)),
        (
            "/project/{p}/service/{s}/user/{u}",
            get(user_get).put(user_modify).delete(user_delete),
        ),
        (
            "/project/{p}/service/{s}/user/{u}/credentials/reset",
            put(user_reset),
        ),
        (
            "/project/{p}/service/{s}/topic",
            get(topic_list).post(topic_create),
        ),
        (
            "/project/{p}/service/{s}/topic/{t}",
            get(topic_get).delete(topic_delete),
        ),
        ("/project/{p}/service/{s}/acl", get(acl_list).post(acl_add)),
        ("/project/{p}/service/{s}/acl/{id}", delete(acl_delete)),
        (
            "/project/{p}/service/{s}/kafka/acl",
            get(kafka_acl_list).post(kafka_acl_add),
        ),
        (
            "/project/{p}/service/{s}/kafka/acl/{id}",
            get(kafka_acl_get).delete(kafka_acl_delete),
        ),
    ]
}

/// The path templates served under `/v1` (axum syntax, `{name}` for a segment).
pub fn api_paths() -> Vec<&'static str> {
    api_routes().into_iter().map(|(path, _)| path).collect()
}

pub fn router(shared: Arc<Shared>) -> Router {
    let v1 = api_routes()
        .into_iter()
        .fold(Router::new(), |r, (path, route)| r.route(path, route))
        .fallback(not_found);
    let v1 = crate::layers::wrap(v1, &shared);
    Router::new()
        .nest("/v1", v1)
        .nest("/_sandbox", crate::admin::router())
        .fallback(not_found)
        .with_state(shared)
}

// ---------------------------------------------------------------------------------------
// Responses

fn ok(value: Value) -> Response {
    Json(value).into_response()
}

fn respond(result: ApiResult<Value>) -> Response {
    match result {
        Ok(v) => ok(v),
        Err(e) => e.into_response(),
    }
}

async fn not_found() -> Response {
    ApiError::new(404, "Not Found").into_response()
}

fn parse_body(bytes: &Bytes) -> ApiResult<Value> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(400, format!("Invalid JSON in request body: {e}")).code("bad_request")
    })
}

// ---------------------------------------------------------------------------------------
// Catalogue and projects

fn clouds_json() -> Value {
    json!(
        catalogue()
            .clouds
            .iter()
            .map(|c| json!({
                "cloud_name": c.cloud_name,
                "cloud_description": c.cloud_description,
                "geo_region": c.geo_region,
                "geo_latitude": c.geo_latitude,
                "geo_longitude": c.geo_longitude,
                "provider": c.provider,
                "provider_description": c.provider_description,
            }))
            .collect::<Vec<_>>()
    )
}

async fn clouds_public() -> Response {
    ok(json!({"clouds": clouds_json()}))
}

async fn clouds(State(s): S, Path(p): Path<String>) -> Response {
    // avn without a project asks `/project//clouds`; the API lists the public clouds.
    if p.is_empty() {
        return clouds_public().await;
    }
    respond(
        lock(&s.world)
            .project(&p)
            .map(|_| json!({"clouds": clouds_json()})),
    )
}

fn service_types_json() -> Value {
    let cat = catalogue();
    let types: serde_json::Map<String, Value> = cat
        .service_types
        .iter()
        .map(|(name, ty)| {
            (
                name.clone(),
                json!({
                    "description": ty.description,
                    "default_version": ty.default_version,
                    "latest_available_version": ty.latest_version(),
                    "service_plans": ty.plans.iter().map(|p| cat.plan_json(name, p)).collect::<Vec<_>>(),
                    "user_config_schema": ty.user_config_schema(name),
                }),
            )
        })
        .collect();
    Value::Object(types)
}

async fn public_service_types() -> Response {
    ok(json!({"service_types": service_types_json()}))
}

async fn project_service_types(State(s): S, Path(p): Path<String>) -> Response {
    respond(
        lock(&s.world)
            .project(&p)
            .map(|_| json!({"service_types": service_types_json()})),
    )
}

fn known_type(ty: &str) -> ApiResult<&'static crate::catalogue::ServiceType> {
    catalogue().service_type(ty).ok_or_else(|| {
        ApiError::new(404, format!("Service type '{ty}' does not exist"))
            .code("invalid_service_type")
    })
}

async fn service_type_get(State(s): S, Path((p, ty)): Path<(String, String)>) -> Response {
    respond((|| {
        lock(&s.world).project(&p)?;
        let t = known_type(&ty)?;
        let mut out =
            json!({"description": t.description, "user_config_schema": t.user_config_schema(&ty)});
        if let Some(v) = &t.default_version {
            out["default_version"] = json!(v);
        }
        if let Some(v) = t.latest_version() {
            out["latest_available_version"] = json!(v);
        }
        Ok(out)
    })())
}

async fn plan_list(State(s): S, Path((p, ty)): Path<(String, String)>) -> Response {
    respond((|| {
        lock(&s.world).project(&p)?;
        let t = known_type(&ty)?;
        let plans: Vec<Value> = t
            .plans
            .iter()
            .map(|plan| catalogue().plan_json(&ty, plan))
            .collect();
        Ok(json!({"service_plans": plans}))
    })())
}

fn find_plan(ty: &str, plan: &str) -> ApiResult<&'static crate::catalogue::Plan> {
    known_type(ty)?.plan(plan).ok_or_else(|| {
        ApiError::new(
            404,
            format!("Service plan '{plan}' does not exist for service type '{ty}'"),
        )
    })
}

async fn plan_get(State(s): S, Path((p, ty, plan)): Path<(String, String, String)>) -> Response {
    respond((|| {
        lock(&s.world).project(&p)?;
        let plan = find_plan(&ty, &plan)?;
        Ok(json!({
            "service_plan": plan.service_plan,
            "service_type": ty,
            "node_count": plan.node_count,
            "disk_space_mb": plan.disk_space_mb,
            "disk_space_cap_mb": plan.disk_space_cap_mb,
            "disk_space_step_mb": 10240,
            "backup_config": plan.backup_config,
            "max_memory_percent": 80,
        }))
    })())
}

async fn plan_price(
    State(s): S,
    Path((p, ty, plan, cloud)): Path<(String, String, String, String)>,
) -> Response {
    respond((|| {
        lock(&s.world).project(&p)?;
        let plan = find_plan(&ty, &plan)?;
        let c = catalogue()
            .cloud(&cloud)
            .ok_or_else(|| ApiError::new(404, format!("Cloud '{cloud}' does not exist")))?;
        Ok(json!({
            "base_price_usd": catalogue().hourly_price(plan, c),
            "extra_disk_price_per_gb_usd": "0.000",
            "cloud_name": cloud,
            "service_plan": plan.service_plan,
            "service_type": ty,
        }))
    })())
}

async fn service_versions() -> Response {
    let versions: Vec<Value> = catalogue()
        .service_types
        .iter()
        .flat_map(|(ty, t)| {
            t.versions.iter().map(move |v| {
                json!({
                    "service_type": ty,
                    "major_version": v,
                    "state": "available",
                    "aiven_end_of_life_time": null,
                    "upstream_end_of_life_time": null,
                    "termination_time": null,
                    "end_of_life_help_article_url": null,
                    "availability_start_time": "2024-01-01T00:00:00Z",
                    "availability_end_time": null,
                })
            })
        })
        .collect();
    ok(json!({"service_versions": versions}))
}

async fn me(State(s): S) -> Response {
    let projects: Vec<String> = lock(&s.world).projects.keys().cloned().collect();
    let membership: serde_json::Map<String, Value> = projects
        .iter()
        .map(|p| (p.clone(), json!("admin")))
        .collect();
    let memberships: serde_json::Map<String, Value> = projects
        .iter()
        .map(|p| (p.clone(), json!(["admin"])))
        .collect();
    ok(json!({"user": {
        "user": "sandbox@example.com",
        "real_name": "Sandbox User",
        "state": "active",
        "user_id": "u4a7b2c3d4e5",
        "auth": ["password"],
        "create_time": "2024-01-01T00:00:00Z",
        "projects": projects,
        "project_membership": membership,
        "project_memberships": memberships,
        "invitations": [],
        "token_validity_begin": "2024-01-01T00:00:00Z",
    }}))
}

fn project_json(p: &crate::world::Project) -> Value {
    json!({
        "project_name": p.name,
        "default_cloud": p.default_cloud,
        "account_id": "a4a7b2c3d4e5",
        "account_name": "Sandbox",
        "organization_id": "org4a7b2c3d4e5",
        "billing_group_id": "5a1c2b3d-0000-4000-8000-000000000001",
        "billing_group_name": "Sandbox billing",
        "billing_address": "",
        "address_lines": [],
        "billing_currency": "USD",
        "billing_emails": [],
        "billing_extra_text": "",
        "available_credits": "0.00",
        "city": "",
        "company": "",
        "country": "",
        "country_code": "",
        "state": "",
        "zip_code": "",
        "estimated_balance": "0.00",
        "estimated_balance_local": "0.00",
        "payment_method": "no_payment_expected",
        "vat_id": "",
        "tags": {},
        "tech_emails": [],
        "features": {},
    })
}

async fn project_list(State(s): S) -> Response {
    let world = lock(&s.world);
    let projects: Vec<Value> = world.projects.values().map(project_json).collect();
    let membership: serde_json::Map<String, Value> = world
        .projects
        .keys()
        .map(|k| (k.clone(), json!("admin")))
        .collect();
    let memberships: serde_json::Map<String, Value> = world
        .projects
        .keys()
        .map(|k| (k.clone(), json!(["admin"])))
        .collect();
    ok(
        json!({"projects": projects, "project_membership": membership, "project_memberships": memberships}),
    )
}

async fn project_get(State(s): S, Path(p): Path<String>) -> Response {
    respond(
        lock(&s.world)
            .project(&p)
            .map(|p| json!({"project": project_json(p)})),
    )
}

async fn vpcs(State(s): S, Path(p): Path<String>) -> Response {
    respond(lock(&s.world).project(&p).map(|p| {
        json!({"vpcs": p.vpcs.iter().map(|v| json!({
            "project_vpc_id": v.project_vpc_id,
            "cloud_name": v.cloud_name,
            "network_cidr": v.network_cidr,
            "state": "ACTIVE",
            "create_time": rfc3339(v.create_time),
            "update_time": rfc3339(v.create_time),
        })).collect::<Vec<_>>()})
    }))
}

async fn project_ca(State(s): S, Path(p): Path<String>) -> Response {
    let mut world = lock(&s.world);
    let ca = world.pki.ca_cert_pem.clone();
    respond(world.project(&p).map(|_| json!({"certificate": ca})))
}

// ---------------------------------------------------------------------------------------
// Services

#[derive(Deserialize, Default)]
struct SecretsQuery {
    include_secrets: Option<String>,
}

impl SecretsQuery {
    fn wanted(&self) -> bool {
        self.include_secrets
            .as_deref()
            .is_some_and(|v| matches!(v, "true" | "True" | "1"))
    }
}

async fn service_list(
    State(s): S,
    Path(p): Path<String>,
    Query(q): Query<SecretsQuery>,
) -> Response {
    let mut world = lock(&s.world);
    let now = world.now();
    let lag = world.config.delete_lag;
    respond(world.project(&p).map(|project| {
        let services: Vec<Value> = project
            .services
            .values()
            .filter(|svc| svc.visible(now, lag))
            .map(|svc| service_json(svc, now, q.wanted()))
            .collect();
        json!({"services": services})
    }))
}

async fn service_get(
    State(s): S,
    Path((p, name)): Path<(String, String)>,
    Query(q): Query<SecretsQuery>,
) -> Response {
    let mut world = lock(&s.world);
    let now = world.now();
    respond(
        world
            .service(&p, &name)
            .map(|svc| json!({"service": service_json(svc, now, q.wanted())})),
    )
}

async fn service_create(State(s): S, Path(p): Path<String>, body: Bytes) -> Response {
    let mut world = lock(&s.world);
    let result = parse_body(&body).and_then(|body| {
        let name = world.create_service(&p, &body, crate::ports::free_port)?;
        let now = world.now();
        // The create answer carries the secrets, as the real one does.
        world
            .service(&p, &name)
            .map(|svc| json!({"service": service_json(svc, now, true)}))
    });
    respond(result)
}

async fn service_update(
    State(s): S,
    Path((p, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let result = {
        let mut world = lock(&s.world);
        parse_body(&body).and_then(|body| {
            let stopped = world.update_service(&p, &name, &body)?;
            let now = world.now();
            let svc = world.service(&p, &name)?;
            Ok((stopped, json!({"service": service_json(svc, now, true)})))
        })
    };
    respond(result.map(|(stopped, value)| {
        if stopped {
            // Powered off: PostgreSQL's data stays for the power-on.
            lock(&s.endpoints).park(&p, &name);
        }
        value
    }))
}

async fn service_delete(State(s): S, Path((p, name)): Path<(String, String)>) -> Response {
    let result = lock(&s.world).delete_service(&p, &name);
    respond(result.map(|_| {
        lock(&s.endpoints).stop(&p, &name);
        json!({"message": "Service deleted"})
    }))
}

async fn tags_get(State(s): S, Path((p, name)): Path<(String, String)>) -> Response {
    respond(
        lock(&s.world)
            .service(&p, &name)
            .map(|svc| json!({"tags": svc.tags})),
    )
}

#[derive(Deserialize)]
struct TagsBody<T> {
    tags: T,
}

fn parse_tags<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice::<TagsBody<T>>(body)
        .map(|b| b.tags)
        .map_err(|e| ApiError::new(400, format!("Invalid input for tags: {e}")).code("bad_request"))
}

async fn tags_replace(
    State(s): S,
    Path((p, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    respond(
        parse_tags::<BTreeMap<String, String>>(&body)
            .and_then(|tags| lock(&s.world).replace_tags(&p, &name, tags))
            .map(|()| json!({"message": "tags updated"})),
    )
}

async fn tags_update(
    State(s): S,
    Path((p, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    respond(
        parse_tags::<BTreeMap<String, Option<String>>>(&body)
            .and_then(|tags| lock(&s.world).update_tags(&p, &name, tags))
            .map(|()| json!({"message": "tags updated"})),
    )
}

// ---------------------------------------------------------------------------------------
// Sub-resources

fn field<'a>(body: &'a Value, key: &str) -> ApiResult<&'a str> {
    body.get(key).and_then(Value::as_str).ok_or_else(|| {
        ApiError::new(400, format!("Missing required field '{key}'")).code("bad_request")
    })
}

async fn db_list(State(s): S, Path((p, name)): Path<(String, String)>) -> Response {
    respond(lock(&s.world).list_databases(&p, &name).map(|dbs| {
        json!({"databases": dbs.iter().map(|d| json!({"database_name": d})).collect::<Vec<_>>()})
    }))
}

async fn db_create(State(s): S, Path((p, name)): Path<(String, String)>, body: Bytes) -> Response {
    let result = parse_body(&body).and_then(|body| {
        let db = field(&body, "database")?.to_string();
        lock(&s.world).create_database(&p, &name, &db)?;
        Ok(db)
    });
    let result = match result {
        Ok(db) => crate::backends::on_server(&s, &p, &name, move |a| a.create_database(&db)).await,
        Err(e) => Err(e),
    };
    respond(result.map(|()| json!({"message": "Database created"})))
}

async fn db_delete(State(s): S, Path((p, name, db)): Path<(String, String, String)>) -> Response {
    let result = lock(&s.world).delete_database(&p, &name, &db);
    let result = match result {
        Ok(()) => crate::backends::on_server(&s, &p, &name, move |a| a.delete_database(&db)).await,
        Err(e) => Err(e),
    };
    respond(result.map(|()| json!({"message": "Database deleted"})))
}

/// Applies a user's new state to the real server; if the server refuses it, the world
/// takes back the change (`previous`: the user before it, `None` for a create).
async fn sync_user_or_undo(
    s: &Shared,
    p: &str,
    name: &str,
    user: &crate::world::User,
    previous: Option<crate::world::User>,
) -> ApiResult<()> {
    let result = crate::backends::sync_user(s, p, name, user).await;
    if result.is_err() {
        lock(&s.world).restore_user(p, name, previous, &user.username);
    }
    result
}

async fn user_create(
    State(s): S,
    Path((p, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let result = parse_body(&body).and_then(|body| lock(&s.world).create_user(&p, &name, &body));
    let result = match result {
        Ok(user) => sync_user_or_undo(&s, &p, &name, &user, None)
            .await
            .map(|()| json!({"user": user_json(&user, true)})),
        Err(e) => Err(e),
    };
    respond(result)
}

async fn user_get(
    State(s): S,
    Path((p, name, u)): Path<(String, String, String)>,
    Query(q): Query<SecretsQuery>,
) -> Response {
    respond(
        lock(&s.world)
            .get_user(&p, &name, &u)
            .map(|user| json!({"user": user_json(&user, q.wanted())})),
    )
}

async fn user_modify(
    State(s): S,
    Path((p, name, u)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let changed = parse_body(&body).and_then(|body| {
        let mut world = lock(&s.world);
        let previous = world.get_user(&p, &name, &u)?;
        let user = match field(&body, "operation")? {
            "reset-credentials" => {
                let new = body
                    .get("new_password")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                world.reset_user_password(&p, &name, &u, new)?
            }
            "set-access-control" => {
                let ac = body.get("access_control").ok_or_else(|| {
                    ApiError::new(400, "Missing required field 'access_control'")
                        .code("bad_request")
                })?;
                world.set_access_control(&p, &name, &u, ac)?
            }
            "acknowledge-renewal" => return Ok(None),
            other => {
                return Err(
                    ApiError::new(400, format!("Invalid operation '{other}'")).code("bad_request")
                );
            }
        };
        Ok(Some((user, previous)))
    });
    let result = match changed {
        Ok(Some((user, previous))) => sync_user_or_undo(&s, &p, &name, &user, Some(previous)).await,
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    respond(result.and_then(|()| {
        let mut world = lock(&s.world);
        let now = world.now();
        let svc = world.service(&p, &name)?;
        Ok(json!({"service": service_json(svc, now, true)}))
    }))
}

async fn user_reset(State(s): S, Path((p, name, u)): Path<(String, String, String)>) -> Response {
    let changed = {
        let mut world = lock(&s.world);
        world.get_user(&p, &name, &u).and_then(|previous| {
            world
                .reset_user_password(&p, &name, &u, None)
                .map(|user| (user, previous))
        })
    };
    let result = match changed {
        Ok((user, previous)) => sync_user_or_undo(&s, &p, &name, &user, Some(previous)).await,
        Err(e) => Err(e),
    };
    respond(result.and_then(|()| {
        let mut world = lock(&s.world);
        let now = world.now();
        let svc = world.service(&p, &name)?;
        Ok(json!({"service": service_json(svc, now, true)}))
    }))
}

async fn user_delete(State(s): S, Path((p, name, u)): Path<(String, String, String)>) -> Response {
    // The server first: a role it cannot drop (it owns objects) stays a user.
    let checked = lock(&s.world).check_user_deletable(&p, &name, &u);
    let result = match checked {
        Ok(()) => match crate::backends::on_server(&s, &p, &name, {
            let u = u.clone();
            move |a| a.delete_user(&u)
        })
        .await
        {
            Ok(()) => lock(&s.world).delete_user(&p, &name, &u),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    respond(result.map(|()| json!({"message": "User deleted"})))
}

async fn topic_list(State(s): S, Path((p, name)): Path<(String, String)>) -> Response {
    respond(lock(&s.world).list_topics(&p, &name).map(|(topics, now)| {
        json!({"topics": topics.iter().map(|t| topic_json(t, now)).collect::<Vec<_>>()})
    }))
}

async fn topic_create(
    State(s): S,
    Path((p, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    respond(
        parse_body(&body)
            .and_then(|body| lock(&s.world).create_topic(&p, &name, &body))
            .map(|()| json!({"message": "created"})),
    )
}

async fn topic_get(State(s): S, Path((p, name, t)): Path<(String, String, String)>) -> Response {
    respond(lock(&s.world).list_topics(&p, &name).and_then(|(topics, now)| {
        let topic = topics
            .iter()
            .find(|x| x.topic_name == t)
            .ok_or_else(|| ApiError::new(404, format!("Topic '{t}' does not exist")).code("kafka_topic_not_found"))?;
        if now < topic.active_at {
            // The broker does not know the topic yet: the API answers 501 until it does.
            return Err(ApiError::new(501, format!("Failed to fetch Kafka topic: {t}")));
        }
        let mut out = topic_json(topic, now);
        out["partitions"] = json!((0..topic.partitions)
            .map(|i| json!({"partition": i, "isr": topic.replication, "size": 0, "earliest_offset": 0,
                            "latest_offset": 0, "consumer_groups": [], "remote_size": 0}))
            .collect::<Vec<_>>());
        out["config"] = json!({});
        Ok(json!({"topic": out}))
    }))
}

async fn topic_delete(State(s): S, Path((p, name, t)): Path<(String, String, String)>) -> Response {
    respond(
        lock(&s.world)
            .delete_topic(&p, &name, &t)
            .map(|()| json!({"message": "deleted"})),
    )
}

async fn acl_list(State(s): S, Path((p, name)): Path<(String, String)>) -> Response {
    respond(
        lock(&s.world)
            .list_acls(&p, &name)
            .map(|acls| json!({"acl": acl_json(&acls)})),
    )
}

async fn acl_add(State(s): S, Path((p, name)): Path<(String, String)>, body: Bytes) -> Response {
    respond(
        parse_body(&body)
            .and_then(|body| lock(&s.world).add_acl(&p, &name, &body))
            .map(|acls| json!({"acl": acl_json(&acls), "message": "added"})),
    )
}

async fn acl_delete(State(s): S, Path((p, name, id)): Path<(String, String, String)>) -> Response {
    respond(
        lock(&s.world)
            .delete_acl(&p, &name, &id)
            .map(|acls| json!({"acl": acl_json(&acls), "message": "deleted"})),
    )
}

async fn kafka_acl_list(State(s): S, Path((p, name)): Path<(String, String)>) -> Response {
    respond(
        lock(&s.world)
            .list_kafka_acls(&p, &name)
            .map(|(acls, native)| json!({"acl": acl_json(&acls), "kafka_acl": native})),
    )
}

async fn kafka_acl_add(
    State(s): S,
    Path((p, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    respond(
        parse_body(&body)
            .and_then(|body| lock(&s.world).add_kafka_acl(&p, &name, &body))
            .map(|acl| json!({"acl": acl, "message": "added"})),
    )
}

async fn kafka_acl_get(
    State(s): S,
    Path((p, name, id)): Path<(String, String, String)>,
) -> Response {
    respond(
        lock(&s.world)
            .get_kafka_acl(&p, &name, &id)
            .map(|acl| json!({"acl": acl})),
    )
}

async fn kafka_acl_delete(
    State(s): S,
    Path((p, name, id)): Path<(String, String, String)>,
) -> Response {
    respond(
        lock(&s.world)
            .delete_kafka_acl(&p, &name, &id)
            .map(|()| json!({"message": "deleted"})),
    )
}
