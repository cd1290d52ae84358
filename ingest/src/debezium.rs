//! Debezium change events → round events (docs/protocol.md#the-debezium-mapping).
//!
//! Accepts both envelope forms (`schemas.enable=false`: the envelope itself;
//! `true`: `{"schema":…,"payload":<envelope>}`). Tables are told apart by the
//! NATS subject (`<prefix>.<schema>.<table>`), since the sink sends no key.

use serde_json::Value;
use shared::{EventKind, Round, RoundEvent};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A game's public identity, from the `games` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameInfo {
    /// `games.id`.
    pub id: i64,
    /// `games.slug`.
    pub slug: String,
    /// `games.type`.
    pub game_type: String,
}

/// A `rounds` row before enrichment: slug and type may be missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundRow {
    /// Everything but slug/type, which are empty when the row lacks them.
    pub round: Round,
    /// Whether the row itself carried `game_slug` and `game_type`.
    pub self_described: bool,
}

/// What one message means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A round event to deliver (may still need the game's slug and type).
    Round {
        /// New, backfill or update.
        kind: EventKind,
        /// The row.
        row: RoundRow,
    },
    /// A `games` row was created, read or changed.
    Game(GameInfo),
    /// Nothing to deliver; the reason is a metric label.
    Skip(&'static str),
}

/// A message that can never become an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable Debezium event: {0}")]
pub struct DecodeError(pub String);

fn err(msg: impl Into<String>) -> DecodeError {
    DecodeError(msg.into())
}

/// Which table a subject names, given the connector's prefix.
fn table_of<'a>(subject: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let (_schema, table) = rest.split_once('.')?;
    (!table.contains('.')).then_some(table)
}

/// Decodes one message from `subject`.
pub fn decode(subject: &str, payload: &[u8], prefix: &str) -> Result<Decoded, DecodeError> {
    if subject.starts_with("__debezium-heartbeat") {
        return Ok(Decoded::Skip("heartbeat"));
    }
    let table = match table_of(subject, prefix) {
        Some(table) => table,
        None if subject == format!("{prefix}.transaction") => {
            return Ok(Decoded::Skip("transaction"));
        }
        None => return Ok(Decoded::Skip("unknown_subject")),
    };
    if table != "rounds" && table != "games" {
        return Ok(Decoded::Skip("unknown_table"));
    }
    if payload.is_empty() {
        return Ok(Decoded::Skip("tombstone"));
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| err(format!("not JSON: {e}")))?;
    let envelope = match value.get("payload") {
        Some(inner) if value.get("schema").is_some() => inner,
        _ => &value,
    };
    if envelope.is_null() {
        return Ok(Decoded::Skip("tombstone"));
    }
    let op = envelope
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| err("missing `op`"))?;
    let kind = match op {
        "c" => EventKind::New,
        "r" => EventKind::Backfill,
        "u" => EventKind::Update,
        "d" => return Ok(Decoded::Skip("delete")),
        "t" => return Ok(Decoded::Skip("truncate")),
        "m" => return Ok(Decoded::Skip("message")),
        other => return Err(err(format!("unknown op {other:?}"))),
    };
    let after = envelope
        .get("after")
        .filter(|a| a.is_object())
        .ok_or_else(|| err("missing `after`"))?;
    if table == "games" {
        return game_row(after).map(Decoded::Game);
    }
    let ts_ms = envelope
        .get("source")
        .and_then(|s| s.get("ts_ms"))
        .and_then(Value::as_i64)
        .ok_or_else(|| err("missing `source.ts_ms`"))?;
    let row = round_row(after, ts_ms)?;
    // Only a change of a public field is news to clients.
    if kind == EventKind::Update
        && let Some(before) = envelope.get("before").filter(|b| b.is_object())
        && round_row(before, ts_ms).is_ok_and(|old| public_eq(&old.round, &row.round))
    {
        return Ok(Decoded::Skip("update_without_public_change"));
    }
    Ok(Decoded::Round { kind, row })
}

/// Equal in every field clients see, except the commit timestamp.
fn public_eq(a: &Round, b: &Round) -> bool {
    Round {
        timestamp: 0,
        ..a.clone()
    } == Round {
        timestamp: 0,
        ..b.clone()
    }
}

fn int(row: &Value, field: &str) -> Result<i64, DecodeError> {
    row.get(field)
        .and_then(Value::as_i64)
        .ok_or_else(|| err(format!("`{field}` missing or not an integer")))
}

