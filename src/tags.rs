//! The tags that mark a service as this tool's: a run's ownership tags, the leases of
//! runs on a shared service, and times as tags carry them.

use std::collections::BTreeMap;

pub const TAG_RUN: &str = "aiven-ephemeral-run";
pub const TAG_OWNER: &str = "aiven-ephemeral-owner";
pub const TAG_KEY: &str = "aiven-ephemeral-key";
pub const TAG_EXPIRES: &str = "aiven-ephemeral-expires";
pub const TAG_CI: &str = "aiven-ephemeral-ci";
pub const TAG_KEEP: &str = "aiven-ephemeral-keep";
/// On the services of a run made with `up --reuse` (an environment per pull request):
/// `true`. Only such a run is ever adopted by a later `up --reuse`.
pub const TAG_REUSE: &str = "aiven-ephemeral-reuse";
/// On a shared service this tool created: the manifest key it was made for.
pub const TAG_SHARED: &str = "aiven-ephemeral-shared";
/// On a shared service this tool created: the owner nonce of the run that created it.
/// A run that fails or is interrupted before it is up deletes the shared service it
/// created if no other run holds a lease on it; no other run may.
pub const TAG_CREATED_BY: &str = "aiven-ephemeral-created-by";
/// On a shared service: when a run last released its lease (idle time counts from it).
pub const TAG_USED: &str = "aiven-ephemeral-used";
/// On a shared service, one per run using it: `aiven-ephemeral-lease-<run id>` =
/// `<expiry>/<owner>`. Tags merge key by key, so concurrent runs never overwrite each
/// other's leases, and `reap` finds them without any state file.
pub const TAG_LEASE: &str = "aiven-ephemeral-lease-";

const MAX_TAG_VALUE: usize = 64;

/// A lease: (tag key, tag value).
pub fn lease(run_id: &str, expires: &str, owner: &str) -> (String, String) {
    (format!("{TAG_LEASE}{run_id}"), format!("{expires}/{owner}"))
}

/// A run's lease on a shared service, as its tag says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub run_id: String,
    /// RFC 3339.
    pub expires: String,
    pub owner: String,
}

/// The leases on a service's tags.
pub fn leases(tags: &BTreeMap<String, String>) -> Vec<Lease> {
    tags.iter()
        .filter_map(|(k, v)| {
            let run = k.strip_prefix(TAG_LEASE)?;
            let (expires, owner) = v.split_once('/')?;
            Some(Lease {
                run_id: run.to_string(),
                expires: expires.to_string(),
                owner: owner.to_string(),
            })
        })
        .collect()
}

/// A tag value: the last 64 characters, as the end (a job id, a key) is what
/// identifies a run.
pub fn fit(s: &str) -> String {
    let count = s.chars().count();
    s.chars()
        .skip(count.saturating_sub(MAX_TAG_VALUE))
        .collect()
}

/// The tags every service of a run is created with.
pub fn ownership_tags(
    run_id: &str,
    owner: &str,
    key: &str,
    expires: &str,
    ci: Option<&str>,
) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::from([
        (TAG_RUN.to_string(), run_id.to_string()),
        (TAG_OWNER.to_string(), owner.to_string()),
        (TAG_KEY.to_string(), fit(key)),
        (TAG_EXPIRES.to_string(), expires.to_string()),
    ]);
    if let Some(ci) = ci {
        tags.insert(TAG_CI.to_string(), ci.to_string());
    }
    tags
}

/// A service carries this tool's tags (only such services are ever deleted by tag).
pub fn is_ours(tags: &BTreeMap<String, String>) -> bool {
    tags.contains_key(TAG_RUN) && tags.contains_key(TAG_OWNER)
}

/// A time as tags (and the API) carry it, RFC 3339.
pub fn parse_rfc3339(t: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
}

/// RFC 3339 to the second, as tags carry times.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
