//! The `x-signature` scheme that authenticates ingest's batches (docs/protocol.md#ingest-to-edge):
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//!
//! The timestamp is inside the MAC, so a captured request can only be replayed
//! within the skew window, and replaying it is harmless anyway because the
//! Durable Objects are idempotent by `round_id`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Name of the request header carrying the signature.
pub const HEADER: &str = "x-signature";

/// Largest accepted distance, in seconds, between the signature's `t` and the
/// verifier's clock, in either direction.
pub const MAX_SKEW_SECS: i64 = 5 * 60;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. The variants are for logs and metrics; the
/// HTTP answer is the same 401 for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `x-signature` header.
    #[error("missing signature")]
    Missing,
    /// The header is not `t=<int>,v1=<64 hex digits>`.
    #[error("malformed signature header")]
    Malformed,
    /// `t` is more than [`MAX_SKEW_SECS`] away from now.
    #[error("signature timestamp outside the allowed skew")]
    Skew,
    /// No `v1` matches the body under the secret.
    #[error("signature does not match")]
    Mismatch,
    /// The configured secret is empty: refuse everything rather than accept a
    /// MAC anybody can compute.
    #[error("no signing secret configured")]
    NoSecret,
}

fn mac(secret: &[u8], unix: i64, body: &[u8]) -> Result<HmacSha256, SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    // HMAC accepts keys of any length, so this cannot fail for a non-empty key.
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| SignatureError::NoSecret)?;
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

/// The header value signing `body` at time `unix` (seconds).
pub fn sign(secret: &[u8], unix: i64, body: &[u8]) -> Result<String, SignatureError> {
    let tag = mac(secret, unix, body)?.finalize().into_bytes();
    Ok(format!("t={unix},v1={}", hex::encode(tag)))
}

/// A parsed `x-signature` header: its timestamp and its `v1` tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// `t`, seconds since the epoch.
    pub timestamp: i64,
    tags: Vec<Vec<u8>>,
}

/// Parses `header` and checks its timestamp against `now_unix`, before any
/// body is read: a request without a well-formed, fresh header is refused
/// without the cost of receiving its body.
pub fn precheck(header: Option<&str>, now_unix: i64) -> Result<Parsed, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            Some(("v1", value)) => {
                let bytes = hex::decode(value).map_err(|_| SignatureError::Malformed)?;
                if bytes.len() != 32 {
                    return Err(SignatureError::Malformed);
                }
                tags.push(bytes);
            }
            // Unknown schemes are ignored so a future `v2` can be rolled out.
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now_unix.abs_diff(timestamp) > MAX_SKEW_SECS.unsigned_abs() {
        return Err(SignatureError::Skew);
    }
    Ok(Parsed { timestamp, tags })
}

impl Parsed {
    /// Whether one of the tags signs `body` under `secret` (constant-time).
    pub fn verify(&self, secret: &[u8], body: &[u8]) -> Result<(), SignatureError> {
        let expected = mac(secret, self.timestamp, body)?;
        if self
            .tags
            .iter()
            .any(|tag| expected.clone().verify_slice(tag).is_ok())
        {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Checks `header` for `body` against `secret`, with `now_unix` the verifier's
/// clock in seconds. Comparison of the MAC is constant-time.
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), SignatureError> {
    precheck(header, now_unix)?.verify(secret, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"s3cret";
    const NOW: i64 = 1_795_239_260;

    #[test]
    fn known_vector() {
        // printf '1795239260.{}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            sign(SECRET, NOW, b"{}").unwrap(),
            "t=1795239260,v1=5aa25af728d7a4ff8d8a2923a95501e3f56e8559b9a23349db06391ec8c94688"
        );
    }

    #[test]
    fn a_signature_verifies_within_the_window() {
        let header = sign(SECRET, NOW, b"body").unwrap();
        assert_eq!(verify(SECRET, Some(&header), b"body", NOW), Ok(()));
        assert_eq!(
            verify(SECRET, Some(&header), b"body", NOW + MAX_SKEW_SECS),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, Some(&header), b"body", NOW - MAX_SKEW_SECS),
            Ok(())
        );
    }

    #[test]
    fn refusals() {
        let header = sign(SECRET, NOW, b"body").unwrap();
        assert_eq!(
            verify(SECRET, None, b"body", NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, Some(&header), b"bodx", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", Some(&header), b"body", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, Some(&header), b"body", NOW + MAX_SKEW_SECS + 1),
            Err(SignatureError::Skew)
        );
        assert_eq!(
            verify(b"", Some(&header), b"body", NOW),
            Err(SignatureError::NoSecret)
        );
        for bad in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,v1=zz",
            "t=1,v1=abcd",
            "garbage",
        ] {
            assert_eq!(
                verify(SECRET, Some(bad), b"body", NOW),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tampered_timestamp_fails() {
        let header = sign(SECRET, NOW, b"body").unwrap();
        let moved = header.replacen(&NOW.to_string(), &(NOW + 1).to_string(), 1);
        assert_eq!(
            verify(SECRET, Some(&moved), b"body", NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn any_matching_v1_is_enough_and_unknown_schemes_are_ignored() {
        let good = sign(SECRET, NOW, b"body").unwrap();
        let v1 = good.split_once("v1=").unwrap().1;
        let header = format!("t={NOW},v1={},v2=whatever,v1={v1}", "0".repeat(64));
        assert_eq!(verify(SECRET, Some(&header), b"body", NOW), Ok(()));
    }
}
