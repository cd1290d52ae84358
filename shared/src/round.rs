//! The round (docs/protocol.md#the-round) and the batch of round events ingest posts to the
//! edge (docs/protocol.md#ingest-to-edge).

use serde::{Deserialize, Serialize};

/// One finished game round, exactly as clients receive it in SSE `data:` lines
/// and REST bodies.
///
/// Field order is the serialisation order, and existing clients parse this
/// shape: fields may be added at the end, never removed or retyped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    /// `rounds.id` in the operator's database; also the SSE `id:` of the round.
    pub round_id: i64,
    /// `rounds.game_id`.
    pub game_id: i64,
    /// The game's slug (`games.slug`), e.g. `crash`.
    pub game_slug: String,
    /// The game's type (`games.type`), e.g. `multiplier`.
    pub game_type: String,
    /// When the round finished, RFC 3339 exactly as Debezium encoded it.
    pub finished_at: String,
    /// The JSONB `extras` column as a JSON *string*: clients `JSON.parse` it.
    pub extras: String,
    /// Milliseconds since the epoch of the database commit (`source.ts_ms`),
    /// so a client can compute end-to-end latency.
    pub timestamp: i64,
}

/// What a round event means for a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A round just committed: stored and broadcast as `event: message`.
    New,
    /// A round read by a Debezium snapshot: stored (and becomes the latest if it
    /// is newer) but never broadcast as a live message.
    Backfill,
    /// A stored round whose public fields changed: broadcast as `event: update`.
    Update,
}

/// One entry of an ingest batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundEvent {
    /// What happened to the round.
    pub kind: EventKind,
    /// The round after the change.
    pub round: Round,
}

/// The body of `POST /internal/rounds`: `{"events":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IngestBatch {
    /// Events in commit order per game.
    pub events: Vec<RoundEvent>,
}

/// The edge's answer to an accepted batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IngestReply {
    /// Events that changed stored state (new rounds, real updates).
    pub stored: u32,
    /// Events the edge already had: a replay stores and sends nothing twice.
    pub duplicates: u32,
}

impl std::ops::AddAssign for IngestReply {
    fn add_assign(&mut self, other: Self) {
        self.stored += other.stored;
        self.duplicates += other.duplicates;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Round {
        Round {
            round_id: 512,
            game_id: 1,
            game_slug: "crash".into(),
            game_type: "multiplier".into(),
            finished_at: "2026-01-17T03:45:42.735266Z".into(),
            extras: "{\"point\": \"11.72\"}".into(),
            timestamp: 1_768_621_542_123,
        }
    }

    #[test]
    fn round_serialises_to_the_exact_contract_shape() {
        let json = serde_json::to_string(&sample()).unwrap();
        assert_eq!(
            json,
            r#"{"round_id":512,"game_id":1,"game_slug":"crash","game_type":"multiplier","finished_at":"2026-01-17T03:45:42.735266Z","extras":"{\"point\": \"11.72\"}","timestamp":1768621542123}"#
        );
    }

    #[test]
    fn round_round_trips_and_ignores_unknown_fields() {
        let json = serde_json::to_string(&sample()).unwrap();
        assert_eq!(serde_json::from_str::<Round>(&json).unwrap(), sample());
        let with_extra = json.replacen('{', r#"{"future_field":true,"#, 1);
        assert_eq!(
            serde_json::from_str::<Round>(&with_extra).unwrap(),
            sample()
        );
    }

    #[test]
    fn batch_round_trips_with_lowercase_kinds() {
        let batch = IngestBatch {
            events: vec![
                RoundEvent {
                    kind: EventKind::New,
                    round: sample(),
                },
                RoundEvent {
                    kind: EventKind::Backfill,
                    round: sample(),
                },
                RoundEvent {
                    kind: EventKind::Update,
                    round: sample(),
                },
            ],
        };
        let json = serde_json::to_string(&batch).unwrap();
        assert!(json.starts_with(r#"{"events":[{"kind":"new","round":{"round_id":512"#));
        assert!(json.contains(r#""kind":"backfill""#) && json.contains(r#""kind":"update""#));
        assert_eq!(serde_json::from_str::<IngestBatch>(&json).unwrap(), batch);
    }

    #[test]
    fn batch_with_unknown_kind_or_missing_field_is_rejected() {
        let bad_kind = r#"{"events":[{"kind":"delete","round":{}}]}"#;
        assert!(serde_json::from_str::<IngestBatch>(bad_kind).is_err());
        let missing = r#"{"events":[{"kind":"new","round":{"round_id":1}}]}"#;
        assert!(serde_json::from_str::<IngestBatch>(missing).is_err());
    }

    #[test]
    fn replies_add_up() {
        let mut total = IngestReply {
            stored: 1,
            duplicates: 2,
        };
        total += IngestReply {
            stored: 3,
            duplicates: 4,
        };
        assert_eq!(
            total,
            IngestReply {
                stored: 4,
                duplicates: 6
            }
        );
    }
}
