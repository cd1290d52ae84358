//! A stream object's SQLite history: the tables, and every read and write
//! of them. `objects::stream` decides with `fanout::store` and writes
//! through here.
//!
//! Tables: `rounds` (arrival order `seq`, the last `HISTORY_LIMIT`),
//! `updates` (every update sent, with the newest round's `seq` then: its
//! SSE id is `<that round>.<useq>`), `meta` (`watermark`: the highest round
//! id ever trimmed; `push`: the message counter, see `objects::relays`), and
//! the relays tables, and the figures (`series`, `totals`: see [`figures`]).
//! They are created by the first store, so asking about a game that never
//! had a round writes nothing.

mod figures;

use std::cell::Cell;

use serde::Deserialize;
use shared::cursor::Position;
use shared::sse::{self, EVENT_INITIAL, EVENT_RESET};
use worker::{Result, SqlStorage, SqlStorageValue, State};

use crate::fanout::message::{Outbox, Start};
use crate::fanout::store::{self, StoredRound, StoredUpdate, backlog};

/// The relays table, created with the stream object's other tables.
const RELAYS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS relays (
    idx INTEGER PRIMARY KEY,
    sockets INTEGER NOT NULL,
    placed_at REAL NOT NULL,
    active INTEGER NOT NULL
)";

/// What each relay's sockets serve (see `fanout::viewers`), created with
/// the stream object's other tables, so the stream's total outlives the
/// object's eviction.
const RELAY_VIEWERS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS relay_viewers (
    idx INTEGER PRIMARY KEY,
    viewers INTEGER NOT NULL
)";

/// Whether the table `name` exists.
pub(crate) fn table_exists(sql: &SqlStorage, name: &str) -> Result<bool> {
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let rows: Vec<Count> = sql
        .exec(
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?",
            vec![name.into()],
        )?
        .to_array()?;
    Ok(rows.first().is_some_and(|c| c.n > 0))
}

/// The largest integer a JavaScript number holds exactly (2^53 - 1).
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// The history of one stream object.
pub(crate) struct History {
    sql: SqlStorage,
    /// The tables are known to exist.
    tables: Cell<bool>,
    /// Series rows up to a day before this minute are already deleted.
    trimmed_before: Cell<i64>,
}

impl History {
    /// The history kept in `state`'s SQLite.
    pub(crate) fn new(state: &State) -> Self {
        Self {
            sql: state.storage().sql(),
            tables: Cell::new(false),
            trimmed_before: Cell::new(i64::MIN),
        }
    }

    /// Whether the tables exist (they do once anything was stored).
    pub(crate) fn has_tables(&self) -> Result<bool> {
        if self.tables.get() {
            return Ok(true);
        }
        let exists = table_exists(&self.sql, "rounds")?;
        if exists {
            // An object stored before later tables existed gets them now.
            self.create_tables()?;
        }
        Ok(exists)
    }

