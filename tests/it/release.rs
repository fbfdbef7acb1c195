//! The release workflow's jobs, run step by step as the runner runs them (each `run:` in
//! `bash --noprofile --norc -eo pipefail`, `${{ }}` evaluated, `$GITHUB_OUTPUT` read
//! back), against a GitHub remote (a bare repository whose pre-receive hook can refuse
//! `main`), a GitLab remote, and a server imitating GitHub's releases API. After every
//! step, the action at `@v1` and at `@main` runs as a user's job would, downloading from
//! that server. Docker is not run: the image's tags are read from the step that pushes
//! them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::Digest;

use crate::action::{ONE, Runner, from_release};
use crate::common::github::{GH_TOKEN, GitHub, REPO};
use crate::common::*;

const GITLAB_TOKEN: &str = "glpat-release";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What one run of the workflow did.
#[derive(Default)]
struct Outcome {
    /// Job → whether it succeeded; jobs whose needs failed are absent.
    jobs: BTreeMap<String, bool>,
    image_tags: Vec<String>,
    log: String,
}

struct World {
    dir: tempfile::TempDir,
    github: GitHub,
    dist: PathBuf,
}

impl World {
    /// A repository whose main holds what the release uses, nothing released yet.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for remote in ["github.git", "gitlab.git"] {
            git(
                dir.path(),
                &["init", "--quiet", "--bare", "-b", "main", remote],
            );
        }
        let seed = dir.path().join("seed");
        std::fs::create_dir(&seed).unwrap();
        git(&seed, &["init", "--quiet", "-b", "main"]);
        for file in [
            "action.yml",
            "action/lib.js",
            "action/main.js",
            "action/post.js",
            "action/setup.js",
            "setup/action.yml",
            ".github/scripts/release-file.js",
            ".github/scripts/github-release.js",
            ".github/workflows/release.yml",
            ".gitlab-ci.yml",
            "templates/aiven-ephemeral.yml",
            "README.md",
        ] {
            let to = seed.join(file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(repo().join(file), to).unwrap();
        }
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "--quiet", "-m", "seed"]);
        let github_git = dir.path().join("github.git");
        git(
            &seed,
            &["push", "--quiet", github_git.to_str().unwrap(), "main"],
        );
        // What the binaries job hands over. The Linux x86_64 asset is a small stand-in
        // that runs this build: the debug binary is too large to move around at every
        // step, and what is checked is which release's asset a job ran.
        let dist = dir.path().join("dist");
        std::fs::create_dir(&dist).unwrap();
        for (target, bytes) in [
            (
                "x86_64-unknown-linux-musl",
                format!("#!/bin/sh\nexec '{BIN}' \"$@\"\n").into_bytes(),
            ),
            ("aarch64-unknown-linux-musl", b"arm64 binary".to_vec()),
            ("aarch64-apple-darwin", b"macos binary".to_vec()),
            ("x86_64-pc-windows-msvc.exe", b"windows binary".to_vec()),
        ] {
            // As the binaries job names and checksums them.
            let name = format!("aiven-ephemeral-{target}");
            let sum = format!("{:x}  {name}\n", sha2::Sha256::digest(&bytes));
            std::fs::write(dist.join(format!("{name}.sha256")), sum).unwrap();
            std::fs::write(dist.join(name), bytes).unwrap();
        }
        let github = GitHub::start().with_git_dir(github_git);
        Self { dir, github, dist }
    }

    fn remote(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A developer's commit pushed to main.
    fn commit_on_main(&self, message: &str) {
        let seed = self.dir.path().join("seed");
        git(
            &seed,
            &["pull", "--quiet", "--rebase", "../github.git", "main"],
        );
        std::fs::write(seed.join("CHANGES"), message).unwrap();
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "--quiet", "-m", message]);
        git(&seed, &["push", "--quiet", "../github.git", "main"]);
    }

    /// Branch protection: the remote refuses any update of main.
    fn protect_main(&self) {
        let hook = self.remote("github.git").join("hooks/pre-receive");
        std::fs::write(
            &hook,
            "#!/bin/sh\nwhile read -r old new ref; do\n  if [ \"$ref\" = refs/heads/main ]; then\n    echo \"GH006: Protected branch update failed for refs/heads/main.\" >&2\n    exit 1\n  fi\ndone\n",
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }

    fn tags(&self, remote: &str) -> BTreeMap<String, String> {
        let out = git(
            &self.remote(remote),
            &[
                "for-each-ref",
                "--format=%(refname:short) %(objectname)",
                "refs/tags",
            ],
        );
        out.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(t, c)| (t.to_string(), c.to_string()))
            .collect()
    }

    /// The action as a user's job gets it at this ref: the remote's tree there.
    fn checkout_at(&self, reference: &str) -> Option<tempfile::TempDir> {
        let remote = self.remote("github.git");
        let exists = Command::new("git")
            .args(["rev-parse", "--verify", "--quiet", reference])
            .current_dir(&remote)
            .output()
            .unwrap()
            .status
            .success();
        if !exists {
            return None;
        }
        let checkout = tempfile::tempdir().unwrap();
        let tar = checkout.path().join("action.tar");
        git(
            &remote,
            &["archive", "-o", tar.to_str().unwrap(), reference],
        );
        let untar = Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .current_dir(checkout.path())
            .status()
            .unwrap();
        assert!(untar.success());
        Some(checkout)
    }

    /// The release whose binary a job using the action at this ref ran (None: the ref
    /// does not exist yet). The job must succeed: every ref users follow works.
    #[track_caller]
    fn user_at(&self, reference: &str, when: &str) -> Option<String> {
        let checkout = self.checkout_at(reference)?;
        let before = self.github.asked().len();
        let runner = Runner::new(ONE);
        let (main, post) = from_release(&runner, checkout.path(), &self.github, reference);
        assert_eq!(
            main.code,
            Some(0),
            "@{reference} {when}:\n{}\n{}",
            main.stdout,
            main.stderr
        );
        post.expect_code(0);
        assert!(runner.env.sandbox.live_names().is_empty());
        let prefix = format!("/{REPO}/releases/download/");
        let asked = self.github.asked()[before..].to_vec();
        let version = asked
            .iter()
            .find_map(|p| p.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("@{reference} {when}: no download in {asked:?}"));
        Some(version.split('/').next().unwrap().to_string())
    }

    /// Runs the workflow's jobs after `binaries` for `version`, dispatched on main's
    /// head, calling `after` after every step with "job: step".
    fn release(&self, version: &str, mut after: impl FnMut(&str)) -> Outcome {
        let text = std::fs::read_to_string(repo().join(".github/workflows/release.yml")).unwrap();
        let workflow: Value = serde_saphyr::from_str(&text).unwrap();
        let sha = git(&self.remote("github.git"), &["rev-parse", "main"]);
        let mut outcome = Outcome::default();
        let needs = |job: &Value| -> Vec<String> {
            match &job["needs"] {
                Value::String(n) => vec![n.clone()],
                Value::Array(n) => n.iter().map(|n| n.as_str().unwrap().to_string()).collect(),
                _ => vec![],
            }
        };
        let built = ["check".to_string(), "binaries".to_string()];
        let mut done = built.to_vec();
        // As the runner orders them: a job once every job it needs is done, and only if
        // they all succeeded.
        while let Some((name, job)) = workflow["jobs"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(name, job)| !done.contains(name) && needs(job).iter().all(|n| done.contains(n)))
        {
            done.push(name.clone());
            if needs(job)
                .iter()
                .all(|n| built.contains(n) || outcome.jobs.get(n) == Some(&true))
            {
                let ok = self.job(name, job, version, &sha, &mut outcome, &mut after);
                outcome.jobs.insert(name.clone(), ok);
            }
        }
        outcome
    }

    fn job(
        &self,
        name: &str,
        job: &Value,
        version: &str,
        sha: &str,
        outcome: &mut Outcome,
        after: &mut impl FnMut(&str),
    ) -> bool {
        let runner_dir = tempfile::tempdir().unwrap();
        let work = runner_dir.path().join("work");
        let mut outputs = BTreeMap::new();
        let eval = |text: &str, outputs: &BTreeMap<String, String>| -> String {
            let mut out = String::new();
            let mut rest = text;
            while let Some(start) = rest.find("${{") {
                out.push_str(&rest[..start]);
                let end = rest[start..].find("}}").unwrap() + start;
                let expr = rest[start + 3..end].trim();
                out.push_str(&match expr {
                    "inputs.version" => version.to_string(),
                    "github.token" => GH_TOKEN.to_string(),
                    "github.repository" => REPO.to_string(),
                    "github.actor" => "release-bot".to_string(),
                    "secrets.GITLAB_PUSH_TOKEN" => GITLAB_TOKEN.to_string(),
                    e => outputs
                        .get(e)
                        .cloned()
                        .unwrap_or_else(|| panic!("{name}: unknown expression {e}")),
                });
                rest = &rest[end + 2..];
            }
            out.push_str(rest);
            out
        };
        let env_of = |node: &Value, outputs: &BTreeMap<String, String>| -> Vec<(String, String)> {
            node.as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), eval(v.as_str().unwrap(), outputs)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let job_env = env_of(&job["env"], &outputs);
        for (i, step) in job["steps"].as_array().unwrap().iter().enumerate() {
            let step_name = step["name"]
                .as_str()
                .or(step["uses"].as_str())
                .unwrap_or("step");
            let uses = step["uses"].as_str().unwrap_or("");
            let with = |key: &str| step["with"][key].as_str().map(|v| eval(v, &outputs));
            if uses.starts_with("actions/checkout@") {
                let remote = self.remote("github.git");
                git(
                    runner_dir.path(),
                    &["clone", "--quiet", remote.to_str().unwrap(), "work"],
                );
                match with("ref") {
                    Some(r) => git(&work, &["checkout", "--quiet", "--detach", &r]),
                    None => git(&work, &["checkout", "--quiet", "-B", "main", sha]),
                };
            } else if uses.starts_with("actions/download-artifact@") {
                let to = work.join(with("path").unwrap());
                std::fs::create_dir_all(&to).unwrap();
                for f in std::fs::read_dir(&self.dist).unwrap().flatten() {
                    std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
                }
            } else if uses.starts_with("docker/build-push-action@") {
                outcome
                    .image_tags
                    .extend(with("tags").unwrap().lines().map(str::to_string));
            } else if let Some(script) = step["run"].as_str() {
                let output_file = runner_dir.path().join(format!("output-{i}"));
                std::fs::write(&output_file, "").unwrap();
                let script_file = runner_dir.path().join(format!("step-{i}.sh"));
                std::fs::write(&script_file, script).unwrap();
                let gitlab = self.remote("gitlab.git");
                let mut cmd = Command::new("bash");
                cmd.args(["--noprofile", "--norc", "-eo", "pipefail"])
                    .arg(&script_file)
                    .current_dir(&work)
                    .env_clear()
                    .env("PATH", std::env::var_os("PATH").unwrap())
                    .env("HOME", runner_dir.path())
                    .env("GIT_CONFIG_NOSYSTEM", "1")
                    .env("GITHUB_ACTIONS", "true")
                    .env("GITHUB_REPOSITORY", REPO)
                    .env("GITHUB_API_URL", &self.github.url)
                    .env("GITHUB_OUTPUT", &output_file)
                    // The real GitLab URL, with its token, reaches the local remote.
                    .env("GIT_CONFIG_COUNT", "1")
                    .env(
                        "GIT_CONFIG_KEY_0",
                        format!("url.{}.insteadOf", gitlab.display()),
                    )
                    .env(
                        "GIT_CONFIG_VALUE_0",
                        format!("https://oauth2:{GITLAB_TOKEN}@gitlab.com/{REPO}.git"),
                    )
                    .envs(job_env.iter().cloned())
                    .envs(env_of(&step["env"], &outputs));
                let out = run(cmd);
                outcome.log.push_str(&format!(
                    "--- {name}: {step_name}\n{}{}",
                    out.stdout, out.stderr
                ));
                if let Some(id) = step["id"].as_str() {
                    let text = std::fs::read_to_string(&output_file).unwrap();
                    for (k, v) in text.lines().filter_map(|l| l.split_once('=')) {
                        outputs.insert(format!("steps.{id}.outputs.{k}"), v.to_string());
                    }
                }
                if out.code != Some(0) {
                    after(&format!("{name}: {step_name}"));
                    return false;
                }
            }
            after(&format!("{name}: {step_name}"));
        }
        true
    }
}

