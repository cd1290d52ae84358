//! Browser tokens (docs/protocol.md#per-key-limits-and-usage): short-lived credentials a partner's server
//! mints from its API key, so a page never holds the key itself.
//!
//! A token is `st_<claims>.<tag>`: `<claims>` is the base64url (no padding)
//! JSON of [`Claims`], `<tag>` the base64url HMAC-SHA256 of `st_<claims>`
//! under the Worker's `TOKEN_SECRET`. It is verified with the secret alone (no
//! KV read); its parent key's record decides revocation, origins and limits.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Prefix of every token.
pub const PREFIX: &str = "st_";
/// Default lifetime, in seconds.
pub const DEFAULT_TTL_SECS: u64 = 600;
/// Longest lifetime, in seconds.
pub const MAX_TTL_SECS: u64 = 3600;
/// Shortest secret accepted: a weaker one would make tokens guessable.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest token accepted before any decoding (a bound on work per request).
pub const MAX_LEN: usize = 4096;

type HmacSha256 = Hmac<Sha256>;

/// What a token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The parent key's id (`ApiKeyRecord::id`).
    #[serde(rename = "k")]
    pub key_id: String,
    /// Games the token may read (`None`: as its parent).
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    pub games: Option<Vec<String>>,
    /// Game types the token may read (`None`: as its parent).
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// Expiry, unix seconds.
    #[serde(rename = "e")]
    pub expires: i64,
    /// Random, so two tokens minted alike in the same second are still two
    /// tokens, each with its own `TOKEN_MAX_STREAMS`.
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// Why a token was refused. All of them answer 401 `invalid_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not `st_<base64url>.<base64url>` of the right content.
    #[error("malformed token")]
    Malformed,
    /// The tag does not match: forged or signed with another secret.
    #[error("token signature does not match")]
    Forged,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
    /// The secret is missing or shorter than [`MIN_SECRET_LEN`].
    #[error("token secret missing or too weak")]
    WeakSecret,
}

/// Whether `secret` is strong enough to sign tokens.
pub fn secret_ok(secret: &[u8]) -> bool {
    secret.len() >= MIN_SECRET_LEN
}

fn mac(secret: &[u8], signed_part: &str) -> Result<HmacSha256, TokenError> {
    if !secret_ok(secret) {
        return Err(TokenError::WeakSecret);
    }
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| TokenError::WeakSecret)?;
    mac.update(signed_part.as_bytes());
    Ok(mac)
}

/// Whether `credential` has the token prefix (else it may be an API key).
pub fn looks_like_token(credential: &str) -> bool {
    credential.starts_with(PREFIX)
}

/// Signs `claims` into a token; [`TokenError::Malformed`] if the token would
/// be longer than [`MAX_LEN`], which [`verify`] refuses (so many scopes
/// would otherwise mint a token that never verifies).
pub fn sign(secret: &[u8], claims: &Claims) -> Result<String, TokenError> {
    let json = serde_json::to_vec(claims).map_err(|_| TokenError::Malformed)?;
    let signed = format!("{PREFIX}{}", B64URL.encode(json));
    let tag = mac(secret, &signed)?.finalize().into_bytes();
    let token = format!("{signed}.{}", B64URL.encode(tag));
    if token.len() > MAX_LEN {
        return Err(TokenError::Malformed);
    }
    Ok(token)
}

