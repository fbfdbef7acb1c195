//! The manifest (`aiven-ephemeral.yaml`): parsed strictly (unknown keys, duplicate keys
//! and bad types are errors with a line and column), then checked offline for what the
//! API would reject later. Nothing here talks to the API.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use serde_saphyr::Spanned;

// ---------------------------------------------------------------------------------------
// The validated manifest

#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
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
    pub fork_from: Option<ForkSpec>,
    pub probe: Probe,
    /// The env-var prefix: `env_prefix:`, else the key in upper case.
    pub env_prefix: String,
    pub env_prefix_at: Option<Loc>,
    /// Extra names: (name, field, where).
    pub aliases: Vec<(String, String, Loc)>,
    pub project_vpc_id: Option<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub replication: u32,
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

#[derive(Debug, Clone, PartialEq)]
pub struct ForkSpec {
    pub service: String,
    pub project: Option<String>,
    pub recovery_target_time: Option<String>,
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
    pub max_hourly_usd_at: Loc,
    pub max_services: Option<u32>,
    pub allowed_plans: Option<Vec<String>>,
    pub allowed_plans_at: Loc,
}

pub const DEFAULT_PREFIX: &str = "ae";

/// Types whose `user_config` has a `<type>_version`.
const VERSIONED: &[&str] = &[
    "pg",
    "mysql",
    "kafka",
    "valkey",
    "opensearch",
    "cassandra",
    "flink",
    "alloydbomni",
    "clickhouse",
    "grafana",
    "dragonfly",
];
pub const DATABASE_TYPES: &[&str] = &["pg", "mysql", "alloydbomni"];
const FORKABLE: &[&str] = &[
    "pg",
    "mysql",
    "opensearch",
    "valkey",
    "clickhouse",
    "alloydbomni",
];
const PITR: &[&str] = &["pg", "mysql", "alloydbomni"];

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
                "create it (see `aiven-ephemeral --help` and the README), or pass another with -f"
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

// ---------------------------------------------------------------------------------------
// What serde reads

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    project: Option<Spanned<String>>,
    cloud: Option<Spanned<String>>,
    name_prefix: Option<Spanned<String>>,
    ttl: Option<Spanned<String>>,
    services: Spanned<Ordered<RawService>>,
    limits: Option<RawLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    #[serde(rename = "type")]
    service_type: Spanned<String>,
    plan: Spanned<String>,
    cloud: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
    user_config: Option<Spanned<Value>>,
    #[serde(default)]
    databases: Vec<Spanned<String>>,
    #[serde(default)]
    users: Vec<Spanned<String>>,
    #[serde(default)]
    topics: Vec<Spanned<RawTopic>>,
    #[serde(default)]
    acls: Vec<Spanned<RawAcl>>,
    default_acl: Option<Spanned<bool>>,
    fork_from: Option<Spanned<RawFork>>,
    probe: Option<Spanned<Probe>>,
    env_prefix: Option<Spanned<String>>,
    env: Option<Ordered<String>>,
    project_vpc_id: Option<Spanned<String>>,
    tags: Option<Ordered<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    name: Spanned<String>,
    #[serde(default = "one")]
    partitions: u32,
    #[serde(default = "two")]
    replication: u32,
    min_insync_replicas: Option<u32>,
    retention_hours: Option<i64>,
    cleanup_policy: Option<Spanned<String>>,
    #[serde(default)]
    config: BTreeMap<String, Value>,
}

fn one() -> u32 {
    1
}

