//! What serde reads, and its errors said in the user's words. Each key is declared once,
//! with what it wants: the same words serve every type error about it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::{Loc, Probe, Problem};

/// A struct of manifest keys: each field with its key, its type and, in words, what it
/// wants (for messages such as "databases must be a list, e.g. [app]").
macro_rules! keys {
    ($(#[$outer:meta])* struct $name:ident {
        $( $(#[$m:meta])* $key:literal $field:ident: $ty:ty => $wants:literal, )*
    }) => {
        $(#[$outer])*
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            $( $(#[$m])* #[serde(rename = $key)] pub(super) $field: $ty, )*
        }

        impl $name {
            const WANTS: &[(&str, &str)] = &[$(($key, $wants)),*];
        }
    };
}

keys! {
    struct Raw {
        "project" project: Option<Spanned<String>> => "an Aiven project name, e.g. my-ci-project",
        "cloud" cloud: Option<Spanned<String>> => "an Aiven cloud name, e.g. google-europe-west1",
        "name_prefix" name_prefix: Option<Spanned<String>> => "a short word, e.g. ci",
        "ttl" ttl: Option<Spanned<String>> => "a duration, e.g. 2h",
        "services" services: Spanned<Ordered<RawService>> => "a mapping of service keys, e.g. `db: {type: pg, plan: hobbyist}`",
        "limits" limits: Option<RawLimits> => "a mapping, e.g. `{max_hourly_usd: 2.5}`",
    }
}

keys! {
    struct RawService {
        "type" service_type: Spanned<String> => "a service type, e.g. pg",
        "plan" plan: Spanned<String> => "a plan name, e.g. hobbyist",
        "cloud" cloud: Option<Spanned<String>> => "an Aiven cloud name, e.g. google-europe-west1",
        "version" version: Option<Spanned<String>> => "a version in quotes, e.g. \"16\"",
        "user_config" user_config: Option<Spanned<Value>> => "a mapping of the service's settings, e.g. {pg_version: \"16\"}",
        #[serde(default)]
        "databases" databases: Vec<Spanned<String>> => "a list, e.g. [app]",
        #[serde(default)]
        "users" users: Vec<Spanned<String>> => "a list, e.g. [app_user]",
        #[serde(default)]
        "topics" topics: Vec<Spanned<RawTopic>> => "a list of topics, e.g. [{name: orders, partitions: 3}]",
        #[serde(default)]
        "acls" acls: Vec<Spanned<RawAcl>> => "a list of ACLs, e.g. [{username: app_user, topic: \"orders*\", permission: readwrite}]",
        "default_acl" default_acl: Option<Spanned<bool>> => "true or false",
        "fork_from" fork_from: Option<Spanned<RawFork>> => "a mapping, e.g. {service: staging-db}",
        "probe" probe: Option<Spanned<Probe>> => "one of none, tcp, tls",
        "env_prefix" env_prefix: Option<Spanned<String>> => "an env-var prefix, e.g. MAIN",
        "env" env: Option<Ordered<String>> => "a mapping of names to exported values, e.g. {DATABASE_URL: uri}",
        "project_vpc_id" project_vpc_id: Option<Spanned<String>> => "a project VPC's id (a UUID)",
        "tags" tags: Option<Ordered<String>> => "a mapping, e.g. {team: payments}",
        "shared" shared: Option<Spanned<RawShared>> => "true, or a mapping naming a service you manage, e.g. {service: team-pg}",
        #[serde(default)]
        "seed" seed: Vec<Spanned<String>> => "a list of SQL files, e.g. [schema.sql]",
    }
}

/// `shared: true | false | {service: NAME}`.
pub(super) enum RawShared {
    Flag(bool),
    Existing(Spanned<String>),
}

keys! {
    struct RawSharedService {
        "service" service: Spanned<String> => "the name of a service you manage, e.g. team-pg",
    }
}

impl<'de> Deserialize<'de> for RawShared {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawShared;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or a mapping with `service`")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RawShared, E> {
                Ok(RawShared::Flag(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawShared, A::Error> {
                let s = RawSharedService::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(RawShared::Existing(s.service))
            }
        }
        d.deserialize_any(Visit)
    }
}

keys! {
    struct RawTopic {
        "name" name: Spanned<String> => "a topic name, e.g. orders",
        #[serde(default = "one")]
        "partitions" partitions: u32 => "a whole number from 1 to 1000000, e.g. 3",
        "replication" replication: Option<Spanned<u32>> => "a positive whole number, e.g. 2",
        "min_insync_replicas" min_insync_replicas: Option<u32> => "a positive whole number, e.g. 1",
        "retention_hours" retention_hours: Option<i64> => "a whole number of hours, e.g. 24",
        "cleanup_policy" cleanup_policy: Option<Spanned<String>> => "one of delete, compact, compact,delete",
        #[serde(default)]
        "config" config: BTreeMap<String, Value> => "a mapping of Kafka topic settings",
    }
}

fn one() -> u32 {
    1
}

keys! {
    struct RawAcl {
        "username" username: Spanned<String> => "a user name or pattern, e.g. app_user",
        "topic" topic: Spanned<String> => "a topic name or pattern, e.g. \"orders*\"",
        "permission" permission: Spanned<String> => "one of admin, read, readwrite, write",
    }
}

keys! {
    struct RawFork {
        "service" service: Spanned<String> => "an existing service's name, e.g. staging-db",
        "project" project: Option<Spanned<String>> => "an Aiven project name",
        "recovery_target_time" recovery_target_time: Option<Spanned<String>> => "an RFC 3339 time in quotes, e.g. \"2026-11-01T10:00:00Z\"",
    }
}

keys! {
    struct RawLimits {
        "max_hourly_usd" max_hourly_usd: Option<Spanned<f64>> => "a number of US dollars, e.g. 2.5",
        "max_services" max_services: Option<Spanned<u32>> => "a whole number, 1 or more, e.g. 10",
        "allowed_plans" allowed_plans: Option<Spanned<Vec<String>>> => "a list, e.g. [hobbyist, startup-4]",
    }
}

/// What a key wants, in words, wherever it appears.
fn wants(key: &str) -> Option<&'static str> {
    [
        Raw::WANTS,
        RawService::WANTS,
        RawTopic::WANTS,
        RawAcl::WANTS,
        RawFork::WANTS,
        RawLimits::WANTS,
        RawSharedService::WANTS,
    ]
    .into_iter()
    .flatten()
    .find(|(k, _)| *k == key)
    .map(|(_, w)| *w)
}

/// A mapping kept in file order, with the location of every key.
pub(super) struct Ordered<V>(pub(super) Vec<(Spanned<String>, Spanned<V>)>);

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

const REFERENCE: &str =
    "see the manifest reference in the README; `aiven-ephemeral init` writes a commented starter";

/// Reads the manifest's text; a problem is said in the user's words.
pub(super) fn read(text: &str) -> Result<Raw, Problem> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(Problem {
            at: Loc::default(),
            message: "the manifest is empty".into(),
            hint: Some(format!(
                "it needs at least `services:`, e.g. `services: {{db: {{type: pg, plan: hobbyist}}}}`; {REFERENCE}"
            )),
        });
    }
    if let Some(line) = second_document(text) {
        return Err(Problem {
            at: Loc { line, column: 1 },
            message: "a second YAML document starts here: a manifest is one document".into(),
            hint: Some(
                "remove this `---` and merge what follows into the mapping above, or move it to a manifest of its own"
                    .into(),
            ),
        });
    }
    serde_saphyr::from_str(text).map_err(|e| {
        // A value can fail to fit (a missing key) before the parser reaches a syntax
        // error further down that explains it: the syntax error is the one to report.
        let e = match serde_saphyr::from_str::<serde::de::IgnoredAny>(text) {
            Err(syntax) if is_syntax(&syntax) => syntax,
            _ => e,
        };
        let at = e
            .location()
            .map(|l| Loc {
                line: l.line(),
                column: l.column(),
            })
            .unwrap_or_default();
        let options = serde_saphyr::render_options! {
            formatter: &serde_saphyr::UserMessageFormatter,
            snippets: serde_saphyr::SnippetMode::Off,
        };
        let said = e.render_with_options(options);
        let said = said.strip_prefix("error: ").unwrap_or(&said).trim();
        // The parser appends the place, which the report shows anyway.
        let said = said.split(" at line ").next().unwrap_or(said);
        // Not YAML at all (a tab, a line out of its mapping's column): said as such, at
        // the parser's place, not as a wrong value of the nearest key.
        if is_syntax(&e) {
            let (at, hint) = match text
                .lines()
                .nth((at.line as usize).saturating_sub(1))
                .and_then(|l| l.find('\t'))
            {
                // The parser points past the tab; the caret goes under it.
                Some(tab) if said.contains("tab") => (
                    Loc {
                        line: at.line,
                        column: tab as u64 + 1,
                    },
                    "YAML indents with spaces only: replace the tabs at the start of this line with spaces",
                ),
                _ => (
                    at,
                    "check this line's indentation against the lines above: the keys of one mapping start in the same column",
                ),
            };
            return Problem {
                at,
                message: format!("this is not valid YAML: {said}"),
                hint: Some(hint.into()),
            };
        }
        // A value of a type no scalar visitor takes (`shared: yes please`) is reported at
        // its key: the message is about the value, so the caret goes there.
        let (key, at) = match key_here(text, at) {
            Some((key, value)) if !said.starts_with("unknown field ") => (Some(key), value),
            _ => (key_at(text, at), at),
        };
        let (message, hint) = in_words(said, key);
        let hint = hint.or_else(|| shallower(text, at, said));
        Problem { at, message, hint }
    })
}

/// For a missing key written further down at a shallower indentation (so that it
/// belongs to the mapping above): where it is, and what to do.
fn shallower(text: &str, at: Loc, said: &str) -> Option<String> {
    let missing = said.strip_prefix("missing field ")?.split('`').nth(1)?;
    let lines: Vec<&str> = text.lines().collect();
    let here = *lines.get((at.line as usize).checked_sub(1)?)?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    let (n, line) = lines
        .iter()
        .enumerate()
        .skip(at.line as usize)
        .find(|(_, l)| l.trim_start().starts_with(&format!("{missing}:")))?;
    (indent(line) < indent(here)).then(|| {
        format!(
            "line {} has `{missing}:` indented {} spaces, less than the keys above it: indent it like line {}'s",
            n + 1,
            indent(line),
            at.line
        )
    })
}

/// Whether the YAML parser itself refused the text (rather than a value not fitting).
fn is_syntax(e: &serde_saphyr::Error) -> bool {
    matches!(e.without_snippet(), serde_saphyr::Error::ExternalMessage { source, .. }
        if matches!(**source, serde_saphyr::ExternalMessageSource::Parser(_)))
}

/// The line (from 1) of a `---` that starts a document after content: at column 1 it
/// always marks a document, whatever came before. A leading one only opens the first.
fn second_document(text: &str) -> Option<u64> {
    let mut content = false;
    for (n, line) in text.lines().enumerate() {
        let marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']));
        if marker && content {
            return Some(n as u64 + 1);
        }
        content |= !marker && !line.trim().is_empty() && !line.trim_start().starts_with('#');
    }
    None
}

/// The parser's message about the value of `key`, said in the user's words.
fn in_words(said: &str, key: Option<&str>) -> (String, Option<String>) {
    let quoted = |s: &str| s.split('`').nth(1).map(str::to_string);
    if let Some(rest) = said.strip_prefix("unknown field ") {
        let unknown = quoted(rest).unwrap_or_default();
        let known: Vec<&str> = rest
            .split_once("expected one of ")
            .or_else(|| rest.split_once("expected "))
            .map(|(_, l)| l.split(", ").map(|k| k.trim_matches('`')).collect())
            .unwrap_or_default();
        let hint = match crate::catalogue::closest(&unknown, known.iter().copied()) {
            Some(k) => format!("did you mean `{k}`? Keys here: {}", known.join(", ")),
            None => format!("keys here: {}", known.join(", ")),
        };
        return (format!("unknown key `{unknown}`"), Some(hint));
    }
    if let Some(rest) = said.strip_prefix("missing field ") {
        let missing = quoted(rest).unwrap_or_default();
        let message = match wants(&missing) {
            Some(w) => format!("`{missing}` is missing: it takes {w}"),
            None => format!("`{missing}` is missing"),
        };
        return (message, None);
    }
    if let Some(rest) = said.strip_prefix("unknown variant ") {
        let value = quoted(rest).unwrap_or_default();
        let known: Vec<&str> = rest
            .split_once("expected one of ")
            .or_else(|| rest.split_once("expected "))
            .map(|(_, l)| l.split(", ").map(|k| k.trim_matches('`')).collect())
            .unwrap_or_default();
        let what = key.map_or(String::new(), |k| format!("`{k}` "));
        let hint = crate::catalogue::closest(&value, known.iter().copied())
            .map(|k| format!("did you mean `{k}`?"));
        return (
            format!(
                "{what}cannot be `{value}`: it is one of {}",
                known.join(", ")
            ),
            hint,
        );
    }
    if said.contains("duplicate") {
        return (said.to_string(), None);
    }
    match key.and_then(|k| Some((k, wants(k)?))) {
        Some((k, w)) => (format!("{k} must be {w}"), None),
        None if key.is_none() && said.contains("mapping") => (
            "the manifest must be a mapping of keys, e.g. `services: {db: {type: pg, plan: hobbyist}}`"
                .into(),
            Some(REFERENCE.into()),
        ),
        None => (said.to_string(), Some(REFERENCE.into())),
    }
}

/// The key whose value is at `at`: on its line before it (`key: value`, `{a: 1, key:
/// value}`), else the nearest less indented `key:` above (a block list's item).
fn key_at(text: &str, at: Loc) -> Option<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let line = *lines.get((at.line as usize).checked_sub(1)?)?;
    let before = line.get(..(at.column as usize).saturating_sub(1))?;
    if let Some(key) = before.trim_end().strip_suffix(':').and_then(last_word) {
        return Some(key);
    }
    // An item of a flow list (`topics: [orders]`): the key of the list it is in.
    let mut depth = 0usize;
    for (i, c) in before.char_indices().rev() {
        match c {
            ']' | '}' => depth += 1,
            '[' if depth == 0 => {
                return before[..i].trim_end().strip_suffix(':').and_then(last_word);
            }
            '{' if depth == 0 => break,
            '[' | '{' => depth -= 1,
            _ => {}
        }
    }
    let indent = line.len() - line.trim_start().len();
    lines[..at.line as usize - 1]
        .iter()
        .rev()
        .filter(|l| !l.trim().is_empty() && l.len() - l.trim_start().len() < indent)
        .find_map(|l| l.trim_end().strip_suffix(':').and_then(last_word))
}