/// The version named by `action/release.json` at a commit of the GitHub remote.
fn release_json_version(world: &World, commit: &str) -> String {
    let text = git(
        &world.remote("github.git"),
        &["show", &format!("{commit}:action/release.json")],
    );
    let file: Value = serde_json::from_str(&text).unwrap();
    file["version"].as_str().unwrap().to_string()
}

#[test]
fn the_major_tag_moves_last_and_a_refused_push_to_main_breaks_no_ref() {
    let world = World::new();
    // The first release.
    let first = world.release("v1.0.0", |_| {});
    assert!(first.jobs.values().all(|ok| *ok), "{}", first.log);
    assert_eq!(world.user_at("v1", "after v1.0.0").unwrap(), "v1.0.0");
    assert_eq!(world.user_at("main", "after v1.0.0").unwrap(), "v1.0.0");

    // The next one, with main protected: every ref a user follows keeps working at every
    // step, on the previous release until it moves, then on the new one.
    world.commit_on_main("a change");
    world.protect_main();
    let mut seen = Vec::new();
    let second = world.release("v1.1.0", |step| {
        let v1 = world.user_at("v1", step).unwrap();
        // Only the last job writes to main.
        if step.starts_with("promote: ") {
            let main = world.user_at("main", step).unwrap();
            assert_eq!(main, "v1.0.0", "{step}: @main");
        }
        let published = world
            .github
            .releases()
            .iter()
            .any(|r| r.tag == "v1.1.0" && !r.draft);
        if published && seen.last().is_none_or(|v| v != "v1.1.0") {
            assert_eq!(world.user_at("v1.1.0", step).unwrap(), "v1.1.0", "{step}");
        }
        if seen.last() != Some(&v1) {
            seen.push(v1.clone());
        }
        if v1 == "v1.1.0" {
            // It moved only once the release, its image and its GitLab tag were out.
            let github = world.github.releases();
            let release = github.iter().find(|r| r.tag == "v1.1.0").unwrap();
            assert!(!release.draft && release.assets.len() == 8, "{step}");
            assert!(world.tags("gitlab.git").contains_key("1.1.0"), "{step}");
        }
    });
    assert_eq!(seen, ["v1.0.0", "v1.1.0"], "{}", second.log);
    assert_eq!(
        second.jobs,
        BTreeMap::from([
            ("gitlab".to_string(), true),
            ("image".to_string(), true),
            ("promote".to_string(), false),
            ("publish".to_string(), true),
        ]),
        "{}",
        second.log
    );
    // The refusal is reported in words that say what works and what to do.
    assert!(
        second.log.contains(
            "::error::main refused action/release.json of v1.1.0: v1.1.0 and v1 are complete; \
             @main runs the previous release's binary until the file reaches main \
             (git checkout v1.1.0 -- action/release.json, in a pull request)"
        ),
        "{}",
        second.log
    );
    let tags = world.tags("github.git");
    assert_eq!(release_json_version(&world, &tags["v1"]), "v1.1.0");
    assert_eq!(
        world.user_at("main", "after the refusal").unwrap(),
        "v1.0.0"
    );
}

