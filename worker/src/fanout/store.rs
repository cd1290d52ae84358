//! The stream object's decisions, pure: what a stored event changes and
//! sends (the idempotency rules), and what a client resuming from a
//! position missed (the backlog planner). `objects::stream` reads and
//! writes SQLite around them.

use serde::Deserialize;
use shared::cursor::Position;
use shared::sse::{EVENT_MESSAGE, EVENT_UPDATE};
use shared::{EventKind, Round};

/// A round as the stream object stores it: its place in arrival order
/// (`seq`), its id and its JSON.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StoredRound {
    pub(crate) seq: i64,
    pub(crate) round_id: i64,
    pub(crate) json: String,
}

/// An update sent on the stream: the round after it, and the stream's newest
/// round (`after_seq`) when it was sent.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StoredUpdate {
    pub(crate) useq: i64,
    pub(crate) json: String,
    pub(crate) after_seq: i64,
}

/// What a client resuming just after `anchor` (or after an update sent while
/// it was the newest round) missed, in the order the stream sent it: each
/// round after the anchor as a `message` (with its current body), and each
/// update after the position, placed after the round that was newest when
/// it was sent. `updates` are those after the position, by number.
pub(crate) fn backlog<'a>(
    anchor: &'a StoredRound,
    rows: &'a [StoredRound],
    updates: &'a [StoredUpdate],
) -> Vec<(&'static str, Position, &'a str)> {
    let mut out = Vec::with_capacity(rows.len() + updates.len());
    let mut pending = updates.iter().peekable();
    let mut head = anchor;
    for row in rows {
        while let Some(update) = pending.next_if(|u| u.after_seq < row.seq) {
            out.push(update_entry(head, update));
        }
        out.push((
            EVENT_MESSAGE,
            Position::round(row.round_id),
            row.json.as_str(),
        ));
        head = row;
    }
    for update in pending {
        out.push(update_entry(head, update));
    }
    out
}

/// What a client opening with its stream's last rounds gets (`rewind=N`):
/// `rows`, the last rounds by arrival in order, each as a `message` with its
/// current body, and the updates sent since the first of them arrived,
/// placed as a resume would place them. Exactly what a client resuming
/// from just before the first round would get, minus the updates sent
/// before it arrived (they correct older rounds, which the client does not
/// hold); so its ids are the usual ones, and a resume from any of them
/// continues exactly.
pub(crate) fn rewind<'a>(
    rows: &'a [StoredRound],
    updates: &'a [StoredUpdate],
) -> Vec<(&'static str, Position, &'a str)> {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    let since = updates
        .iter()
        .position(|u| u.after_seq >= first.seq)
        .unwrap_or(updates.len());
    let updates = updates.get(since..).unwrap_or_default();
    // Updates are logged in order, so those after the first round's
    // arrival are a tail; each is placed after the round newest then.
    let mut out = backlog(first, rows.get(1..).unwrap_or_default(), updates);
    out.insert(
        0,
        (
            EVENT_MESSAGE,
            Position::round(first.round_id),
            first.json.as_str(),
        ),
    );
    out
}

fn update_entry<'a>(
    head: &StoredRound,
    update: &'a StoredUpdate,
) -> (&'static str, Position, &'a str) {
    let position = Position {
        round: head.round_id,
        update: Some(update.useq),
    };
    (EVENT_UPDATE, position, update.json.as_str())
}

/// Whether `update` is older, by commit time, than the stored `row`: an
/// update replayed after a later one must not restore the stale value.
pub(crate) fn is_stale(update: &Round, row: &StoredRound) -> bool {
    serde_json::from_str::<Round>(&row.json).is_ok_and(|stored| update.timestamp < stored.timestamp)
}

/// What storing one event does, decided from what the stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Nothing changes and nothing is sent: a replay (the same body, a
    /// replayed insert of a known id, an id trimmed long ago) or an update
    /// older, by commit time, than what is held.
    Duplicate,
    /// A new round: stored, and sent as `event` (`None`: a backfill,
    /// stored silently).
    Insert {
        /// The SSE event it is sent as.
        event: Option<&'static str>,
    },
    /// A correction of a stored round: its body replaced, the update
    /// logged and sent as `update`.
    Correct,
    /// A correction of a round trimmed from the history: not stored as a
    /// round (it is gone), but logged and sent as `update`, since clients
    /// may still show it.
    CorrectTrimmed,
}

