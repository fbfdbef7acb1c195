//! Two beliefs about the API's rules, each checked on its own against the official
//! description (the committed trimmed copy): the sandbox's, through its answers, and the
//! client's, through its naming and manifest checks. The two sides share no code, so a
//! mistake in one is not repeated, unseen, in the other.
//!
//! The description states lengths and enums, not character patterns (it has no
//! `pattern` at all, and types `tags` as an empty object): those are what is checked.

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::common::*;

const TRIMMED: &str = include_str!("../data/aiven-openapi.trimmed.json");

/// A string property of a schema in the description: `schema` is a component name,
/// `path` the property's path inside it (`service/project_name`).
struct Rule(Value);

impl Rule {
    fn of(schema: &str, path: &str) -> Self {
        let doc: Value = serde_json::from_str(TRIMMED).expect("the description is JSON");
        let pointer = path
            .split('/')
            .fold(format!("/components/schemas/{schema}"), |p, key| {
                format!("{p}/properties/{key}")
            });
        let rule = doc
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("{schema} has no {path}"));
        Self(rule.clone())
    }

    fn min(&self) -> usize {
        self.0["minLength"].as_u64().unwrap_or(0) as usize
    }

    fn max(&self) -> usize {
        self.0["maxLength"]
            .as_u64()
            .unwrap_or_else(|| panic!("no maxLength in {}", self.0)) as usize
    }

    fn allows_length(&self, s: &str) -> bool {
        (self.min()..=self.max()).contains(&s.chars().count())
    }

    fn values(&self) -> Vec<String> {
        self.0["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("no enum in {}", self.0))
            .iter()
            .map(|v| v.as_str().expect("string enum").to_string())
            .collect()
    }

    /// One of the enum's values, or any short lowercase word.
    fn value_or_other(&self) -> BoxedStrategy<String> {
        prop_oneof![
            proptest::sample::select(self.values()),
            "[a-z,_-]{1,20}".prop_map(String::from),
        ]
        .boxed()
    }
}

fn check<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    })
    .run(&strategy, test)
    .unwrap();
}

// ---------------------------------------------------------------------------------------
// The sandbox's belief