/// Checks `token` against `secret` at `now_unix` (seconds) and returns its claims.
pub fn verify(secret: &[u8], token: &str, now_unix: i64) -> Result<Claims, TokenError> {
    if token.len() > MAX_LEN || !token.starts_with(PREFIX) {
        return Err(TokenError::Malformed);
    }
    let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let tag = B64URL.decode(tag).map_err(|_| TokenError::Malformed)?;
    // The tag is checked before the claims are parsed, in constant time.
    mac(secret, signed)?
        .verify_slice(&tag)
        .map_err(|_| TokenError::Forged)?;
    let json = B64URL
        .decode(&signed[PREFIX.len()..])
        .map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    if now_unix >= claims.expires {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// The name of a token (verified by [`verify`]) for counting its streams:
/// its signature, in its one canonical encoding, so no other spelling of the
/// same token counts apart.
pub fn tag(token: &str) -> Option<String> {
    let (_, tag) = token.rsplit_once('.')?;
    B64URL.decode(tag).ok().map(|bytes| B64URL.encode(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims() -> Claims {
        Claims {
            key_id: "k_abc".into(),
            games: Some(vec!["crash".into()]),
            types: None,
            expires: 1_000_600,
            nonce: None,
        }
    }

    #[test]
    fn a_token_is_named_by_its_signature() {
        let one = sign(SECRET, &claims()).unwrap();
        let other = sign(
            SECRET,
            &Claims {
                expires: 1_000_601,
                ..claims()
            },
        )
        .unwrap();
        let (_, signature) = one.rsplit_once('.').unwrap();
        assert_eq!(tag(&one).as_deref(), Some(signature));
        assert_ne!(tag(&one), tag(&other));
        assert_eq!(tag("st_no-tag"), None);
        assert_eq!(tag("st_x.***"), None);
    }

    #[test]
    fn round_trip_and_exact_shape() {
        let token = sign(SECRET, &claims()).unwrap();
        assert!(token.starts_with("st_eyJrIjoia19hYmMiLCJnIjpbImNyYXNoIl0sImUiOjEwMDA2MDB9."));
        assert!(!token.contains('='), "no padding: {token}");
        assert!(looks_like_token(&token));
        assert_eq!(verify(SECRET, &token, 1_000_000), Ok(claims()));
        assert_eq!(verify(SECRET, &token, 1_000_600), Err(TokenError::Expired));
    }

    #[test]
    fn forged_and_malformed() {
        let token = sign(SECRET, &claims()).unwrap();
        let other = b"another secret, long enough, 32+";
        assert_eq!(verify(other, &token, 0), Err(TokenError::Forged));
        // Claims swapped under a valid tag: a wider scope must not pass.
        let (_, tag) = token.rsplit_once('.').unwrap();
        let wider = B64URL.encode(br#"{"k":"k_abc","e":1000600}"#);
        assert_eq!(
            verify(SECRET, &format!("st_{wider}.{tag}"), 0),
            Err(TokenError::Forged)
        );
        for junk in [
            "",
            "st_",
            "st_.",
            "st_abc",
            "sk_live_x.y",
            "st_a.b!",
            "st_%%.AAAA",
        ] {
            assert!(verify(SECRET, junk, 0).is_err(), "{junk:?}");
        }
        // A validly signed body that is not claims.
        let signed = format!("st_{}", B64URL.encode(b"[]"));
        let tag = B64URL.encode(mac(SECRET, &signed).unwrap().finalize().into_bytes());
        assert_eq!(
            verify(SECRET, &format!("{signed}.{tag}"), 0),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verify(SECRET, &"st_a".repeat(2000), 0),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn claims_too_large_to_verify_are_not_signed() {
        // Found by `tests/prop_token.rs`: 120 long game slugs made a
        // 4097+-byte token that `verify` refuses as too long.
        let many = |n: usize| Claims {
            nonce: None,
            games: Some((0..n).map(|i| format!("{i:0>60}")).collect()),
            ..claims()
        };
        assert_eq!(sign(SECRET, &many(80)), Err(TokenError::Malformed));
        let fits = sign(SECRET, &many(40)).unwrap();
        assert!(fits.len() <= MAX_LEN);
        assert_eq!(verify(SECRET, &fits, 1_000_000), Ok(many(40)));
    }

    #[test]
    fn weak_secrets_sign_and_verify_nothing() {
        assert_eq!(sign(b"short", &claims()), Err(TokenError::WeakSecret));
        let token = sign(SECRET, &claims()).unwrap();
        assert_eq!(verify(b"", &token, 0), Err(TokenError::WeakSecret));
        assert!(!secret_ok(b"change-me"));
        assert!(secret_ok(SECRET));
    }
}