/// The key that starts at `at` (`key: value`), and where its value starts: on the same
/// line, else at the key.
fn key_here(text: &str, at: Loc) -> Option<(&str, Loc)> {
    let line = text.lines().nth((at.line as usize).checked_sub(1)?)?;
    let rest = line.get((at.column as usize).checked_sub(1)?..)?;
    let len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|&n| n > 0 && rest[n..].starts_with(':'))?;
    let after = &rest[len + 1..];
    let value = after.len() - after.trim_start().len();
    let at = if after.trim().is_empty() {
        at
    } else {
        Loc {
            line: at.line,
            column: at.column + (len + 1 + value) as u64,
        }
    };
    Some((&rest[..len], at))
}

fn last_word(s: &str) -> Option<&str> {
    let start = s
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map_or(0, |i| i + 1);
    let word = &s[start..];
    (!word.is_empty()).then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_of_a_value_is_found_in_either_style() {
        let at = |line, column| Loc { line, column };
        let block = "services:\n  db:\n    databases: app\n";
        assert_eq!(key_at(block, at(3, 16)), Some("databases"));
        let flow = "services:\n  db: {type: pg, databases: app}\n";
        assert_eq!(key_at(flow, at(2, 29)), Some("databases"));
        let listed = "services:\n  k: {type: kafka, topics: [{name: a}, orders]}\n";
        assert_eq!(key_at(listed, at(2, 44)), Some("topics"));
        let item = "services:\n  db:\n    users:\n      - [a]\n";
        assert_eq!(key_at(item, at(4, 9)), Some("users"));
        assert_eq!(key_at("- a\n", at(1, 1)), None);
    }

    #[test]
    fn a_value_reported_at_its_key_is_pointed_at() {
        let at = |line, column| Loc { line, column };
        let flow = "  db: {plan: x, shared: yes please}\n";
        assert_eq!(key_here(flow, at(1, 17)), Some(("shared", at(1, 25))));
        let block = "    shared:\n      - x\n";
        assert_eq!(key_here(block, at(1, 5)), Some(("shared", at(1, 5))));
        assert_eq!(key_here(block, at(2, 7)), None);
    }
}