#[test]
fn a_release_that_fails_half_way_is_harmless_and_runs_again() {
    let world = World::new();
    assert!(world.release("v1.0.0", |_| {}).jobs.values().all(|ok| *ok));
    world.commit_on_main("a change");
    let before = world.tags("github.git");

    // An upload fails: the draft is never published, nothing a user follows moved.
    world.github.fail_uploads(1);
    let failed = world.release("v1.1.0", |_| {});
    assert_eq!(
        failed.jobs,
        BTreeMap::from([("publish".to_string(), false)]),
        "{}",
        failed.log
    );
    assert_eq!(world.user_at("v1", "after the failure").unwrap(), "v1.0.0");
    assert_eq!(world.tags("github.git")["v1"], before["v1"]);
    assert!(world.tags("gitlab.git").keys().all(|t| t == "1.0.0"));
    assert!(
        world
            .github
            .releases()
            .iter()
            .all(|r| r.tag != "v1.1.0" || r.draft)
    );

    // Run again: the unpublished attempt (its tag, its draft) is started over.
    let again = world.release("v1.1.0", |_| {});
    assert!(again.jobs.values().all(|ok| *ok), "{}", again.log);
    assert_eq!(
        world.user_at("v1", "after the second run").unwrap(),
        "v1.1.0"
    );
    assert_eq!(
        world.user_at("v1.1.0", "after the second run").unwrap(),
        "v1.1.0"
    );
    let releases: Vec<_> = world
        .github
        .releases()
        .into_iter()
        .filter(|r| r.tag == "v1.1.0")
        .collect();
    assert_eq!(releases.len(), 1);
    assert!(!releases[0].draft && releases[0].assets.len() == 8);

    // A published release is never redone.
    let tags = world.tags("github.git");
    let redo = world.release("v1.1.0", |_| {});
    assert_eq!(redo.jobs.get("publish"), Some(&false));
    assert!(
        redo.log
            .contains("::error::release v1.1.0 is published already"),
        "{}",
        redo.log
    );
    assert_eq!(world.tags("github.git"), tags);
}