/// A sandbox with one running service of each kind the rules need.
fn sandbox_with_services() -> Sandbox {
    let s = Sandbox::with(aiven_sandbox::Config {
        accept_any_project: true,
        ..fast_config()
    });
    for (name, ty, plan) in [("db", "pg", "hobbyist"), ("ev", "kafka", "startup-2")] {
        let body = json!({"service_name": name, "service_type": ty, "plan": plan});
        let (status, answer) = s.api(
            "POST",
            &format!("/v1/project/{PROJECT}/service"),
            Some(body),
        );
        assert_eq!(status, 200, "{answer}");
    }
    let start = std::time::Instant::now();
    while !["db", "ev"].iter().all(|name| {
        let (_, body) = s.api(
            "GET",
            &format!("/v1/project/{PROJECT}/service/{name}"),
            None,
        );
        body["service"]["state"] == "RUNNING"
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "services never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

/// Whether the sandbox took a request as valid: anything but a 400.
fn accepts(s: &Sandbox, method: &str, path: &str, body: Value) -> bool {
    let (status, answer) = s.api(method, &format!("/v1/project/{PROJECT}/{path}"), Some(body));
    assert!(status < 500, "{method} {path}: {status} {answer}");
    status != 400
}

#[test]
fn the_sandbox_accepts_exactly_the_described_lengths() {
    let s = sandbox_with_services();
    let service_name = Rule::of("ServiceCreateRequestBody", "service_name");
    check("[a-z][a-z0-9-]{0,80}", |name| {
        let body = json!({"service_name": name, "service_type": "grafana", "plan": "startup-1"});
        prop_assert_eq!(
            accepts(&s, "POST", "service", body),
            service_name.allows_length(&name)
        );
        Ok(())
    });
    let username = Rule::of("ServiceUserCreateRequestBody", "username");
    check("[a-z][a-z0-9_]{0,80}", |name| {
        prop_assert_eq!(
            accepts(&s, "POST", "service/db/user", json!({"username": name})),
            username.allows_length(&name)
        );
        Ok(())
    });
    let database = Rule::of("ServiceDatabaseCreateRequestBody", "database");
    check("[a-z][a-z0-9_]{0,60}", |name| {
        prop_assert_eq!(
            accepts(&s, "POST", "service/db/db", json!({"database": name})),
            database.allows_length(&name)
        );
        Ok(())
    });
    let topic = Rule::of("ServiceKafkaTopicCreateRequestBody", "topic_name");
    check("[a-z0-9._-]{0,300}", |name| {
        let body = json!({"topic_name": name, "replication": 1});
        prop_assert_eq!(
            accepts(&s, "POST", "service/ev/topic", body),
            topic.allows_length(&name)
        );
        Ok(())
    });
    let password = Rule::of("ServiceUserCredentialsModifyRequestBody", "new_password");
    check("[a-zA-Z0-9]{0,300}", |new_password| {
        let body = json!({"operation": "reset-credentials", "new_password": new_password});
        prop_assert_eq!(
            accepts(&s, "PUT", "service/db/user/avnadmin", body),
            password.allows_length(&new_password)
        );
        Ok(())
    });
}

#[test]
fn the_sandbox_knows_project_names_as_long_as_described() {
    // With `accept_any_project`, a project the sandbox would not refuse springs up.
    let s = Sandbox::with(aiven_sandbox::Config {
        accept_any_project: true,
        ..fast_config()
    });
    let project_name = Rule::of("ProjectGetResponse", "project/project_name");
    check("[a-z][a-z0-9-]{0,80}", |name| {
        let (status, _) = s.api("GET", &format!("/v1/project/{name}"), None);
        prop_assert_eq!(status == 200, project_name.allows_length(&name));
        Ok(())
    });
}

#[test]
fn the_sandbox_accepts_exactly_the_described_enums_and_acl_lengths() {
    let s = sandbox_with_services();
    let permission = Rule::of("ServiceKafkaAclAddRequestBody", "permission");
    let username = Rule::of("ServiceKafkaAclAddRequestBody", "username");
    let strategy = (permission.value_or_other(), "[a-z][a-z0-9_]{0,80}");
    check(strategy, |(value, user)| {
        let body = json!({"permission": value, "topic": "t", "username": user});
        prop_assert_eq!(
            accepts(&s, "POST", "service/ev/acl", body),
            permission.values().contains(&value) && username.allows_length(&user)
        );
        Ok(())
    });
    let operation = Rule::of("ServiceUserCredentialsModifyRequestBody", "operation");
    check(operation.value_or_other(), |value| {
        prop_assert_eq!(
            accepts(
                &s,
                "PUT",
                "service/db/user/avnadmin",
                // set-access-control needs what to set; the others ignore it.
                json!({"operation": value, "access_control": {"pg_allow_replication": true}})
            ),
            operation.values().contains(&value)
        );
        Ok(())
    });
}

#[test]
fn the_sandbox_tells_times_as_described() {
    // The description's times are ISO 8601 strings of at most 36 characters; the
    // sandbox's are RFC 3339 (a profile of it), whatever its clock says.
    let create_time = Rule::of("ServiceGetResponse", "service/create_time");
    // About 30 years either way: the clock stays after the Unix epoch.
    let offsets = -1_000_000_000i64..1_000_000_000;
    TestRunner::new(Config {
        cases: 8,
        ..Config::default()
    })
    .run(&offsets, |offset| {
        let s = Sandbox::with(aiven_sandbox::Config {
            clock_offset_secs: offset,
            ..fast_config()
        });
        s.create_service("timed", json!({}));
        let (_, body) = s.api("GET", &format!("/v1/project/{PROJECT}/service/timed"), None);
        let time = body["service"]["create_time"].as_str().unwrap_or_default();
        prop_assert!(create_time.allows_length(time), "{time}");
        prop_assert!(OffsetDateTime::parse(time, &Rfc3339).is_ok(), "{time}");
        Ok(())
    })
    .unwrap();
}

// ---------------------------------------------------------------------------------------
// The client's belief

fn manifest_accepts(service: &str) -> bool {
    let text = format!("project: p\nservices:\n  s:\n{service}");
    aiven_ephemeral::manifest::parse(&text, Path::new("m.yaml")).is_ok()
}

#[test]
fn the_clients_service_names_fit_the_description() {
    let service_name = Rule::of("ServiceCreateRequestBody", "service_name");
    // Names the client builds, from any prefix, key and run id it accepts.
    let parts = (
        "[a-z][a-z0-9]{0,19}",
        "[a-z][a-z0-9-]{0,70}[a-z0-9]",
        "[a-z0-9]{1,20}",
    );
    check(parts, |(prefix, key, run_id)| {
        if let Ok(name) = aiven_ephemeral::identity::service_name(&prefix, &key, &run_id) {
            prop_assert!(service_name.allows_length(&name), "{name}");
            prop_assert!(aiven_ephemeral::manifest::is_service_name(&name), "{name}");
        }
        Ok(())
    });
    // And the names it accepts from users are those the description allows.
    check("[a-z][a-z0-9-]{0,80}", |name| {
        prop_assert_eq!(
            aiven_ephemeral::manifest::is_service_name(&name),
            service_name.allows_length(&name)
        );
        Ok(())
    });
}

#[test]
fn the_clients_manifest_accepts_what_the_description_allows() {
    let username = Rule::of("ServiceUserCreateRequestBody", "username");
    check("[a-z][a-z0-9_]{0,80}", |name| {
        let service = format!("    type: pg\n    plan: hobbyist\n    users: [\"{name}\"]\n");
        prop_assert_eq!(manifest_accepts(&service), username.allows_length(&name));
        Ok(())
    });
    let database = Rule::of("ServiceDatabaseCreateRequestBody", "database");
    check("[a-z][a-z0-9_]{0,60}", |name| {
        let service = format!("    type: pg\n    plan: hobbyist\n    databases: [\"{name}\"]\n");
        prop_assert_eq!(manifest_accepts(&service), database.allows_length(&name));
        Ok(())
    });
    let topic = Rule::of("ServiceKafkaTopicCreateRequestBody", "topic_name");
    let cleanup = Rule::of("ServiceKafkaTopicCreateRequestBody", "cleanup_policy");
    check(
        ("[a-z0-9._-]{1,300}", cleanup.value_or_other()),
        |(name, policy)| {
            let service = format!(
                "    type: kafka\n    plan: startup-2\n    topics: [{{name: \"{name}\", cleanup_policy: \"{policy}\"}}]\n"
            );
            prop_assert_eq!(
                manifest_accepts(&service),
                topic.allows_length(&name) && cleanup.values().contains(&policy)
            );
            Ok(())
        },
    );
    let acl_username = Rule::of("ServiceKafkaAclAddRequestBody", "username");
    check("[a-z][a-z0-9_]{0,80}", |name| {
        let service = format!(
            "    type: kafka\n    plan: startup-2\n    acls: [{{username: \"{name}\", topic: t, permission: read}}]\n"
        );
        prop_assert_eq!(
            manifest_accepts(&service),
            acl_username.allows_length(&name)
        );
        Ok(())
    });
    let project_name = Rule::of("ProjectGetResponse", "project/project_name");
    check("[a-z][a-z0-9-]{0,80}", |name| {
        let text = format!("project: {name}\nservices:\n  s: {{type: pg, plan: hobbyist}}\n");
        let accepted = aiven_ephemeral::manifest::parse(&text, Path::new("m.yaml")).is_ok();
        prop_assert_eq!(accepted, project_name.allows_length(&name));
        Ok(())
    });
    let permission = Rule::of("ServiceKafkaAclAddRequestBody", "permission");
    check(permission.value_or_other(), |value| {
        let service = format!(
            "    type: kafka\n    plan: startup-2\n    users: [u]\n    acls: [{{username: u, topic: t, permission: \"{value}\"}}]\n"
        );
        prop_assert_eq!(
            manifest_accepts(&service),
            permission.values().contains(&value)
        );
        Ok(())
    });
}

#[test]
fn the_clients_times_are_rfc3339_within_the_described_length() {
    let create_time = Rule::of("ServiceGetResponse", "service/create_time");
    // Year 0 to 9999, the range RFC 3339 can write.
    check(-62_167_219_200i64..253_402_300_799, |secs| {
        let t = OffsetDateTime::from_unix_timestamp(secs).expect("in range");
        let text = aiven_ephemeral::tags::rfc3339(t);
        prop_assert!(create_time.allows_length(&text), "{text}");
        prop_assert_eq!(OffsetDateTime::parse(&text, &Rfc3339).ok(), Some(t));
        Ok(())
    });
}
