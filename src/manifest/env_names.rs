//! The env names a manifest's services will export, checked together: unknown `env:`
//! fields, two sources of one name, names that would override the environment.

use std::collections::BTreeMap;

use super::exports::{self, Field, is_reserved};
use super::{Loc, Manifest, Problem};

pub(super) fn check(manifest: &Manifest) -> Vec<Problem> {
    let mut problems = shared_clashes(manifest);
    let mut seen: BTreeMap<String, (String, Loc)> = BTreeMap::new();
    for spec in &manifest.services {
        let all = exports::fields(spec, true);
        for (_, alias, at) in &spec.aliases {
            if !all.iter().any(|f| f.alias() == *alias) {
                let valid: Vec<String> = all.iter().map(Field::alias).collect();
                problems.push(Problem {
                    at: *at,
                    message: format!(
                        "`{alias}` is not a value a {} service exports",
                        spec.service_type
                    ),
                    hint: Some(format!(
                        "valid values for `{}`: {}",
                        spec.key,
                        valid.join(", ")
                    )),
                });
            }
        }
        let prefix_at = spec.env_prefix_at.unwrap_or(spec.at);
        let mut names: Vec<(String, String, Loc)> = all
            .iter()
            .map(|f| {
                (
                    format!("{}_{}", spec.env_prefix, f.suffix()),
                    format!("services.{} ({})", spec.key, f.alias()),
                    prefix_at,
                )
            })
            .collect();
        names.extend(spec.aliases.iter().map(|(name, alias, at)| {
            (
                name.clone(),
                format!("services.{}.env.{name} ({alias})", spec.key),
                *at,
            )
        }));
        for (name, source_desc, at) in names {
            if is_reserved(&name) {
                problems.push(Problem {
                    at,
                    message: format!(
                        "{source_desc} would set `{name}`, which must not be overridden"
                    ),
                    hint: Some("choose another key, env_prefix or alias name".into()),
                });
                continue;
            }
            if let Some((other, _)) = seen.get(&name) {
                problems.push(Problem {
                    at,
                    message: format!("`{name}` comes from both {other} and {source_desc}"),
                    hint: Some(
                        "give one of the services an env_prefix, or rename the alias".into(),
                    ),
                });
            } else {
                seen.insert(name, (source_desc, at));
            }
        }
    }
    problems
}

/// Two entries on one shared service would each take a tenancy of the same run there,
/// under one tenant name: refused.
fn shared_clashes(manifest: &Manifest) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for spec in manifest.services.iter().filter(|s| s.shared.is_some()) {
        let Ok(name) = spec.service_name(&manifest.name_prefix, "x") else {
            continue;
        };
        match seen.get(&name) {
            Some(other) => problems.push(Problem {
                at: spec.at,
                message: format!(
                    "services.{other} and services.{} are both shared service {name}",
                    spec.key
                ),
                hint: Some(
                    "one manifest entry per shared service: a run has one tenancy in each".into(),
                ),
            }),
            None => {
                seen.insert(name, &spec.key);
            }
        }
    }
    problems
}
