//! Delivering a ready run: certificate files, the env file, and the CI-native outputs
//! (GitHub masks, `$GITHUB_ENV`, `$GITHUB_OUTPUT`, step summary; GitLab limits and the
//! non-secret dotenv report).

pub mod env;
pub mod github;
pub mod gitlab;
pub mod values;

use std::path::{Path, PathBuf};

use crate::api::Service;
use crate::error::{Error, Result};
use crate::manifest::ServiceSpec;
use crate::manifest::exports;
use crate::secret::Secret;
use values::{Files, UserPasswords, Value};

/// The accounts created in a service, which its users need to know about.
#[derive(Default, Debug)]
pub struct Created {
    pub users: std::collections::BTreeMap<String, crate::api::ServiceUser>,
}

/// A ready service, as outputs need it.
pub struct Delivered<'a> {
    pub spec: &'a ServiceSpec,
    /// With secrets.
    pub service: &'a Service,
    pub created: &'a Created,
}

/// Writes the certificate files of the run and computes every exported value.
pub fn materialise(
    services: &[Delivered],
    project_ca: Option<&str>,
    certs_dir: &Path,
    sandbox: bool,
) -> Result<(Vec<Value>, github::Secrets)> {
    let write = |path: &Path, contents: &str| {
        crate::state::write_private(path, contents.as_bytes())
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
    };
    let certs_dir = crate::state::absolute(certs_dir);
    let ca_path = certs_dir.join("ca.pem");
    let mut ca_written = false;
    let mut values = Vec::new();
    let mut secrets = github::Secrets::default();
    for d in services {
        let mut files = Files::default();
        if exports::uses_project_ca(d.spec, sandbox) {
            let ca = project_ca
                .ok_or_else(|| Error::Provision("the project CA could not be read".into()))?;
            if !ca_written {
                write(&ca_path, ca)?;
                ca_written = true;
            }
            files.ca = Some(ca_path.clone());
        }
        if let Some(admin) = d.service.admin() {
            if let Some(p) = &admin.password {
                secrets
                    .credentials
                    .push((admin.username.clone(), p.expose().to_string()));
            }
            if let (Some(cert), Some(key)) = (&admin.access_cert, &admin.access_key) {
                let (cert_path, key_path) = values::cert_paths(&certs_dir, &d.spec.key);
                write(&cert_path, cert)?;
                write(&key_path, key.expose())?;
                secrets.keys.push(key.expose().to_string());
                files.access_cert = Some(cert_path);
                files.access_key = Some(key_path);
            }
        }
        let mut passwords = UserPasswords::new();
        for (name, user) in &d.created.users {
            if let Some(p) = &user.password {
                passwords.insert(name.clone(), p.clone());
                secrets
                    .credentials
                    .push((name.clone(), p.expose().to_string()));
            } else {
                passwords.insert(name.clone(), Secret::default());
            }
            if let (Some(cert), Some(key)) = (&user.access_cert, &user.access_key) {
                let (cert_path, key_path) = values::user_cert_paths(&certs_dir, &d.spec.key, name);
                write(&cert_path, cert)?;
                write(&key_path, key.expose())?;
                secrets.keys.push(key.expose().to_string());
                files.users.insert(name.clone(), (cert_path, key_path));
            }
        }
        let mut service_values = values::values(d.spec, d.service, &files, &passwords, sandbox)
            .map_err(|e| {
                Error::Provision(format!(
                    "{} (services.{}): {e}",
                    d.service.service_name, d.spec.key
                ))
            })?;
        values.append(&mut service_values);
    }
    env::check(&values).map_err(Error::Provision)?;
    Ok((values, secrets))
}

/// What a run hands to later steps.
pub struct Handoff<'a> {
    pub run_id: &'a str,
    pub project: &'a str,
    pub env_file: &'a Path,
    pub state_file: &'a Path,
    pub github_env: github::GithubEnv,
    pub dotenv_report: Option<(PathBuf, usize)>,
    /// (service name, type, plan, cloud, seconds to ready)
    pub summary: Vec<(String, String, String, String, u64)>,
}

/// The shell version of an env file: `<env file>.sh`.
pub fn shell_env_file(env_file: &Path) -> PathBuf {
    let mut name = env_file.as_os_str().to_owned();
    name.push(".sh");
    PathBuf::from(name)
}

/// Delivery's writes and the removal of what it wrote take turns, and once removal has
/// come no delivery step writes any more: a delivery abandoned after a signal runs on in
/// its blocking thread (a `spawn_blocking` task cannot be stopped), and must not leave
/// credentials behind a teardown. One run is delivered per process.
static REMOVED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

/// Runs one delivery step that writes files, unless removal has come.
pub fn fenced<T>(step: impl FnOnce() -> Result<T>) -> Result<T> {
    let removed = REMOVED.lock().unwrap_or_else(|e| e.into_inner());
    if *removed {
        return Err(Error::Provision("cancelled".into()));
    }
    step()
}