/// Every `needle...` reference in the documentation: the word after it up to a space,
/// quote, backtick or end of line, with where it was found.
fn references(needle: &str) -> Vec<(String, String)> {
    let mut files = vec![repo().join("README.md"), repo().join("action.yml")];
    for dir in ["docs", "examples/ci", "templates", "src/commands/init"] {
        for f in std::fs::read_dir(repo().join(dir)).unwrap().flatten() {
            let p = f.path();
            if ["md", "yml", "yaml"].contains(&p.extension().and_then(|e| e.to_str()).unwrap_or(""))
            {
                files.push(p);
            }
        }
    }
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for part in line.split(needle).skip(1) {
                let word: String = part
                    .chars()
                    .take_while(|c| !c.is_whitespace() && !"\"'`,)}".contains(*c))
                    .collect();
                let at = format!("{}:{}", file.strip_prefix(repo()).unwrap().display(), n + 1);
                found.push((word, at));
            }
        }
    }
    found
}

#[test]
fn the_documented_lines_are_what_the_release_makes() {
    let world = World::new();
    let outcome = world.release("v1.0.0", |_| {});
    assert!(outcome.jobs.values().all(|ok| *ok), "{}", outcome.log);
    let github_tags = world.tags("github.git");
    let gitlab_tags = world.tags("gitlab.git");
    let assets: Vec<String> = world.github.releases()[0].assets.keys().cloned().collect();

    // `uses: aiven-ephemeral/aiven-ephemeral@REF`: a tag the release pushes.
    let uses = references(&format!("uses: {REPO}@"));
    assert!(!uses.is_empty());
    for (reference, at) in &uses {
        assert!(
            github_tags.contains_key(reference),
            "{at}: @{reference} {github_tags:?}"
        );
    }

    // `uses: aiven-ephemeral/aiven-ephemeral/setup@REF`: the same tags, and the action
    // is there.
    let setups = references(&format!("uses: {REPO}/setup@"));
    assert!(!setups.is_empty());
    for (reference, at) in &setups {
        assert!(
            github_tags.contains_key(reference) && repo().join("setup/action.yml").exists(),
            "{at}: @{reference} {github_tags:?}"
        );
    }

    // The component: this GitLab project, a file in templates/, and a version the
    // catalog resolves from the tags the release pushes (exact, or a partial version).
    let components = references("component: $CI_SERVER_FQDN/");
    assert!(!components.is_empty());
    let gitlab_ci: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo().join(".gitlab-ci.yml")).unwrap())
            .unwrap();
    assert_eq!(
        gitlab_ci["create-release"]["release"]["tag_name"],
        "$CI_COMMIT_TAG"
    );
    for tag in gitlab_tags.keys() {
        let parts: Vec<&str> = tag.split('.').collect();
        assert!(
            parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
            "{tag}: the catalog takes semantic versions"
        );
    }
    for (reference, at) in &components {
        let (path, version) = reference.split_once('@').unwrap();
        let (project, name) = path.rsplit_once('/').unwrap();
        assert_eq!(project, REPO, "{at}");
        assert!(
            repo().join(format!("templates/{name}.yml")).exists(),
            "{at}"
        );
        assert!(
            gitlab_tags
                .keys()
                .any(|t| t == version || t.starts_with(&format!("{version}."))),
            "{at}: @{version} resolves to none of {gitlab_tags:?}"
        );
    }

    // The image: a tag the release pushes.
    let images = references("ghcr.io/aiven-ephemeral/aiven-ephemeral:");
    assert!(images.len() >= 3);
    for (tag, at) in &images {
        let image = format!("ghcr.io/{REPO}:{tag}");
        assert!(
            outcome.image_tags.contains(&image),
            "{at}: {image} {:?}",
            outcome.image_tags
        );
    }

    // Direct downloads, if any is documented: an asset of the release.
    let downloads = references(&format!("github.com/{REPO}/releases/download/"));
    for (reference, at) in &downloads {
        let (tag, _) = reference.split_once('/').unwrap_or((reference, ""));
        assert!(github_tags.contains_key(tag), "{at}: {tag}");
    }
    let named = references("asset=");
    for (name, at) in named {
        for asset in [name.clone(), format!("{name}.sha256")] {
            assert!(
                assets.contains(&asset),
                "{at}: {asset} not among {assets:?}"
            );
        }
    }
}

