//! GitHub Actions: masks, `$GITHUB_ENV`, `$GITHUB_OUTPUT`, `$GITHUB_STEP_SUMMARY`.
//!
//! Masks go out before anything else is printed about a service: the raw secret, its
//! percent-encoded form, every exported value containing it, base64 of `user:password`,
//! and each line of every private key.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::values::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum GithubEnv {
    /// Every exported variable.
    #[default]
    All,
    /// Only variables that hold no secret.
    NonSecret,
    /// Nothing to `$GITHUB_ENV`.
    None,
}

/// Secret material of one service, for masking.
#[derive(Default)]
pub struct Secrets {
    /// (user, password) pairs.
    pub credentials: Vec<(String, String)>,
    /// Private keys, PEM.
    pub keys: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

/// Every string to mask for these secrets and the values that embed them.
pub fn mask_words(secrets: &Secrets, values: &[Value]) -> Vec<String> {
    let mut words = BTreeSet::new();
    for (user, password) in &secrets.credentials {
        if password.is_empty() {
            continue;
        }
        let forms = [
            password.clone(),
            utf8_percent_encode(password, NON_ALPHANUMERIC).to_string(),
            super::values::enc(password),
        ];
        for form in &forms {
            for v in values.iter().filter(|v| v.value.contains(form.as_str())) {
                words.insert(v.value.clone());
            }
        }
        words.extend(forms);
        words
            .insert(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
    }
    for key in &secrets.keys {
        for line in key.lines().map(str::trim) {
            // The armour lines are public and identical everywhere.
            if !line.is_empty() && !line.starts_with("-----") {
                words.insert(line.to_string());
            }
        }
    }
    for v in values
        .iter()
        .filter(|v| v.secret && !v.value.is_empty() && !is_address(&v.value))
    {
        words.insert(v.value.clone());
    }
    words.into_iter().collect()
}

/// `host:port[,host:port...]`, such as Kafka's URI field: an address, not a secret.
/// Masking it would blank every host and port in the log and drop job outputs holding it.
fn is_address(value: &str) -> bool {
    value.split(',').all(|part| {
        part.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                && !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
        })
    })
}

/// Prints `::add-mask::` commands on stdout, where the runner reads them first.
pub fn print_masks(words: &[String]) {
    let mut out = std::io::stdout().lock();
    for w in words {
        let _ = writeln!(out, "::add-mask::{}", crate::ci::escape_annotation(w));
    }
    let _ = out.flush();
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// `NAME<<DELIM\nvalue\nDELIM\n`, with a random delimiter that the value cannot contain.
pub fn heredoc(name: &str, value: &str) -> String {
    loop {
        let delimiter = format!("ghadelimiter_{}", uuid::Uuid::new_v4());
        if !value.contains(&delimiter) && !name.contains(&delimiter) {
            return format!("{name}<<{delimiter}\n{value}\n{delimiter}\n");
        }
    }
}

pub fn write_env(values: &[Value], mode: GithubEnv) -> std::io::Result<()> {
    let Ok(path) = std::env::var("GITHUB_ENV") else {
        return Ok(());
    };
    let text: String = values
        .iter()
        .filter(|v| match mode {
            GithubEnv::All => true,
            GithubEnv::NonSecret => !v.secret,
            GithubEnv::None => false,
        })
        .map(|v| heredoc(&v.name, &v.value))
        .collect();
    append(Path::new(&path), &text)
}

pub fn write_outputs(outputs: &[(&str, String)]) -> std::io::Result<()> {
    let Ok(path) = std::env::var("GITHUB_OUTPUT") else {
        return Ok(());
    };
    let text: String = outputs.iter().map(|(k, v)| heredoc(k, v)).collect();
    append(Path::new(&path), &text)
}

pub fn write_summary(markdown: &str) -> std::io::Result<()> {
    let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") else {
        return Ok(());
    };
    append(Path::new(&path), markdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_never_contains_its_delimiter_inside() {
        let doc = heredoc("A", "line1\nline2");
        let delim = doc
            .lines()
            .next()
            .unwrap()
            .split("<<")
            .nth(1)
            .unwrap()
            .to_string();
        assert_eq!(doc.matches(&delim).count(), 2);
        assert!(doc.ends_with(&format!("{delim}\n")));
    }

    #[test]
    fn masks_cover_every_form() {
        let secrets = Secrets {
            credentials: vec![("avnadmin".into(), "AVNS_p@ss/word".into())],
            keys: vec![
                "-----BEGIN PRIVATE KEY-----\nMIIBVQ\nabc==\n-----END PRIVATE KEY-----\n".into(),
            ],
        };
        let values = vec![Value {
            name: "DB_URI".into(),
            value: "postgres://avnadmin:AVNS_p%40ss%2Fword@h:1/d".into(),
            secret: true,
            file: false,
        }];
        let words = mask_words(&secrets, &values);
        assert!(words.contains(&"AVNS_p@ss/word".to_string()));
        assert!(words.contains(&"AVNS_p%40ss%2Fword".to_string()));
        assert!(words.contains(&"AVNS%5Fp%40ss%2Fword".to_string()));
        assert!(words.contains(&"postgres://avnadmin:AVNS_p%40ss%2Fword@h:1/d".to_string()));
        assert!(words.contains(
            &base64::engine::general_purpose::STANDARD.encode("avnadmin:AVNS_p@ss/word")
        ));
        assert!(words.contains(&"MIIBVQ".to_string()));
        assert!(!words.iter().any(|w| w.starts_with("-----")));
    }
}
