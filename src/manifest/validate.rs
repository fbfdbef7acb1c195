//! Every value of the manifest checked offline, one function per concern, before it is
//! expanded. A check reports all it finds; checks that depend on a service's type run
//! only when the type is one this tool knows.

use std::collections::BTreeSet;

use serde_saphyr::Spanned;

use super::raw::{Raw, RawAcl, RawFork, RawLimits, RawService, RawShared, RawTopic};
use super::{Loc, Manifest, Problem, env_name, is_service_name, parse_duration};
use crate::catalogue::{self, ServiceType};

/// The problems found so far.
#[derive(Default)]
struct Checks(Vec<Problem>);

impl Checks {
    fn fail(&mut self, at: Loc, message: impl Into<String>, hint: impl Into<Option<String>>) {
        self.0.push(Problem {
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

    /// Each entry once.
    fn unique<'a>(&mut self, what: &str, values: impl IntoIterator<Item = &'a Spanned<String>>) {
        let mut seen = BTreeSet::new();
        for v in values {
            if !seen.insert(v.value.as_str()) {
                self.fail(
                    Loc::of(v),
                    format!("{what} `{}` is listed twice", v.value),
                    None,
                );
            }
        }
    }
}

pub(super) fn manifest(raw: &Raw) -> Vec<Problem> {
    let mut c = Checks::default();
    top(&mut c, raw);
    for (key, svc) in &raw.services.value.0 {
        service(&mut c, key, &svc.value);
    }
    if let Some(limits) = &raw.limits {
        self::limits(&mut c, limits, raw);
    }
    c.0
}

fn top(c: &mut Checks, raw: &Raw) {
    // The API's description allows project names of at most 63 characters.
    for (value, what, max) in [(&raw.project, "project", 63), (&raw.cloud, "cloud", 64)] {
        if let Some(v) = value {
            c.pattern(
                v,
                what,
                is_service_name(&v.value) && v.value.len() <= max,
                &format!("1-{max} lowercase letters, digits and `-`, starting with a letter"),
            );
        }
    }
    if let Some(p) = &raw.name_prefix {
        c.pattern(
            p,
            "name_prefix",
            is_key(&p.value) && p.value.len() <= 20,
            "1-20 lowercase letters, digits and `-`, starting with a letter",
        );
    }
    if let Some(t) = &raw.ttl
        && let Err(e) = parse_duration(&t.value)
    {
        c.fail(Loc::of(t), format!("ttl {e}"), None);
    }
    if raw.services.value.0.is_empty() {
        c.fail(
            Loc::of(&raw.services),
            "`services` is empty: nothing to create",
            Some("add at least one service, e.g. `db: {type: pg, plan: hobbyist}`".to_string()),
        );
    }
}

fn service(c: &mut Checks, key: &Spanned<String>, svc: &RawService) {
    c.pattern(
        key,
        "service key",
        is_key(&key.value),
        "lowercase letters, digits and `-`, starting with a letter (it names the service and its env vars)",
    );
    let kind = service_type(c, &svc.service_type);
    plan(c, &svc.plan);
    if let Some(cloud) = &svc.cloud {
        c.pattern(
            cloud,
            "cloud",
            is_service_name(&cloud.value),
            "an Aiven cloud name such as google-europe-west1",
        );
    }
    user_config(c, svc);
    if let Some(kind) = kind {
        version(c, svc, kind);
        databases(c, svc, kind);
        users(c, svc, kind);
        kafka(c, key, svc, kind);
        if let Some(f) = &svc.fork_from {
            fork(c, f, svc, kind);
        }
        shared(c, key, svc, kind);
        seed(c, key, svc, kind);
    }
    network(c, svc);
    env(c, svc);
    tags(c, svc);
}

fn service_type(c: &mut Checks, ty: &Spanned<String>) -> Option<&'static ServiceType> {
    let kind = catalogue::get(&ty.value);
    if kind.is_none() {
        let known = catalogue::names().join(", ");
        let hint = match catalogue::did_you_mean(&ty.value) {
            Some(t) => format!("did you mean `{t}`? Types: {known}"),
            None => format!("types: {known}"),
        };
        c.fail(
            Loc::of(ty),
            format!("type `{}` is not an Aiven service type", ty.value),
            Some(hint),
        );
    }
    kind
}

/// Plan names are `hobbyist` or `<tier>-<size>`: lowercase words and digits joined by
/// `-` (`startup-4`, `business-8`, `premium-6x-16`).
fn plan(c: &mut Checks, plan: &Spanned<String>) {
    let p = &plan.value;
    let b = p.as_bytes();
    let ok = b.len() >= 2
        && b.len() <= 128
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
        && !p.ends_with('-')
        && !p.ends_with('_');
    if ok {
        return;
    }
    let normal: String = p
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|ch| if ch == ' ' { '-' } else { ch })
        .collect();
    let hint = (normal != *p && !normal.is_empty()).then(|| format!("did you mean `{normal}`?"));
    c.fail(
        Loc::of(plan),
        format!(
            "plan `{p}` is invalid: an Aiven plan name such as hobbyist, startup-4, business-8"
        ),
        hint,
    );
}

