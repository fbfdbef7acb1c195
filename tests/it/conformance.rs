//! Every response body the sandbox produces for the endpoints this tool uses, checked
//! against the schemas of the official OpenAPI description (`$AIVEN_OPENAPI_SPEC`, by
//! default `../shared/aiven-openapi/openapi.json`; it is not committed here).
//!
//! The spec is older and looser than the API. Where the real API is known to differ,
//! the difference is listed in `KNOWN_DELTAS` with its source, and allowed; nothing
//! else is.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

/// Where the real API is known to answer outside the spec.
const KNOWN_DELTAS: &[(&str, &str)] = &[
    (
        "project_vpc_id",
        "null for services outside a VPC; go-client-codegen's openapi_patch.yaml makes it nullable",
    ),
    (
        "topic_description",
        "empty when unset; the spec's minLength 1 cannot hold for topics created without one",
    ),
    (
        "owner_user_group_id",
        "empty when unset, as topic_description",
    ),
];

struct Spec {
    doc: Value,
}

fn spec_path() -> std::path::PathBuf {
    std::env::var_os("AIVEN_OPENAPI_SPEC")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/aiven-openapi/openapi.json")
        })
}

impl Spec {
    fn load() -> Self {
        let path = spec_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the Aiven OpenAPI description is needed at {} ({e}); set AIVEN_OPENAPI_SPEC",
                path.display()
            )
        });
        Self {
            doc: serde_json::from_str(&text).expect("openapi.json is JSON"),
        }
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let pointer = r.trim_start_matches('#');
                self.resolve(
                    self.doc
                        .pointer(pointer)
                        .unwrap_or_else(|| panic!("unresolvable {r}")),
                )
            }
            None => schema,
        }
    }

    /// The spec path template matching a concrete path (most literal segments wins).
    fn template(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.trim_start_matches("/v1").split('/').collect();
        self.doc["paths"]
            .as_object()?
            .keys()
            .filter(|t| {
                let ts: Vec<&str> = t.split('/').collect();
                ts.len() == segments.len()
                    && ts
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| t.starts_with('{') || t == s)
            })
            .max_by_key(|t| t.split('/').filter(|s| !s.starts_with('{')).count())
            .cloned()
    }

    fn response_schema(&self, method: &str, path: &str) -> Option<(&Value, String)> {
        let template = self.template(path)?;
        let op = &self.doc["paths"][&template][method.to_ascii_lowercase()];
        let schema = op.pointer("/responses/200/content/application~1json/schema")?;
        Some((
            self.resolve(schema),
            format!(
                "{method} {template} ({})",
                op["operationId"].as_str().unwrap_or("?")
            ),
        ))
    }

    fn check(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        field: &str,
        errors: &mut Vec<String>,
    ) {
        let schema = self.resolve(schema);
        let delta = KNOWN_DELTAS.iter().any(|(f, _)| *f == field);
        if value.is_null() && (schema["nullable"] == true || delta) {
            return;
        }
        for key in ["allOf"] {
            if let Some(all) = schema[key].as_array() {
                for s in all {
                    self.check(s, value, at, field, errors);
                }
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(any) = schema[key].as_array() {
                let ok = any.iter().any(|s| {
                    let mut e = Vec::new();
                    self.check(s, value, at, field, &mut e);
                    e.is_empty()
                });
                if !ok {
                    errors.push(format!("{at}: matches none of {key}"));
                }
            }
        }
        let Some(ty) = schema["type"].as_str() else {
            return;
        };
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !ok {
            errors.push(format!("{at}: expected {ty}, got {value}"));
            return;
        }
        match ty {
            "object" => {
                let obj = value.as_object().unwrap();
                for req in schema["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if !obj.contains_key(req) {
                        errors.push(format!("{at}: missing required `{req}`"));
                    }
                }
                if let Some(props) = schema["properties"].as_object() {
                    for (k, v) in obj {
                        if let Some(s) = props.get(k) {
                            self.check(s, v, &format!("{at}.{k}"), k, errors);
                        } else if let Some(extra) =
                            schema.get("additionalProperties").filter(|a| a.is_object())
                        {
                            self.check(extra, v, &format!("{at}.{k}"), k, errors);
                        }
                    }
                }
            }
            "array" => {
                if let Some(items) = schema.get("items") {
                    for (i, v) in value.as_array().unwrap().iter().enumerate() {
                        self.check(items, v, &format!("{at}[{i}]"), field, errors);
                    }
                }
            }
            "string" => {
                let len = value.as_str().unwrap().chars().count() as u64;
                let min = schema["minLength"].as_u64().unwrap_or(0);
                if len < min && !delta {
                    errors.push(format!("{at}: shorter than {min}"));
                }
                if schema["maxLength"].as_u64().is_some_and(|m| len > m) {
                    errors.push(format!("{at}: longer than {}", schema["maxLength"]));
                }
                if let Some(choices) = schema["enum"].as_array()
                    && !choices.contains(value)
                {
                    errors.push(format!(
                        "{at}: {value} not in {}",
                        Value::Array(choices.clone())
                    ));
                }
            }
            "integer" | "number" => {
                let n = value.as_f64().unwrap();
                if schema["minimum"].as_f64().is_some_and(|m| n < m)
                    || schema["maximum"].as_f64().is_some_and(|m| n > m)
                {
                    errors.push(format!("{at}: {n} out of range"));
                }
            }
            _ => {}
        }
    }
}

