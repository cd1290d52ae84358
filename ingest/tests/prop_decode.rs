//! Property tests of Debezium decoding (`ingest::debezium::decode`): the real
//! captured events of `tests/fixtures/debezium/`, mutated at the byte level
//! (flips, replacements, insertions, deletions, truncation) and at the JSON
//! level (a value replaced by another type, fields deleted or added, huge
//! numbers, deep nesting), always decode to `Ok` or `Err`: never a panic,
//! never a stack overflow. Unknown fields change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ingest::debezium::{Decoded, decode};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed};
use serde_json::{Value, json};

/// The seed of every run, unless `PROPTEST_RNG_SEED` names another.
///
/// Why a fixed seed: CI must be deterministic: a run that passes passes again
/// on the same code, and a failure is found again by every later run (and on
/// any machine) without a regression file, so failure persistence is off and
/// nothing is ever written into the source tree. To explore other cases, run
/// with `PROPTEST_RNG_SEED=<n>` (which then reproduces what it finds) and
/// `PROPTEST_CASES=<n>`.
const SEED: u64 = 0x6761_6d65_6665_6564; // "gamefeed"

fn config(cases: u32) -> Config {
    let base = Config::default(); // reads the PROPTEST_* environment
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            base.cases
        } else {
            cases
        },
        rng_seed: match base.rng_seed {
            RngSeed::Random => RngSeed::Fixed(SEED),
            fixed => fixed,
        },
        failure_persistence: None,
        ..base
    }
}

const PREFIX: &str = "dbserver1";
const ROUNDS: &str = "dbserver1.public.rounds";
const GAMES: &str = "dbserver1.public.games";

/// The real events (and a `games` row shaped like them), with the subject
/// each is published on.
const FIXTURES: &[(&str, &str)] = &[
    (
        ROUNDS,
        include_str!("../../tests/fixtures/debezium/rounds-insert.json"),
    ),
    (
        ROUNDS,
        include_str!("../../tests/fixtures/debezium/rounds-insert-with-schema.json"),
    ),
    (
        ROUNDS,
        include_str!("../../tests/fixtures/debezium/rounds-snapshot-read.json"),
    ),
    (
        ROUNDS,
        include_str!("../../tests/fixtures/debezium/rounds-update.json"),
    ),
    (
        ROUNDS,
        include_str!("../../tests/fixtures/debezium/rounds-delete.json"),
    ),
    (
        "__debezium-heartbeat.dbserver1",
        include_str!("../../tests/fixtures/debezium/heartbeat.json"),
    ),
    (
        GAMES,
        r#"{"before":null,"after":{"id":7,"slug":"crash-classic","type":"crash","name":"Crash"},"source":{"ts_ms":1795239260008,"table":"games"},"op":"c","ts_ms":1795239260010}"#,
    ),
];

fn fixture() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop::sample::select(FIXTURES)
}

/// The subject of a fixture, or another table's, as the mutated message
/// may be published on either.
fn subject(own: &'static str) -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => Just(own), 1 => Just(ROUNDS), 1 => Just(GAMES)]
}

/// What must hold of any verdict.
fn check(verdict: &Result<Decoded, ingest::debezium::DecodeError>) -> Result<(), TestCaseError> {
    match verdict {
        Ok(Decoded::Round { row, .. }) => {
            prop_assert_eq!(
                row.self_described,
                !row.round.game_slug.is_empty() && !row.round.game_type.is_empty()
            );
        }
        Ok(Decoded::Game(_) | Decoded::Skip(_)) => {}
        Err(error) => prop_assert!(!error.0.is_empty()),
    }
    Ok(())
}

// ---- byte-level edits ----

#[derive(Debug, Clone)]
enum ByteEdit {
    Flip(Index, u8),
    Replace(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
    /// Repeat a slice of the bytes in place.
    Repeat(Index, u8),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let structural = prop::sample::select(b"{}[]\":,\\ 0-9.eE+tfn".to_vec());
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| ByteEdit::Flip(i, bit)),
        3 => (any::<Index>(), prop_oneof![any::<u8>(), structural.clone()]).prop_map(|(i, b)| ByteEdit::Replace(i, b)),
        2 => (any::<Index>(), prop_oneof![any::<u8>(), structural]).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        2 => any::<Index>().prop_map(ByteEdit::Delete),
        1 => any::<Index>().prop_map(ByteEdit::Truncate),
        1 => (any::<Index>(), 1u8..32).prop_map(|(i, n)| ByteEdit::Repeat(i, n)),
    ]
}