fn text(row: &Value, field: &str) -> Result<String, DecodeError> {
    row.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| err(format!("`{field}` missing or not a string")))
}

fn game_row(after: &Value) -> Result<GameInfo, DecodeError> {
    Ok(GameInfo {
        id: int(after, "id")?,
        slug: text(after, "slug")?,
        game_type: text(after, "type")?,
    })
}

fn round_row(row: &Value, ts_ms: i64) -> Result<RoundRow, DecodeError> {
    let finished_at = match row.get("finished_at") {
        Some(Value::String(s)) => s.clone(),
        // TIMESTAMP without time zone: microseconds since the epoch.
        Some(Value::Number(n)) => micros_to_rfc3339(
            n.as_i64()
                .ok_or_else(|| err("`finished_at` out of range"))?,
        )?,
        _ => return Err(err("`finished_at` missing")),
    };
    let extras = match row.get("extras") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => "{}".to_string(),
        Some(other) => other.to_string(),
    };
    let slug = row
        .get("game_slug")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let game_type = row
        .get("game_type")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    Ok(RoundRow {
        self_described: slug.is_some() && game_type.is_some(),
        round: Round {
            round_id: int(row, "id")?,
            game_id: int(row, "game_id")?,
            game_slug: slug.unwrap_or_default().to_owned(),
            game_type: game_type.unwrap_or_default().to_owned(),
            finished_at,
            extras,
            timestamp: ts_ms,
        },
    })
}

fn micros_to_rfc3339(micros: i64) -> Result<String, DecodeError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .ok_or_else(|| err("`finished_at` out of range"))
}

