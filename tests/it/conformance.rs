//! Every response body the sandbox produces for the endpoints this tool uses, checked
//! against the schemas of the official OpenAPI description. The tests read the trimmed
//! copy committed in `tests/data` (see its README for source, licence and how it is cut).
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

/// Sandbox routes the committed description lacks, each with where the real API has it.
const BEYOND_SPEC: &[(&str, &str)] = &[(
    "/account/{account}/service_versions",
    "avn's `service versions --account-id` (aiven-client client.py get_service_versions); newer than the description",
)];

const TRIMMED: &str = include_str!("../data/aiven-openapi.trimmed.json");

impl Spec {
    fn load() -> Self {
        Self {
            doc: serde_json::from_str(TRIMMED).expect("the trimmed description is JSON"),
        }
    }

    /// The operation for a method on a concrete path, if the description has it.
    fn operation(&self, method: &str, path: &str) -> Option<(String, &Value)> {
        let template = self.template(path)?;
        let op = self.doc["paths"][&template].get(method.to_ascii_lowercase())?;
        Some((template, op))
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
        let (template, op) = self.operation(method, path)?;
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

impl Spec {
    /// A request body: valid, and with no key its schema does not list. The real API
    /// ignores an unknown key (a misspelled optional field), so only this check finds it.
    fn check_request(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        self.check(schema, value, at, "", errors);
        self.unlisted(schema, value, at, errors);
    }

    fn unlisted(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = self.resolve(schema);
        for key in ["oneOf", "anyOf"] {
            if let Some(any) = schema[key].as_array() {
                let fits = |s: &Value| {
                    let mut e = Vec::new();
                    self.check(s, value, at, "", &mut e);
                    self.unlisted(s, value, at, &mut e);
                    e.is_empty()
                };
                if !any.iter().any(fits) {
                    errors.push(format!("{at}: no {key} alternative lists every key"));
                }
            }
        }
        // The properties of the schema and of everything it is `allOf`.
        let parts: Vec<&Value> = std::iter::once(schema)
            .chain(
                schema["allOf"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| self.resolve(s)),
            )
            .collect();
        let props: Vec<(&String, &Value)> = parts
            .iter()
            .filter_map(|p| p["properties"].as_object())
            .flatten()
            .collect();
        let open = parts
            .iter()
            .any(|p| p.get("additionalProperties").is_some_and(|a| a != false));
        if let Some(obj) = value.as_object() {
            for (k, v) in obj {
                match props.iter().find(|(name, _)| *name == k) {
                    Some((_, s)) => self.unlisted(s, v, &format!("{at}.{k}"), errors),
                    None if open || props.is_empty() => {}
                    None => errors.push(format!("{at}: `{k}` is not a field of the schema")),
                }
            }
        }
        if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
            for (i, v) in values.iter().enumerate() {
                self.unlisted(items, v, &format!("{at}[{i}]"), errors);
            }
        }
    }

    fn request_schema<'a>(&'a self, method: &str, path: &str) -> &'a Value {
        let (template, op) = self
            .operation(method, path)
            .unwrap_or_else(|| panic!("{method} {path} is not an operation"));
        let schema = op
            .pointer("/requestBody/content/application~1json/schema")
            .unwrap_or_else(|| panic!("{method} {template} takes no body"));
        self.resolve(schema)
    }
}