impl ByteEdit {
    fn apply(&self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            if let Self::Insert(_, b) = self {
                bytes.push(*b);
            }
            return;
        }
        match self {
            Self::Flip(at, bit) => {
                let at = at.index(bytes.len());
                bytes[at] ^= 1 << bit;
            }
            Self::Replace(at, b) => {
                let at = at.index(bytes.len());
                bytes[at] = *b;
            }
            Self::Insert(at, b) => bytes.insert(at.index(bytes.len() + 1), *b),
            Self::Delete(at) => {
                bytes.remove(at.index(bytes.len()));
            }
            Self::Truncate(at) => bytes.truncate(at.index(bytes.len())),
            Self::Repeat(at, n) => {
                let from = at.index(bytes.len());
                let to = (from + usize::from(*n)).min(bytes.len());
                let slice = bytes[from..to].to_vec();
                bytes.splice(from..from, slice);
            }
        }
    }
}

// ---- JSON-level edits ----

/// A step from a JSON value to one of its children.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    At(usize),
}

fn paths(value: &Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(here.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                here.push(Seg::Key(key.clone()));
                paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                here.push(Seg::At(i));
                paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(value: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    path.iter().fold(value, |value, seg| match seg {
        Seg::Key(key) => &mut value[key.as_str()],
        Seg::At(i) => &mut value[*i],
    })
}

/// Text put into the serialised JSON as it is, for what a `Value` cannot
/// hold: numbers past f64 and u64, and nesting deeper than serde_json reads.
fn raw_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "18446744073709551616",
            "-9223372036854775809",
            "9223372036854775808",
            "1e400",
            "-1e400",
            "1.7976931348623157e308",
            "4.9e-324",
            "-0",
            "0.0000000000000000000000000000000000000001",
            "123456789012345678901234567890.5",
        ])
        .prop_map(str::to_owned),
        (1usize..400).prop_map(|n| format!("1{}", "0".repeat(n))),
        (1usize..400).prop_map(|n| format!("-{}1", "9".repeat(n))),
        // Far past serde_json's recursion limit of 128.
        (100usize..5000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        (100usize..2000).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))),
    ]
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            i64::MIN,
            i64::MAX,
            0,
            -1,
            1_795_239_260_008,
            1_795_237_262_500_000,
            253_402_300_800_000_000,
            -62_135_596_800_000_001,
        ])
        .prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "c",
            "u",
            "r",
            "d",
            "t",
            "m",
            "x",
            "2026-11-21T05:01:02.500000Z",
            "not a date",
            "{}",
            "crash",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Names the decoder reads, and others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(KNOWN.to_vec()).prop_map(str::to_owned),
        "[a-z_]{1,10}",
    ]
}

/// Every field name the decoder looks at.
const KNOWN: &[&str] = &[
    "schema",
    "payload",
    "op",
    "before",
    "after",
    "source",
    "ts_ms",
    "id",
    "game_id",
    "game_slug",
    "game_type",
    "finished_at",
    "extras",
    "slug",
    "type",
];

#[derive(Debug, Clone)]
enum JsonEdit {
    /// Replace the value there with another (often of another type).
    Replace(Index, Value),
    /// Replace the value there with raw JSON text.
    Raw(Index, String),
    /// Delete the field or element there.
    Delete(Index),
    /// Wrap the value there in `depth` arrays or objects.
    Nest(Index, usize, bool),
    /// Add a field (to an object) or an element (to an array) there.
    Add(Index, String, Value),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        4 => (any::<Index>(), any_json()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        2 => (any::<Index>(), raw_text()).prop_map(|(i, t)| JsonEdit::Raw(i, t)),
        3 => any::<Index>().prop_map(JsonEdit::Delete),
        1 => (any::<Index>(), 1usize..200, any::<bool>()).prop_map(|(i, d, a)| JsonEdit::Nest(i, d, a)),
        2 => (any::<Index>(), field_name(), any_json()).prop_map(|(i, k, v)| JsonEdit::Add(i, k, v)),
    ]
}

