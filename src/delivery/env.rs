//! The env file: dotenv, one `NAME=value` per line; no quotes, no blank lines, no
//! comments, no multiline values, so that it is also a valid GitLab dotenv report.
//! Other renderings of the same values: shell (`export NAME='value'`) and JSON.

use std::path::Path;

use super::values::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// NAME=value lines (also a GitLab dotenv report)
    Dotenv,
    /// export NAME='value' lines, to source
    Shell,
    /// One JSON object
    Json,
}

/// Values that cannot be written as one dotenv line. Multiline material (certificates,
/// keys) is always a file; this guards the rule.
pub fn check(values: &[Value]) -> Result<(), String> {
    for v in values {
        if v.value.contains(['\n', '\r', '\0']) {
            return Err(format!(
                "{} holds a multiline value and cannot be exported",
                v.name
            ));
        }
        if v.value != v.value.trim() {
            return Err(format!(
                "{} has leading or trailing spaces, which dotenv readers strip",
                v.name
            ));
        }
    }
    Ok(())
}

/// `export NAME='value'`: a POSIX shell that sources it passes the variable on to the
/// commands it runs.
pub fn export_line(name: &str, value: &str) -> String {
    format!("export {name}='{}'\n", value.replace('\'', r"'\''"))
}

pub fn render(values: &[Value], format: Format) -> String {
    match format {
        Format::Dotenv => values
            .iter()
            .map(|v| format!("{}={}\n", v.name, v.value))
            .collect(),
        Format::Shell => values
            .iter()
            .map(|v| export_line(&v.name, &v.value))
            .collect(),
        Format::Json => {
            let map: serde_json::Map<String, serde_json::Value> = values
                .iter()
                .map(|v| (v.name.clone(), serde_json::Value::String(v.value.clone())))
                .collect();
            let mut s = serde_json::to_string_pretty(&map).expect("strings serialise");
            s.push('\n');
            s
        }
    }
}

/// Writes the env file atomically with mode 0600.
pub fn write(path: &Path, values: &[Value], format: Format) -> std::io::Result<()> {
    crate::state::write_private(path, render(values, format).as_bytes())
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
    fn dotenv_is_plain_lines() {
        let out = render(
            &[
                v("A", "x=y"),
                v("B", "postgres://u:p@h:1/d?sslmode=require"),
            ],
            Format::Dotenv,
        );
        assert_eq!(out, "A=x=y\nB=postgres://u:p@h:1/d?sslmode=require\n");
    }

    #[test]
    fn shell_quotes_safely() {
        assert_eq!(
            render(&[v("A", "it's")], Format::Shell),
            "export A='it'\\''s'\n"
        );
    }

    #[test]
    fn multiline_values_are_refused() {
        assert!(check(&[v("A", "a\nb")]).is_err());
        assert!(check(&[v("A", "ok")]).is_ok());
    }
}