/// The binaries job's build, run as the runner runs it with a `cargo` that records what
/// it was given: the binary is built to report the release's version (`--version`, the
/// User-Agent), not Cargo.toml's, which the release does not edit.
#[test]
fn the_binaries_are_built_to_report_the_releases_version() {
    let text = std::fs::read_to_string(repo().join(".github/workflows/release.yml")).unwrap();
    let workflow: Value = serde_saphyr::from_str(&text).unwrap();
    let steps = workflow["jobs"]["binaries"]["steps"].as_array().unwrap();
    let build = steps
        .iter()
        .find(|s| s["run"].as_str().is_some_and(|r| r.contains("cargo build")))
        .expect("a build step");
    let dir = tempfile::tempdir().unwrap();
    let stub = dir.path().join("cargo");
    std::fs::write(
        &stub,
        "#!/bin/sh\necho \"$AIVEN_EPHEMERAL_VERSION $*\" > \"$HOME/called\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let env: Vec<(String, String)> = build["env"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let v = match v.as_str().unwrap() {
                "${{ matrix.target }}" => "x86_64-unknown-linux-musl",
                "${{ inputs.version }}" => "v1.2.3",
                other => panic!("{k}: unexpected {other}"),
            };
            (k.clone(), v.to_string())
        })
        .collect();
    let script = dir.path().join("step.sh");
    std::fs::write(&script, build["run"].as_str().unwrap()).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&script)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir.path())
        .envs(env)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("called")).unwrap(),
        "1.2.3 build --release --locked --target x86_64-unknown-linux-musl --bin aiven-ephemeral\n"
    );
}