fn user_config(c: &mut Checks, svc: &RawService) {
    if let Some(v) = &svc.user_config
        && !v.value.is_object()
    {
        c.fail(Loc::of(v), "user_config must be a mapping", None);
    }
}

fn set_in_user_config(svc: &RawService, key: &str) -> bool {
    svc.user_config
        .as_ref()
        .is_some_and(|u| u.value.get(key).is_some())
}

fn version(c: &mut Checks, svc: &RawService, kind: &ServiceType) {
    let Some(version) = &svc.version else { return };
    let key = format!("{}_version", kind.name);
    if !kind.versioned {
        c.fail(
            Loc::of(version),
            format!("type `{}` has no version setting", kind.name),
            Some("remove `version`, or set the type's own option under user_config".to_string()),
        );
    } else if set_in_user_config(svc, &key) {
        c.fail(
            Loc::of(version),
            format!("`version` and user_config.{key} both set the version"),
            Some("keep one of them".to_string()),
        );
    }
}

/// The types that have what a key asks for, for a hint.
fn types_with(has: fn(&ServiceType) -> bool) -> String {
    let names: Vec<&str> = catalogue::TYPES
        .iter()
        .filter(|t| has(t))
        .map(|t| t.name)
        .collect();
    names.join(", ")
}

fn databases(c: &mut Checks, svc: &RawService, kind: &ServiceType) {
    let Some(first) = svc.databases.first() else {
        return;
    };
    if !kind.databases {
        c.fail(
            Loc::of(first),
            format!("type `{}` has no databases", kind.name),
            Some(format!(
                "`databases` works with {}",
                types_with(|t| t.databases)
            )),
        );
        return;
    }
    for db in &svc.databases {
        c.pattern(
            db,
            "database",
            is_ident(&db.value, 40),
            "1-40 letters, digits, `_`, `-` or `.`",
        );
    }
    c.unique("database", &svc.databases);
}

fn users(c: &mut Checks, svc: &RawService, kind: &ServiceType) {
    for user in &svc.users {
        c.pattern(
            user,
            "user",
            is_ident(&user.value, 64),
            "1-64 letters, digits, `_`, `-` or `.`",
        );
        if user.value == kind.admin_user {
            c.fail(
                Loc::of(user),
                format!(
                    "`{}` is the service's admin user and always exists",
                    user.value
                ),
                Some("its credentials are exported already; remove it from `users`".to_string()),
            );
        }
    }
    c.unique("user", &svc.users);
}

/// Topics, ACLs and the default ACL: Kafka's.
fn kafka(c: &mut Checks, key: &Spanned<String>, svc: &RawService, kind: &ServiceType) {
    if !kind.kafka {
        let places = svc
            .topics
            .first()
            .map(|t| (Loc::of(t), "topics"))
            .into_iter()
            .chain(svc.acls.first().map(|a| (Loc::of(a), "acls")))
            .chain(
                svc.default_acl
                    .as_ref()
                    .map(|d| (Loc::of(d), "default_acl")),
            );
        for (at, what) in places {
            c.fail(
                at,
                format!(
                    "`{what}` is for Kafka services, and `{}` is a {} service",
                    key.value, kind.name
                ),
                None,
            );
        }
        return;
    }
    for t in &svc.topics {
        topic(c, &t.value);
    }
    c.unique("topic", svc.topics.iter().map(|t| &t.value.name));
    for a in &svc.acls {
        acl(c, &a.value);
    }
}