/// Drives every endpoint the tool uses (and avn's), successes and errors.
fn exercise(s: &Sandbox) -> Vec<(String, String, u16, Value)> {
    let p = format!("/v1/project/{PROJECT}");
    let mut seen = Vec::new();
    let mut call = |method: &str, path: String, body: Option<Value>| {
        let (status, v) = s.api(method, &path, body);
        seen.push((method.to_string(), path, status, v.clone()));
        v
    };
    let types = [
        ("cf-pg", "pg", "hobbyist", json!({})),
        ("cf-mysql", "mysql", "hobbyist", json!({})),
        (
            "cf-kafka",
            "kafka",
            "startup-2",
            json!({"kafka_rest": true, "schema_registry": true, "kafka_authentication_methods": {"sasl": true}}),
        ),
        ("cf-valkey", "valkey", "hobbyist", json!({})),
        ("cf-os", "opensearch", "hobbyist", json!({})),
        ("cf-ch", "clickhouse", "hobbyist", json!({})),
        ("cf-grafana", "grafana", "hobbyist", json!({})),
        ("cf-cass", "cassandra", "startup-4", json!({})),
    ];
    for (name, ty, plan, uc) in &types {
        call(
            "POST",
            format!("{p}/service"),
            Some(
                json!({"service_name": name, "service_type": ty, "plan": plan, "cloud": "google-europe-west1",
                        "project_vpc_id": null, "user_config": uc, "tags": {"team": "x"}}),
            ),
        );
    }
    std::thread::sleep(Duration::from_millis(600));
    call("GET", "/v1/clouds".into(), None);
    call("GET", format!("{p}/clouds"), None);
    call("GET", "/v1/project".into(), None);
    call("GET", p.clone(), None);
    call("GET", format!("{p}/vpcs"), None);
    call("GET", format!("{p}/kms/ca"), None);
    call("GET", "/v1/me".into(), None);
    for (_, ty, plan, _) in &types {
        call("GET", format!("{p}/service-types/{ty}"), None);
        call("GET", format!("{p}/service-types/{ty}/plans"), None);
        call("GET", format!("{p}/service-types/{ty}/plans/{plan}"), None);
        call(
            "GET",
            format!("{p}/pricing/service-types/{ty}/plans/{plan}/clouds/aws-eu-central-1"),
            None,
        );
    }
    call("GET", format!("{p}/service"), None);
    call("GET", format!("{p}/service?include_secrets=true"), None);
    for (name, ..) in &types {
        call("GET", format!("{p}/service/{name}"), None);
        call(
            "GET",
            format!("{p}/service/{name}?include_secrets=true"),
            None,
        );
    }
    let svc = format!("{p}/service/cf-pg");
    call("GET", format!("{svc}/tags"), None);
    call(
        "PATCH",
        format!("{svc}/tags"),
        Some(json!({"tags": {"a": "1", "team": null}})),
    );
    call(
        "PUT",
        format!("{svc}/tags"),
        Some(json!({"tags": {"b": "2"}})),
    );
    call(
        "PUT",
        svc.clone(),
        Some(json!({"termination_protection": false})),
    );
    call(
        "POST",
        format!("{svc}/db"),
        Some(json!({"database": "app"})),
    );
    call("GET", format!("{svc}/db"), None);
    call("DELETE", format!("{svc}/db/app"), None);
    call(
        "POST",
        format!("{svc}/user"),
        Some(json!({"username": "u1"})),
    );
    call("GET", format!("{svc}/user/u1?include_secrets=true"), None);
    call(
        "PUT",
        format!("{svc}/user/u1"),
        Some(json!({"operation": "reset-credentials"})),
    );
    call("PUT", format!("{svc}/user/u1/credentials/reset"), None);
    call("DELETE", format!("{svc}/user/u1"), None);
    call(
        "POST",
        format!("{p}/service/cf-mysql/user"),
        Some(json!({"username": "m1", "authentication": "mysql_native_password"})),
    );
    let k = format!("{p}/service/cf-kafka");
    call("POST", format!("{k}/user"), Some(json!({"username": "ku"})));
    call(
        "POST",
        format!("{k}/topic"),
        Some(json!({"topic_name": "t1", "partitions": 3, "replication": 2})),
    );
    call("GET", format!("{k}/topic"), None);
    std::thread::sleep(Duration::from_millis(300));
    call("GET", format!("{k}/topic"), None);
    call("GET", format!("{k}/topic/t1"), None);
    call(
        "POST",
        format!("{k}/acl"),
        Some(json!({"permission": "read", "topic": "t*", "username": "ku"})),
    );
    call("GET", format!("{k}/acl"), None);
    call("DELETE", format!("{k}/acl/default"), None);
    call("DELETE", format!("{k}/topic/t1"), None);
    // Errors, in the API's shape.
    call("GET", format!("{p}/service/nosuch"), None);
    call(
        "POST",
        format!("{p}/service"),
        Some(json!({"service_name": "cf-pg", "service_type": "pg", "plan": "hobbyist"})),
    );
    call(
        "POST",
        format!("{p}/service"),
        Some(json!({"service_name": "x", "service_type": "pg", "plan": "nope"})),
    );
    for (name, ..) in &types {
        call("DELETE", format!("{p}/service/{name}"), None);
    }
    seen
}

