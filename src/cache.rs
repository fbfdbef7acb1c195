//! Facts the API rarely changes (a plan's price and node count, a project's default cloud
//! and CA), kept on disk for a while: every request spent on them is one the project's
//! rate budget, shared by every job using the token, does not have for creates and
//! deletes.
//!
//! One file per API and project in the user's cache directory
//! (`$AIVEN_EPHEMERAL_CACHE_DIR`, else `$XDG_CACHE_HOME/aiven-ephemeral`, else
//! `~/.cache/aiven-ephemeral`), 0600 in a 0700 directory, replaced atomically. Nothing
//! secret goes in it. A cache that cannot be read or written is no cache: the API is
//! asked, and nothing fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::api::{ApiError, Client};

/// How long a cached fact is trusted. Prices and default clouds change rarely, and a
/// stale price only misjudges the cost guard by that change.
pub const TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    entries: BTreeMap<String, Entry>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Entry {
    /// Unix seconds.
    stored: i64,
    value: serde_json::Value,
}

/// The cache of one API and project.
#[derive(Clone)]
pub struct Cache {
    path: Option<PathBuf>,
}

impl Cache {
    pub fn new(api_url: &str, project: &str) -> Self {
        let digest = Sha256::digest(format!("{api_url}\n{project}").as_bytes());
        let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            path: dir().map(|d| d.join(format!("{name}.json"))),
        }
    }

    /// A fact stored less than [`TTL`] ago.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let entry = self.read().entries.remove(key)?;
        let age = now() - entry.stored;
        if !(0..TTL.as_secs() as i64).contains(&age) {
            return None;
        }
        serde_json::from_value(entry.value).ok()
    }

    /// Stores facts; a failure is logged, never fatal.
    pub fn put<T: Serialize>(&self, facts: impl IntoIterator<Item = (String, T)>) {
        let Some(path) = &self.path else { return };
        let mut facts = facts.into_iter().peekable();
        if facts.peek().is_none() {
            return;
        }
        let mut file = self.read();
        let stored = now();
        for (key, value) in facts {
            if let Ok(value) = serde_json::to_value(value) {
                file.entries.insert(key, Entry { stored, value });
            }
        }
        file.entries
            .retain(|_, e| (0..TTL.as_secs() as i64).contains(&(stored - e.stored)));
        let written = serde_json::to_vec(&file)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                if let Some(dir) = path.parent() {
                    private_dir(dir)?;
                }
                crate::state::write_private(path, &bytes)
            });
        if let Err(e) = written {
            tracing::debug!("cannot write the cache {}: {e}", path.display());
        }
    }

    fn read(&self) -> File {
        self.path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }
}

/// The project's CA, from the cache while it is fresh (a CA does not change).
pub async fn project_ca(client: &Client, project: &str) -> Result<String, ApiError> {
    // A plain-HTTP API is a local sandbox: each process makes a CA of its own, and a
    // later one may get the same port; Aiven's API is HTTPS.
    let cacheable = !client.api_url().starts_with("http://");
    let cache = Cache::new(client.api_url(), project);
    if cacheable && let Some(ca) = cache.get::<String>(CA) {
        return Ok(ca);
    }
    let ca = client.project_ca(project).await?;
    if cacheable {
        cache.put([(CA.to_string(), &ca)]);
    }
    Ok(ca)
}

const CA: &str = "ca";

fn dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("AIVEN_EPHEMERAL_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("aiven-ephemeral"))
}

fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fact_is_kept_for_its_ttl_and_a_damaged_file_is_no_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache {
            path: Some(dir.path().join("sub").join("c.json")),
        };
        assert_eq!(cache.get::<f64>("price"), None);
        cache.put(Vec::<(String, f64)>::new());
        assert!(
            !cache.path.as_ref().unwrap().exists(),
            "nothing to keep, nothing written"
        );
        cache.put([("price".to_string(), 0.5)]);
        assert_eq!(cache.get::<f64>("price"), Some(0.5));
        assert_eq!(cache.get::<String>("price"), None, "another type is a miss");

        // Stored longer ago than the TTL: a miss, and dropped at the next write.
        let mut file = cache.read();
        file.entries.get_mut("price").unwrap().stored -= TTL.as_secs() as i64;
        std::fs::write(
            cache.path.as_ref().unwrap(),
            serde_json::to_vec(&file).unwrap(),
        )
        .unwrap();
        assert_eq!(cache.get::<f64>("price"), None);
        cache.put([("cloud".to_string(), "aws-x")]);
        assert!(!cache.read().entries.contains_key("price"));

        std::fs::write(cache.path.as_ref().unwrap(), b"{not json").unwrap();
        assert_eq!(cache.get::<String>("cloud"), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            cache.put([("cloud".to_string(), "aws-x")]);
            assert_eq!(mode(cache.path.as_ref().unwrap()), 0o600);
            assert_eq!(mode(&dir.path().join("sub")), 0o700);
        }
    }
}
