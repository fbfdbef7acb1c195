//! Identities and names: run ids, owner nonces, per-run service names
//! (`<prefix>-<key>-<run id>`, at most 64 characters), shared service and tenant names;
//! the tags that carry them are [`crate::tags`].

use rand::Rng;

const MAX_NAME: usize = 64;

fn random_string(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A fresh run id: 8 random characters of `[a-z0-9]`.
pub fn new_run_id() -> String {
    random_string(8)
}

/// A fresh owner nonce, stored before any create and sent as `aiven-ephemeral-owner`.
pub fn new_owner() -> String {
    random_string(20)
}

/// The owner of a run made with `up --reuse`: derived from the run id, so that every
/// push, re-run and concurrent job of a pull request is the same owner, from any
/// machine. A random owner ([`new_owner`]) never contains `-`, so the two never meet.
pub fn reuse_owner(run_id: &str) -> String {
    format!("reuse-{run_id}")
}

/// The longest run id, as used in names and tags.
pub const MAX_RUN_ID: usize = 20;
/// The longest run id accepted: a longer one than [`MAX_RUN_ID`] is shortened.
const MAX_GIVEN_RUN_ID: usize = 64;
/// What a shortened run id keeps of the given one, before `-<hash>`.
const KEPT: usize = MAX_RUN_ID - 7;

/// The run id to use for the one given: `[a-z0-9-]{1,64}`, not starting or ending with
/// `-`. Up to 20 characters it is used as given. A longer one (CI ids such as
/// `$GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT-<leg>` pass 20 with 11-digit run ids) becomes its
/// first 13 characters and 6 hex digits of the SHA-256 of the whole: the same for every
/// command given it (so `down --run-id` finds what `up` made), readable, and distinct
/// for ids that differ only past the 13th character but for a 1 in 16.7 million chance.
pub fn run_id(given: &str) -> Result<String, String> {
    let ok = (1..=MAX_GIVEN_RUN_ID).contains(&given.len())
        && given
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !given.ends_with('-')
        && !given.starts_with('-');
    if !ok {
        return Err(format!(
            "run id `{given}` is invalid: 1-64 characters of [a-z0-9-], not starting or ending with `-` (over 20 it is shortened)"
        ));
    }
    if given.len() <= MAX_RUN_ID {
        return Ok(given.to_string());
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(given.as_bytes());
    let kept = given[..KEPT].trim_end_matches('-');
    Ok(format!(
        "{kept}-{:06x}",
        u32::from_be_bytes([0, hash[0], hash[1], hash[2]])
    ))
}

/// FNV-1a: a tiny, stable hash for the suffix of shortened keys (stable across versions
/// and machines, unlike std's hasher).
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// `<prefix>-<key>-<run id>`. When that exceeds 64 characters the key is cut and given
/// a 4-character hash of the full key (`<cut>-<hash>`); the run id is never cut.
pub fn service_name(prefix: &str, key: &str, run_id: &str) -> Result<String, String> {
    let full = format!("{prefix}-{key}-{run_id}");
    if full.len() <= MAX_NAME {
        return Ok(full);
    }
    let hash = format!("{:04x}", fnv1a(key) & 0xffff);
    // prefix + "-" + cut + "-" + hash + "-" + run_id
    let room = MAX_NAME as isize - (prefix.len() + run_id.len() + hash.len() + 3) as isize;
    if room < 1 {
        return Err(format!(
            "name_prefix `{prefix}` and run id `{run_id}` leave no room for service key `{key}` in 64 characters"
        ));
    }
    let cut = key[..room as usize].trim_end_matches('-');
    Ok(format!("{prefix}-{cut}-{hash}-{run_id}"))
}

/// A shared service's stable name: `<prefix>-<key>-shared`, no run id.
pub fn shared_service_name(prefix: &str, key: &str) -> Result<String, String> {
    service_name(prefix, key, "shared")
}

/// A run's tenant name inside shared services: `run-<run id>`, from the run id alone so
/// that `down --run-id` and `reap` find it without the manifest. It names the run's
/// PostgreSQL role (its databases are `<tenant>_<db>`: run ids have no `_`), its Valkey
/// user and key prefix (`<tenant>:`), its Kafka user and topic prefix (`<tenant>.`).
pub fn tenant_of(run_id: &str) -> String {
    format!("run-{run_id}")
}

/// The prefix a run's Valkey keys and channels start with.
pub fn key_prefix(tenant: &str) -> String {
    format!("{tenant}:")
}

/// The prefix a run's Kafka topics start with.
pub fn topic_prefix(tenant: &str) -> String {
    format!("{tenant}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_valid_service_name(s: &str) -> bool {
        crate::manifest::is_service_name(s) && !s.ends_with('-')
    }

    #[test]
    fn short_names_are_plain() {
        assert_eq!(
            service_name("ci", "db", "abc12345").unwrap(),
            "ci-db-abc12345"
        );
    }

    #[test]
    fn long_keys_are_cut_with_a_hash_and_stay_distinct() {
        let a = "a-very-long-service-key-that-goes-on-and-on-forever-alpha";
        let b = "a-very-long-service-key-that-goes-on-and-on-forever-bravo";
        let run = "12345678901234567890";
        let na = service_name("ci", a, run).unwrap();
        let nb = service_name("ci", b, run).unwrap();
        assert!(na.len() <= 64 && nb.len() <= 64, "{na} {nb}");
        assert!(na.ends_with(run));
        assert_ne!(na, nb);
        assert!(is_valid_service_name(&na), "{na}");
    }

    #[test]
    fn generated_ids_are_valid() {
        for _ in 0..100 {
            let id = new_run_id();
            assert_eq!(run_id(&id).unwrap(), id);
            assert!(is_valid_service_name(
                &service_name("ae", "db", &id).unwrap()
            ));
        }
        assert!(run_id("UPPER").is_err());
        assert!(run_id("a".repeat(65).as_str()).is_err());
        assert!(run_id("-a").is_err() && run_id("a-").is_err());
        assert_eq!(run_id("123-2-leg-a").unwrap(), "123-2-leg-a");
    }

    #[test]
    fn long_run_ids_are_shortened_the_same_way_and_apart() {
        // GitHub's 11-digit run ids: the shipped example's ids.
        let consumer = run_id("12345678901-1-consumer").unwrap();
        let producer = run_id("12345678901-1-producer").unwrap();
        assert_eq!(consumer, run_id("12345678901-1-consumer").unwrap());
        assert_ne!(consumer, producer);
        // The README's example.
        assert_eq!(consumer, "12345678901-1-e8bc27");
        for id in [&consumer, &producer] {
            assert_eq!(id.len(), MAX_RUN_ID, "{id}");
            assert_eq!(run_id(id).unwrap(), *id, "a short id is itself");
        }
        // A `-` where the kept part ends is not doubled.
        assert_eq!(
            run_id(&format!("{}-{}", "a".repeat(12), "b".repeat(30)))
                .unwrap()
                .len(),
            19
        );
        let longest = run_id(&"a".repeat(64)).unwrap();
        assert!(is_valid_service_name(
            &service_name("ae", "db", &longest).unwrap()
        ));
    }

    #[test]
    fn reuse_owners_never_look_random() {
        let owner = reuse_owner("pr-42");
        assert_eq!(owner, "reuse-pr-42");
        assert!(owner.len() <= 64);
        assert!((0..100).all(|_| !new_owner().contains('-')));
    }
}
