//! Property tests of the `x-signature` scheme (`shared::signature`) that
//! authenticates ingest's batches: a signed batch verifies, nothing else
//! does, and no header makes the verifier panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{any_text, byte_edit, config, tricky_string};
use proptest::prelude::*;
use shared::signature::{MAX_SKEW_SECS, SignatureError, sign, verify};

fn secret() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..80)
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        any_text(128).prop_map(String::into_bytes),
    ]
}

fn unix() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 1_700_000_000i64..2_100_000_000,
        1 => any::<i64>(),
        1 => prop::sample::select(vec![i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX]),
    ]
}

/// A verifier's clock within the allowed skew of `t`.
fn now_near(t: i64) -> impl Strategy<Value = i64> {
    (-MAX_SKEW_SECS..=MAX_SKEW_SECS).prop_map(move |skew| t.saturating_add(skew))
}

/// Header-shaped text: `t=` and `v1=` parts that may or may not parse, among
/// other parts, separated by commas and spaces.
fn header_like(t: i64) -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just(format!("t={t}")),
        any::<i64>().prop_map(|t| format!("t={t}")),
        prop::collection::vec(any::<u8>(), 32).prop_map(|tag| format!("v1={}", hex_of(&tag))),
        "[0-9a-fA-F]{0,70}".prop_map(|hex| format!("v1={hex}")),
        tricky_string(12).prop_map(|v| format!("v1={v}")),
        tricky_string(12).prop_map(|v| format!("t={v}")),
        tricky_string(12),
        "v[0-9]=[a-z0-9]{0,8}",
    ];
    prop::collection::vec((part, "[ ]{0,1}"), 0..5).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(part, space)| format!("{space}{part}{space}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a header says, written the way `sign` writes it: its `t` and its
/// `v1` tags, read as the verifier reads them (parts split on `,` and
/// trimmed, `t` as an integer, tags as hex of either case, other schemes
/// ignored). `None` if the verifier could not read it.
fn meaning(header: &str) -> Option<String> {
    let mut t = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=')? {
            ("t", value) => t = Some(value.parse::<i64>().ok()?),
            ("v1", value) => {
                let valid = value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit());
                valid.then_some(())?;
                tags.push(value.to_ascii_lowercase());
            }
            _ => {}
        }
    }
    let tags: Vec<String> = tags.into_iter().map(|tag| format!(",v1={tag}")).collect();
    Some(format!("t={}{}", t?, tags.concat()))
}

proptest! {
    #![proptest_config(config(500))]

    /// A header signed with a (non-empty) secret verifies for that body and
    /// secret anywhere within the allowed skew, and for no other secret.
    #[test]
    fn a_signed_header_verifies(
        secret in secret(),
        other in secret(),
        body in body(),
        (t, now) in unix().prop_flat_map(|t| (Just(t), now_near(t))),
    ) {
        let header = sign(&secret, t, &body).unwrap();
        prop_assert_eq!(verify(&secret, Some(&header), &body, now), Ok(()));
        if other != secret {
            prop_assert_eq!(
                verify(&other, Some(&header), &body, now),
                Err(SignatureError::Mismatch)
            );
        }
    }

    /// A signature is refused past the skew window, whichever way.
    #[test]
    fn a_stale_header_is_refused(
        secret in secret(),
        body in body(),
        t in -1_000_000_000_000i64..1_000_000_000_000,
        beyond in 1i64..1_000_000,
        later in any::<bool>(),
    ) {
        let header = sign(&secret, t, &body).unwrap();
        let now = if later { t + MAX_SKEW_SECS + beyond } else { t - MAX_SKEW_SECS - beyond };
        prop_assert_eq!(verify(&secret, Some(&header), &body, now), Err(SignatureError::Skew));
    }

    /// Any edit of the body (a byte replaced, deleted or inserted; or the
    /// body cut short or extended) fails verification.
    #[test]
    fn an_edited_body_fails(
        secret in secret(),
        body in body(),
        edit in byte_edit(),
        tail in prop::collection::vec(any::<u8>(), 1..8),
        cut in any::<prop::sample::Index>(),
        t in unix(),
    ) {
        let header = sign(&secret, t, &body).unwrap();
        let mut edited_bodies = vec![[body.as_slice(), &tail].concat()];
        if !body.is_empty() {
            edited_bodies.extend(edit.apply(&body));
            edited_bodies.push(body[..cut.index(body.len())].to_vec());
        }
        for edited in edited_bodies {
            prop_assert_eq!(
                verify(&secret, Some(&header), &edited, t),
                Err(SignatureError::Mismatch)
            );
        }
    }

    /// Any single-byte edit of a signed header (a byte replaced, deleted or
    /// inserted) fails verification unless the edited header still says the
    /// very same `t` and tag. The verifier reads `t` as a number and the tag
    /// as hex, so `v1=AB…` for `v1=ab…`, `t=+5` or `t=05` for `t=5`, and
    /// spaces around a part are other spellings of what was signed, never
    /// another timestamp or tag.
    #[test]
    fn an_edited_header_fails(
        secret in secret(),
        body in body(),
        t in unix(),
        edit in byte_edit(),
    ) {
        let header = sign(&secret, t, &body).unwrap();
        prop_assume!(edit.apply_str(&header).is_some());
        let edited = edit.apply_str(&header).unwrap();
        if verify(&secret, Some(&edited), &body, t).is_ok() {
            prop_assert_eq!(meaning(&edited), Some(header), "{:?} verified", edited);
        }
    }

    /// Only a single-byte *replacement*, the narrowest edit: it fails unless
    /// it flips the case of a hex letter of the tag (same tag, RFC 4648 §8:
    /// base 16 is case-insensitive).
    #[test]
    fn a_replaced_header_byte_fails(
        secret in secret(),
        body in body(),
        t in unix(),
        at in any::<prop::sample::Index>(),
        // `None`: flip the case of the byte there, so that case is tried often.
        byte in prop_oneof![3 => any::<u8>().prop_map(Some), 1 => Just(None)],
    ) {
        let header = sign(&secret, t, &body).unwrap();
        let at = at.index(header.len());
        let original = header.as_bytes()[at];
        let byte = byte.unwrap_or(if original.is_ascii_lowercase() {
            original.to_ascii_uppercase()
        } else {
            original.to_ascii_lowercase()
        });
        prop_assume!(byte != original);
        let mut bytes = header.clone().into_bytes();
        bytes[at] = byte;
        let edited = String::from_utf8_lossy(&bytes).into_owned();
        let tag_starts = header.find("v1=").unwrap() + 3;
        let case_flip = at >= tag_starts
            && original.is_ascii_alphabetic()
            && original.eq_ignore_ascii_case(&byte);
        let verdict = verify(&secret, Some(&edited), &body, t);
        if case_flip {
            prop_assert_eq!(verdict, Ok(()));
        } else {
            prop_assert!(verdict.is_err(), "{:?} verified", edited);
        }
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// No header, arbitrary or header-shaped, verifies without the right
    /// HMAC, and none makes the verifier panic.
    #[test]
    fn arbitrary_headers_never_verify(
        secret in prop::collection::vec(any::<u8>(), 0..40),
        body in body(),
        (now, header) in unix().prop_flat_map(|now| (Just(now), prop_oneof![any_text(96), header_like(now)])),
    ) {
        // With a header-shaped `t` equal to `now`, the MAC is what decides.
        let verdict = verify(&secret, Some(&header), &body, now);
        prop_assert!(verdict.is_err(), "{:?} verified", header);
        if secret.is_empty() {
            prop_assert!(verdict != Err(SignatureError::Mismatch));
        }
    }
}
