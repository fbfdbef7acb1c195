//! The manifest (`aiven-ephemeral.yaml`), in four steps, nothing sent to the API:
//!
//! - [`raw`]: what serde reads, strictly (unknown keys, duplicate keys and bad types
//!   are errors in the user's words, with a line and column);
//! - [`validate`]: every value checked offline for what the API would reject later, one
//!   function per concern;
//! - [`expand`]: the checked manifest turned into what a run uses (`version` and
//!   `fork_from` folded into `user_config`, probe and env defaults);
//! - [`env_names`]: the env names the services will export, checked together.

mod env_names;
mod expand;
pub mod exports;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::catalogue::ServiceType;

// ---------------------------------------------------------------------------------------
// The validated manifest

#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    /// The text it was read from, for reports that point into it.
    pub source: String,
    pub project: Option<String>,
    pub cloud: Option<String>,
    pub name_prefix: String,
    pub ttl: Option<Duration>,
    pub ttl_at: Loc,
    pub services: Vec<ServiceSpec>,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loc {
    pub line: u64,
    pub column: u64,
}

impl Loc {
    fn of<T>(s: &Spanned<T>) -> Self {
        Loc {
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub key: String,
    pub at: Loc,
    pub service_type: String,
    /// What this tool knows of the type.
    pub kind: &'static ServiceType,
    pub plan: String,
    pub plan_at: Loc,
    pub cloud: Option<String>,
    /// Passed through to the API, with `version` and `fork_from` folded in.
    pub user_config: Value,
    pub databases: Vec<String>,
    pub users: Vec<String>,
    pub topics: Vec<TopicSpec>,
    pub acls: Vec<AclSpec>,
    /// Keep Kafka's wildcard `default` ACL (`default_acl: false` removes it).
    pub default_acl: bool,
    pub probe: Probe,
    /// The env-var prefix: `env_prefix:`, else the key in upper case.
    pub env_prefix: String,
    pub env_prefix_at: Option<Loc>,
    /// Extra names: (name, field, where).
    pub aliases: Vec<(String, String, Loc)>,
    pub project_vpc_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// A service runs share, each with its own tenancy inside it.
    pub shared: Option<Shared>,
    /// SQL files applied once the databases exist (on a shared service: once, into a
    /// template each run clones).
    pub seed: Vec<Seed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared {
    /// `shared: true`: this tool creates it on first use and keeps it.
    Managed,
    /// `shared: {service: NAME}`: one the user manages; never created or powered off.
    Existing(String),
}

#[derive(Debug, Clone)]
pub struct Seed {
    /// Resolved against the manifest's directory.
    pub path: PathBuf,
    /// The manifest's directory, which the file must be inside.
    pub root: PathBuf,
    pub at: Loc,
}

impl Seed {
    /// The file itself, symlinks followed, if it is a regular file inside the manifest's
    /// directory: a seed's text is run as SQL and may be quoted in errors, so `../`, an
    /// absolute path or a symlink never takes it elsewhere.
    pub fn confined(&self) -> Result<PathBuf, String> {
        let cannot =
            |e: std::io::Error| format!("cannot read seed file {}: {e}", self.path.display());
        let real = self.path.canonicalize().map_err(cannot)?;
        let root = self.root.canonicalize().map_err(cannot)?;
        if !real.starts_with(&root) {
            return Err(format!(
                "seed file {} is outside the manifest's directory",
                self.path.display()
            ));
        }
        if !real.is_file() {
            return Err(cannot(std::io::Error::other("it is not a file")));
        }
        Ok(real)
    }

    /// The file's text (see [`Seed::confined`]).
    pub fn read(&self) -> Result<String, String> {
        std::fs::read_to_string(self.confined()?)
            .map_err(|e| format!("reading seed file {}: {e}", self.path.display()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub replication: u32,
    /// Where `replication:` is written (else the topic's name): the API's check of it
    /// against the plan's brokers points there.
    pub replication_at: Loc,
    pub min_insync_replicas: Option<u32>,
    pub retention_hours: Option<i64>,
    pub cleanup_policy: Option<String>,
    pub config: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AclSpec {
    pub username: String,
    pub topic: String,
    pub permission: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    None,
    Tcp,
    Tls,
}

#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub max_hourly_usd: Option<f64>,
    pub max_services: Option<u32>,
    pub allowed_plans: Option<Vec<String>>,
}

pub const DEFAULT_PREFIX: &str = "ae";
/// A topic's replication when the manifest does not say.
pub const DEFAULT_REPLICATION: u32 = 2;

// ---------------------------------------------------------------------------------------
// Errors

/// One problem in the manifest, at a place in it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub at: Loc,
    pub message: String,
    pub hint: Option<String>,
}

/// A manifest that cannot be used. Displays as the full report: every problem with the
/// file, line and column, the line itself, and a hint.
#[derive(Debug, Clone)]
pub struct ManifestError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
    rendered: String,
}

impl std::error::Error for ManifestError {}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rendered)
    }
}

impl ManifestError {
    pub fn new(path: &Path, source: &str, mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| (p.at.line, p.at.column));
        let rendered = problems
            .iter()
            .map(|p| render_problem(path, source, p))
            .collect::<Vec<_>>()
            .join("\n");
        Self {
            path: path.to_path_buf(),
            problems,
            rendered,
        }
    }