/// Turns a decoded row into a deliverable event, filling slug and type from
/// the games registry when the row lacks them; `None` if the game is unknown.
pub fn enrich(
    kind: EventKind,
    row: RoundRow,
    lookup: impl Fn(i64) -> Option<GameInfo>,
) -> Option<RoundEvent> {
    let mut round = row.round;
    if !row.self_described {
        let game = lookup(round.game_id)?;
        round.game_slug = game.slug;
        round.game_type = game.game_type;
    }
    Some(RoundEvent { kind, round })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: &str = "dbserver1.public.rounds";

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../tests/fixtures/debezium/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn decode_fixture(name: &str) -> Result<Decoded, DecodeError> {
        decode(SUBJECT, &fixture(name), "dbserver1")
    }

    fn expected_insert() -> Round {
        Round {
            round_id: 3,
            game_id: 7,
            game_slug: "crash-classic".into(),
            game_type: "crash".into(),
            finished_at: "2026-11-21T05:01:02.500000Z".into(),
            extras: r#"{"seed": "b7c9", "players": 9, "multiplier": 1.07}"#.into(),
            timestamp: 1_795_239_260_008,
        }
    }

    #[test]
    fn insert_becomes_a_new_round() {
        let Decoded::Round { kind, row } = decode_fixture("rounds-insert.json").unwrap() else {
            panic!()
        };
        assert_eq!(kind, EventKind::New);
        assert!(row.self_described);
        assert_eq!(row.round, expected_insert());
    }

    #[test]
    fn schema_envelope_decodes_the_same() {
        let Decoded::Round { kind, row } =
            decode_fixture("rounds-insert-with-schema.json").unwrap()
        else {
            panic!()
        };
        assert_eq!(kind, EventKind::New);
        assert_eq!(
            row.round,
            Round {
                timestamp: 1_795_239_136_370,
                ..expected_insert()
            }
        );
    }

    #[test]
    fn snapshot_read_is_backfill() {
        let Decoded::Round { kind, row } = decode_fixture("rounds-snapshot-read.json").unwrap()
        else {
            panic!()
        };
        assert_eq!(kind, EventKind::Backfill);
        assert_eq!(row.round.round_id, 1);
    }

    #[test]
    fn update_with_public_change_is_an_update() {
        let Decoded::Round { kind, row } = decode_fixture("rounds-update.json").unwrap() else {
            panic!()
        };
        assert_eq!(kind, EventKind::Update);
        assert!(row.round.extras.contains("settled"));
    }

    #[test]
    fn update_without_public_change_is_skipped() {
        let mut value: Value = serde_json::from_slice(&fixture("rounds-update.json")).unwrap();
        value["after"] = value["before"].clone();
        value["after"]["created_at"] = "2030-01-01T00:00:00Z".into();
        let bytes = serde_json::to_vec(&value).unwrap();
        assert_eq!(
            decode(SUBJECT, &bytes, "dbserver1"),
            Ok(Decoded::Skip("update_without_public_change"))
        );
    }

    #[test]
    fn delete_heartbeat_and_strangers_are_skipped() {
        assert_eq!(
            decode_fixture("rounds-delete.json"),
            Ok(Decoded::Skip("delete"))
        );
        let heartbeat = fixture("heartbeat.json");
        assert_eq!(
            decode("__debezium-heartbeat.dbserver1", &heartbeat, "dbserver1"),
            Ok(Decoded::Skip("heartbeat"))
        );
        assert_eq!(
            decode("dbserver1.transaction", b"{}", "dbserver1"),
            Ok(Decoded::Skip("transaction"))
        );
        assert_eq!(
            decode("other.public.rounds", b"{}", "dbserver1"),
            Ok(Decoded::Skip("unknown_subject"))
        );
        assert_eq!(
            decode("dbserver1.public.players", b"{}", "dbserver1"),
            Ok(Decoded::Skip("unknown_table"))
        );
        assert_eq!(
            decode(SUBJECT, b"", "dbserver1"),
            Ok(Decoded::Skip("tombstone"))
        );
        assert_eq!(
            decode(SUBJECT, b"null", "dbserver1"),
            Ok(Decoded::Skip("tombstone"))
        );
    }

    #[test]
    fn a_delete_with_placeholder_defaults_is_never_routed() {
        // REPLICA IDENTITY DEFAULT: `before` holds the key and placeholders.
        let delete = r#"{"before":{"id":2,"game_id":0,"game_slug":"","game_type":"","finished_at":"1970-01-01T00:00:00Z","extras":null},"after":null,"source":{"ts_ms":1},"op":"d"}"#;
        assert_eq!(
            decode(SUBJECT, delete.as_bytes(), "dbserver1"),
            Ok(Decoded::Skip("delete"))
        );
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let insert = String::from_utf8(fixture("rounds-insert.json")).unwrap();
        let cases = [
            insert[..insert.len() / 2].to_string(),
            insert.replace(r#""op":"c""#, r#""op":"x""#),
            insert.replace(r#""after":{"#, r#""after_":{"#),
            insert.replace(r#""id":3"#, r#""id":"3""#),
            insert.replace(r#""ts_ms":1795239260008"#, r#""ts_ms":"soon""#),
            "[]".to_string(),
        ];
        for case in cases {
            assert!(
                decode(SUBJECT, case.as_bytes(), "dbserver1").is_err(),
                "{case}"
            );
        }
    }

    #[test]
    fn games_rows_feed_the_registry_and_enrich_rounds() {
        let game = br#"{"before":null,"after":{"id":7,"slug":"crash-classic","type":"crash","name":"Crash"},"source":{"ts_ms":1},"op":"r"}"#;
        let Decoded::Game(info) = decode("dbserver1.public.games", game, "dbserver1").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            info,
            GameInfo {
                id: 7,
                slug: "crash-classic".into(),
                game_type: "crash".into()
            }
        );

        let insert = String::from_utf8(fixture("rounds-insert.json")).unwrap();
        let bare = insert.replace(r#""game_slug":"crash-classic","game_type":"crash","#, "");
        let Decoded::Round { kind, row } = decode(SUBJECT, bare.as_bytes(), "dbserver1").unwrap()
        else {
            panic!()
        };
        assert!(!row.self_described);
        assert_eq!(enrich(kind, row.clone(), |_| None), None);
        let event = enrich(kind, row, |id| (id == 7).then(|| info.clone())).unwrap();
        assert_eq!(event.round, expected_insert());
    }

    #[test]
    fn timestamp_without_zone_is_converted() {
        let insert = String::from_utf8(fixture("rounds-insert.json")).unwrap();
        let micros = insert.replace(
            r#""finished_at":"2026-11-21T05:01:02.500000Z""#,
            r#""finished_at":1795237262500000"#,
        );
        let Decoded::Round { row, .. } = decode(SUBJECT, micros.as_bytes(), "dbserver1").unwrap()
        else {
            panic!()
        };
        assert_eq!(row.round.finished_at, "2026-11-21T05:01:02.5Z");
    }
}
