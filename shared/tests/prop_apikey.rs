//! Property tests of API keys (`shared::apikey`): the shape check is exactly
//! the documented shape, generated keys have it, hashing is total, and a
//! stored record of any content is usable or refused, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{any_text, config, tricky_string};
use proptest::prelude::*;
use serde_json::json;
use shared::apikey::{
    ApiKeyRecord, GENERATED_RANDOM_LEN, KV_PREFIX, KeyRejection, MIN_RANDOM_LEN, PREFIX_LIVE,
    PREFIX_TEST, generate, hash_hex, is_well_formed, kv_key,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// docs/protocol.md#api-keys-and-browser-tokens, written out: `sk_live_` or `sk_test_`, then 32 to 128 ASCII
/// letters and digits.
fn documented_shape(key: &str) -> bool {
    [PREFIX_LIVE, PREFIX_TEST].iter().any(|prefix| {
        key.strip_prefix(prefix).is_some_and(|rest| {
            (MIN_RANDOM_LEN..=128).contains(&rest.chars().count())
                && rest.chars().all(|c| c.is_ascii_alphanumeric())
        })
    })
}

/// Text near a key: a right or wrong prefix, then characters that are
/// mostly base62.
fn key_like() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            PREFIX_LIVE,
            PREFIX_TEST,
            "sk_live",
            "sk_prod_",
            "SK_LIVE_",
            "st_",
            "",
        ]),
        prop_oneof![
            "[A-Za-z0-9]{28,136}",
            "[A-Za-z0-9]{30,34}[^A-Za-z0-9]?[A-Za-z0-9]{0,4}",
            tricky_string(40),
        ],
    )
        .prop_map(|(prefix, rest)| format!("{prefix}{rest}"))
}

/// A small xorshift generator: a random source that is never stuck.
fn fill_from(mut state: u64) -> impl FnMut(&mut [u8]) {
    state |= 1;
    move |buf: &mut [u8]| {
        for b in buf {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state.to_le_bytes()[7];
        }
    }
}

fn unix_ms() -> impl Strategy<Value = i64> {
    // Years 1 to 9999, the range RFC 3339 can write.
    -62_135_596_800_000i64..253_402_300_799_999
}

fn rfc3339_of_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

fn record(expires_at: Option<String>, revoked: bool) -> ApiKeyRecord {
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
        expires_at,
        revoked,
    }
}

fn names() -> impl Strategy<Value = Option<Vec<String>>> {
    prop::option::of(prop::collection::vec(any_text(12), 0..4))
}

fn any_record() -> impl Strategy<Value = ApiKeyRecord> {
    (
        (any_text(16), any_text(16), names(), names(), names()),
        (
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u32>()),
        ),
        (any_text(24), prop::option::of(any_text(24)), any::<bool>()),
    )
        .prop_map(
            |(
                (id, name, games, types, origins),
                (max_streams, connects_per_minute, requests_per_minute),
                (created_at, expires_at, revoked),
            )| ApiKeyRecord {
                id,
                name,
                games,
                types,
                origins,
                max_streams,
                connects_per_minute,
                requests_per_minute,
                created_at,
                expires_at,
                revoked,
            },
        )
}

proptest! {
    #![proptest_config(config(1000))]

    /// The shape check is exactly the documented shape, for any text.
    #[test]
    fn well_formed_is_the_documented_shape(key in prop_oneof![any_text(48), key_like()]) {
        prop_assert_eq!(is_well_formed(&key), documented_shape(&key), "{:?}", key);
    }

    /// Hashing any text gives `key:` and 64 lower-case hex digits, the same
    /// every time.
    #[test]
    fn kv_keys_are_sha256_hex(key in any_text(64)) {
        let kv = kv_key(&key);
        let hex = kv.strip_prefix(KV_PREFIX).unwrap();
        prop_assert_eq!(hex.len(), 64);
        prop_assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        prop_assert_eq!(hex, hash_hex(&key));
    }

    /// A stored record of any content, or any JSON at all, is read or
    /// refused, and a record read is usable or refused at any time, never a
    /// panic; `revoked` wins over everything.
    #[test]
    fn any_stored_record_is_a_verdict(
        record in any_record(),
        junk in prop_oneof![
            any_text(64),
            any_text(24).prop_map(|e| json!({"id":"k","name":"n","created_at":"x","expires_at":e}).to_string()),
            prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ],
        now in any::<i64>(),
    ) {
        let stored = serde_json::to_string(&record).unwrap();
        let read: ApiKeyRecord = serde_json::from_str(&stored).unwrap();
        prop_assert_eq!(&read, &record);
        let verdict = read.check_usable(now);
        if record.revoked {
            prop_assert_eq!(verdict, Err(KeyRejection::Revoked));
        }
        if let Ok(other) = serde_json::from_str::<ApiKeyRecord>(&junk) {
            let _ = other.check_usable(now);
            let _ = other.allows_game(&junk, Some(&junk));
            let _ = other.allows_type(&junk);
        }
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// Generated keys have the shape, with 43 random characters, for any
    /// random source.
    #[test]
    fn generated_keys_are_well_formed(seed in any::<u64>(), live in any::<bool>()) {
        let prefix = if live { PREFIX_LIVE } else { PREFIX_TEST };
        let key = generate(prefix, fill_from(seed));
        prop_assert!(is_well_formed(&key), "{}", key);
        prop_assert_eq!(key.len(), prefix.len() + GENERATED_RANDOM_LEN);
        prop_assert!(key.starts_with(prefix));
    }

    /// A key is usable strictly before its expiry and refused from it on,
    /// to the millisecond; an expiry that cannot be read refuses.
    #[test]
    fn expiry_is_exact(expires in unix_ms(), offset in -5_000i64..5_000, unreadable in tricky_string(12)) {
        let now = expires + offset;
        let verdict = record(Some(rfc3339_of_ms(expires)), false).check_usable(now);
        if now < expires {
            prop_assert_eq!(verdict, Ok(()));
        } else {
            prop_assert_eq!(verdict, Err(KeyRejection::Expired));
        }
        prop_assert_eq!(record(None, false).check_usable(now), Ok(()));
        if OffsetDateTime::parse(&unreadable, &Rfc3339).is_err() {
            prop_assert_eq!(
                record(Some(unreadable), false).check_usable(now),
                Err(KeyRejection::Expired)
            );
        }
    }
}
