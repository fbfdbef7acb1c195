//! GitLab CI: the env file is a valid `artifacts:reports:dotenv` file (the env module
//! guarantees the format); here are GitLab's limits, and the non-secret dotenv report
//! that later jobs receive (they call `aiven-ephemeral env` for the secrets).

use std::path::Path;

use super::values::Value;

/// GitLab rejects dotenv reports larger than this.
pub const MAX_BYTES: usize = 5 * 1024;
/// GitLab.com's smallest tier limit on inherited variables.
pub const WARN_VARS: usize = 50;

pub fn active() -> bool {
    std::env::var("GITLAB_CI").as_deref() == Ok("true")
}

/// Warnings for an env file that a GitLab dotenv report would not carry.
pub fn limit_warnings(rendered: &str, count: usize) -> Vec<String> {
    let mut out = Vec::new();
    if rendered.len() > MAX_BYTES {
        out.push(format!(
            "the env file is {} bytes; GitLab rejects dotenv reports over {MAX_BYTES} bytes (use --dotenv-report for a small non-secret one)",
            rendered.len()
        ));
    }
    if count > WARN_VARS {
        out.push(format!(
            "the env file has {count} variables; GitLab passes at most {WARN_VARS} dotenv variables on its smallest tier"
        ));
    }
    out
}

/// Writes the report, or says what did not fit.
pub fn write_report(path: &Path, values: &[Value], max_vars: usize) -> Result<(), String> {
    let rendered = crate::delivery::env::render(values, crate::delivery::env::Format::Dotenv);
    let mut problems = Vec::new();
    if values.len() > max_vars {
        let dropped: Vec<&str> = values[max_vars..].iter().map(|v| v.name.as_str()).collect();
        problems.push(format!(
            "{} variables, more than --dotenv-max-vars {max_vars}; these do not fit: {}",
            values.len(),
            dropped.join(", ")
        ));
    }
    if rendered.len() > MAX_BYTES {
        let mut size = 0;
        let over: Vec<&str> = values
            .iter()
            .filter(|v| {
                size += v.name.len() + v.value.len() + 2;
                size > MAX_BYTES
            })
            .map(|v| v.name.as_str())
            .collect();
        problems.push(format!(
            "{} bytes, more than GitLab's {MAX_BYTES}; these do not fit: {}",
            rendered.len(),
            over.join(", ")
        ));
    }
    if !problems.is_empty() {
        return Err(format!(
            "the dotenv report {} would have {}",
            path.display(),
            problems.join("; and ")
        ));
    }
    crate::state::write_private(path, rendered.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str, value: &str) -> Value {
        Value {
            name: name.into(),
            value: value.into(),
            secret: false,
            file: false,
        }
    }

    #[test]
    fn report_limits_name_what_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.env");
        let values: Vec<Value> = (0..25).map(|i| v(&format!("V{i}"), "x")).collect();
        let e = write_report(&path, &values, 20).unwrap_err();
        assert!(e.contains("V20") && e.contains("V24"), "{e}");
        assert!(!path.exists());
        write_report(&path, &values[..20], 20).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 20);
    }

    #[test]
    fn big_env_files_warn() {
        let text = "A=".to_string() + &"x".repeat(6000);
        assert_eq!(limit_warnings(&text, 1).len(), 1);
        assert_eq!(limit_warnings("A=b\n", 51).len(), 1);
    }
}
