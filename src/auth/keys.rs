//! API keys and the admin token: generation, parsing, salted hashing and
//! constant-time comparison. No I/O here; the store keeps what
//! [`generate`] returns, the authentication layer calls [`verify`].
//!
//! A key reads `sm_<key id>_<secret>`: the key id (16 hex digits) is not
//! secret and finds the stored row by primary key; the secret (64 hex digits,
//! 32 bytes from the operating system's CSPRNG) is checked against
//! `SHA-256(salt ‖ secret)` with a random 16-byte salt per key. A fast hash is
//! enough because the secret has 256 bits of entropy: nothing to brute-force,
//! unlike a password.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::store::{ApiKeyInfo, StoredApiKey};

/// Every key starts with this.
pub const KEY_PREFIX: &str = "sm_";
/// Random bytes of a key id (hex-encoded: 16 characters).
const KEY_ID_BYTES: usize = 8;
/// Random bytes of a secret (hex-encoded: 64 characters).
const SECRET_BYTES: usize = 32;
/// Random bytes of a salt.
const SALT_BYTES: usize = 16;

/// A freshly generated key: what to store, and the key to hand out once.
pub struct GeneratedKey {
    /// The row to store (salt and hash, never the secret).
    pub stored: StoredApiKey,
    /// The complete key, `sm_<key id>_<secret>`.
    pub key: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("stored", &self.stored)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf)
        .map_err(|e| Error::internal(format!("no randomness from the OS: {e}")))?;
    Ok(hex::encode(buf))
}

/// hex(SHA-256(salt bytes ‖ secret)).
fn salted_hash(salt_hex: &str, secret: &str) -> Option<[u8; 32]> {
    let salt = hex::decode(salt_hex).ok()?;
    let mut hasher = Sha256::new();
    hasher.update(&salt);
    hasher.update(secret.as_bytes());
    Some(hasher.finalize().into())
}

/// A new key for `tenant_id`, created at `now_nanos`.
pub fn generate(tenant_id: &str, name: &str, now_nanos: i64) -> Result<GeneratedKey> {
    let id = random_hex(KEY_ID_BYTES)?;
    let secret = random_hex(SECRET_BYTES)?;
    let salt = random_hex(SALT_BYTES)?;
    let hash = salted_hash(&salt, &secret).ok_or_else(|| Error::internal("bad salt"))?;
    Ok(GeneratedKey {
        key: format!("{KEY_PREFIX}{id}_{secret}"),
        stored: StoredApiKey {
            info: ApiKeyInfo {
                id,
                tenant_id: tenant_id.to_string(),
                name: name.to_string(),
                created_at_nanos: now_nanos,
                revoked_at_nanos: None,
            },
            salt,
            hash: hex::encode(hash),
        },
    })
}

/// The non-secret start of a key with this id: `sm_<key id>_`.
pub fn display_prefix(key_id: &str) -> String {
    format!("{KEY_PREFIX}{key_id}_")
}

/// Splits a presented key into (key id, secret); `None` if it is not shaped
/// like a key (then it cannot be valid, and no database lookup is needed).
pub fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (is_hex(id, 2 * KEY_ID_BYTES) && is_hex(secret, 2 * SECRET_BYTES)).then_some((id, secret))
}

/// Whether `secret` matches the stored salted hash, compared in constant time.
/// Revocation is the caller's check.
pub fn verify(stored: &StoredApiKey, secret: &str) -> bool {
    let (Some(actual), Ok(expected)) =
        (salted_hash(&stored.salt, secret), hex::decode(&stored.hash))
    else {
        return false;
    };
    expected.len() == actual.len() && bool::from(actual.ct_eq(expected.as_slice()))
}

/// The admin credential from the configuration. `Debug` never shows it, and
/// [`AdminToken::matches`] compares in constant time (hashes of equal length,
/// so not even the token's length leaks).
#[derive(Clone)]
pub struct AdminToken {
    /// SHA-256 of the token; the token itself is not kept.
    digest: [u8; 32],
}

impl AdminToken {
    /// Wraps a configured token; `None` for an empty one (after trimming).
    pub fn new(token: &str) -> Option<Self> {
        let token = token.trim();
        (!token.is_empty()).then(|| AdminToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the admin token.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(digest.ct_eq(&self.digest))
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_verifies_and_nothing_else_does() {
        let generated = generate("acme", "ci", 1).expect("generate");
        let (id, secret) = parse(&generated.key).expect("well-formed");
        assert_eq!(id, generated.stored.info.id);
        assert!(verify(&generated.stored, secret));
        let mut wrong = secret.to_string();
        let flipped = if wrong.ends_with('0') { "1" } else { "0" };
        wrong.replace_range(wrong.len() - 1.., flipped);
        assert!(!verify(&generated.stored, &wrong));
        assert!(!generated.stored.hash.contains(secret));
        assert!(!format!("{generated:?}").contains(secret));
        let other = generate("acme", "ci", 1).expect("generate");
        assert_ne!(other.stored.salt, generated.stored.salt);
        assert_ne!(other.key, generated.key);
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        for bad in [
            "",
            "sm_",
            "sm_abc_def",
            "Bearer x",
            "sm_0123456789abcdef_zz",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn admin_token_matches_exactly_and_is_redacted() {
        let token = AdminToken::new(" s3cret-token\n").expect("non-empty");
        assert!(token.matches("s3cret-token"));
        assert!(!token.matches("s3cret-toke"));
        assert!(!token.matches(""));
        assert!(!format!("{token:?}").contains("s3cret"));
        assert!(AdminToken::new("  ").is_none());
    }
}