#[test]
fn a_misspelled_optional_request_field_is_refused() {
    let spec = Spec::load();
    let path = format!("/v1/project/{PROJECT}/service");
    let schema = spec.request_schema("POST", &path);
    let body = json!({"service_name": "x", "service_type": "pg", "plan": "hobbyist", "cloud": "google-europe-west1", "termination_protection": false});
    let mut errors = Vec::new();
    spec.check_request(schema, &body, "POST service", &mut errors);
    assert_eq!(
        errors,
        Vec::<String>::new(),
        "the body as the spec lists it"
    );
    let mut misspelled = body.clone();
    misspelled["termination_protecton"] = json!(false);
    spec.check_request(schema, &misspelled, "POST service", &mut errors);
    assert_eq!(
        errors,
        ["POST service: `termination_protecton` is not a field of the schema"]
    );
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
    for (name, ..) in &types {
        wait_running(s, name);
    }
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
    // CONFIGURING, then ACTIVE: both answers are checked.
    let start = std::time::Instant::now();
    while s.api("GET", &format!("{k}/topic/t1"), None).0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "t1 never became active"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    call("GET", format!("{k}/topic"), None);
    call("GET", format!("{k}/topic/t1"), None);
    call(
        "POST",
        format!("{k}/acl"),
        Some(json!({"permission": "read", "topic": "t*", "username": "ku"})),
    );
    call("GET", format!("{k}/acl"), None);
    let native = call(
        "POST",
        format!("{k}/kafka/acl"),
        Some(json!({
            "principal": "User:ku", "resource_type": "Group", "resource_name": "t.",
            "pattern_type": "PREFIXED", "operation": "Read", "permission_type": "ALLOW",
        })),
    );
    let native = native["acl"]["id"].as_str().unwrap();
    call("GET", format!("{k}/kafka/acl"), None);
    call("GET", format!("{k}/kafka/acl/{native}"), None);
    // The service's read carries its Kafka-native ACLs.
    call("GET", k.clone(), None);
    call("DELETE", format!("{k}/kafka/acl/{native}"), None);
    call("GET", format!("{k}/kafka/acl/{native}"), None);
    call(
        "POST",
        format!("{p}/service/cf-pg/kafka/acl"),
        Some(json!({
            "principal": "User:u", "resource_type": "Topic", "resource_name": "t",
            "pattern_type": "LITERAL", "operation": "Read", "permission_type": "ALLOW",
        })),
    );
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
fn every_client_request_is_a_described_operation_with_a_valid_body() {
    // The requests our client sends, as the sandbox logged them, are operations of the
    // description and their bodies match its request schemas: a sandbox that accepted
    // anything would prove nothing.
    let spec = Spec::load();
    let env = Env::new(
        "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist, databases: [app], users: [u]}\n  ev:\n    type: kafka\n    plan: startup-2\n    users: [k]\n    topics: [{name: t, partitions: 2, replication: 2}]\n    acls: [{username: k, topic: t, permission: read}]\n    default_acl: false\n",
    );
    env.run(&["up"]).expect_code(0);
    env.run(&["down"]).expect_code(0);
    let mut errors = Vec::new();
    let (mut requests, mut bodies) = (0, 0);
    for r in env.sandbox.requests() {
        let (Some(method), Some(path)) = (r["method"].as_str(), r["path"].as_str()) else {
            continue;
        };
        requests += 1;
        let Some((template, op)) = spec.operation(method, path) else {
            errors.push(format!(
                "{method} {path} is not an operation of the description"
            ));
            continue;
        };
        if r["body"].is_null() {
            continue;
        }
        let schema = op
            .pointer("/requestBody/content/application~1json/schema")
            .unwrap_or_else(|| panic!("{method} {template} takes no body"));
        spec.check_request(
            spec.resolve(schema),
            &r["body"],
            &format!("{method} {template}"),
            &mut errors,
        );
        bodies += 1;
    }
    assert!(
        requests >= 20 && bodies >= 6,
        "only {requests} requests, {bodies} bodies"
    );
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn every_sandbox_route_is_in_the_trimmed_description() {
    // Each method the sandbox answers on a route (anything but 405) must be an operation
    // of the committed description, and the description must hold nothing else: when a
    // route is added, `tests/data/trim-openapi.py` must cut it too.
    let spec = Spec::load();
    let s = Sandbox::start();
    let mut served = BTreeSet::new();
    let mut missing = Vec::new();
    for template in aiven_sandbox::api_paths() {
        if BEYOND_SPEC.iter().any(|(t, _)| *t == template) {
            continue;
        }
        let path: Vec<&str> = template
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect();
        let path = format!("/v1{}", path.join("/"));
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if s.raw(method, &path, None).0 == 405 {
                continue;
            }
            match spec.operation(method, &path) {
                Some((t, _)) => {
                    served.insert(format!("{method} {t}"));
                }
                None => missing.push(format!("{method} {template}")),
            }
        }
    }
    assert!(
        missing.is_empty(),
        "served but not in tests/data/aiven-openapi.trimmed.json: {missing:#?}"
    );
    let described: BTreeSet<String> = spec.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(t, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{} {t}", m.to_ascii_uppercase()))
        })
        .collect();
    assert_eq!(
        served, described,
        "the trimmed description and the sandbox's routes differ"
    );
}