/// Applies `edits` to the JSON of `text` and serialises the result.
fn edit_json(text: &str, edits: &[JsonEdit]) -> Vec<u8> {
    let mut value: Value = serde_json::from_str(text).unwrap();
    let mut raws = Vec::new();
    for edit in edits {
        let mut all = Vec::new();
        paths(&value, &mut Vec::new(), &mut all);
        let pick = |at: &Index| all[at.index(all.len())].clone();
        match edit {
            JsonEdit::Replace(at, new) => *at_mut(&mut value, &pick(at)) = new.clone(),
            JsonEdit::Raw(at, text) => {
                *at_mut(&mut value, &pick(at)) = Value::String(format!("@@raw{}@@", raws.len()));
                raws.push(text.clone());
            }
            JsonEdit::Delete(at) => {
                let mut path = pick(at);
                match path.pop() {
                    None => value = Value::Null,
                    Some(Seg::Key(key)) => {
                        if let Some(map) = at_mut(&mut value, &path).as_object_mut() {
                            map.remove(&key);
                        }
                    }
                    Some(Seg::At(i)) => {
                        if let Some(items) = at_mut(&mut value, &path).as_array_mut() {
                            items.remove(i);
                        }
                    }
                }
            }
            JsonEdit::Nest(at, depth, arrays) => {
                let target = at_mut(&mut value, &pick(at));
                let mut nested = target.take();
                for _ in 0..*depth {
                    nested = if *arrays {
                        json!([nested])
                    } else {
                        json!({ "n": nested })
                    };
                }
                *target = nested;
            }
            JsonEdit::Add(at, key, new) => match at_mut(&mut value, &pick(at)) {
                Value::Object(map) => {
                    map.insert(key.clone(), new.clone());
                }
                Value::Array(items) => items.push(new.clone()),
                _ => {}
            },
        }
    }
    let mut out = serde_json::to_string(&value).unwrap();
    for (i, raw) in raws.iter().enumerate() {
        out = out.replace(&format!("\"@@raw{i}@@\""), raw);
    }
    out.into_bytes()
}

proptest! {
    #![proptest_config(config(1000))]

    /// Byte flips, replacements, insertions, deletions, repeats and
    /// truncation of real events: a verdict, never a panic.
    #[test]
    fn byte_edited_fixtures_decode_to_a_verdict(
        ((_, payload), subject) in fixture().prop_flat_map(|f| (Just(f), subject(f.0))),
        edits in prop::collection::vec(byte_edit(), 1..5),
    ) {
        let mut bytes = payload.as_bytes().to_vec();
        for edit in &edits {
            edit.apply(&mut bytes);
        }
        check(&decode(subject, &bytes, PREFIX))?;
    }

    /// Values replaced by other types, fields deleted or added, huge
    /// numbers and deep nesting, anywhere in real events: a verdict, never a
    /// panic.
    #[test]
    fn json_edited_fixtures_decode_to_a_verdict(
        ((_, payload), subject) in fixture().prop_flat_map(|f| (Just(f), subject(f.0))),
        edits in prop::collection::vec(json_edit(), 1..5),
    ) {
        let bytes = edit_json(payload, &edits);
        check(&decode(subject, &bytes, PREFIX))?;
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// Fields the decoder does not read (extra columns, source metadata,
    /// anything new in a later Debezium) change nothing, wherever they are.
    #[test]
    fn unknown_fields_change_nothing(
        (own, payload) in fixture(),
        added in prop::collection::vec(
            (any::<Index>(), "x_[a-z_]{0,8}|[A-Z][a-zA-Z]{0,8}|.{1,6}", any_json()),
            1..5,
        ),
    ) {
        prop_assume!(added.iter().all(|(_, key, _)| !KNOWN.contains(&key.as_str())));
        let edits: Vec<JsonEdit> = added
            .into_iter()
            .map(|(at, key, value)| JsonEdit::Add(at, key, value))
            .collect();
        let bytes = edit_json(payload, &edits);
        let before = decode(own, payload.as_bytes(), PREFIX);
        prop_assert_eq!(decode(own, &bytes, PREFIX), before, "{}", String::from_utf8_lossy(&bytes));
    }

    /// Any subject, prefix and payload (random bytes or a real event): a
    /// verdict, never a panic.
    #[test]
    fn any_subject_and_payload_decode_to_a_verdict(
        subject in prop_oneof![
            Just(ROUNDS.to_owned()),
            Just(GAMES.to_owned()),
            Just("dbserver1.transaction".to_owned()),
            "[a-z._-]{0,24}",
            ".{0,24}",
        ],
        prefix in prop_oneof![Just(PREFIX.to_owned()), Just(String::new()), ".{0,12}"],
        payload in prop_oneof![
            fixture().prop_map(|(_, p)| p.as_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 0..128),
            any_json().prop_map(|v| v.to_string().into_bytes()),
        ],
    ) {
        check(&decode(&subject, &payload, &prefix))?;
    }
}

/// The fixtures themselves decode as the unit tests say, so the mutations
/// above start from events the decoder accepts.
#[test]
fn fixtures_decode() {
    for (subject, payload) in FIXTURES {
        let verdict = decode(subject, payload.as_bytes(), PREFIX);
        assert!(
            matches!(
                verdict,
                Ok(Decoded::Round { .. } | Decoded::Game(_) | Decoded::Skip(_))
            ),
            "{subject}: {verdict:?}"
        );
    }
}