/// Removes what was written for a run that is gone: its env files (also those `env`
/// wrote beside its state file) and certificates name credentials of deleted services.
/// What other runs wrote beside their own state files stays. Waits for a delivery step
/// that is writing, and stops any later one.
pub fn remove(env_file: &Path, state_file: &Path) {
    let mut removed = REMOVED.lock().unwrap_or_else(|e| e.into_inner());
    *removed = true;
    let _ = std::fs::remove_file(env_file);
    let _ = std::fs::remove_file(shell_env_file(env_file));
    for name in ["env", "env.sh", "env.json"] {
        let _ = std::fs::remove_file(crate::state::StatePaths::of(Some(state_file)).beside(name));
    }
    let _ = std::fs::remove_dir_all(crate::state::StatePaths::of(Some(state_file)).beside("certs"));
}

/// Writes the env file and the CI outputs. In GitHub Actions the masks go out first.
pub fn deliver(
    values: &[Value],
    secrets: &github::Secrets,
    handoff: &Handoff,
    reporter: &crate::progress::Reporter,
) -> Result<()> {
    if crate::ci::github() {
        github::print_masks(&github::mask_words(secrets, values));
    }
    fenced(|| write_outputs(values, handoff, reporter))
}

fn write_outputs(
    values: &[Value],
    handoff: &Handoff,
    reporter: &crate::progress::Reporter,
) -> Result<()> {
    // The dotenv file for tools that read one; beside it the same, quoted and exported,
    // for shells (a dotenv value with `&` in it cannot be sourced).
    for (path, format) in [
        (handoff.env_file.to_path_buf(), env::Format::Dotenv),
        (shell_env_file(handoff.env_file), env::Format::Shell),
    ] {
        env::write(&path, values, format)
            .map_err(|e| Error::io(format!("cannot write env file {}", path.display()), e))?;
    }
    if gitlab::active() {
        let rendered = env::render(values, env::Format::Dotenv);
        for w in gitlab::limit_warnings(&rendered, values.len()) {
            reporter.warn(w);
        }
    }
    if let Some((path, max)) = &handoff.dotenv_report {
        let mut report = vec![
            Value {
                name: "AIVEN_EPHEMERAL_RUN_ID".into(),
                value: handoff.run_id.to_string(),
                secret: false,
                file: false,
            },
            Value {
                name: "AIVEN_PROJECT".into(),
                value: handoff.project.to_string(),
                secret: false,
                file: false,
            },
        ];
        // Later jobs get handles, not secrets: they call `aiven-ephemeral env`.
        report.extend(values.iter().filter(|v| !v.secret && !v.file).cloned());
        gitlab::write_report(path, &report, *max).map_err(Error::usage)?;
    }
    if crate::ci::github() {
        let io = |e: std::io::Error| Error::io("cannot write GitHub Actions outputs", e);
        github::write_env(values, handoff.github_env).map_err(io)?;
        let services: Vec<serde_json::Value> = handoff
            .summary
            .iter()
            .map(|(name, ty, plan, cloud, secs)| {
                serde_json::json!({"name": name, "type": ty, "plan": plan, "cloud": cloud, "ready_seconds": secs})
            })
            .collect();
        github::write_outputs(&[
            ("run-id", handoff.run_id.to_string()),
            ("env-file", handoff.env_file.display().to_string()),
            ("state-file", handoff.state_file.display().to_string()),
            ("services", serde_json::Value::Array(services).to_string()),
        ])
        .map_err(io)?;
        github::write_summary(&summary_table(handoff)).map_err(io)?;
    }
    Ok(())
}

fn summary_table(h: &Handoff) -> String {
    let mut md = format!(
        "### aiven-ephemeral: run `{}` is up\n\n| service | type | plan | cloud | ready after | result |\n|---|---|---|---|---|---|\n",
        h.run_id
    );
    for (name, ty, plan, cloud, secs) in &h.summary {
        md.push_str(&format!(
            "| `{name}` | {ty} | {plan} | {cloud} | {secs}s | ready |\n"
        ));
    }
    md.push('\n');
    md
}

/// The step summary's teardown section.
pub fn summary_teardown(
    run_id: &str,
    deleted: &[String],
    protected: &[String],
    failed: &[(String, String)],
) -> String {
    let mut md = format!("### aiven-ephemeral: run `{run_id}` teardown\n\n");
    for name in deleted {
        md.push_str(&format!("- `{name}`: deleted\n"));
    }
    for name in protected {
        md.push_str(&format!(
            "- `{name}`: **not deleted** (termination protection)\n"
        ));
    }
    for (name, why) in failed {
        md.push_str(&format!("- `{name}`: **not confirmed deleted**: {why}\n"));
    }
    md.push('\n');
    md
}
