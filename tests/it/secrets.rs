//! No secret in any output, at any verbosity: the token, every issued password and
//! private key stay out of stdout and stderr.

use crate::common::*;

const ALL: &str = "project: test-project\nservices:\n  db:\n    type: pg\n    plan: hobbyist\n    users: [app_user]\n  events:\n    type: kafka\n    plan: startup-2\n    users: [svc]\n    topics: [{name: orders, replication: 2}]\n  cache: {type: valkey, plan: hobbyist}\n";

/// The body lines of a PEM block (its header and footer are no secret).
fn pem_lines(pem: &str) -> impl Iterator<Item = String> + '_ {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .map(str::to_string)
}

/// Every secret the sandbox issued, read back with include_secrets: the token, each
/// user's password, and Kafka's private keys and certificates.
fn issued_secrets(env: &Env) -> Vec<String> {
    let (_, list) = env.sandbox.api(
        "GET",
        &format!("/v1/project/{PROJECT}/service?include_secrets=true"),
        None,
    );
    let mut out = vec![env.sandbox.token.clone()];
    let mut kafka_pems = 0;
    for svc in list["services"].as_array().unwrap() {
        for u in svc["users"].as_array().unwrap() {
            out.push(u["password"].as_str().unwrap().to_string());
            for field in ["access_key", "access_cert"] {
                if let Some(pem) = u[field].as_str() {
                    out.extend(pem_lines(pem));
                    kafka_pems += usize::from(svc["service_type"] == "kafka");
                }
            }
        }
    }
    // Kafka's admin and `svc`: a key and a certificate each.
    assert_eq!(kafka_pems, 4, "{list:#}");
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
        vec!["env", "-vv"],
        vec!["plan", "-vv"],
        vec!["down", "-vv"],
    ] {
        let mut c = env.cmd(&args);
        c.env("RUST_LOG", "trace");
        let r = run(c);
        // One that failed at once would have had nothing to leak.
        r.expect_code(0);
        assert_clean(&r.all(), &secrets, &args.join(" "));
    }
    // The state file holds no credentials either.
    let state = std::fs::read_to_string(env.path(".aiven-ephemeral/state.json")).unwrap();
    assert_clean(&state, &secrets, "the state file");
}

#[test]
fn no_secret_in_run_output_or_on_failure() {
    let env = Env::new(ALL);
    // The command keeps what the run gave it (its environment, the certificate files)
    // for the test, then fails; teardown then deletes everything.
    let script = "env > run-env; cp -R .aiven-ephemeral/certs run-certs; exit 3";
    let mut r = env.cmd(&["run", "-vv", "--", "sh", "-c", script]);
    r.env("RUST_LOG", "trace");
    let r = run(r);
    r.expect_code(3);
    let given = std::fs::read_to_string(env.path("run-env")).unwrap();
    let mut secrets: Vec<String> = given
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(name, _)| name.ends_with("PASSWORD"))
        .map(|(_, value)| value.to_string())
        .collect();
    let passwords = secrets.len();
    assert!(passwords >= 4, "the run's passwords: {given}");
    for file in std::fs::read_dir(env.path("run-certs")).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            secrets.extend(pem_lines(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    assert!(secrets.len() > passwords, "Kafka's private keys were given");
    secrets.push(env.sandbox.token.clone());
    assert_clean(&r.all(), &secrets, "run -vv");
    let logged = serde_json::to_string(&env.sandbox.requests()).unwrap();
    assert!(
        !logged.contains(&env.sandbox.token),
        "the sandbox log never keeps the token"
    );
}
