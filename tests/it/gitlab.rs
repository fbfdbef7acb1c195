//! The GitLab component, interpolated as GitLab does (on the parsed YAML: a string that is
//! one `$[[ inputs.x ]]` block becomes the input's value, blocks inside a string are
//! replaced as text), its variables given to the job as the runner does (`expand: false`
//! kept raw), and its script and after_script run with `sh` against the sandbox.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

fn component() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/aiven-ephemeral.yml"),
    )
    .unwrap()
}

/// Replaces the `$[[ inputs.NAME ]]` blocks of one string.
fn interpolate_str(text: &str, inputs: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("$[[") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("]]").expect("block is closed") + start;
        let name = rest[start + 3..end]
            .trim()
            .strip_prefix("inputs.")
            .expect("an input");
        out.push_str(
            inputs
                .get(name)
                .unwrap_or_else(|| panic!("unknown input {name}")),
        );
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn interpolate(node: &Value, inputs: &BTreeMap<String, String>) -> Value {
    match node {
        Value::String(s) => Value::String(interpolate_str(s, inputs)),
        Value::Array(items) => Value::Array(items.iter().map(|i| interpolate(i, inputs)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (interpolate_str(k, inputs), interpolate(v, inputs)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The component's inputs (these over the spec's defaults) and its jobs document.
fn inputs_and_body(given: &[(&str, &str)]) -> (BTreeMap<String, String>, String) {
    let text = component();
    let (spec, body) = text.split_once("\n---\n").expect("spec and body");
    let spec: Value = serde_saphyr::from_str(spec).unwrap();
    let mut inputs = BTreeMap::new();
    for (name, def) in spec["spec"]["inputs"].as_object().unwrap() {
        if let Some(d) = def.get("default").and_then(Value::as_str) {
            inputs.insert(name.clone(), d.to_string());
        }
    }
    for (k, v) in given {
        inputs.insert(k.to_string(), v.to_string());
    }
    (inputs, body.to_string())
}

fn the_job(jobs: Value) -> Value {
    assert_eq!(jobs.as_object().unwrap().len(), 1);
    jobs.as_object().unwrap().values().next().unwrap().clone()
}

/// The component's job with these inputs, interpolated as GitLab's structured
/// interpolation does: in the strings of the parsed YAML.
fn job(given: &[(&str, &str)]) -> Value {
    let (inputs, body) = inputs_and_body(given);
    let body: Value = serde_saphyr::from_str(&body).unwrap();
    the_job(interpolate(&body, &inputs))
}

/// The same, as GitLab's text-level interpolation (`ci_text_interpolation`) does: each
/// block replaced in the document's text, a string input pasted as it is, then the YAML
/// parsed. Err is the YAML error GitLab would report.
fn job_text_level(given: &[(&str, &str)]) -> Result<Value, String> {
    let (inputs, body) = inputs_and_body(given);
    let body: Value =
        serde_saphyr::from_str(&interpolate_str(&body, &inputs)).map_err(|e| e.to_string())?;
    Ok(the_job(body))
}

/// Seconds of a duration as GitLab reads `timeout:` (parts added up: "40m 5m 5m").
fn words_seconds(text: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' => {
                let n: u64 = number.parse().expect("a number before the unit");
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
            }
            ' ' => assert!(number.is_empty(), "a unit after {number}"),
            _ => panic!("unexpected {c} in {text}"),
        }
    }
    total
}

/// Seconds of a Go duration (RUNNER_SCRIPT_TIMEOUT): no spaces allowed.
fn go_seconds(text: &str) -> u64 {
    assert!(!text.contains(' '), "{text} is not a Go duration");
    words_seconds(text)
}

/// The job's environment: its variables as the runner gives them to the shell.
fn job_env(job: &Value, predefined: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = predefined.clone();
    for (name, var) in job["variables"].as_object().unwrap() {
        let value = match var {
            Value::String(s) => {
                // Expanded by the runner: only the predefined variables these use.
                let mut names: Vec<&String> = predefined.keys().collect();
                // Longest first: $CI_JOB_ID is not $CI followed by _JOB_ID.
                names.sort_by_key(|n| std::cmp::Reverse(n.len()));
                let mut v = s.clone();
                for k in names {
                    v = v.replace(&format!("${k}"), &predefined[k]);
                }
                assert!(!v.contains('$'), "{name}: unexpanded {v}");
                v
            }
            Value::Object(o) => {
                assert_eq!(o["expand"], false, "{name}");
                o["value"].as_str().unwrap().to_string()
            }
            other => panic!("{name}: {other}"),
        };
        env.insert(name.clone(), value);
    }
    env
}

/// What GitLab sets in every job, as far as the component uses it.
fn predefined() -> BTreeMap<String, String> {
    [
        ("CI", "true"),
        ("GITLAB_CI", "true"),
        ("CI_JOB_ID", "777"),
        ("CI_PROJECT_PATH", "acme/shop"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

struct Job {
    env: Env,
    vars: BTreeMap<String, String>,
    job: Value,
    bin_dir: tempfile::TempDir,
}

impl Job {
    fn new(script: &str) -> Self {
        Self::with(script, &[])
    }

    fn with(script: &str, inputs: &[(&str, &str)]) -> Self {
        // Not at the default path: after_script must be told where the manifest is.
        let env = Env::new("");
        std::fs::remove_file(env.path("aiven-ephemeral.yaml")).unwrap();
        std::fs::create_dir(env.path("ci")).unwrap();
        std::fs::write(
            env.path("ci/services.yaml"),
            "project: test-project\nservices:\n  cache: {type: valkey, plan: hobbyist}\n",
        )
        .unwrap();
        let mut given = vec![("script", script), ("manifest", "ci/services.yaml")];
        given.extend_from_slice(inputs);
        let job = job(&given);
        let vars = job_env(&job, &predefined());
        // The image has aiven-ephemeral on PATH.
        let bin_dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(BIN, bin_dir.path().join("aiven-ephemeral")).unwrap();
        Self {
            env,
            vars,
            job,
            bin_dir,
        }
    }

    /// One of the job's script sections, as the runner runs it: in the first bash of its
    /// list (else sh), after the runner's own prelude (pipefail where the shell has it,
    /// errexit), the lines evaluated with nothing on stdin.
    fn shell(&self, section: &str) -> Command {
        let lines: Vec<&str> = self.job[section]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let path = format!(
            "{}:{}",
            self.bin_dir.path().display(),
            std::env::var("PATH").unwrap()
        );
        let shell = ["/usr/local/bin/bash", "/usr/bin/bash", "/bin/bash"]
            .into_iter()
            .find(|s| Path::new(s).exists())
            .unwrap_or("sh");
        let quoted = format!("'{}'", lines.join("\n").replace('\'', r"'\''"));
        let mut cmd = Command::new(shell);
        cmd.arg("-c")
            .arg(format!(
                "if set -o | grep pipefail > /dev/null; then set -o pipefail; fi; set -o errexit\n\
                 set +o noclobber\n: | eval {quoted}\nexit 0\n"
            ))
            .current_dir(self.env.dir.path())
            .env_clear()
            .envs(&self.vars)
            .env("PATH", path)
            .env("HOME", self.env.dir.path())
            .env("AIVEN_API_URL", &self.env.sandbox.url)
            .env("AIVEN_TOKEN", &self.env.sandbox.token)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, section: &str) -> Run {
        run(self.shell(section))
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.env.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

#[test]
fn the_script_reaches_the_shell_exactly_as_written() {
    // Quotes, $VARS that exist only once the services do, &&, a single quote inside.
    let script = r#"echo "cache host is $CACHE_HOST" > said.txt && test -n "$CACHE_URI" && printf '%s\n' "it's \"quoted\"" > quoted.txt; echo "$AIVEN_EPHEMERAL_RUN_ID" > run-id.txt; printf %s "$CACHE_URI" > uri.txt"#;
    let job = Job::new(script);
    assert_eq!(job.vars["AIVEN_EPHEMERAL_SCRIPT"], script);
    let out = job.run("script");
    out.expect_code(0);
    assert_eq!(job.file("said.txt"), "cache host is localhost\n");
    assert_eq!(job.file("quoted.txt"), "it's \"quoted\"\n");
    // `run` keeps its own variables from the command.
    assert_eq!(job.file("run-id.txt"), "\n");
    // Nothing in the job log is a secret.
    let uri = job.file("uri.txt");
    let password = uri.split_once("://").unwrap().1.split_once('@').unwrap().0;
    let password = password.split_once(':').unwrap().1;
    assert!(password.len() > 8, "{uri}");
    assert!(!out.all().contains(password) && !out.all().contains(&job.env.sandbox.token));
    assert!(job.env.sandbox.live_names().is_empty(), "run tore down");
    job.run("after_script").expect_code(0);
    assert!(job.env.sandbox.live_names().is_empty());
}

#[test]
fn a_failing_script_fails_the_job() {
    // Before the fix the job shell expanded $CACHE_URI to nothing and split the quotes:
    // this printed a fragment and exited 0.
    let job = Job::new(r#"echo "about to check"; test -z "$CACHE_URI" && echo "never""#);
    let out = job.run("script");
    out.expect_code(1);
    assert!(
        out.stdout.contains("about to check") && !out.stdout.contains("never"),
        "{}",
        out.stdout
    );
    job.run("after_script").expect_code(0);
    assert!(job.env.sandbox.live_names().is_empty());
}

#[test]
fn after_script_tears_down_after_the_script_was_killed() {
    let job = Job::new("echo $$ > started.txt && exec sleep 300");
    let mut cmd = job.shell("script");
    // As the runner kills a job: the whole process group, with SIGKILL.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().unwrap();
    let started = job.env.path("started.txt");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&started).is_ok_and(|s| s.ends_with('\n')) {
        assert!(
            std::time::Instant::now() < deadline,
            "the script never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(job.env.sandbox.live_names().len(), 1);
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // `run` put the command in a group of its own; on a runner it dies with the job's
    // container.
    let command: i32 = job.file("started.txt").trim().parse().unwrap();
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(command),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait(child, Duration::from_secs(10));
    assert_eq!(
        job.env.sandbox.live_names().len(),
        1,
        "SIGKILL leaves the services"
    );
    // A fresh shell, with the state directory gone too: the manifest names the project.
    std::fs::remove_dir_all(job.env.path(".aiven-ephemeral")).unwrap();
    let after = job.run("after_script");
    after.expect_code(0);
    assert!(job.env.sandbox.live_names().is_empty(), "{}", after.stderr);
}

#[test]
fn teardown_always_fits_inside_the_job() {
    for given in [
        vec![("script", "true")],
        vec![("script", "true"), ("script-timeout", "2h")],
        vec![("script", "true"), ("teardown-timeout", "30m")],
        vec![
            ("script", "true"),
            ("script-timeout", "1h30m"),
            ("teardown-timeout", "10m"),
        ],
    ] {
        let job = job(&given);
        let vars = job_env(&job, &predefined());
        let script = go_seconds(&vars["RUNNER_SCRIPT_TIMEOUT"]);
        let after_script = go_seconds(&vars["RUNNER_AFTER_SCRIPT_TIMEOUT"]);
        // The teardown's budget, as `down` reads it from its environment.
        let teardown = go_seconds(&vars["AIVEN_EPHEMERAL_TEARDOWN_TIMEOUT"]);
        let total = words_seconds(job["timeout"].as_str().unwrap());
        assert_eq!(
            after_script,
            teardown + 60,
            "{given:?}: after_script reports"
        );
        assert_eq!(total, script + after_script + 300, "{given:?}");
        for (name, value) in given.iter().filter(|(n, _)| *n != "script") {
            let expected = if *name == "script-timeout" {
                script
            } else {
                teardown
            };
            assert_eq!(go_seconds(value), expected, "{name}");
        }
    }
}

#[test]
fn with_reuse_the_merge_requests_environment_outlives_the_job() {
    let mut job = Job::with(r#"test -n "$CACHE_URI""#, &[("reuse", "true")]);
    // Not a merge request pipeline: said, nothing created.
    let out = job.run("script");
    out.expect_code(2);
    assert!(
        out.stderr.contains("reuse needs a merge request pipeline"),
        "{}",
        out.stderr
    );
    assert!(job.env.sandbox.requests().is_empty());

    job.vars.insert("CI_MERGE_REQUEST_IID".into(), "42".into());
    job.run("script").expect_code(0);
    let after = job.run("after_script");
    after.expect_code(0);
    assert!(after.stdout.contains("mr-42 stays"), "{}", after.stdout);
    assert_eq!(job.env.sandbox.live_names(), vec!["ae-cache-mr-42"]);
    // The merge request's next pipeline adopts it.
    let creates = job
        .env
        .sandbox
        .count("POST", "/v1/project/test-project/service");
    job.run("script").expect_code(0);
    assert_eq!(
        job.env
            .sandbox
            .count("POST", "/v1/project/test-project/service"),
        creates
    );
}

#[test]
fn a_failing_line_or_pipe_fails_the_job_as_in_gitlab_script() {
    // As GitLab's `script:`: errexit and pipefail, a condition's failure is not one.
    for (script, code, reached) in [
        (
            "echo one > one.txt\nfalse\necho two > reached.txt",
            1,
            false,
        ),
        ("false | tee log.txt\necho two > reached.txt", 1, false),
        ("exit 3", 3, false),
        (
            "if false; then echo no; fi\nfalse || true\n[[ -n \"$CACHE_URI\" ]] && echo ok > reached.txt",
            0,
            true,
        ),
    ] {
        let job = Job::new(script);
        let out = job.run("script");
        out.expect_code(code);
        assert_eq!(
            job.env.path("reached.txt").exists(),
            reached,
            "{script}: {}",
            out.stderr
        );
        assert!(job.env.sandbox.live_names().is_empty(), "run tore down");
    }
}

#[test]
fn text_level_interpolation_gives_the_same_job() {
    // GitLab pastes a string input into the text before reading the YAML: the script must
    // land in the same variable as with structured interpolation, however it is written.
    for script in [
        "make test",
        r#"echo "host: $DB_HOST" && test -n "$DB_URI""#,
        r#""quoted" start: 'single' and "double""#,
        "it's # not a comment: {a: [b]}",
        "- a list? *no alias* &no anchor !no tag | > % @ `",
    ] {
        let given = [("script", script), ("manifest", "ci/my services.yaml")];
        let text = job_text_level(&given).unwrap_or_else(|e| panic!("{script}: {e}"));
        assert_eq!(text, job(&given), "{script}");
        assert_eq!(
            text["variables"]["AIVEN_EPHEMERAL_SCRIPT"]["value"], script,
            "{script}"
        );
    }
    // A script of several lines cannot be pasted into YAML text unchanged: GitLab refuses
    // the configuration rather than running something else (the README says to use `;`,
    // `&&` or a script file under text-level interpolation).
    let given = [("script", "echo one\nfoo: bar")];
    assert!(job_text_level(&given).is_err());
}
