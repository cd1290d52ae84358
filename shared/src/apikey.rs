//! API keys (docs/protocol.md#api-keys-and-browser-tokens).
//!
//! A key is `sk_live_` or `sk_test_` followed by at least 32 base62
//! characters. KV holds only `key:<hex SHA-256 of the whole key>` → an
//! [`ApiKeyRecord`], so a leaked KV namespace reveals no usable key.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Prefix of production keys.
pub const PREFIX_LIVE: &str = "sk_live_";
/// Prefix of test keys.
pub const PREFIX_TEST: &str = "sk_test_";
/// Fewest random characters after the prefix.
pub const MIN_RANDOM_LEN: usize = 32;
/// Random characters in keys this crate generates (≈ 256 bits).
pub const GENERATED_RANDOM_LEN: usize = 43;
/// Prefix of the KV key holding a record.
pub const KV_PREFIX: &str = "key:";

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Whether `key` has the shape of an API key. Checked before hashing so that
/// junk never reaches KV.
pub fn is_well_formed(key: &str) -> bool {
    let rest = key
        .strip_prefix(PREFIX_LIVE)
        .or_else(|| key.strip_prefix(PREFIX_TEST));
    matches!(rest, Some(r) if r.len() >= MIN_RANDOM_LEN && r.len() <= 128 && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Lower-case hex SHA-256 of the key.
pub fn hash_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The KV key under which the record of `key` is stored.
pub fn kv_key(key: &str) -> String {
    format!("{KV_PREFIX}{}", hash_hex(key))
}

/// Generates a key with `prefix`, drawing randomness from `fill` (the caller
/// brings the random source: `getrandom` natively, `crypto.getRandomValues`
/// in the Worker). Uses rejection sampling so every character is uniform.
pub fn generate(prefix: &str, mut fill: impl FnMut(&mut [u8])) -> String {
    let mut key = String::with_capacity(prefix.len() + GENERATED_RANDOM_LEN);
    key.push_str(prefix);
    let mut buf = [0u8; 64];
    while key.len() < prefix.len() + GENERATED_RANDOM_LEN {
        fill(&mut buf);
        for &b in &buf {
            // 248 = 4 × 62: values above it would bias the first characters.
            if b < 248 && key.len() < prefix.len() + GENERATED_RANDOM_LEN {
                key.push(char::from(BASE62[usize::from(b % 62)]));
            }
        }
    }
    key
}

/// What KV stores for a key. Never contains the key or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Stable identifier used by the admin API (revoke by id).
    pub id: String,
    /// Human label, e.g. the partner's name.
    pub name: String,
    /// Game slugs this key may read; `None` with `types` also `None` means all.
    #[serde(default)]
    pub games: Option<Vec<String>>,
    /// Game types this key may read.
    #[serde(default)]
    pub types: Option<Vec<String>>,
    /// Browser origins allowed to use the key; `None` means any origin.
    #[serde(default)]
    pub origins: Option<Vec<String>>,
    /// Most concurrent streams (enforced with Upstash Redis, docs/protocol.md#per-key-limits-and-usage).
    #[serde(default)]
    pub max_streams: Option<u32>,
    /// Most new connections per minute (docs/protocol.md#per-key-limits-and-usage).
    #[serde(default)]
    pub connects_per_minute: Option<u32>,
    /// Most REST requests per minute (docs/protocol.md#per-key-limits-and-usage).
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Expiry, RFC 3339; `None` never expires.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Set by revocation; a revoked record is kept so the admin list shows it.
    #[serde(default)]
    pub revoked: bool,
}

/// Why a key may not be used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejection {
    /// The key was revoked.
    #[error("API key revoked")]
    Revoked,
    /// The key expired (or its expiry cannot be read, which fails closed).
    #[error("API key expired")]
    Expired,
}

impl ApiKeyRecord {
    /// Whether the key is usable at `now_unix_ms`.
    pub fn check_usable(&self, now_unix_ms: i64) -> Result<(), KeyRejection> {
        if self.revoked {
            return Err(KeyRejection::Revoked);
        }
        if let Some(expires) = &self.expires_at {
            let expires_ms = OffsetDateTime::parse(expires, &Rfc3339)
                .map(|t| t.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| KeyRejection::Expired)?;
            if i128::from(now_unix_ms) >= expires_ms {
                return Err(KeyRejection::Expired);
            }
        }
        Ok(())
    }

