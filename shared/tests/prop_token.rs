//! Property tests of browser tokens (`shared::token`): a minted token
//! verifies, with its claims, until it expires; any edit of it, any other
//! secret and any other text fail, never with a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{any_text, byte_edit, config, tricky_string};
use proptest::prelude::*;
use shared::token::{
    Claims, MAX_LEN, MIN_SECRET_LEN, PREFIX, TokenError, looks_like_token, secret_ok, sign, verify,
};

fn secret() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), MIN_SECRET_LEN..96)
}

/// Scopes as the minting route lets them through: valid names; sometimes
/// many of them.
fn scope() -> impl Strategy<Value = Option<Vec<String>>> {
    prop::option::of(prop_oneof![
        8 => prop::collection::vec("[a-z0-9][a-z0-9_-]{0,20}", 0..6),
        1 => prop::collection::vec("[a-z0-9][a-z0-9_-]{40,63}", 20..120),
    ])
}

fn claims() -> impl Strategy<Value = Claims> {
    (
        prop_oneof![any_text(24), "k_[a-zA-Z0-9]{8,16}"],
        scope(),
        scope(),
        any::<i64>(),
    )
        .prop_map(|(key_id, games, types, expires)| Claims {
            nonce: None,
            key_id,
            games,
            types,
            expires,
        })
}

/// A clock before `expires`.
fn before(expires: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(expires.saturating_sub(1)),
        (0i64..=3600).prop_map(move |d| expires.saturating_sub(1).saturating_sub(d)),
        Just(i64::MIN),
    ]
}

proptest! {
    #![proptest_config(config(500))]

    /// A minted token verifies to its own claims at any time before its
    /// expiry, and is `Expired` from its expiry on. Minting refuses claims
    /// too large for a token rather than mint one that never verifies.
    #[test]
    fn minted_tokens_verify_until_they_expire(
        secret in secret(),
        claims in claims().prop_filter("can expire later", |c| c.expires > i64::MIN),
        later in 0i64..=3600,
    ) {
        let minted = sign(&secret, &claims);
        let Ok(token) = minted else {
            prop_assert_eq!(minted, Err(TokenError::Malformed));
            // Refused only when the token would be too long to verify:
            // prefix, unpadded base64 of the JSON, `.`, 43 characters of tag.
            let json = serde_json::to_vec(&claims).unwrap();
            let len = PREFIX.len() + (json.len() * 4).div_ceil(3) + 1 + 43;
            prop_assert!(len > MAX_LEN, "refused a {}-byte token", len);
            return Ok(());
        };
        prop_assert!(token.len() <= MAX_LEN, "a {}-byte token", token.len());
        prop_assert!(looks_like_token(&token));
        prop_assert!(token.is_ascii() && !token.contains('='));
        let now = claims.expires - 1;
        prop_assert_eq!(verify(&secret, &token, now), Ok(claims.clone()));
        let expired = claims.expires.saturating_add(later);
        prop_assert_eq!(verify(&secret, &token, expired), Err(TokenError::Expired));
    }

    /// Before expiry too, at any clock: verifies.
    #[test]
    fn minted_tokens_verify_at_any_earlier_time(
        secret in secret(),
        (claims, now) in claims()
            .prop_filter("can expire later", |c| c.expires > i64::MIN)
            .prop_flat_map(|c| { let e = c.expires; (Just(c), before(e)) }),
    ) {
        if let Ok(token) = sign(&secret, &claims) {
            prop_assert_eq!(verify(&secret, &token, now), Ok(claims));
        }
    }

    /// Any single-byte edit of a minted token (a byte replaced, deleted or
    /// inserted), and up to three of them, fails verification.
    #[test]
    fn an_edited_token_fails(
        secret in secret(),
        claims in claims().prop_filter("can expire later", |c| c.expires > i64::MIN),
        edits in prop::collection::vec(byte_edit(), 1..4),
    ) {
        let Ok(token) = sign(&secret, &claims) else { return Ok(()) };
        let now = claims.expires - 1;
        let mut edited = token.clone();
        for (n, edit) in edits.iter().enumerate() {
            let Some(next) = edit.apply_str(&edited) else { continue };
            edited = next;
            if edited == token {
                continue; // a later edit undid an earlier one
            }
            let verdict = verify(&secret, &edited, now);
            prop_assert!(verdict.is_err(), "edit {} gave {:?}: {:?}", n + 1, edited, verdict);
        }
    }

    /// A token verifies under its own secret only.
    #[test]
    fn another_secret_is_forged(secret in secret(), other in secret(), claims in claims()) {
        prop_assume!(secret != other);
        let Ok(token) = sign(&secret, &claims) else { return Ok(()) };
        prop_assert_eq!(verify(&other, &token, i64::MIN), Err(TokenError::Forged));
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// No text verifies, token-shaped or not, under any secret (weak ones
    /// included), and none makes the verifier panic.
    #[test]
    fn arbitrary_text_never_verifies(
        secret in prop::collection::vec(any::<u8>(), 0..64),
        text in prop_oneof![
            any_text(96),
            any_text(64).prop_map(|t| format!("{PREFIX}{t}")),
            ("[A-Za-z0-9_-]{0,80}", "[A-Za-z0-9_-]{0,48}", tricky_string(4))
                .prop_map(|(claims, tag, junk)| format!("{PREFIX}{claims}.{tag}{junk}")),
        ],
        now in any::<i64>(),
    ) {
        let verdict = verify(&secret, &text, now);
        prop_assert!(verdict.is_err(), "{:?} verified: {:?}", text, verdict);
        if !secret_ok(&secret) && text.len() <= MAX_LEN && text.starts_with(PREFIX) && verdict != Err(TokenError::Malformed) {
            prop_assert_eq!(verdict, Err(TokenError::WeakSecret));
        }
    }
}