fn topic(c: &mut Checks, t: &RawTopic) {
    let name = &t.name.value;
    let name_ok = !name.is_empty()
        && name.len() <= 249
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    c.pattern(
        &t.name,
        "topic name",
        name_ok,
        "1-249 letters, digits, `.`, `_` or `-`",
    );
    let replication = t
        .replication
        .as_ref()
        .map_or(super::DEFAULT_REPLICATION, |r| r.value);
    if t.partitions == 0 || t.partitions > 1_000_000 || replication == 0 {
        c.fail(
            Loc::of(&t.name),
            format!("topic `{name}`: partitions must be 1-1000000 and replication at least 1"),
            None,
        );
    }
    if let Some(m) = t.min_insync_replicas
        && (m == 0 || m > replication)
    {
        c.fail(
            Loc::of(&t.name),
            format!("topic `{name}`: min_insync_replicas must be 1..replication"),
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
}

fn acl(c: &mut Checks, a: &RawAcl) {
    let pattern_ok = |s: &str, max| is_ident(&s.replace(['*', '?'], "x"), max);
    // The description: usernames 1-64 characters, topics 1-249.
    c.pattern(
        &a.username,
        "acl username",
        pattern_ok(&a.username.value, 64),
        "a user name or pattern of 1-64 characters (`*` and `?` match)",
    );
    c.pattern(
        &a.topic,
        "acl topic",
        pattern_ok(&a.topic.value, 249),
        "a topic name or pattern of 1-249 characters (`*` and `?` match)",
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
}

fn fork(c: &mut Checks, fork: &Spanned<RawFork>, svc: &RawService, kind: &ServiceType) {
    let at = Loc::of(fork);
    let f = &fork.value;
    if !kind.forkable {
        c.fail(
            at,
            format!("type `{}` cannot be forked", kind.name),
            Some(format!(
                "fork_from works with {}",
                types_with(|t| t.forkable)
            )),
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
        if !kind.point_in_time {
            c.fail(
                Loc::of(t),
                format!("type `{}` has no point-in-time recovery", kind.name),
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
        if set_in_user_config(svc, k) {
            c.fail(
                at,
                format!("fork_from and user_config.{k} both set the fork"),
                Some("keep fork_from".to_string()),
            );
        }
    }
}

/// What a shared service can hold: each run gets one user of its own, and the service
/// itself (its default ACL, its origin) is not a run's to shape.
fn shared(c: &mut Checks, key: &Spanned<String>, svc: &RawService, kind: &ServiceType) {
    let Some(shared) = &svc.shared else { return };
    if let RawShared::Existing(name) = &shared.value {
        c.pattern(
            name,
            "shared service",
            is_service_name(&name.value),
            "an existing service's name: lowercase letters, digits and `-`, starting with a letter",
        );
    }
    if matches!(shared.value, RawShared::Flag(false)) {
        return;
    }
    if kind.sharing.is_none() {
        c.fail(
            Loc::of(shared),
            format!(
                "`shared` is not supported for {} services (yet): services.{} cannot be shared",
                kind.name, key.value
            ),
            Some(format!(
                "runs can share {} services; remove `shared` to give each run its own {}",
                catalogue::shareable(),
                kind.name
            )),
        );
        return;
    }
    let prefix = svc
        .env_prefix
        .as_ref()
        .map_or_else(|| env_name(&key.value), |p| env_name(&p.value));
    let users_hint = format!(
        "its credentials are exported as {prefix}_USER and {prefix}_PASSWORD; remove `users`"
    );
    let refused = [
        svc.users.first().map(|u| {
            (
                Loc::of(u),
                "`users` cannot be used with `shared`: each run gets one user of its own",
                users_hint.as_str(),
            )
        }),
        svc.acls.first().map(|a| {
            (
                Loc::of(a),
                "`acls` cannot be used with `shared`: the run's user gets readwrite on the run's own topics",
                "topics are created as <run prefix>.<name>; remove `acls`",
            )
        }),
        svc.default_acl.as_ref().map(|d| {
            (
                Loc::of(d),
                "`default_acl` cannot be used with `shared`: the shared service's ACLs are not a run's to change",
                "remove `default_acl`",
            )
        }),
        svc.fork_from.as_ref().map(|f| {
            (
                Loc::of(f),
                "`fork_from` cannot be used with `shared`: a shared service outlives the run",
                "remove `shared` to fork a service for this run alone",
            )
        }),
    ];
    for (at, message, hint) in refused.into_iter().flatten() {
        c.fail(at, message, Some(hint.to_string()));
    }
}

/// `seed:` runs SQL, so it is PostgreSQL's.
fn seed(c: &mut Checks, key: &Spanned<String>, svc: &RawService, kind: &ServiceType) {
    if let Some(first) = svc.seed.first()
        && kind.scheme != catalogue::Scheme::Postgres
    {
        c.fail(
            Loc::of(first),
            format!(
                "`seed` is for PostgreSQL services, and `{}` is a {} service",
                key.value, kind.name
            ),
            None,
        );
    }
    c.unique("seed file", &svc.seed);
}

/// Every seed file can be read, inside the manifest's directory (the run hashes and
/// applies them later).
pub(super) fn seed_files(m: &Manifest) -> Vec<Problem> {
    m.services
        .iter()
        .flat_map(|s| &s.seed)
        .filter_map(|f| {
            let message = f.confined().err()?;
            Some(Problem {
                at: f.at,
                message,
                hint: Some(
                    "seed paths are relative to the manifest's directory, and stay inside it"
                        .into(),
                ),
            })
        })
        .collect()
}

fn network(c: &mut Checks, svc: &RawService) {
    if let Some(v) = &svc.project_vpc_id {
        let ok = v.value.len() == 36 && v.value.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        c.pattern(v, "project_vpc_id", ok, "a project VPC's id (a UUID)");
    }
}

fn env(c: &mut Checks, svc: &RawService) {
    if let Some(p) = &svc.env_prefix {
        let normal = env_name(&p.value);
        let ok = !normal.is_empty() && !normal.as_bytes()[0].is_ascii_digit();
        c.pattern(
            p,
            "env_prefix",
            ok,
            "letters, digits and `_`, not starting with a digit",
        );
    }
    for (name, _) in svc.env.iter().flat_map(|m| &m.0) {
        let ok = !name.value.is_empty()
            && !name.value.as_bytes()[0].is_ascii_digit()
            && name
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        c.pattern(
            name,
            "env name",
            ok,
            "letters, digits and `_`, not starting with a digit",
        );
    }
}

fn tags(c: &mut Checks, svc: &RawService) {
    for (key, value) in svc.tags.iter().flat_map(|m| &m.0) {
        c.pattern(
            key,
            "tag key",
            is_tag_key(&key.value),
            "1-64 letters, digits, `_` or `-`, starting with a letter",
        );
        if key.value.starts_with("aiven-ephemeral") {
            c.fail(
                Loc::of(key),
                format!(
                    "tag `{}` is reserved for this tool's ownership tags",
                    key.value
                ),
                None,
            );
        }
        if value.value.chars().count() > 64 {
            c.fail(Loc::of(value), "tag values are at most 64 characters", None);
        }
    }
}

fn limits(c: &mut Checks, l: &RawLimits, raw: &Raw) {
    let services = &raw.services.value.0;
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
        for (key, svc) in services {
            let plan = &svc.value.plan;
            if !plans.value.contains(&plan.value) {
                c.fail(
                    Loc::of(plan),
                    format!(
                        "plan `{}` of service `{}` is not in limits.allowed_plans ({})",
                        plan.value,
                        key.value,
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
}

fn is_key(s: &str) -> bool {
    is_service_name(s) && !s.ends_with('-')
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