    /// Whether the key may read the stream of game `slug`, whose type is
    /// `game_type` (when known).
    pub fn allows_game(&self, slug: &str, game_type: Option<&str>) -> bool {
        if self.games.is_none() && self.types.is_none() {
            return true;
        }
        let by_game = self
            .games
            .as_ref()
            .is_some_and(|g| g.iter().any(|s| s == slug));
        let by_type = match (game_type, &self.types) {
            (Some(t), Some(types)) => types.iter().any(|s| s == t),
            _ => false,
        };
        by_game || by_type
    }

    /// Whether the key may read the stream of a whole game type.
    pub fn allows_type(&self, game_type: &str) -> bool {
        if self.games.is_none() && self.types.is_none() {
            return true;
        }
        self.types
            .as_ref()
            .is_some_and(|t| t.iter().any(|s| s == game_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ApiKeyRecord {
        ApiKeyRecord {
            id: "k1".into(),
            name: "partner".into(),
            games: None,
            types: None,
            origins: None,
            max_streams: None,
            connects_per_minute: None,
            requests_per_minute: None,
            created_at: "2026-11-21T00:00:00Z".into(),
            expires_at: None,
            revoked: false,
        }
    }

    #[test]
    fn shape() {
        let ok = format!("{PREFIX_LIVE}{}", "a1B2".repeat(8));
        assert!(is_well_formed(&ok));
        assert!(is_well_formed(&format!("{PREFIX_TEST}{}", "Z".repeat(40))));
        assert!(!is_well_formed(&format!("{PREFIX_LIVE}{}", "a".repeat(31))));
        assert!(!is_well_formed(&format!("pk_live_{}", "a".repeat(40))));
        assert!(!is_well_formed(&format!(
            "{PREFIX_LIVE}{}-",
            "a".repeat(40)
        )));
        assert!(!is_well_formed(""));
    }

    #[test]
    fn hash_is_sha256_hex() {
        // printf 'sk_test_x' | sha256sum
        assert_eq!(
            kv_key("sk_test_x"),
            "key:6a6bd0975b4b4eec698dff44abf27d4332416db18a2b1cac78468bfbc0225c5c"
        );
    }

    #[test]
    fn generated_keys_are_well_formed_and_differ() {
        let mut counter = 0u8;
        let mut fill = |buf: &mut [u8]| {
            for b in buf.iter_mut() {
                *b = counter;
                counter = counter.wrapping_add(1);
            }
        };
        let a = generate(PREFIX_TEST, &mut fill);
        let b = generate(PREFIX_TEST, &mut fill);
        assert!(is_well_formed(&a) && is_well_formed(&b), "{a} {b}");
        assert_eq!(a.len(), PREFIX_TEST.len() + GENERATED_RANDOM_LEN);
        assert_ne!(a, b);
    }

    #[test]
    fn revoked_and_expired_keys_are_refused() {
        let now = 1_795_239_260_000; // 2026-11-21T05:34:20Z
        assert_eq!(record().check_usable(now), Ok(()));
        let revoked = ApiKeyRecord {
            revoked: true,
            ..record()
        };
        assert_eq!(revoked.check_usable(now), Err(KeyRejection::Revoked));
        let expired = ApiKeyRecord {
            expires_at: Some("2026-11-21T05:34:20Z".into()),
            ..record()
        };
        assert_eq!(expired.check_usable(now), Err(KeyRejection::Expired));
        assert_eq!(expired.check_usable(now - 1), Ok(()));
        let unreadable = ApiKeyRecord {
            expires_at: Some("soon".into()),
            ..record()
        };
        assert_eq!(unreadable.check_usable(now), Err(KeyRejection::Expired));
    }

    #[test]
    fn scopes() {
        assert!(record().allows_game("crash", Some("multiplier")));
        let games = ApiKeyRecord {
            games: Some(vec!["crash".into()]),
            ..record()
        };
        assert!(games.allows_game("crash", None));
        assert!(!games.allows_game("dice", Some("dice")));
        assert!(!games.allows_type("multiplier"));
        let types = ApiKeyRecord {
            types: Some(vec!["dice".into()]),
            ..record()
        };
        assert!(types.allows_game("dice-duel", Some("dice")));
        assert!(!types.allows_game("dice-duel", None));
        assert!(types.allows_type("dice"));
    }

    #[test]
    fn record_round_trips_with_defaults() {
        let json = r#"{"id":"k1","name":"partner","created_at":"2026-11-21T00:00:00Z"}"#;
        let parsed: ApiKeyRecord = serde_json::from_str(json).unwrap();
        assert_eq!(parsed, record());
        let again = serde_json::to_string(&parsed).unwrap();
        assert_eq!(
            serde_json::from_str::<ApiKeyRecord>(&again).unwrap(),
            record()
        );
    }
}
