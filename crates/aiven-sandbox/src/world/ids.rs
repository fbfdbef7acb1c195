//! Generated passwords and identifiers, in the shapes the API uses.

use rand::Rng;
use rand::rngs::StdRng;

/// Aiven's generated passwords look like `AVNS_` followed by 19 characters.
pub(super) fn generate_password(rng: &mut StdRng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let tail: String = (0..19)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("AVNS_{tail}")
}

pub(super) fn random_hex(rng: &mut StdRng, len: usize) -> String {
    (0..len)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

pub(super) fn random_uuid(rng: &mut StdRng) -> String {
    let h = random_hex(rng, 32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}