    fn read(path: &Path, e: &std::io::Error) -> Self {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            Some(
                "`aiven-ephemeral init` writes a commented starter; or pass another file with -f"
                    .into(),
            )
        } else {
            None
        };
        let problem = Problem {
            at: Loc::default(),
            message: format!("cannot read manifest {}: {e}", path.display()),
            hint,
        };
        let mut rendered = format!("error: {}", problem.message);
        if let Some(h) = &problem.hint {
            rendered.push_str(&format!("\n  hint: {h}"));
        }
        Self {
            path: path.to_path_buf(),
            problems: vec![problem],
            rendered,
        }
    }
}

fn render_problem(path: &Path, source: &str, p: &Problem) -> String {
    let file = path.display();
    let mut out = if p.at.line == 0 {
        format!("error: {file}: {}", p.message)
    } else {
        format!(
            "error: {file}:{}:{}: {}\n --> {file}:{}:{}\n",
            p.at.line, p.at.column, p.message, p.at.line, p.at.column
        )
    };
    if p.at.line > 0
        && let Some(text) = source.lines().nth(p.at.line as usize - 1)
    {
        let number = p.at.line.to_string();
        let pad = " ".repeat(number.len());
        let caret = " ".repeat(p.at.column.saturating_sub(1) as usize);
        out.push_str(&format!(
            "{pad} |\n{number} | {text}\n{pad} | {caret}^ {}",
            p.message
        ));
    }
    if let Some(h) = &p.hint {
        out.push_str(&format!("\n  hint: {h}"));
    }
    out
}

impl Manifest {
    /// Problems found with the API's help, reported as the offline ones are.
    pub fn problems(&self, problems: Vec<Problem>) -> ManifestError {
        ManifestError::new(&self.path, &self.source, problems)
    }
}

// ---------------------------------------------------------------------------------------
// Loading

pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError::read(path, &e))?;
    parse(&text, path)
}

/// The manifest when there is one: commands that find a run without it read it only for
/// the project.
pub fn load_if_present(path: &Path) -> Result<Option<Manifest>, ManifestError> {
    if path.exists() {
        load(path).map(Some)
    } else {
        Ok(None)
    }
}

pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
    let raw = raw::read(text).map_err(|p| ManifestError::new(path, text, vec![p]))?;
    let problems = validate::manifest(&raw);
    if !problems.is_empty() {
        return Err(ManifestError::new(path, text, problems));
    }
    let manifest = expand::manifest(raw, path, text);
    let mut problems = env_names::check(&manifest);
    problems.extend(validate::seed_files(&manifest));
    if !problems.is_empty() {
        return Err(ManifestError::new(path, text, problems));
    }
    Ok(manifest)
}

/// The TTL must leave at least this much beyond `up`'s timeout.
pub const TTL_MARGIN: Duration = Duration::from_secs(600);

impl Manifest {
    /// The run's ttl for a given `--timeout`: the manifest's, else timeout + 1h. One
    /// shorter than timeout + 10m is refused, by `up` and `validate` alike: `reap` could
    /// delete the services while `up` still waits for them.
    pub fn ttl_for(&self, timeout: Duration) -> Result<Duration, ManifestError> {
        let ttl = self.ttl.unwrap_or(timeout + Duration::from_secs(3600));
        if ttl >= timeout + TTL_MARGIN {
            return Ok(ttl);
        }
        let message = format!(
            "ttl {} is shorter than --timeout {} plus 10m: services could be reaped while `up` still waits for them",
            humantime::format_duration(ttl),
            humantime::format_duration(timeout)
        );
        Err(ManifestError::new(
            &self.path,
            &self.source,
            vec![Problem {
                at: self.ttl_at,
                message,
                hint: Some("raise ttl, or lower --timeout".into()),
            }],
        ))
    }
}

pub fn is_service_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    use humantime::DurationError as E;
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        // In the user's words, not the parser's ("expected number at 0").
        let why = match e {
            E::UnknownUnit { unit, .. } if unit.is_empty() => " (a unit is needed)".to_string(),
            E::UnknownUnit { unit, .. } => format!(" (unknown unit `{unit}`)"),
            E::NumberOverflow => " (too long)".to_string(),
            _ => String::new(),
        };
        format!("`{text}` is not a duration{why}; write e.g. `90s`, `20m`, `2h`")
    })?;
    if d.is_zero() {
        return Err(format!("`{text}` is zero; give a positive duration"));
    }
    Ok(d)
}

/// An env-var name: upper case, every character outside `[A-Z0-9_]` becomes `_`.
pub fn env_name(s: &str) -> String {
    s.chars()
        .map(|ch| {
            let up = ch.to_ascii_uppercase();
            if up.is_ascii_uppercase() || up.is_ascii_digit() || up == '_' {
                up
            } else {
                '_'
            }
        })
        .collect()
}