    /// Creates the tables; idempotent.
    pub(crate) fn create_tables(&self) -> Result<()> {
        if self.tables.get() {
            return Ok(());
        }
        let sql = &self.sql;
        sql.exec(
            "CREATE TABLE IF NOT EXISTS rounds (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                round_id INTEGER NOT NULL UNIQUE,
                json TEXT NOT NULL
            )",
            None,
        )?;
        // Every update of a stored round, in the order sent: a client that
        // resumes gets the ones it missed, and none twice.
        sql.exec(
            "CREATE TABLE IF NOT EXISTS updates (
                useq INTEGER PRIMARY KEY AUTOINCREMENT,
                round_id INTEGER NOT NULL,
                json TEXT NOT NULL,
                after_seq INTEGER NOT NULL
            )",
            None,
        )?;
        // `watermark`: the highest round id ever trimmed from the history.
        sql.exec(
            "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            None,
        )?;
        sql.exec(RELAYS_SCHEMA, None)?;
        sql.exec(RELAY_VIEWERS_SCHEMA, None)?;
        sql.exec(figures::SERIES_SCHEMA, None)?;
        sql.exec(figures::TOTALS_SCHEMA, None)?;
        self.tables.set(true);
        Ok(())
    }

    /// Rows of `query`; none while nothing was ever stored.
    fn sql_rows(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<Vec<StoredRound>> {
        if !self.has_tables()? {
            return Ok(Vec::new());
        }
        self.sql.exec(query, bindings)?.to_array()
    }

    /// The highest round id trimmed from the history, if any was.
    pub(crate) fn watermark(&self) -> Result<Option<i64>> {
        #[derive(Deserialize)]
        struct Value {
            value: i64,
        }
        let rows: Vec<Value> = self
            .sql
            .exec("SELECT value FROM meta WHERE name = 'watermark'", None)?
            .to_array()?;
        Ok(rows.first().map(|v| v.value))
    }

    /// The stream's position: the newest round by arrival, and the last
    /// update sent while it was the newest.
    pub(crate) fn head(&self) -> Result<Option<Position>> {
        #[derive(Deserialize)]
        struct Head {
            round_id: i64,
            useq: Option<i64>,
        }
        if !self.has_tables()? {
            return Ok(None);
        }
        let rows: Vec<Head> = self
            .sql
            .exec(
                "SELECT r.round_id AS round_id,
                   (SELECT MAX(u.useq) FROM updates u WHERE u.after_seq = r.seq) AS useq
                 FROM rounds r ORDER BY r.seq DESC LIMIT 1",
                None,
            )?
            .to_array()?;
        Ok(rows.first().map(|h| Position {
            round: h.round_id,
            update: h.useq,
        }))
    }

    /// The `initial` frame a new client gets: the latest round's; empty
    /// while the stream has none.
    pub(crate) fn initial_frame(&self) -> Result<Vec<u8>> {
        match self.latest()? {
            Some(latest) => frame(EVENT_INITIAL, &latest),
            None => Ok(Vec::new()),
        }
    }

    pub(crate) fn latest(&self) -> Result<Option<StoredRound>> {
        Ok(self
            .sql_rows(
                "SELECT seq, round_id, json FROM rounds ORDER BY round_id DESC LIMIT 1",
                vec![],
            )?
            .pop())
    }

    /// Every round and update stored, in the order sent: the first message
    /// of a feed that last knew the stream without any round.
    pub(crate) fn everything(&self) -> Result<Outbox> {
        let mut out = Outbox::default();
        let rows = self.sql_rows(
            "SELECT seq, round_id, json FROM rounds ORDER BY seq",
            vec![],
        )?;
        if rows.is_empty() {
            return Ok(out);
        }
        let updates: Vec<StoredUpdate> = self
            .sql
            .exec(
                "SELECT useq, json, after_seq FROM updates ORDER BY useq",
                None,
            )?
            .to_array()?;
        // No round came before the first: a virtual anchor before it.
        let anchor = StoredRound {
            seq: 0,
            round_id: 0,
            json: String::new(),
        };
        extend_backlog(&mut out, &anchor, &rows, &updates)?;
        Ok(out)
    }

    /// What a client must see first: the latest round as `initial`; or
    /// its last rounds (a rewind); or, resuming, everything after its
    /// `Last-Event-ID`; or, when that id is no longer held, a `reset` and
    /// the latest round.
    pub(crate) fn opening(&self, name: &str, start: Start) -> Result<Outbox> {
        let mut out = Outbox::default();
        match start {
            Start::Latest => self.push_initial(&mut out)?,
            Start::Rewind(n) => self.rewind(&mut out, n)?,
            Start::After(position) => match self.find(position.round)? {
                Some(anchor) => self.resume(&mut out, &anchor, position.update)?,
                None => {
                    // No `id:`: the client keeps its Last-Event-ID until the
                    // `initial` that follows replaces it.
                    let data = serde_json::json!({ "stream": name }).to_string();
                    out.extend(
                        sse::Frame::new()
                            .event(EVENT_RESET)
                            .map_err(to_err)?
                            .data(&data)
                            .finish(),
                        None,
                    );
                    self.push_initial(&mut out)?;
                }
            },
        }
        Ok(out)
    }

    fn push_initial(&self, out: &mut Outbox) -> Result<()> {
        if let Some(latest) = self.latest()? {
            out.extend(frame(EVENT_INITIAL, &latest)?, None);
        }
        Ok(())
    }

    /// Every round after `anchor` and every update after the position
    /// (`anchor`, `update`), as the stream sent them.
    fn resume(&self, out: &mut Outbox, anchor: &StoredRound, update: Option<i64>) -> Result<()> {
        let rows = self.sql_rows(
            "SELECT seq, round_id, json FROM rounds WHERE seq > ? ORDER BY seq",
            vec![anchor.seq.into()],
        )?;
        let updates: Vec<StoredUpdate> = self
            .sql
            .exec(
                "SELECT useq, json, after_seq FROM updates
                 WHERE after_seq > ? OR (after_seq = ? AND useq > ?) ORDER BY useq",
                vec![
                    anchor.seq.into(),
                    anchor.seq.into(),
                    update.unwrap_or(0).into(),
                ],
            )?
            .to_array()?;
        extend_backlog(out, anchor, &rows, &updates)
    }

    /// A rewind of the last `n` rounds by arrival (see [`store::rewind`]).
    fn rewind(&self, out: &mut Outbox, n: u32) -> Result<()> {
        let mut rows = self.sql_rows(
            "SELECT seq, round_id, json FROM rounds ORDER BY seq DESC LIMIT ?",
            vec![i64::from(n).into()],
        )?;
        rows.reverse();
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let updates: Vec<StoredUpdate> = self
            .sql
            .exec(
                "SELECT useq, json, after_seq FROM updates WHERE after_seq >= ? ORDER BY useq",
                vec![first.seq.into()],
            )?
            .to_array()?;
        extend_frames(out, store::rewind(&rows, &updates))
    }

    pub(crate) fn count(&self) -> Result<i64> {
        #[derive(Deserialize)]
        struct Count {
            n: i64,
        }
        if !self.has_tables()? {
            return Ok(0);
        }
        let rows: Vec<Count> = self
            .sql
            .exec("SELECT COUNT(*) AS n FROM rounds", None)?
            .to_array()?;
        Ok(rows.first().map_or(0, |c| c.n))
    }

    /// Up to `limit` rounds with ids below `before`, newest first, as a JSON
    /// array assembled from the stored JSON (no re-serialisation).
    pub(crate) fn rounds(&self, limit: u32, before: i64) -> Result<String> {
        let limit = i64::from(limit.clamp(1, 1000));
        // No bound past JavaScript's integers (`before` absent is i64::MAX):
        // such a value would cross into SQLite inexactly, and with a warning.
        let rows = if before > MAX_SAFE_INTEGER {
            self.sql_rows(
                "SELECT seq, round_id, json FROM rounds ORDER BY round_id DESC LIMIT ?",
                vec![limit.into()],
            )?
        } else {
            self.sql_rows(
                "SELECT seq, round_id, json FROM rounds WHERE round_id < ? ORDER BY round_id DESC LIMIT ?",
                vec![before.into(), limit.into()],
            )?
        };
        let mut body = String::from("[");
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&row.json);
        }
        body.push(']');
        Ok(body)
    }

    /// The last update logged for `round_id`, if the log still holds one.
    pub(crate) fn last_logged_update(&self, round_id: i64) -> Result<Option<StoredRound>> {
        self.sql_rows(
            "SELECT useq AS seq, round_id, json FROM updates WHERE round_id = ? ORDER BY useq DESC LIMIT 1",
            vec![round_id.into()],
        )
        .map(|mut rows| rows.pop())
    }

    /// Logs an update of a stored round; returns its position: the stream's
    /// newest round and the update's number.
    pub(crate) fn log_update(&self, round_id: i64, json: &str) -> Result<Position> {
        #[derive(Deserialize)]
        struct Logged {
            useq: i64,
            head: i64,
        }
        let sql = &self.sql;
        sql.exec(
            "INSERT INTO updates (round_id, json, after_seq) VALUES (?, ?, (SELECT MAX(seq) FROM rounds))",
            vec![round_id.into(), json.into()],
        )?;
        let logged: Vec<Logged> = sql
            .exec(
                "SELECT u.useq AS useq, r.round_id AS head FROM updates u
                 JOIN rounds r ON r.seq = u.after_seq ORDER BY u.useq DESC LIMIT 1",
                None,
            )?
            .to_array()?;
        let logged = logged
            .first()
            .ok_or_else(|| worker::Error::RustError("update not logged".into()))?;
        Ok(Position {
            round: logged.head,
            update: Some(logged.useq),
        })
    }

    /// Keeps the newest `limit` rounds, raising the watermark over the
    /// trimmed ones first.
    pub(crate) fn trim(&self, limit: u32) -> Result<()> {
        #[derive(Deserialize)]
        struct Highest {
            id: Option<i64>,
        }
        let sql = &self.sql;
        let cut = "seq <= (SELECT MAX(seq) FROM rounds) - ?";
        let limit = i64::from(limit);
        let highest: Vec<Highest> = sql
            .exec(
                &format!("SELECT MAX(round_id) AS id FROM rounds WHERE {cut}"),
                vec![limit.into()],
            )?
            .to_array()?;
        let Some(id) = highest.first().and_then(|h| h.id) else {
            return Ok(());
        };
        sql.exec(
            "INSERT INTO meta (name, value) VALUES ('watermark', ?)
             ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)",
            vec![id.into()],
        )?;
        // Updates sent while a trimmed round was the newest: no resume can
        // reach them any more.
        sql.exec(
            &format!(
                "DELETE FROM updates WHERE after_seq <= (SELECT MAX(seq) FROM rounds WHERE {cut})"
            ),
            vec![limit.into()],
        )?;
        sql.exec(
            &format!("DELETE FROM rounds WHERE {cut}"),
            vec![limit.into()],
        )?;
        Ok(())
    }

    /// Stores a new round.
    pub(crate) fn insert(&self, round_id: i64, json: &str) -> Result<()> {
        self.sql.exec(
            "INSERT INTO rounds (round_id, json) VALUES (?, ?)",
            vec![round_id.into(), json.into()],
        )?;
        Ok(())
    }

    /// Replaces a stored round's body (a correction).
    pub(crate) fn replace(&self, round_id: i64, json: &str) -> Result<()> {
        self.sql.exec(
            "UPDATE rounds SET json = ? WHERE round_id = ?",
            vec![json.into(), round_id.into()],
        )?;
        Ok(())
    }

    /// The stored round `round_id`, if the history holds it.
    pub(crate) fn find(&self, round_id: i64) -> Result<Option<StoredRound>> {
        Ok(self
            .sql_rows(
                "SELECT seq, round_id, json FROM rounds WHERE round_id = ?",
                vec![round_id.into()],
            )?
            .pop())
    }
}

/// The frames of a [`backlog`], each with its position.
fn extend_backlog(
    out: &mut Outbox,
    anchor: &StoredRound,
    rows: &[StoredRound],
    updates: &[StoredUpdate],
) -> Result<()> {
    extend_frames(out, backlog(anchor, rows, updates))
}

/// Rounds and updates as frames, each with its position.
fn extend_frames(out: &mut Outbox, entries: Vec<(&str, Position, &str)>) -> Result<()> {
    for (event, id, json) in entries {
        out.extend(sse::round_frame(event, id, json).map_err(to_err)?, Some(id));
    }
    Ok(())
}

fn frame(event: &str, row: &StoredRound) -> Result<Vec<u8>> {
    sse::round_frame(event, row.round_id, &row.json).map_err(to_err)
}

/// An SSE frame that cannot be built is a bug of ours, not the client's.
pub(crate) fn to_err(err: sse::FrameError) -> worker::Error {
    worker::Error::RustError(err.to_string())
}
