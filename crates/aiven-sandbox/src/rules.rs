//! The API's rules for names, tags and times, as the sandbox enforces them. Checked
//! against the official description by `tests/it/api_rules.rs`, separately from the
//! client's own copy of the rules (a mistake shared by both would pass every other test).

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::error::{ApiError, ApiResult};

/// Service names: lowercase letters, digits and `-`, starting with a letter.
pub fn valid_service_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Project names: as service names, one character shorter.
pub fn valid_project_name(name: &str) -> bool {
    valid_service_name(name) && name.len() <= 63
}

/// Tag keys: letters, digits, `_` and `-`, starting with a letter.
fn valid_tag_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphabetic()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

pub fn check_tags(tags: &BTreeMap<String, String>) -> ApiResult<()> {
    for (key, value) in tags {
        if !valid_tag_key(key) {
            return Err(ApiError::new(
                400,
                format!("Invalid tag key '{key}': keys must be 1-64 characters of letters, digits, '_' or '-', starting with a letter"),
            ).code("bad_request"));
        }
        if value.chars().count() > 64 {
            return Err(ApiError::new(
                400,
                format!("Invalid value for tag '{key}': at most 64 characters"),
            )
            .code("bad_request"));
        }
    }
    Ok(())
}

/// The API's times: RFC 3339.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `recovery_target_time` takes RFC 3339, or `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn parse_recovery_time(time: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
        .ok()
        .or_else(|| {
            let fmt =
                time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
            time::PrimitiveDateTime::parse(time, &fmt)
                .ok()
                .map(|p| p.assume_utc())
        })
}