fn two() -> u32 {
    2
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcl {
    username: Spanned<String>,
    topic: Spanned<String>,
    permission: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFork {
    service: Spanned<String>,
    project: Option<Spanned<String>>,
    recovery_target_time: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_hourly_usd: Option<Spanned<f64>>,
    max_services: Option<Spanned<u32>>,
    allowed_plans: Option<Spanned<Vec<String>>>,
}

/// A mapping kept in file order, with the location of every key.
struct Ordered<V>(Vec<(Spanned<String>, Spanned<V>)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key()? {
                    out.push((key, map.next_value()?));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

// ---------------------------------------------------------------------------------------
// Loading

pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError::read(path, &e))?;
    parse(&text, path)
}

pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
    let raw: Raw = serde_saphyr::from_str(text).map_err(|e| {
        let name = path.display().to_string();
        let options = serde_saphyr::render_options! {
            formatter: &serde_saphyr::UserMessageFormatter,
            source_name: Some(name.as_str()),
        };
        let at = e
            .location()
            .map(|l| Loc {
                line: l.line(),
                column: l.column(),
            })
            .unwrap_or_default();
        let message = serde_saphyr::render_options! {
            formatter: &serde_saphyr::UserMessageFormatter,
            snippets: serde_saphyr::SnippetMode::Off,
        };
        let message = e.render_with_options(message);
        let message = message
            .strip_prefix("error: ")
            .unwrap_or(&message)
            .trim()
            .to_string();
        let hint = Some(
            "see the manifest reference in the README (`aiven-ephemeral validate` checks a manifest offline)"
                .to_string(),
        );
        let mut rendered = e.render_with_options(options);
        if !rendered.starts_with("error") {
            rendered = format!("error: {rendered}");
        }
        rendered.push_str(&format!("\n  hint: {}", hint.as_deref().unwrap_or_default()));
        ManifestError {
            path: path.to_path_buf(),
            problems: vec![Problem { at, message, hint }],
            rendered,
        }
    })?;
    let mut problems = Vec::new();
    let manifest = check(raw, path, &mut problems);
    if problems.is_empty() {
        Ok(manifest)
    } else {
        Err(ManifestError::new(path, text, problems))
    }
}

// ---------------------------------------------------------------------------------------
// Checks

struct Checker<'a> {
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn fail(&mut self, at: Loc, message: impl Into<String>, hint: impl Into<Option<String>>) {
        self.problems.push(Problem {
            at,
            message: message.into(),
            hint: hint.into(),
        });
    }

    fn pattern(&mut self, value: &Spanned<String>, what: &str, ok: bool, rule: &str) {
        if !ok {
            self.fail(
                Loc::of(value),
                format!("{what} `{}` is invalid: {rule}", value.value),
                None,
            );
        }
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

fn is_key(s: &str) -> bool {
    is_service_name(s) && !s.ends_with('-')
}

fn is_plan(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b.len() <= 128
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
        && !s.ends_with('-')
        && !s.ends_with('_')
}

fn is_ident(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_-.".contains(c))
}

fn is_tag_key(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. `90s`, `20m`, `2h`"))?;
    if d.is_zero() {
        return Err(format!("`{text}` is zero; give a positive duration"));
    }
    Ok(d)
}

fn check(raw: Raw, path: &Path, problems: &mut Vec<Problem>) -> Manifest {
    let mut c = Checker { problems };
    for (value, what) in [(&raw.project, "project"), (&raw.cloud, "cloud")] {
        if let Some(v) = value {
            c.pattern(
                v,
                what,
                is_service_name(&v.value),
                "lowercase letters, digits and `-`, starting with a letter",
            );
        }
    }
    let name_prefix = match &raw.name_prefix {
        Some(p) => {
            let ok = is_key(&p.value) && p.value.len() <= 20;
            c.pattern(
                p,
                "name_prefix",
                ok,
                "1-20 lowercase letters, digits and `-`, starting with a letter",
            );
            p.value.clone()
        }
        None => DEFAULT_PREFIX.to_string(),
    };
    let (ttl, ttl_at) = match &raw.ttl {
        Some(t) => match parse_duration(&t.value) {
            Ok(d) => (Some(d), Loc::of(t)),
            Err(e) => {
                c.fail(Loc::of(t), format!("ttl {e}"), None);
                (None, Loc::of(t))
            }
        },
        None => (None, Loc::default()),
    };
    if raw.services.value.0.is_empty() {
        c.fail(
            Loc::of(&raw.services),
            "`services` is empty: nothing to create",
            Some("add at least one service, e.g. `db: {type: pg, plan: hobbyist}`".to_string()),
        );
    }
    let services: Vec<ServiceSpec> = raw
        .services
        .value
        .0
        .into_iter()
        .map(|(key, svc)| check_service(&mut c, key, svc))
        .collect();
    let limits = raw
        .limits
        .map(|l| {
            if let Some(m) = &l.max_hourly_usd
                && !(m.value.is_finite() && m.value > 0.0)
            {
                c.fail(
                    Loc::of(m),
                    "limits.max_hourly_usd must be a positive number",
                    None,
                );
            }
            if let Some(m) = &l.max_services {
                if m.value == 0 {
                    c.fail(Loc::of(m), "limits.max_services must be at least 1", None);
                } else if services.len() > m.value as usize {
                    c.fail(
                        Loc::of(m),
                        format!(
                            "the manifest has {} services, more than limits.max_services ({})",
                            services.len(),
                            m.value
                        ),
                        Some("remove services or raise the limit".to_string()),
                    );
                }
            }
            if let Some(plans) = &l.allowed_plans {
                for svc in &services {
                    if !plans.value.contains(&svc.plan) {
                        c.fail(
                            svc.plan_at,
                            format!(
                                "plan `{}` of service `{}` is not in limits.allowed_plans ({})",
                                svc.plan,
                                svc.key,
                                plans.value.join(", ")
                            ),
                            Some(
                                "choose an allowed plan, or add this one to limits.allowed_plans"
                                    .to_string(),
                            ),
                        );
                    }
                }
            }
            Limits {
                max_hourly_usd: l.max_hourly_usd.as_ref().map(|m| m.value),
                max_hourly_usd_at: l.max_hourly_usd.as_ref().map(Loc::of).unwrap_or_default(),
                max_services: l.max_services.as_ref().map(|m| m.value),
                allowed_plans_at: l.allowed_plans.as_ref().map(Loc::of).unwrap_or_default(),
                allowed_plans: l.allowed_plans.map(|p| p.value),
            }
        })
        .unwrap_or_default();
    Manifest {
        path: path.to_path_buf(),
        project: raw.project.map(|p| p.value),
        cloud: raw.cloud.map(|p| p.value),
        name_prefix,
        ttl,
        ttl_at,
        services,
        limits,
    }
}

fn check_service(c: &mut Checker, key: Spanned<String>, svc: Spanned<RawService>) -> ServiceSpec {
    let at = Loc::of(&key);
    let svc = svc.value;
    let k = key.value.clone();
    c.pattern(
        &key,
        "service key",
        is_key(&k),
        "lowercase letters, digits and `-`, starting with a letter (it names the service and its env vars)",
    );
    let ty = svc.service_type.value.clone();
    let ty_ok = !ty.is_empty()
        && ty.as_bytes()[0].is_ascii_lowercase()
        && ty
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    c.pattern(
        &svc.service_type,
        "type",
        ty_ok,
        "an Aiven service type such as pg, mysql, kafka, valkey, opensearch",
    );
    c.pattern(
        &svc.plan,
        "plan",
        is_plan(&svc.plan.value),
        "an Aiven plan name such as hobbyist, startup-4, business-8",
    );
    if let Some(cloud) = &svc.cloud {
        c.pattern(
            cloud,
            "cloud",
            is_service_name(&cloud.value),
            "an Aiven cloud name such as google-europe-west1",
        );
    }

    let mut user_config = match &svc.user_config {
        None => json!({}),
        Some(v) if v.value.is_object() => v.value.clone(),
        Some(v) => {
            c.fail(Loc::of(v), "user_config must be a mapping", None);
            json!({})
        }
    };
    if let Some(version) = &svc.version {
        let key_name = format!("{ty}_version");
        if !VERSIONED.contains(&ty.as_str()) {
            c.fail(
                Loc::of(version),
                format!("type `{ty}` has no version setting"),
                Some(
                    "remove `version`, or set the type's own option under user_config".to_string(),
                ),
            );
        } else if user_config.get(&key_name).is_some() {
            c.fail(
                Loc::of(version),
                format!("`version` and user_config.{key_name} both set the version"),
                Some("keep one of them".to_string()),
            );
        } else {
            user_config[key_name] = json!(version.value);
        }
    }

    let supports = |types: &[&str]| types.contains(&ty.as_str());
    let mut seen = BTreeSet::new();
    for db in &svc.databases {
        if !supports(DATABASE_TYPES) {
            c.fail(
                Loc::of(db),
                format!("type `{ty}` has no databases"),
                Some(format!(
                    "`databases` works with {}",
                    DATABASE_TYPES.join(", ")
                )),
            );
            break;
        }
        c.pattern(
            db,
            "database",
            is_ident(&db.value, 40),
            "1-40 letters, digits, `_`, `-` or `.`",
        );
        if !seen.insert(db.value.clone()) {
            c.fail(
                Loc::of(db),
                format!("database `{}` is listed twice", db.value),
                None,
            );
        }
    }
    let admin = if matches!(ty.as_str(), "valkey" | "dragonfly" | "redis") {
        "default"
    } else {
        "avnadmin"
    };
    let mut seen = BTreeSet::new();
    for user in &svc.users {
        c.pattern(
            user,
            "user",
            is_ident(&user.value, 64),
            "1-64 letters, digits, `_`, `-` or `.`",
        );
        if user.value == admin {
            c.fail(
                Loc::of(user),
                format!("`{admin}` is the service's admin user and always exists"),
                Some("its credentials are exported already; remove it from `users`".to_string()),
            );
        }
        if !seen.insert(user.value.clone()) {
            c.fail(
                Loc::of(user),
                format!("user `{}` is listed twice", user.value),
                None,
            );
        }
    }

    let kafka_only = |c: &mut Checker, at: Loc, what: &str| {
        if ty != "kafka" {
            c.fail(
                at,
                format!("`{what}` is for Kafka services, and `{k}` is a {ty} service"),
                None,
            );
        }
    };
    let mut topics = Vec::new();
    let mut seen = BTreeSet::new();
    for t in svc.topics {
        kafka_only(c, Loc::of(&t), "topics");
        let t = t.value;
        let name_ok = !t.name.value.is_empty()
            && t.name.value.len() <= 249
            && t.name
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        c.pattern(
            &t.name,
            "topic name",
            name_ok,
            "1-249 letters, digits, `.`, `_` or `-`",
        );
        if !seen.insert(t.name.value.clone()) {
            c.fail(
                Loc::of(&t.name),
                format!("topic `{}` is listed twice", t.name.value),
                None,
            );
        }
        if t.partitions == 0 || t.partitions > 1_000_000 || t.replication == 0 {
            c.fail(
                Loc::of(&t.name),
                format!(
                    "topic `{}`: partitions must be 1-1000000 and replication at least 1",
                    t.name.value
                ),
                None,
            );
        }
        if let Some(m) = t.min_insync_replicas
            && (m == 0 || m > t.replication)
        {
            c.fail(
                Loc::of(&t.name),
                format!(
                    "topic `{}`: min_insync_replicas must be 1..replication",
                    t.name.value
                ),
                None,
            );
        }
        if let Some(p) = &t.cleanup_policy
            && !["delete", "compact", "compact,delete"].contains(&p.value.as_str())
        {
            c.fail(
                Loc::of(p),
                format!(
                    "cleanup_policy `{}` is not one of delete, compact, compact,delete",
                    p.value
                ),
                None,
            );
        }
        topics.push(TopicSpec {
            name: t.name.value,
            partitions: t.partitions,
            replication: t.replication,
            min_insync_replicas: t.min_insync_replicas,
            retention_hours: t.retention_hours,
            cleanup_policy: t.cleanup_policy.map(|p| p.value),
            config: t.config,
        });
    }
    let mut acls = Vec::new();
    for a in svc.acls {
        kafka_only(c, Loc::of(&a), "acls");
        let a = a.value;
        let pattern_ok = |s: &str| is_ident(&s.replace(['*', '?'], "x"), 249);
        c.pattern(
            &a.username,
            "acl username",
            pattern_ok(&a.username.value),
            "a user name or pattern (`*` and `?` match)",
        );
        c.pattern(
            &a.topic,
            "acl topic",
            pattern_ok(&a.topic.value),
            "a topic name or pattern (`*` and `?` match)",
        );
        if !["admin", "read", "readwrite", "write"].contains(&a.permission.value.as_str()) {
            c.fail(
                Loc::of(&a.permission),
                format!(
                    "permission `{}` is not one of admin, read, readwrite, write",
                    a.permission.value
                ),
                None,
            );
        }
        acls.push(AclSpec {
            username: a.username.value,
            topic: a.topic.value,
            permission: a.permission.value,
        });
    }
    if let Some(d) = &svc.default_acl {
        kafka_only(c, Loc::of(d), "default_acl");
    }

    let fork_from = svc.fork_from.map(|f| {
        let at = Loc::of(&f);
        let f = f.value;
        if !supports(FORKABLE) {
            c.fail(
                at,
                format!("type `{ty}` cannot be forked"),
                Some(format!("fork_from works with {}", FORKABLE.join(", "))),
            );
        }
        c.pattern(
            &f.service,
            "fork_from.service",
            is_service_name(&f.service.value),
            "an existing service's name",
        );
        if let Some(p) = &f.project {
            c.pattern(
                p,
                "fork_from.project",
                is_service_name(&p.value),
                "an Aiven project name",
            );
        }
        if let Some(t) = &f.recovery_target_time {
            if !supports(PITR) {
                c.fail(
                    Loc::of(t),
                    format!("type `{ty}` has no point-in-time recovery"),
                    Some("remove recovery_target_time to fork from the latest backup".to_string()),
                );
            }
            if time::OffsetDateTime::parse(&t.value, &time::format_description::well_known::Rfc3339)
                .is_err()
            {
                c.fail(
                    Loc::of(t),
                    format!("recovery_target_time `{}` is not an RFC 3339 time", t.value),
                    Some("write e.g. 2026-11-01T10:00:00Z".to_string()),
                );
            }
        }
        for k in [
            "service_to_fork_from",
            "project_to_fork_from",
            "recovery_target_time",
        ] {
            if user_config.get(k).is_some() {
                c.fail(
                    at,
                    format!("fork_from and user_config.{k} both set the fork"),
                    Some("keep fork_from".to_string()),
                );
            }
        }
        ForkSpec {
            service: f.service.value,
            project: f.project.map(|p| p.value),
            recovery_target_time: f.recovery_target_time.map(|t| t.value),
        }
    });
    if let Some(f) = &fork_from {
        user_config["service_to_fork_from"] = json!(f.service);
        if let Some(p) = &f.project {
            user_config["project_to_fork_from"] = json!(p);
        }
        if let Some(t) = &f.recovery_target_time {
            // The API takes the fork time in user_config, as avn sends it.
            user_config["recovery_target_time"] = json!(t);
        }
    }

    let project_vpc_id = svc.project_vpc_id.map(|v| {
        let ok = v.value.len() == 36 && v.value.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        c.pattern(&v, "project_vpc_id", ok, "a project VPC's id (a UUID)");
        v.value
    });
    let probe = match svc.probe {
        Some(p) => p.value,
        None if project_vpc_id.is_some() => Probe::None,
        None => Probe::Tcp,
    };
    let (env_prefix, env_prefix_at) = match &svc.env_prefix {
        Some(p) => {
            let normal = env_name(&p.value);
            let ok = !normal.is_empty() && !normal.as_bytes()[0].is_ascii_digit();
            c.pattern(
                p,
                "env_prefix",
                ok,
                "letters, digits and `_`, not starting with a digit",
            );
            (normal, Some(Loc::of(p)))
        }
        None => (env_name(&k), None),
    };
    let aliases = svc
        .env
        .map(|m| {
            m.0.into_iter()
                .map(|(name, field)| {
                    let ok = !name.value.is_empty()
                        && !name.value.as_bytes()[0].is_ascii_digit()
                        && name
                            .value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    c.pattern(
                        &name,
                        "env name",
                        ok,
                        "letters, digits and `_`, not starting with a digit",
                    );
                    let at = Loc::of(&field);
                    (name.value, field.value, at)
                })
                .collect()
        })
        .unwrap_or_default();
    let tags = svc
        .tags
        .map(|m| {
            m.0.into_iter()
                .map(|(key, value)| {
                    c.pattern(
                        &key,
                        "tag key",
                        is_tag_key(&key.value),
                        "1-64 letters, digits, `_` or `-`, starting with a letter",
                    );
                    if key.value.starts_with("aiven-ephemeral") {
                        c.fail(
                            Loc::of(&key),
                            format!(
                                "tag `{}` is reserved for this tool's ownership tags",
                                key.value
                            ),
                            None,
                        );
                    }
                    if value.value.chars().count() > 64 {
                        c.fail(
                            Loc::of(&value),
                            "tag values are at most 64 characters",
                            None,
                        );
                    }
                    (key.value, value.value)
                })
                .collect()
        })
        .unwrap_or_default();

    ServiceSpec {
        key: k,
        at,
        service_type: ty,
        plan: svc.plan.value.clone(),
        plan_at: Loc::of(&svc.plan),
        cloud: svc.cloud.map(|c| c.value),
        user_config,
        databases: svc.databases.into_iter().map(|d| d.value).collect(),
        users: svc.users.into_iter().map(|u| u.value).collect(),
        topics,
        acls,
        default_acl: svc.default_acl.map(|d| d.value).unwrap_or(true),
        fork_from,
        probe,
        env_prefix,
        env_prefix_at,
        aliases,
        project_vpc_id,
        tags,
    }
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
}