impl ServiceSpec {
    /// The service's name: `<prefix>-<key>-<run id>`, or a shared service's stable one.
    pub fn service_name(&self, prefix: &str, run_id: &str) -> Result<String, String> {
        match &self.shared {
            None => crate::identity::service_name(prefix, &self.key, run_id),
            Some(Shared::Managed) => crate::identity::shared_service_name(prefix, &self.key),
            Some(Shared::Existing(name)) => Ok(name.clone()),
        }
    }

    pub fn sasl(&self) -> bool {
        self.user_config
            .pointer("/kafka_authentication_methods/sasl")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    pub fn flag(&self, key: &str) -> bool {
        self.user_config
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Manifest {
        parse(text, Path::new("m.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(text: &str) -> ManifestError {
        match parse(text, Path::new("m.yaml")) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_design_example_parses() {
        let m = parse_ok(
            "project: my-ci-project\ncloud: google-europe-west1\nname_prefix: ci\nttl: 2h\nservices:\n  db:\n    type: pg\n    plan: startup-4\n    version: \"16\"\n    databases: [app]\n    users: [app_user]\n    env:\n      DATABASE_URL: uri\n  events:\n    type: kafka\n    plan: startup-2\n    users: [app_user]\n    topics:\n      - { name: orders, partitions: 3, replication: 2 }\n    acls:\n      - { username: app_user, topic: \"orders*\", permission: readwrite }\n    default_acl: false\n  staging-copy:\n    type: pg\n    plan: startup-4\n    fork_from: { service: staging-db, recovery_target_time: \"2026-11-01T10:00:00Z\" }\n    probe: tls\n    env_prefix: STAGING\nlimits:\n  max_hourly_usd: 2.5\n  max_services: 10\n  allowed_plans: [hobbyist, startup-2, startup-4]\n",
        );
        assert_eq!(m.services.len(), 3);
        assert_eq!(m.services[0].user_config["pg_version"], "16");
        assert_eq!(m.services[2].env_prefix, "STAGING");
        assert_eq!(
            m.services[2].user_config["service_to_fork_from"],
            "staging-db"
        );
        assert_eq!(
            m.services[2].user_config["recovery_target_time"],
            "2026-11-01T10:00:00Z"
        );
        assert!(!m.services[1].default_acl);
        assert_eq!(m.ttl, Some(Duration::from_secs(7200)));
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = parse_err("services:\n  db:\n    type: pg\n    plna: x\n");
        assert_eq!(e.problems[0].at, Loc { line: 4, column: 5 });
        assert!(e.to_string().contains("m.yaml:4:5"), "{e}");
        let e = parse_err("services:\n  Db:\n    type: pg\n    plan: hobbyist\n");
        assert_eq!(e.problems[0].at, Loc { line: 2, column: 3 });
        let e = parse_err("services:\n  db:\n    type: pg\n    plan: hobbyist\n    probe: tpc\n");
        assert_eq!(e.problems[0].at.line, 5);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse_err(
            "services:\n  db: {type: pg, plan: hobbyist}\n  db: {type: pg, plan: hobbyist}\n",
        );
        assert_eq!(e.problems[0].at.line, 3);
    }

    #[test]
    fn kafka_only_fields_are_checked() {
        let e = parse_err(
            "services:\n  db:\n    type: pg\n    plan: hobbyist\n    topics: [{name: x}]\n",
        );
        assert!(
            e.to_string().contains("`topics` is for Kafka services"),
            "{e}"
        );
    }

    #[test]
    fn limits_are_checked_offline() {
        let e = parse_err(
            "services:\n  a: {type: pg, plan: business-8}\nlimits:\n  allowed_plans: [hobbyist]\n",
        );
        assert_eq!(e.problems[0].at.line, 2);
        let e = parse_err(
            "services:\n  a: {type: pg, plan: hobbyist}\n  b: {type: pg, plan: hobbyist}\nlimits:\n  max_services: 1\n",
        );
        assert!(
            e.to_string().contains("more than limits.max_services"),
            "{e}"
        );
    }

    #[test]
    fn env_names_are_normalised() {
        assert_eq!(env_name("staging-copy"), "STAGING_COPY");
        assert_eq!(env_name("a.b c"), "A_B_C");
    }

    #[test]
    fn collisions_name_both_sources() {
        let e = parse_err(
            "services:\n  a-b: {type: pg, plan: hobbyist}\n  other: {type: pg, plan: hobbyist, env_prefix: A_B}\n",
        )
        .to_string();
        assert!(
            e.contains("services.a-b") && e.contains("services.other"),
            "{e}"
        );
    }

    #[test]
    fn reserved_names_are_refused() {
        let e = parse_err("services:\n  db: {type: pg, plan: hobbyist, env: {PATH: uri}}\n");
        assert!(e.to_string().contains("`PATH`"), "{e}");
        parse_err("services:\n  github: {type: pg, plan: hobbyist}\n");
    }

    #[test]
    fn unknown_alias_lists_the_valid_ones() {
        let e = parse_err("services:\n  db: {type: valkey, plan: hobbyist, env: {X: database}}\n")
            .to_string();
        assert!(e.contains("valid values for `db`"), "{e}");
        assert!(e.contains("password"), "{e}");
    }
}
