//! No secret in any output, at any verbosity: the token, every issued password and
//! private key stay out of stdout and stderr.

use serde_json::Value;

use crate::common::*;

const ALL: &str = "project: test-project\nservices:\n  db:\n    type: pg\n    plan: hobbyist\n    users: [app_user]\n  events:\n    type: kafka\n    plan: startup-2\n    users: [svc]\n    topics: [{name: orders, replication: 2}]\n  cache: {type: valkey, plan: hobbyist}\n";

/// Every secret the sandbox issued, read back with include_secrets.
fn issued_secrets(env: &Env) -> Vec<String> {
    let (_, list) = env.sandbox.api(
        "GET",
        &format!("/v1/project/{PROJECT}/service?include_secrets=true"),
        None,
    );
    let mut out = vec![env.sandbox.token.clone()];
    for svc in list["services"].as_array().unwrap() {
        for u in svc["users"].as_array().unwrap() {
            out.push(u["password"].as_str().unwrap().to_string());
            if let Some(key) = u["access_key"].as_str() {
                out.extend(
                    key.lines()
                        .filter(|l| !l.starts_with("-----"))
                        .map(str::to_string),
                );
            }
        }
    }
    assert!(out.len() > 5);
    out
}

fn assert_clean(output: &str, secrets: &[String], what: &str) {
    for s in secrets {
        assert!(
            !output.contains(s.as_str()),
            "{what} leaks a secret ({}...)",
            &s[..6.min(s.len())]
        );
    }
}

#[test]
fn no_secret_in_any_output_at_debug() {
    let env = Env::new(ALL);
    let mut up = env.cmd(&["up", "-vv"]);
    up.env("RUST_LOG", "debug");
    let up = run(up);
    up.expect_code(0);
    assert!(up.stderr.contains("DEBUG"), "debug logging was on");
    let secrets = issued_secrets(&env);
    assert_clean(&up.all(), &secrets, "up -vv");
    for args in [
        vec!["status", "-vv"],
        vec!["status", "--json"],
        vec!["plan", "-vv"],
        vec!["down", "-vv"],
    ] {
        let mut c = env.cmd(&args);
        c.env("RUST_LOG", "trace");
        let r = run(c);
        assert_clean(&r.all(), &secrets, &args.join(" "));
    }
    // The state file holds no credentials either.
    let state = std::fs::read_to_string(env.path(".aiven-ephemeral/state.json")).unwrap();
    assert_clean(&state, &secrets, "the state file");
}

#[test]
fn no_secret_in_run_output_or_on_failure() {
    let env = Env::new(ALL);
    let mut r = env.cmd(&["run", "-vv", "--", "sh", "-c", "exit 3"]);
    r.env("RUST_LOG", "trace");
    let r = run(r);
    r.expect_code(3);
    // Everything was deleted: read the secrets from the sandbox's request log instead.
    let logged: Vec<Value> = env.sandbox.requests();
    let text = serde_json::to_string(&logged).unwrap();
    assert!(
        !text.contains(&env.sandbox.token),
        "the sandbox log never keeps the token"
    );
    assert!(!r.all().contains(&env.sandbox.token));
    assert!(
        !r.all().contains("AVNS_"),
        "no generated password in output"
    );
}