#[test]
fn every_response_matches_the_official_openapi_schemas() {
    let spec = Spec::load();
    let s = Sandbox::start();
    let responses = exercise(&s);
    let mut errors = Vec::new();
    let mut operations = BTreeSet::new();
    let error_item = spec.resolve(&spec.doc["components"]["schemas"]["ServiceDeleteResponse"])["properties"]["errors"].clone();
    for (method, path, status, body) in &responses {
        let route = path.split('?').next().unwrap();
        if (200..300).contains(status) {
            let (schema, op) = spec
                .response_schema(method, route)
                .unwrap_or_else(|| panic!("{method} {route} is not in the spec"));
            operations.insert(op.clone());
            spec.check(schema, body, &op, "", &mut errors);
        } else {
            // The documented error shape: `message`, and `errors[]` with message and status.
            if !body["message"].is_string() {
                errors.push(format!("{method} {route} {status}: no `message`"));
            }
            spec.check(
                &error_item,
                &body["errors"],
                &format!("{method} {route} {status} errors"),
                "errors",
                &mut errors,
            );
            if body["errors"][0]["status"] != *status {
                errors.push(format!(
                    "{method} {route}: errors[0].status is not {status}"
                ));
            }
        }
    }
    assert!(
        errors.is_empty(),
        "{} schema violations:\n{}",
        errors.len(),
        errors.join("\n")
    );
    assert!(
        operations.len() >= 30,
        "exercised {} operations: {operations:#?}",
        operations.len()
    );
}

#[test]
fn the_sandbox_validates_requests_against_the_spec_too() {
    // The requests our client sends, as the sandbox logged them, match the request
    // schemas: a sandbox that accepted anything would prove nothing.
    let spec = Spec::load();
    let env = Env::new(
        "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist, databases: [app], users: [u]}\n  ev:\n    type: kafka\n    plan: startup-2\n    users: [k]\n    topics: [{name: t, partitions: 2, replication: 2}]\n    acls: [{username: k, topic: t, permission: read}]\n    default_acl: false\n",
    );
    env.run(&["up"]).expect_code(0);
    env.run(&["down"]).expect_code(0);
    let mut errors = Vec::new();
    let mut checked = 0;
    for r in env.sandbox.requests() {
        let (Some(method), Some(path)) = (r["method"].as_str(), r["path"].as_str()) else {
            continue;
        };
        if r["body"].is_null() {
            continue;
        }
        let template = spec
            .template(path)
            .unwrap_or_else(|| panic!("{path} not in the spec"));
        let op = &spec.doc["paths"][&template][method.to_ascii_lowercase()];
        let schema = op
            .pointer("/requestBody/content/application~1json/schema")
            .unwrap_or_else(|| panic!("{method} {template} takes no body"));
        spec.check(
            spec.resolve(schema),
            &r["body"],
            &format!("{method} {template}"),
            "",
            &mut errors,
        );
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} request bodies");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