/// The idempotency rules of a store, for one event of `kind` carrying
/// `round` (as `json`): `known` is the stored round of that id, if any;
/// `watermark` the highest id ever trimmed; `last_logged` reads the last
/// update logged for the id (asked only for a correction of a trimmed
/// round). Idempotency so reaches past the kept history: a replay of any
/// event changes nothing and sends nothing.
pub(crate) fn decide<E>(
    kind: EventKind,
    round: &Round,
    json: &str,
    known: Option<&StoredRound>,
    watermark: Option<i64>,
    last_logged: impl FnOnce() -> Result<Option<StoredRound>, E>,
) -> Result<Stored, E> {
    let trimmed = watermark.is_some_and(|w| round.round_id <= w);
    Ok(match (kind, known) {
        (_, Some(row)) if row.json == json => Stored::Duplicate,
        (EventKind::Update, Some(row)) if is_stale(round, row) => Stored::Duplicate,
        (EventKind::Update, Some(_)) => Stored::Correct,
        // A different body under a known id is a replayed insert: the
        // stored one wins, nothing is sent twice.
        (_, Some(_)) => Stored::Duplicate,
        // The update log tells a replayed correction from news.
        (EventKind::Update, None) if trimmed => match last_logged()? {
            Some(logged) if logged.json == json || is_stale(round, &logged) => Stored::Duplicate,
            _ => Stored::CorrectTrimmed,
        },
        (_, None) if trimmed => Stored::Duplicate,
        (kind, None) => Stored::Insert {
            event: match kind {
                EventKind::New => Some(EVENT_MESSAGE),
                EventKind::Update => Some(EVENT_UPDATE),
                EventKind::Backfill => None,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, round_id: i64) -> StoredRound {
        StoredRound {
            seq,
            round_id,
            json: format!("r{round_id}"),
        }
    }

    fn update(useq: i64, after_seq: i64, body: &str) -> StoredUpdate {
        StoredUpdate {
            useq,
            json: body.into(),
            after_seq,
        }
    }

    #[test]
    fn a_backlog_interleaves_updates_after_the_round_that_was_newest() {
        let anchor = row(1, 10);
        let rows = [row(2, 11), row(3, 12)];
        // u5 was sent while round 10 was newest, u6 after 11, u7 and u8 after 12.
        let updates = [
            update(5, 1, "a"),
            update(6, 2, "b"),
            update(7, 3, "c"),
            update(8, 3, "d"),
        ];
        let got: Vec<(String, String, String)> = backlog(&anchor, &rows, &updates)
            .into_iter()
            .map(|(e, p, j)| (e.to_string(), p.to_string(), j.to_string()))
            .collect();
        let want = [
            ("update", "10.5", "a"),
            ("message", "11", "r11"),
            ("update", "11.6", "b"),
            ("message", "12", "r12"),
            ("update", "12.7", "c"),
            ("update", "12.8", "d"),
        ]
        .map(|(e, p, j)| (e.to_string(), p.to_string(), j.to_string()));
        assert_eq!(got, want);
        assert!(backlog(&anchor, &[], &[]).is_empty());
    }

    #[test]
    fn a_rewind_is_its_rounds_and_the_updates_since_the_first_arrived() {
        // Rounds 10..=13 arrived as seq 1..=4; a rewind of 3 holds 11, 12, 13.
        let rows = [row(2, 11), row(3, 12), row(4, 13)];
        // u5 corrected an older round while 10 was newest: not the client's.
        let updates = [
            update(5, 1, "old"),
            update(6, 2, "a"),
            update(7, 2, "b"),
            update(8, 4, "c"),
        ];
        let got: Vec<(String, String, String)> = rewind(&rows, &updates)
            .into_iter()
            .map(|(e, p, j)| (e.to_string(), p.to_string(), j.to_string()))
            .collect();
        let want = [
            ("message", "11", "r11"),
            ("update", "11.6", "a"),
            ("update", "11.7", "b"),
            ("message", "12", "r12"),
            ("message", "13", "r13"),
            ("update", "13.8", "c"),
        ]
        .map(|(e, p, j)| (e.to_string(), p.to_string(), j.to_string()));
        assert_eq!(got, want);
        // What follows any of these ids is what a resume from it gets.
        let resumed: Vec<String> = backlog(&rows[0], &rows[1..], &updates[1..])
            .into_iter()
            .map(|(_, p, _)| p.to_string())
            .collect();
        assert_eq!(resumed, ["11.6", "11.7", "12", "13", "13.8"]);
        assert!(rewind(&[], &updates).is_empty());
        assert_eq!(rewind(&rows[..1], &[]).len(), 1);
    }

    fn round_at(round_id: i64, timestamp: i64, multiplier: &str) -> (Round, String) {
        let round = Round {
            round_id,
            game_id: 1,
            game_slug: "crash".into(),
            game_type: "multiplier".into(),
            finished_at: "2026-12-03T08:00:00Z".into(),
            extras: format!(r#"{{"multiplier":{multiplier}}}"#),
            timestamp,
        };
        let json = serde_json::to_string(&round).expect("json");
        (round, json)
    }

    fn stored(seq: i64, json: &str) -> StoredRound {
        StoredRound {
            seq,
            round_id: 7,
            json: json.into(),
        }
    }

    fn never() -> Result<Option<StoredRound>, ()> {
        panic!("the update log is read only for corrections of trimmed rounds")
    }

    #[test]
    fn replays_change_nothing_and_news_is_sent_once() {
        use EventKind::{Backfill, New, Update};
        let (round, json) = round_at(7, 1000, "2.0");
        let (older, older_json) = round_at(7, 900, "1.0");
        let (newer, newer_json) = round_at(7, 1100, "3.0");
        let held = stored(1, &json);
        let decide = |kind, round: &Round, json: &str, known, watermark| {
            decide(kind, round, json, known, watermark, never)
        };
        // Unknown ids are news, by kind.
        assert_eq!(
            decide(New, &round, &json, None, None),
            Ok(Stored::Insert {
                event: Some(EVENT_MESSAGE)
            })
        );
        assert_eq!(
            decide(Update, &round, &json, None, None),
            Ok(Stored::Insert {
                event: Some(EVENT_UPDATE)
            })
        );
        assert_eq!(
            decide(Backfill, &round, &json, None, None),
            Ok(Stored::Insert { event: None })
        );
        // The same body again, of any kind, is a replay.
        for kind in [New, Update, Backfill] {
            assert_eq!(
                decide(kind, &round, &json, Some(&held), None),
                Ok(Stored::Duplicate)
            );
        }
        // A newer correction is stored; an older one is stale.
        assert_eq!(
            decide(Update, &newer, &newer_json, Some(&held), None),
            Ok(Stored::Correct)
        );
        assert_eq!(
            decide(Update, &older, &older_json, Some(&held), None),
            Ok(Stored::Duplicate)
        );
        // A different body inserted under a known id: the stored one wins.
        assert_eq!(
            decide(New, &newer, &newer_json, Some(&held), None),
            Ok(Stored::Duplicate)
        );
        // Trimmed ids: inserts are replays, ...
        assert_eq!(
            decide(New, &round, &json, None, Some(7)),
            Ok(Stored::Duplicate)
        );
        assert_eq!(
            decide(New, &round, &json, None, Some(6)),
            Ok(Stored::Insert {
                event: Some(EVENT_MESSAGE)
            })
        );
    }

    #[test]
    fn corrections_of_trimmed_rounds_are_told_apart_by_the_update_log() {
        let (round, json) = round_at(7, 1000, "2.0");
        let (older, older_json) = round_at(7, 900, "1.0");
        let logged = |json: &str| -> Result<Option<StoredRound>, ()> { Ok(Some(stored(3, json))) };
        let trimmed = |round: &Round, json: &str, log: Result<Option<StoredRound>, ()>| {
            decide(EventKind::Update, round, json, None, Some(9), || log)
        };
        assert_eq!(
            trimmed(&round, &json, Ok(None)),
            Ok(Stored::CorrectTrimmed),
            "news"
        );
        assert_eq!(
            trimmed(&round, &json, logged(&json)),
            Ok(Stored::Duplicate),
            "replayed"
        );
        assert_eq!(
            trimmed(&older, &older_json, logged(&json)),
            Ok(Stored::Duplicate),
            "stale"
        );
        assert_eq!(
            trimmed(&round, &json, logged(&older_json)),
            Ok(Stored::CorrectTrimmed)
        );
        assert_eq!(
            trimmed(&round, &json, Err(())),
            Err(()),
            "a failed read is the caller's"
        );
    }
}
