//! What a user reads and watches: every example of the help and the README run in bash,
//! completions in bash, zsh and fish, `validate` and `up` agreeing word for word, the
//! messages pinned whole, and the live view captured in tmux at two widths, Ctrl-C
//! included.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

/// The binary's directory, so that `aiven-ephemeral` in a snippet is this build.
fn bin_dir() -> std::path::PathBuf {
    Path::new(BIN).parent().unwrap().to_path_buf()
}

/// A bash script in `dir`, as a user would paste it, with the sandbox of `--sandbox`
/// (no account, no API URL) and a TMPDIR the sandbox's servers can use as root.
fn bash(dir: &Path, script: &str) -> Run {
    let tmp = dir.join(".tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &format!("set -euo pipefail\n{script}")])
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir)
        .env("TMPDIR", &tmp)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run(cmd)
}

fn help(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// The `$ ` lines of a help page, in order.
fn examples(page: &str) -> Vec<String> {
    page.lines()
        .filter_map(|l| l.trim_start().strip_prefix("$ "))
        .map(str::to_string)
        .collect()
}

const SUBCOMMANDS: &[&str] = &[
    "init",
    "validate",
    "plan",
    "up",
    "down",
    "run",
    "status",
    "reap",
    "extend",
    "env",
    "check",
    "sandbox",
    "completions",
];

/// Commands whose examples act on a live run: one is started first, and torn down after.
const NEED_A_RUN: &[&str] = &["down", "status", "reap", "extend", "env", "check"];

#[test]
fn every_help_example_runs_in_bash() {
    require("psql");
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml");
    let mut pages: Vec<(String, Vec<String>)> =
        vec![("aiven-ephemeral".into(), examples(&help(&["--help"])))];
    for sub in SUBCOMMANDS {
        pages.push((sub.to_string(), examples(&help(&[sub, "--help"]))));
    }
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = pages
            .iter()
            .map(|(page, lines)| {
                let quickstart = &quickstart;
                s.spawn(move || {
                    assert!(!lines.is_empty(), "`{page} --help` has no example");
                    // With its `    $ ` (6 columns), as written: a wider line is cut in
                    // an 80-column terminal, inside its quotes.
                    for line in lines {
                        assert!(line.chars().count() <= 74, "`{page} --help`: {line}");
                    }
                    let dir = tempfile::tempdir().unwrap();
                    // `init` starts from nothing; the rest from the quickstart manifest.
                    if page != "init" && page != "aiven-ephemeral" {
                        std::fs::copy(quickstart, dir.path().join("aiven-ephemeral.yaml"))
                            .unwrap();
                    }
                    let mut script = String::new();
                    if NEED_A_RUN.contains(&page.as_str()) {
                        script.push_str("aiven-ephemeral -q up --sandbox\n");
                    }
                    for line in lines {
                        // A server runs until interrupted: let it start, then stop it.
                        if *page == "sandbox" {
                            script.push_str(&format!(
                                "timeout --preserve-status -s INT 3 {line} | grep AIVEN_API_URL=\n"
                            ));
                        } else {
                            script.push_str(&format!("{line}\n"));
                        }
                    }
                    script.push_str("aiven-ephemeral -q down --missing-ok\n");
                    let out = bash(dir.path(), &script);
                    (out.code != Some(0)).then(|| {
                        format!(
                            "--- `{page} --help` examples failed ({:?}):\n{script}\n--- stdout\n{}\n--- stderr\n{}",
                            out.code, out.stdout, out.stderr
                        )
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The README's ```sh blocks, run from a copy of the repository's examples. A clone runs
/// `cargo run --release --` and then `target/release/aiven-ephemeral`; here both are
/// this build. `scripts/run-tests` is what runs this very test.
#[test]
fn every_readme_shell_snippet_runs_in_bash() {
    for tool in ["psql", "redis-cli", "redis-server"] {
        require(tool);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    let snippets: Vec<String> = blocks
        .into_iter()
        .filter(|b| b.trim() != "scripts/run-tests")
        .map(|b| {
            b.replace("cargo run --release --", "aiven-ephemeral")
                .replace("target/release/aiven-ephemeral", "aiven-ephemeral")
        })
        .collect();
    assert!(snippets.len() >= 2, "the README's quickstart snippets");
    for snippet in snippets {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("examples")).unwrap();
        for entry in std::fs::read_dir(root.join("examples")).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(
                    entry.path(),
                    dir.path().join("examples").join(entry.file_name()),
                )
                .unwrap();
            }
        }
        let out = bash(dir.path(), &snippet);
        assert_eq!(
            out.code,
            Some(0),
            "README snippet failed:\n{snippet}\n--- stdout\n{}\n--- stderr\n{}",
            out.stdout,
            out.stderr
        );
    }
}

/// Where `part` says something `whole` does not: every key it has, with the same value
/// (lists item by item); it may leave keys out.
fn differs_within(part: &serde_json::Value, whole: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match (part, whole) {
        (Value::Object(p), Value::Object(w)) => p.iter().find_map(|(k, v)| match w.get(k) {
            Some(wv) => differs_within(v, wv, &format!("{at}.{k}")),
            None => Some(format!("{at}.{k}: not in the file")),
        }),
        (Value::Array(p), Value::Array(w)) if p.len() == w.len() => p
            .iter()
            .zip(w)
            .enumerate()
            .find_map(|(i, (pv, wv))| differs_within(pv, wv, &format!("{at}[{i}]"))),
        _ => (part != whole).then(|| format!("{at}: README {part}, file {whole}")),
    }
}

#[test]
fn the_readmes_copies_of_example_files_say_what_the_files_say() {
    // A YAML block right after "`examples/...`:" shows that file, perhaps in part.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    let mut checked = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "```yaml" {
            continue;
        }
        let Some(intro) = lines[..i].iter().rev().find(|l| !l.trim().is_empty()) else {
            continue;
        };
        let Some(file) = intro
            .strip_suffix("`:")
            .and_then(|l| l.rsplit_once('`'))
            .map(|(_, f)| f)
            .filter(|f| f.starts_with("examples/"))
        else {
            continue;
        };
        let block: String = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim() != "```")
            .map(|l| format!("{l}\n"))
            .collect();
        let shown: serde_json::Value = serde_saphyr::from_str(&block).unwrap();
        let whole: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(root.join(file)).unwrap()).unwrap();
        assert_eq!(
            differs_within(&shown, &whole, file),
            None,
            "README.md:{}",
            i + 1
        );
        checked.push(file);
    }
    assert_eq!(
        checked,
        [
            "examples/shared.yaml",
            "examples/ci/github-shared.yml",
            "examples/ci/gitlab-shared.yml"
        ]
    );
}

#[test]
fn completions_complete_options_and_values_in_bash() {
    let script = r#"
source <(aiven-ephemeral completions bash)
complete_line() {
  COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=()
  _aiven__ephemeral aiven-ephemeral "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
  echo "${COMPREPLY[*]}"
}
complete_line aiven-ephemeral up --ti
complete_line aiven-ephemeral env --format ''
complete_line aiven-ephemeral re
"#;
    let dir = tempfile::tempdir().unwrap();
    let out = bash(dir.path(), script);
    out.expect_code(0);
    assert_eq!(out.stdout, "--timeout\ndotenv shell json\nreap\n");
}

#[test]
fn completions_complete_options_and_values_in_fish() {
    require("fish");
    let out = run({
        let mut cmd = Command::new("fish");
        cmd.args([
            "-c",
            "aiven-ephemeral completions fish | source
             complete -C 'aiven-ephemeral up --ti'
             complete -C 'aiven-ephemeral env --format '
             complete -C 'aiven-ephemeral completions '",
        ])
        .env(
            "PATH",
            format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        cmd
    });
    out.expect_code(0);
    pinned!(out.stdout, @r"
    --timeout	Give up waiting after this long, counted from the start (e.g. 20m)
    dotenv	NAME=value lines (also a GitLab dotenv report)
    json	One JSON object
    shell	export NAME='value' lines, to source
    bash
    elvish
    fish
    powershell
    zsh
    ");
}

/// A shell in a tmux session of its own, at a given width.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(width: u16, command: &str) -> Self {
        require("tmux");
        let name = format!("ae-test-{}", uuid::Uuid::new_v4().simple());
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                &width.to_string(),
                "-y",
                "30",
            ])
            .arg(command)
            .status()
            .unwrap();
        assert!(status.success());
        Self { name }
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The visible screen, trailing blank lines and spaces dropped.
    fn pane(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        let end = lines
            .iter()
            .rposition(|l| !l.is_empty())
            .map_or(0, |i| i + 1);
        lines[..end].join("\n")
    }

    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let pane = self.pane();
            if ok(&pane) {
                return pane;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no {what} on the screen:\n{pane}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

#[test]
fn completions_complete_options_and_values_in_zsh() {
    require("zsh");
    let home = tempfile::tempdir().unwrap();
    let shell = Tmux::start(
        100,
        &format!(
            "env -i PATH={}:/usr/bin:/bin HOME={} TERM=xterm zsh -f",
            bin_dir().display(),
            home.path().display()
        ),
    );
    shell.keys(&[
        "autoload -U compinit && compinit -u && source <(aiven-ephemeral completions zsh) && clear",
        "Enter",
    ]);
    shell.keys(&["aiven-ephemeral up --ti", "Tab"]);
    let pane = shell.wait_for("the completed option", |p| p.contains("--timeout"));
    assert!(pane.ends_with("aiven-ephemeral up --timeout="), "{pane}");
    shell.keys(&["C-u", "aiven-ephemeral env --format ", "Tab"]);
    let pane = shell.wait_for("the values", |p| p.contains("json"));
    let listed: Vec<&str> = pane.lines().skip(1).collect();
    assert_eq!(
        listed,
        [
            "dotenv  -- NAME=value lines (also a GitLab dotenv report)",
            "json    -- One JSON object",
            "shell   -- export NAME='value' lines, to source",
        ],
        "{pane}"
    );
}

/// Bad manifests: `validate` and `up` say the same thing, whole, with exit 2, and send
/// nothing.
#[test]
fn validate_and_up_agree_on_bad_manifests() {
    let cases: &[(&str, &str)] = &[
        (
            "type",
            "project: test-project\nservices:\n  db: {type: postgres, plan: hobbyist}\n",
        ),
        (
            "ttl",
            "project: test-project\nttl: 1m\nservices:\n  db: {type: pg, plan: hobbyist}\n",
        ),
        (
            "plan",
            "project: test-project\nservices:\n  db: {type: pg, plan: Startup-4}\n",
        ),
        (
            "list",
            "project: test-project\nservices:\n  db:\n    type: pg\n    plan: hobbyist\n    databases: app\n",
        ),
        (
            "number",
            "project: test-project\nservices:\n  k:\n    type: kafka\n    plan: startup-2\n    topics:\n      - name: orders\n        partitions: \"three\"\n",
        ),
        (
            "negative",
            "project: test-project\nservices:\n  k:\n    type: kafka\n    plan: startup-2\n    topics:\n      - name: orders\n        partitions: -1\n",
        ),
        (
            "key",
            "project: test-project\nservices:\n  db:\n    type: pg\n    plan: hobbyist\n    databse: [app]\n",
        ),
        ("empty", ""),
        (
            "admin",
            "project: test-project\nservices:\n  cache: {type: valkey, plan: hobbyist, users: [default]}\n",
        ),
        (
            "shared",
            "project: test-project\nservices:\n  db: {type: pg, plan: hobbyist, shared: yes please}\n",
        ),
        (
            "flow list",
            "project: test-project\nservices:\n  k: {type: kafka, plan: startup-2, topics: [orders]}\n",
        ),
        (
            "second document",
            "---\nproject: test-project\nservices:\n  db: {type: pg, plan: hobbyist}\n---\nproject: other-project\n",
        ),
        (
            "tab",
            "project: test-project\nservices:\n  db:\n\ttype: pg\n    plan: hobbyist\n",
        ),
        (
            "indentation",
            "project: test-project\nservices:\n  db:\n    type: pg\n   plan: hobbyist\n",
        ),
        (
            "shallower",
            "project: test-project\nservices:\n  db:\n    type: pg\n  plan: hobbyist\n",
        ),
    ];
    let mut said = Vec::new();
    for (name, manifest) in cases {
        let env = Env::new(manifest);
        let validate = env.run(&["validate"]);
        validate.expect_code(2);
        let up = env.run(&["up"]);
        up.expect_code(2);
        assert_eq!(up.stderr, validate.stderr, "{name}: up and validate differ");
        assert!(
            env.sandbox.requests().is_empty(),
            "{name}: a request was sent"
        );
        said.push(format!("## {name}\n{}", validate.stderr));
    }
    pinned!(said.join("\n"), @r#"
        ## type
        error: aiven-ephemeral.yaml:3:14: type `postgres` is not an Aiven service type
         --> aiven-ephemeral.yaml:3:14
          |
        3 |   db: {type: postgres, plan: hobbyist}
          |              ^ type `postgres` is not an Aiven service type
          hint: did you mean `pg`? Types: alloydbomni, cassandra, clickhouse, dragonfly, flink, grafana, kafka, kafka_connect, kafka_mirrormaker, mysql, opensearch, pg, thanos, valkey

        ## ttl
        error: aiven-ephemeral.yaml:2:6: ttl 1m is shorter than --timeout 20m plus 10m: services could be reaped while `up` still waits for them
         --> aiven-ephemeral.yaml:2:6
          |
        2 | ttl: 1m
          |      ^ ttl 1m is shorter than --timeout 20m plus 10m: services could be reaped while `up` still waits for them
          hint: raise ttl, or lower --timeout

        ## plan
        error: aiven-ephemeral.yaml:3:24: plan `Startup-4` is invalid: an Aiven plan name such as hobbyist, startup-4, business-8
         --> aiven-ephemeral.yaml:3:24
          |
        3 |   db: {type: pg, plan: Startup-4}
          |                        ^ plan `Startup-4` is invalid: an Aiven plan name such as hobbyist, startup-4, business-8
          hint: did you mean `startup-4`?

        ## list
        error: aiven-ephemeral.yaml:6:16: databases must be a list, e.g. [app]
         --> aiven-ephemeral.yaml:6:16
          |
        6 |     databases: app
          |                ^ databases must be a list, e.g. [app]

        ## number
        error: aiven-ephemeral.yaml:8:21: partitions must be a whole number from 1 to 1000000, e.g. 3
         --> aiven-ephemeral.yaml:8:21
          |
        8 |         partitions: "three"
          |                     ^ partitions must be a whole number from 1 to 1000000, e.g. 3

        ## negative
        error: aiven-ephemeral.yaml:8:21: partitions must be a whole number from 1 to 1000000, e.g. 3
         --> aiven-ephemeral.yaml:8:21
          |
        8 |         partitions: -1
          |                     ^ partitions must be a whole number from 1 to 1000000, e.g. 3

        ## key
        error: aiven-ephemeral.yaml:6:5: unknown key `databse`
         --> aiven-ephemeral.yaml:6:5
          |
        6 |     databse: [app]
          |     ^ unknown key `databse`
          hint: did you mean `databases`? Keys here: type, plan, cloud, version, user_config, databases, users, topics, acls, default_acl, fork_from, probe, env_prefix, env, project_vpc_id, tags, shared, seed

        ## empty
        error: aiven-ephemeral.yaml: the manifest is empty
          hint: it needs at least `services:`, e.g. `services: {db: {type: pg, plan: hobbyist}}`; see the manifest reference in the README; `aiven-ephemeral init` writes a commented starter

        ## admin
        error: aiven-ephemeral.yaml:3:49: `default` is the service's admin user and always exists
         --> aiven-ephemeral.yaml:3:49
          |
        3 |   cache: {type: valkey, plan: hobbyist, users: [default]}
          |                                                 ^ `default` is the service's admin user and always exists
          hint: its credentials are exported already; remove it from `users`

        ## shared
        error: aiven-ephemeral.yaml:3:42: shared must be true, or a mapping naming a service you manage, e.g. {service: team-pg}
         --> aiven-ephemeral.yaml:3:42
          |
        3 |   db: {type: pg, plan: hobbyist, shared: yes please}
          |                                          ^ shared must be true, or a mapping naming a service you manage, e.g. {service: team-pg}

        ## flow list
        error: aiven-ephemeral.yaml:3:46: topics must be a list of topics, e.g. [{name: orders, partitions: 3}]
         --> aiven-ephemeral.yaml:3:46
          |
        3 |   k: {type: kafka, plan: startup-2, topics: [orders]}
          |                                              ^ topics must be a list of topics, e.g. [{name: orders, partitions: 3}]

        ## second document
        error: aiven-ephemeral.yaml:5:1: a second YAML document starts here: a manifest is one document
         --> aiven-ephemeral.yaml:5:1
          |
        5 | ---
          | ^ a second YAML document starts here: a manifest is one document
          hint: remove this `---` and merge what follows into the mapping above, or move it to a manifest of its own

        ## tab
        error: aiven-ephemeral.yaml:4:1: this is not valid YAML: tabs disallowed within this context (block indentation)
         --> aiven-ephemeral.yaml:4:1
          |
        4 | 	type: pg
          | ^ this is not valid YAML: tabs disallowed within this context (block indentation)
          hint: YAML indents with spaces only: replace the tabs at the start of this line with spaces

        ## indentation
        error: aiven-ephemeral.yaml:5:4: this is not valid YAML: while parsing a block mapping, did not find expected key
         --> aiven-ephemeral.yaml:5:4
          |
        5 |    plan: hobbyist
          |    ^ this is not valid YAML: while parsing a block mapping, did not find expected key
          hint: check this line's indentation against the lines above: the keys of one mapping start in the same column

        ## shallower
        error: aiven-ephemeral.yaml:4:11: `plan` is missing: it takes a plan name, e.g. hobbyist
         --> aiven-ephemeral.yaml:4:11
          |
        4 |     type: pg
          |           ^ `plan` is missing: it takes a plan name, e.g. hobbyist
          hint: line 5 has `plan:` indented 2 spaces, less than the keys above it: indent it like line 4's
    "#);
}

#[test]
fn the_manifest_that_init_writes_is_valid_and_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let out = bash(
        dir.path(),
        "aiven-ephemeral init --ci gitlab && aiven-ephemeral validate",
    );
    out.expect_code(0);
    pinned!(out.stderr, @r"
        [HH:MM:SS] wrote aiven-ephemeral.yaml
        [HH:MM:SS] wrote aiven-ephemeral.gitlab-ci.yml
        [HH:MM:SS] next: edit aiven-ephemeral.yaml, then `aiven-ephemeral validate -f aiven-ephemeral.yaml`, and try it without an account with `aiven-ephemeral run --sandbox -f aiven-ephemeral.yaml -- aiven-ephemeral check`
        [HH:MM:SS] aiven-ephemeral.yaml: valid, 1 service(s): db
    ");
    let gitlab = std::fs::read_to_string(dir.path().join("aiven-ephemeral.gitlab-ci.yml")).unwrap();
    assert!(
        gitlab.contains("run -f aiven-ephemeral.yaml --"),
        "{gitlab}"
    );
    let before = std::fs::read(dir.path().join("aiven-ephemeral.yaml")).unwrap();
    let again = bash(dir.path(), "aiven-ephemeral init");
    again.expect_code(2);
    pinned!(again.stderr, @r"
        error: aiven-ephemeral.yaml exists; init does not overwrite it
          hint: remove or rename it first, or pass another manifest path with -f
    ");
    // A snippet for the manifest that is there: the manifest is kept as it is.
    let snippet = bash(dir.path(), "aiven-ephemeral init --ci github");
    snippet.expect_code(0);
    pinned!(snippet.stderr, @r"
        [HH:MM:SS] keeping aiven-ephemeral.yaml: adding the CI snippet only
        [HH:MM:SS] wrote .github/workflows/aiven-ephemeral.yml
        [HH:MM:SS] next: edit aiven-ephemeral.yaml, then `aiven-ephemeral validate -f aiven-ephemeral.yaml`, and try it without an account with `aiven-ephemeral run --sandbox -f aiven-ephemeral.yaml -- aiven-ephemeral check`
    ");
    assert_eq!(
        std::fs::read(dir.path().join("aiven-ephemeral.yaml")).unwrap(),
        before
    );
    // Neither file of a snippet already there is touched.
    let twice = bash(dir.path(), "aiven-ephemeral init --ci gitlab");
    twice.expect_code(2);
    pinned!(twice.stderr, @r"
        [HH:MM:SS] keeping aiven-ephemeral.yaml: adding the CI snippet only
        error: aiven-ephemeral.gitlab-ci.yml exists; init does not overwrite it
          hint: remove or rename it first, or pass another manifest path with -f
    ");
}

#[test]
fn init_writes_a_github_workflow_that_uses_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    bash(
        dir.path(),
        "aiven-ephemeral init -f ci/services.yaml --ci github",
    )
    .expect_code(0);
    let workflow =
        std::fs::read_to_string(dir.path().join(".github/workflows/aiven-ephemeral.yml")).unwrap();
    assert!(
        workflow.contains("manifest: ci/services.yaml\n"),
        "{workflow}"
    );
    bash(dir.path(), "aiven-ephemeral validate -f ci/services.yaml").expect_code(0);
}

#[test]
fn run_says_127_for_a_missing_command_and_126_for_one_that_cannot_run() {
    let env = Env::new(PG);
    let out = env.run(&["run", "--", "no-such-command-here"]);
    out.expect_code(127);
    pinned!(out.stderr, @r"
    error: `no-such-command-here`: command not found
      hint: nothing was created; check the name, give its path, or install it
    ");
    std::fs::write(env.path("not-executable"), "#!/bin/sh\n").unwrap();
    let out = env.run(&["run", "--", "./not-executable"]);
    out.expect_code(126);
    pinned!(out.stderr, @r"
    error: `./not-executable`: permission denied (not executable)
      hint: nothing was created; make it executable (chmod +x)
    ");
    // Found out before anything was asked of the API, let alone created.
    assert_eq!(env.sandbox.requests().len(), 0);
}

#[test]
fn run_without_dashes_says_where_the_command_goes() {
    let env = Env::new(PG);
    let out = env.run(&["run", "--sandbox", "echo", "hi"]);
    out.expect_code(2);
    pinned!(out.stderr, @r"
        error: unexpected argument 'echo' found

          tip: the command goes after `--`: aiven-ephemeral run --sandbox -- echo hi

        Usage: aiven-ephemeral run [OPTIONS] -- <COMMAND>...

        For more information, try '--help'.
    ");
}

#[test]
fn an_api_url_where_nothing_listens_fails_at_once() {
    let env = Env::new(PG);
    // A port just freed: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let out = env.run(&[
        "up",
        "--run-id",
        "nowhere",
        "--api-url",
        &format!("http://127.0.0.1:{port}"),
    ]);
    out.expect_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    pinned!(out.stderr, @r"
        [HH:MM:SS] run nowhere in project test-project (1 service(s))
        error: reading project test-project: error sending request for url (http://127.0.0.1:[PORT]/v1/project/test-project): client error (Connect): tcp connect error: Connection refused (os error 111)
          hint: check --api-url / AIVEN_API_URL, and HTTPS_PROXY / NO_PROXY if a proxy is needed
    ");
}

#[test]
fn extending_a_live_run_to_a_short_ttl_warns() {
    let env = Env::new(PG);
    env.run(&["up", "--run-id", "short"]).expect_code(0);
    let out = env.run(&["extend", "--ttl", "1m"]);
    out.expect_code(0);
    pinned!(out.stderr, @r"
        [HH:MM:SS] ae-db-short: expires [TIME]
        [HH:MM:SS] warning: run short now expires in 1m, at [TIME]: from then on `reap` may delete its services while they are in use
    ");
    env.run(&["down"]).expect_code(0);
}

#[test]
fn help_describes_every_option_with_global_options_apart() {
    for sub in SUBCOMMANDS {
        let page = help(&[sub, "--help"]);
        // An option line is `  -x, --name <V>` or `      --name`; its description
        // follows on the same line or, when long, on the next ones.
        let lines: Vec<&str> = page.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            if t.starts_with('-') && !t.starts_with("- ") && line.starts_with("  ") {
                let described = t.contains("  ")
                    || lines
                        .get(i + 1)
                        .is_some_and(|n| n.starts_with("          ") && !n.trim().is_empty());
                assert!(described, "`{sub} --help`: no description for {t}\n{page}");
            }
        }
        assert!(page.contains("Global options:"), "{sub}: {page}");
    }
    pinned!(help(&["up", "--help"]), @r"
        Create the manifest's services, wait until usable, write the env file

        Usage: aiven-ephemeral up [OPTIONS]

        Options:
          -f, --file <FILE>
                  The manifest
                  
                  [default: aiven-ephemeral.yaml]

              --run-id <ID>
                  Run id (default: AIVEN_EPHEMERAL_RUN_ID, else a fresh random one)
                  
                  [env: AIVEN_EPHEMERAL_RUN_ID=]

              --env-file <PATH>
                  Where to write the env file (default: env beside the state file; b.env beside b.json)

              --state-file <PATH>
                  Where to keep the run's state (default: .aiven-ephemeral/state.json)

              --timeout <DUR>
                  Give up waiting after this long, counted from the start (e.g. 20m)
                  
                  [default: 20m]

              --poll-interval <DUR>
                  Longest wait between polls (the interval grows to it)
                  
                  [default: 10s]

              --max-hourly-usd <USD>
                  Refuse to create anything that would cost more per hour

              --keep-on-failure
                  On failure, keep the services for debugging (and say so loudly)

              --sandbox
                  Run against the sandbox, a local imitation of the API: no account needed

              --github-env <GITHUB_ENV>
                  What goes to $GITHUB_ENV in GitHub Actions

                  Possible values:
                  - all:        Every exported variable
                  - non-secret: Only variables that hold no secret
                  - none:       Nothing to `$GITHUB_ENV`
                  
                  [default: all]

              --dotenv-report <PATH>
                  Also write a GitLab dotenv report of the non-secret values here

              --dotenv-max-vars <N>
                  Most variables allowed in the dotenv report
                  
                  [default: 20]

              --reuse
                  Keep the run for later pushes: adopt its services where they exist (from any machine, with
                  or without a state file), create the missing ones, apply manifest changes, move its expiry
                  to now + ttl, and leave it up on failure. Needs a run id stable for the pull request
                  (pr-<number>, mr-<iid>)

              --reset
                  With --reuse: recreate the manifest's databases (then run its seed) and Kafka topics,
                  empty; the services stay

              --comment
                  Post or update the run's one comment on its pull request (GitHub Actions, with
                  GITHUB_TOKEN) or merge request (GitLab CI, with AIVEN_EPHEMERAL_GITLAB_TOKEN); a refusal
                  is a warning
                  
                  [env: AIVEN_EPHEMERAL_COMMENT=]

              --teardown-timeout <DUR>
                  Longest teardown may take when no signal started it (it waits through the API's own
                  waits); past it, exit 5 naming what is left
                  
                  [env: AIVEN_EPHEMERAL_TEARDOWN_TIMEOUT=]
                  [default: 10m]

              --signal-teardown-timeout <DUR>
                  Longest teardown may take after SIGINT, SIGTERM or SIGHUP. The default fits GitHub's
                  cancel window (SIGINT, 7.5s, SIGTERM, 2.5s, SIGKILL)
                  
                  [env: AIVEN_EPHEMERAL_SIGNAL_TEARDOWN_TIMEOUT=]
                  [default: 8s]

          -h, --help
                  Print help (see a summary with '-h')

          -V, --version
                  Print version

        API options:
              --token-file <PATH>
                  Read the API token from this file (else AIVEN_TOKEN, then AIVEN_AUTH_TOKEN)

              --api-url <URL>
                  Aiven API base URL (paths are /v1/...)
                  
                  [env: AIVEN_API_URL=]

              --project <NAME>
                  Aiven project (default: the manifest's `project`)
                  
                  [env: AIVEN_PROJECT=]

              --ca-cert <PATH>
                  Extra CA bundle (PEM) to trust for the API connection
                  
                  [env: AIVEN_CA_CERT=]

        Global options:
          -v, --verbose...
                  More output (-v info about requests, -vv debug)

          -q, --quiet
                  Only warnings and errors

              --log-format <LOG_FORMAT>
                  Log format on stderr

                  Possible values:
                  - text: Lines for people
                  - json: One JSON object per line
                  
                  [default: text]

        Examples:
            $ aiven-ephemeral up --sandbox && aiven-ephemeral down
            $ aiven-ephemeral up --sandbox --timeout 10m --env-file services.env
            $ aiven-ephemeral down
    ");
}

/// The live view at 80 and 200 columns: what each service waits on, the overall row,
/// nothing past the edge, names cut only where the width asks; then Ctrl-C: a clean
/// teardown in the same line format.
#[test]
fn the_live_view_in_a_terminal_at_two_widths_with_ctrl_c() {
    let manifest = "project: test-project\nservices:\n  db:\n    type: pg\n    plan: hobbyist\n  a-rather-long-service-key-for-events:\n    type: kafka\n    plan: startup-2\n    topics:\n      - {name: orders, partitions: 3}\n      - {name: payments}\n";
    let mut screens = Vec::new();
    for width in [80u16, 200] {
        let mut config = fast_config();
        config.topic_activation = Duration::from_secs(120);
        let env = Env::with(manifest, Sandbox::with(config));
        let run_id = format!("lv{width}");
        env.sandbox
            .service_fault(json!({"name": format!("ae-db-{run_id}"), "ready_after": "120s"}));
        let command = format!(
            "cd {} && env -i PATH={}:/usr/bin:/bin HOME={} TERM=xterm-256color AIVEN_API_URL={} AIVEN_TOKEN={} NO_PROXY=127.0.0.1 aiven-ephemeral up --run-id {run_id}; echo EXIT=$?; sleep 60",
            env.dir.path().display(),
            bin_dir().display(),
            env.dir.path().display(),
            env.sandbox.url,
            env.sandbox.token,
        );
        let term = Tmux::start(width, &command);
        let waiting = term.wait_for("both services waiting", |p| {
            p.contains("REBUILDING") && p.contains("topics 0/2 ACTIVE")
        });
        for line in waiting.lines() {
            assert!(line.chars().count() <= width as usize, "{line}");
        }
        term.keys(&["C-c"]);
        let done = term.wait_for("the exit", |p| p.contains("EXIT="));
        assert!(env.sandbox.live_names().is_empty());
        screens.push(format!(
            "## {width} columns, waiting\n{waiting}\n## after Ctrl-C\n{}",
            sorted_deleted(&done)
        ));
    }
    pinned!(screens.join("\n"), @r"
        ## 80 columns, waiting
        run lv80 in project test-project (2 service(s))
        Creating 2 service(s)
        * ae-db-lv80                                   [T]  REBUILDING
        * ae-a-rather-long-service-key-for-events…     [T]  topics 0/2 ACTIVE
          0/2 ready, [T] elapsed, [T] left
        ## after Ctrl-C
        run lv80 in project test-project (2 service(s))
        Creating 2 service(s)
        warning: received SIGINT: tearing down
        Deleting 2 service(s)
        ✓ ae-a-rather-long-service-key-for-events…     [T]  deleted
        ✓ ae-db-lv80                                   [T]  deleted
        error: interrupted by SIGINT; everything this run created was deleted
        EXIT=130
        ## 200 columns, waiting
        run lv200 in project test-project (2 service(s))
        Creating 2 service(s)
        * ae-db-lv200                                       [T]  REBUILDING
        * ae-a-rather-long-service-key-for-events-lv200     [T]  topics 0/2 ACTIVE
          0/2 ready, [T] elapsed, [T] left
        ## after Ctrl-C
        run lv200 in project test-project (2 service(s))
        Creating 2 service(s)
        warning: received SIGINT: tearing down
        Deleting 2 service(s)
        ✓ ae-a-rather-long-service-key-for-events-lv200     [T]  deleted
        ✓ ae-db-lv200                                       [T]  deleted
        error: interrupted by SIGINT; everything this run created was deleted
        EXIT=130
    ");
}

/// Teardown pins its rows in the order the deletes are confirmed, which varies.
fn sorted_deleted(screen: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut deleted: Vec<String> = Vec::new();
    for line in screen.lines() {
        if line.starts_with("✓ ") && line.ends_with(" deleted") {
            deleted.push(line.to_string());
            continue;
        }
        deleted.sort();
        out.append(&mut deleted);
        out.push(line.to_string());
    }
    deleted.sort();
    out.append(&mut deleted);
    out.join("\n")
}

#[test]
fn run_gives_an_interactive_command_the_terminal() {
    let env = Env::new(PG);
    let command = format!(
        "cd {} && env -i PATH={}:/usr/bin:/bin HOME={} TERM=xterm-256color AIVEN_API_URL={} AIVEN_TOKEN={} NO_PROXY=127.0.0.1 aiven-ephemeral -q run -- sh -c 'printf \"name? \"; read name; echo \"hello $name from $DB_HOST\"'; echo EXIT=$?; sleep 60",
        env.dir.path().display(),
        bin_dir().display(),
        env.dir.path().display(),
        env.sandbox.url,
        env.sandbox.token,
    );
    let term = Tmux::start(100, &command);
    // A command in a background group would be stopped by its first read.
    term.wait_for("the prompt", |p| p.contains("name?"));
    term.keys(&["world", "Enter"]);
    let done = term.wait_for("the exit", |p| p.contains("EXIT="));
    assert!(done.contains("hello world from localhost"), "{done}");
    assert!(done.contains("EXIT=0"), "{done}");
    assert!(env.sandbox.live_names().is_empty());
}

#[test]
fn ctrl_c_in_a_command_that_has_the_terminal_interrupts_the_run_cleanly() {
    let env = Env::new(PG);
    let command = format!(
        "cd {} && env -i PATH={}:/usr/bin:/bin HOME={} TERM=xterm-256color AIVEN_API_URL={} AIVEN_TOKEN={} NO_PROXY=127.0.0.1 aiven-ephemeral run -- sh -c 'echo started; sleep 30'; echo EXIT=$?; sleep 60",
        env.dir.path().display(),
        bin_dir().display(),
        env.dir.path().display(),
        env.sandbox.url,
        env.sandbox.token,
    );
    let term = Tmux::start(100, &command);
    term.wait_for("the command", |p| p.contains("started"));
    term.keys(&["C-c"]);
    let done = term.wait_for("the exit", |p| p.contains("EXIT="));
    assert!(done.contains("EXIT=130"), "{done}");
    assert!(
        done.contains("error: interrupted by SIGINT; everything this run created was deleted"),
        "{done}"
    );
    // What follows the terminal's ^C starts on a line of its own.
    assert!(
        done.lines()
            .all(|l| l.trim_start() == "^C" || !l.contains("^C")),
        "{done}"
    );
    assert!(env.sandbox.live_names().is_empty());
}

/// A command that traps Ctrl-C (as psql does, to cancel a query) keeps the run: the
/// first Ctrl-C reaches it and this tool says what it waits for; the second stops it
/// (SIGTERM, which this one ignores too, then SIGKILL) and tears everything down: 130.
#[test]
fn ctrl_c_twice_stops_a_command_that_traps_it() {
    let env = Env::new(PG);
    let pidfile = env.dir.path().join("command.pid");
    let command = format!(
        "cd {} && env -i PATH={}:/usr/bin:/bin HOME={} TERM=xterm-256color AIVEN_API_URL={} AIVEN_TOKEN={} NO_PROXY=127.0.0.1 aiven-ephemeral run -- sh -c 'trap \"echo trapped\" INT; trap \"\" TERM; echo $$ > {}; echo started; while :; do sleep 0.2; done'; echo EXIT=$?; sleep 60",
        env.dir.path().display(),
        bin_dir().display(),
        env.dir.path().display(),
        env.sandbox.url,
        env.sandbox.token,
        pidfile.display(),
    );
    let term = Tmux::start(100, &command);
    term.wait_for("the command", |p| p.contains("started"));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = || Path::new(&format!("/proc/{pid}")).exists();
    term.keys(&["C-c"]);
    let waiting = term.wait_for("what run waits for", |p| p.contains("waiting for"));
    assert!(
        waiting.contains("warning: waiting for `sh` to exit; Ctrl-C again to stop it"),
        "{waiting}"
    );
    assert!(waiting.contains("trapped"), "{waiting}");
    assert!(alive() && !waiting.contains("EXIT="), "{waiting}");
    assert!(
        !env.sandbox.live_names().is_empty(),
        "torn down under the command"
    );
    term.keys(&["C-c"]);
    let done = term.wait_for("the exit", |p| p.contains("EXIT="));
    // Said once, by what the second Ctrl-C does.
    let said: Vec<&str> = done
        .lines()
        .filter(|l| l.starts_with("warning:") && l.contains("tearing down"))
        .collect();
    assert_eq!(
        said,
        ["warning: stopping `sh` (SIGTERM, SIGKILL in 5s) and tearing down"],
        "{done}"
    );
    assert!(done.contains("EXIT=130"), "{done}");
    assert!(
        done.contains("error: interrupted by SIGINT; everything this run created was deleted"),
        "{done}"
    );
    assert!(!alive(), "the command outlived the run");
    assert!(env.sandbox.live_names().is_empty());
}

/// A command that answers Ctrl-C by exiting on its own terms gives the run its exit
/// code: the Ctrl-C was its to answer, and nothing more is said about it.
#[test]
fn a_command_that_exits_on_its_own_after_ctrl_c_gives_its_code() {
    let env = Env::new(PG);
    let command = format!(
        "cd {} && env -i PATH={}:/usr/bin:/bin HOME={} TERM=xterm-256color AIVEN_API_URL={} AIVEN_TOKEN={} NO_PROXY=127.0.0.1 aiven-ephemeral run -- sh -c 'trap \"echo cleaned up; exit 3\" INT; echo started; while :; do sleep 0.2; done'; echo EXIT=$?; sleep 60",
        env.dir.path().display(),
        bin_dir().display(),
        env.dir.path().display(),
        env.sandbox.url,
        env.sandbox.token,
    );
    let term = Tmux::start(100, &command);
    term.wait_for("the command", |p| p.contains("started"));
    term.keys(&["C-c"]);
    let done = term.wait_for("the exit", |p| p.contains("EXIT="));
    assert!(
        done.contains("cleaned up") && done.contains("EXIT=3"),
        "{done}"
    );
    assert!(
        !done.contains("waiting for") && !done.contains("interrupted"),
        "{done}"
    );
    assert!(env.sandbox.live_names().is_empty());
}
