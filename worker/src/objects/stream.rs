//! The Durable Object behind one stream: a game (`game:<slug>`) or a game type
//! (`type:<type>`).
//!
//! It keeps the stream's recent history in SQLite, stores ingest's events
//! idempotently by `round_id`, and fans frames out to the WebSockets of the
//! Worker's SSE bridges. Sockets are accepted through the Hibernation API and
//! the object holds no per-client state or timer, so it may be evicted between
//! rounds while every client stays connected.

// The `#[durable_object]` macro generates undocumented public glue.
#![allow(missing_docs)]

use std::cell::Cell;

use js_sys::Uint8Array;
use serde::Deserialize;
use shared::cursor::Position;
use shared::sse::{self, EVENT_INITIAL, EVENT_MESSAGE, EVENT_RESET, EVENT_UPDATE};
use shared::{EventKind, IngestReply, Round, RoundEvent};
use worker::{
    DurableObject, Env, Request, Response, Result, SqlStorageValue, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair, durable_object,
};

use crate::config::{StreamConfig, relay_capacity};
use crate::objects::{self, FeedResume, MessageHead, StreamCall};
use crate::relays::{self, Relays};

/// Tag of the SSE bridge sockets.
const SUBSCRIBER: &str = "sse";

/// One stream's Durable Object.
#[durable_object]
pub struct StreamObject {
    state: State,
    env: Env,
    /// Random per construction: tells an evicted-and-rebuilt object apart
    /// from one that stayed in memory (operations and tests).
    instance: String,
    /// The tables are known to exist.
    tables: Cell<bool>,
    /// Where subscribers past `RELAY_CAPACITY` go, and the pushes to them.
    relays: Relays,
    /// Openings served by this instance (most joins are served by the
    /// isolates' feeds instead; stats show how many were not).
    openings: Cell<u64>,
    /// Fault injection for tests (`ALLOW_FAULTS`, and
    /// `FAULT_SUBSCRIBE=hang-once`): the instance's first subscription is
    /// never answered, as from an object that stopped answering. Cleared
    /// once used.
    hang_subscribe: Cell<bool>,
}

#[derive(Deserialize)]
struct StoredRound {
    seq: i64,
    round_id: i64,
    json: String,
}

/// An update sent on the stream: the round after it, and the stream's newest
/// round (`after_seq`) when it was sent.
#[derive(Deserialize)]
struct StoredUpdate {
    useq: i64,
    json: String,
    after_seq: i64,
}

impl DurableObject for StreamObject {
    fn new(state: State, env: Env) -> Self {
        // Tables are created by the first store, not here: an object that a
        // client merely asked about (a mistyped game) writes nothing.
        let instance = format!("{:016x}", (js_sys::Math::random() * 2f64.powi(53)) as u64);
        Self {
            state,
            hang_subscribe: Cell::new(crate::config::fault(&env, "FAULT_SUBSCRIBE", "hang-once")),
            env,
            instance,
            tables: Cell::new(false),
            relays: Relays::default(),
            openings: Cell::new(0),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let (name, call) = match StreamCall::parse(&mut req).await {
            Ok(parsed) => parsed,
            Err((status, reason)) => return Response::error(reason, status),
        };
        match call {
            StreamCall::Subscribe { resume, full } => {
                if self.hang_subscribe.replace(false) {
                    futures_util::future::pending::<()>().await;
                }
                self.subscribe(&name, resume, full).await
            }
            StreamCall::Opening { resume } => {
                self.openings.set(self.openings.get() + 1);
                let opening = self.opening(&name, resume)?;
                let after = self.relays.counter(&self.state)?;
                objects::opening_response(after, opening.messages().flatten().copied().collect())
            }
            StreamCall::Latest => match self.latest()? {
                Some(row) => json_text(row.json),
                None => Response::error("no round yet", 404),
            },
            StreamCall::Rounds { limit, before } => self.history(limit, before),
            StreamCall::Disconnect => {
                // Every bridge ends its client's stream; browsers reconnect
                // and resume. For maintenance, and to test that path.
                let sockets = self.state.get_websockets_with_tag(SUBSCRIBER);
                for socket in &sockets {
                    let _ = socket.close(Some(1012), Some("stream restarting"));
                }
                let relayed = self.relays.disconnect(&self.env, &self.state, &name).await;
                Response::from_json(
                    &serde_json::json!({ "closed": sockets.len() as u64 + relayed }),
                )
            }
            StreamCall::Stats => {
                let local = self.state.get_websockets_with_tag(SUBSCRIBER).len() as u64;
                let relays = self.relays.stats(&self.env, &self.state, &name).await?;
                let relayed: u64 = relays.iter().map(|r| r.sockets).sum();
                Response::from_json(&serde_json::json!({
                    "sockets": local + relayed,
                    "local_sockets": local,
                    "relays": relays,
                    "instance": self.instance,
                    "openings": self.openings.get(),
                    "rounds": self.count()?,
                }))
            }
            StreamCall::Store(events) => {
                let reply = self.store(&name, &events).await?;
                Response::from_json(&reply)
            }
            StreamCall::RelayIdle { relay } => {
                self.relays
                    .idle(&self.env, &self.state, &name, relay)
                    .await?;
                Response::ok("")
            }
        }
    }

    async fn websocket_message(
        &self,
        _ws: WebSocket,
        _message: WebSocketIncomingMessage,
    ) -> Result<()> {
        // Bridges never speak; ignoring keeps a misbehaving peer harmless.
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        // Answer the close frame, or the bridge sees 1006.
        let _ = ws.close(Some(1000), Some("bye"));
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, err: worker::Error) -> Result<()> {
        worker::console_warn!("subscriber socket error: {err}");
        Ok(())
    }
}

impl StreamObject {
    /// Whether the tables exist (they do once anything was stored).
    fn has_tables(&self) -> Result<bool> {
        if self.tables.get() {
            return Ok(true);
        }
        #[derive(Deserialize)]
        struct Count {
            n: i64,
        }
        let rows: Vec<Count> = self
            .state
            .storage()
            .sql()
            .exec(
                "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'rounds'",
                None,
            )?
            .to_array()?;
        let exists = rows.first().is_some_and(|c| c.n > 0);
        if exists {
            // An object stored before later tables existed gets them now.
            self.create_tables()?;
        }
        Ok(exists)
    }

    /// Creates the tables; idempotent.
    fn create_tables(&self) -> Result<()> {
        if self.tables.get() {
            return Ok(());
        }
        let sql = self.state.storage().sql();
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
        sql.exec(relays::SCHEMA, None)?;
        self.tables.set(true);
        Ok(())
    }

    /// Rows of `query`; none while nothing was ever stored.
    fn sql_rows(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<Vec<StoredRound>> {
        if !self.has_tables()? {
            return Ok(Vec::new());
        }
        self.state.storage().sql().exec(query, bindings)?.to_array()
    }

    /// The highest round id trimmed from the history, if any was.
    fn watermark(&self) -> Result<Option<i64>> {
        #[derive(Deserialize)]
        struct Value {
            value: i64,
        }
        let rows: Vec<Value> = self
            .state
            .storage()
            .sql()
            .exec("SELECT value FROM meta WHERE name = 'watermark'", None)?
            .to_array()?;
        Ok(rows.first().map(|v| v.value))
    }

    /// The stream's position: the newest round by arrival, and the last
    /// update sent while it was the newest.
    fn head(&self) -> Result<Option<Position>> {
        #[derive(Deserialize)]
        struct Head {
            round_id: i64,
            useq: Option<i64>,
        }
        if !self.has_tables()? {
            return Ok(None);
        }
        let rows: Vec<Head> = self
            .state
            .storage()
            .sql()
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
    fn initial_frame(&self) -> Result<Vec<u8>> {
        match self.latest()? {
            Some(latest) => frame(EVENT_INITIAL, &latest),
            None => Ok(Vec::new()),
        }
    }

    fn latest(&self) -> Result<Option<StoredRound>> {
        Ok(self
            .sql_rows(
                "SELECT seq, round_id, json FROM rounds ORDER BY round_id DESC LIMIT 1",
                vec![],
            )?
            .pop())
    }

    /// Places a feed socket: here while the object holds fewer than
    /// `RELAY_CAPACITY` sockets, else on a relay. Either way its first
    /// message, numbered as the last message sent so far, holds what
    /// `resume` asks for; every message after it follows.
    async fn subscribe(
        &self,
        name: &str,
        resume: FeedResume,
        full: Option<u32>,
    ) -> Result<Response> {
        let capacity = relay_capacity(&self.env);
        let opening = match resume {
            FeedResume::Live => Outbox::default(),
            FeedResume::Start => self.everything()?,
            FeedResume::At(position) => self.opening(name, Some(position))?,
        };
        let after = self.relays.counter(&self.state)?;
        let head = self.head()?;
        let initial = self.initial_frame()?;
        if self.state.get_websockets_with_tag(SUBSCRIBER).len() < capacity {
            let pair = WebSocketPair::new()?;
            self.state
                .accept_websocket_with_tags(&pair.server, &[SUBSCRIBER]);
            for message in &opening.first_messages(after, head, &initial) {
                pair.server.send_with_bytes(message)?;
            }
            return Response::from_websocket(pair.client);
        }
        // Same synchronous step as the opening: the ticket names the last
        // message whose frames the opening already holds.
        self.create_tables()?;
        let ticket = self.relays.place(&self.state, capacity, full).await?;
        let frames: Vec<u8> = opening.messages().flatten().copied().collect();
        ticket.into_response(MessageHead::message(after, head, Some(&initial), &frames))
    }

    /// Every round and update stored, in the order sent: the first message
    /// of a feed that last knew the stream without any round.
    fn everything(&self) -> Result<Outbox> {
        let mut out = Outbox::default();
        let rows = self.sql_rows(
            "SELECT seq, round_id, json FROM rounds ORDER BY seq",
            vec![],
        )?;
        if rows.is_empty() {
            return Ok(out);
        }
        let updates: Vec<StoredUpdate> = self
            .state
            .storage()
            .sql()
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
        for (event, id, json) in backlog(&anchor, &rows, &updates) {
            out.extend(sse::round_frame(event, id, json).map_err(to_err)?, Some(id));
        }
        Ok(out)
    }

    /// What a client must see first: the latest round as `initial`; or,
    /// resuming, everything after its `Last-Event-ID`; or, when that id is
    /// no longer held, a `reset` and the latest round.
    fn opening(&self, name: &str, resume: Option<Position>) -> Result<Outbox> {
        let mut out = Outbox::default();
        let anchor = match resume {
            Some(position) => self
                .sql_rows(
                    "SELECT seq, round_id, json FROM rounds WHERE round_id = ?",
                    vec![position.round.into()],
                )?
                .pop(),
            None => None,
        };
        match (resume, anchor) {
            (Some(position), Some(anchor)) => {
                let rows = self.sql_rows(
                    "SELECT seq, round_id, json FROM rounds WHERE seq > ? ORDER BY seq",
                    vec![anchor.seq.into()],
                )?;
                let updates: Vec<StoredUpdate> = self
                    .state
                    .storage()
                    .sql()
                    .exec(
                        "SELECT useq, json, after_seq FROM updates
                         WHERE after_seq > ? OR (after_seq = ? AND useq > ?) ORDER BY useq",
                        vec![
                            anchor.seq.into(),
                            anchor.seq.into(),
                            position.update.unwrap_or(0).into(),
                        ],
                    )?
                    .to_array()?;
                for (event, id, json) in backlog(&anchor, &rows, &updates) {
                    out.extend(sse::round_frame(event, id, json).map_err(to_err)?, Some(id));
                }
            }
            (Some(_), None) => {
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
                if let Some(latest) = self.latest()? {
                    out.extend(frame(EVENT_INITIAL, &latest)?, None);
                }
            }
            (None, _) => {
                if let Some(latest) = self.latest()? {
                    out.extend(frame(EVENT_INITIAL, &latest)?, None);
                }
            }
        }
        Ok(out)
    }

    fn count(&self) -> Result<i64> {
        #[derive(Deserialize)]
        struct Count {
            n: i64,
        }
        if !self.has_tables()? {
            return Ok(0);
        }
        let rows: Vec<Count> = self
            .state
            .storage()
            .sql()
            .exec("SELECT COUNT(*) AS n FROM rounds", None)?
            .to_array()?;
        Ok(rows.first().map_or(0, |c| c.n))
    }

    /// Up to `limit` rounds with ids below `before`, newest first, as a JSON
    /// array assembled from the stored JSON (no re-serialisation).
    fn history(&self, limit: u32, before: i64) -> Result<Response> {
        let rows = self.sql_rows(
            "SELECT seq, round_id, json FROM rounds WHERE round_id < ? ORDER BY round_id DESC LIMIT ?",
            vec![before.into(), i64::from(limit.clamp(1, 1000)).into()],
        )?;
        let mut body = String::from("[");
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&row.json);
        }
        body.push(']');
        json_text(body)
    }

    /// Stores `events` in order, idempotently by `round_id`, then sends the
    /// resulting frames to every subscriber as one message.
    ///
    /// Idempotency reaches past the kept history: a round id at or below the
    /// watermark (the highest id ever trimmed) that is not stored is a replay,
    /// and an update older (by commit time) than the stored round is stale.
    async fn store(&self, name: &str, events: &[RoundEvent]) -> Result<IngestReply> {
        self.create_tables()?;
        let sql = self.state.storage().sql();
        let watermark = self.watermark()?;
        let head = self.head()?;
        let initial_before = self.initial_frame()?;
        let mut reply = IngestReply::default();
        let mut out = Outbox::default();
        for event in events {
            let round = &event.round;
            let json = serde_json::to_string(round)
                .map_err(|e| worker::Error::RustError(e.to_string()))?;
            let known = self
                .sql_rows(
                    "SELECT seq, round_id, json FROM rounds WHERE round_id = ?",
                    vec![round.round_id.into()],
                )?
                .pop();
            let mut id = Position::round(round.round_id);
            let (changed, event_name) = match (event.kind, known) {
                (_, Some(row)) if row.json == json => (false, None),
                (EventKind::Update, Some(row)) if is_stale(round, &row) => (false, None),
                (EventKind::Update, Some(_)) => {
                    sql.exec(
                        "UPDATE rounds SET json = ? WHERE round_id = ?",
                        vec![json.clone().into(), round.round_id.into()],
                    )?;
                    id = self.log_update(round.round_id, &json)?;
                    (true, Some(EVENT_UPDATE))
                }
                // A different body under a known id is a replayed insert:
                // the stored one wins, nothing is sent twice.
                (_, Some(_)) => (false, None),
                // A correction of a round trimmed from the history: sent as
                // an update (clients may still show it), not stored as a
                // round; the update log tells a replay from news.
                (EventKind::Update, None) if watermark.is_some_and(|w| round.round_id <= w) => {
                    match self.last_logged_update(round.round_id)? {
                        Some(logged) if logged.json == json || is_stale(round, &logged) => {
                            (false, None)
                        }
                        _ => {
                            id = self.log_update(round.round_id, &json)?;
                            (true, Some(EVENT_UPDATE))
                        }
                    }
                }
                // Trimmed long ago: a replay, not a new round.
                (_, None) if watermark.is_some_and(|w| round.round_id <= w) => (false, None),
                (kind, None) => {
                    sql.exec(
                        "INSERT INTO rounds (round_id, json) VALUES (?, ?)",
                        vec![round.round_id.into(), json.clone().into()],
                    )?;
                    let name = match kind {
                        EventKind::New => Some(EVENT_MESSAGE),
                        EventKind::Update => Some(EVENT_UPDATE),
                        EventKind::Backfill => None,
                    };
                    (true, name)
                }
            };
            if changed {
                reply.stored += 1;
            } else {
                reply.duplicates += 1;
            }
            if let Some(name) = event_name {
                out.extend(sse::round_frame(name, id, &json).map_err(to_err)?, Some(id));
            }
        }
        self.trim(StreamConfig::from_env(&self.env).history_limit)?;
        let initial = self.initial_frame()?;
        if out.messages.is_empty() && initial != initial_before {
            // A silent change (a backfill, a trimmed latest round): feeds
            // learn the new `initial` in a message without frames.
            out.messages.push((Vec::new(), None));
        }
        let count = out.messages.len() as u64;
        let first = self.relays.number(&self.state, count)?;
        let messages: Vec<(u64, js_sys::ArrayBuffer)> = out
            .numbered(first, head, &initial)
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                (
                    first + i as u64,
                    Uint8Array::from(bytes.as_slice()).buffer(),
                )
            })
            .collect();
        self.relays.enqueue(&self.state, &messages)?;
        for (_, message) in &messages {
            self.broadcast(message);
        }
        // The batch is stored: relays are a delivery, not a durability, step,
        // but answering after them keeps pushes from piling up unseen.
        self.relays.drain(&self.env, &self.state, name).await?;
        Ok(reply)
    }

    /// The last update logged for `round_id`, if the log still holds one.
    fn last_logged_update(&self, round_id: i64) -> Result<Option<StoredRound>> {
        self.sql_rows(
            "SELECT useq AS seq, round_id, json FROM updates WHERE round_id = ? ORDER BY useq DESC LIMIT 1",
            vec![round_id.into()],
        )
        .map(|mut rows| rows.pop())
    }

    /// Logs an update of a stored round; returns its position: the stream's
    /// newest round and the update's number.
    fn log_update(&self, round_id: i64, json: &str) -> Result<Position> {
        #[derive(Deserialize)]
        struct Logged {
            useq: i64,
            head: i64,
        }
        let sql = self.state.storage().sql();
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
    fn trim(&self, limit: u32) -> Result<()> {
        #[derive(Deserialize)]
        struct Highest {
            id: Option<i64>,
        }
        let sql = self.state.storage().sql();
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

    /// Sends one message to every subscriber here. The bytes were copied out
    /// of wasm memory once; every socket sends the same JS `ArrayBuffer`.
    fn broadcast(&self, buffer: &js_sys::ArrayBuffer) {
        for socket in self.state.get_websockets_with_tag(SUBSCRIBER) {
            if let Err(err) = socket.as_ref().send_with_array_buffer(buffer) {
                worker::console_warn!("send to a subscriber failed: {err:?}");
            }
        }
    }
}

/// Largest message the object puts on a socket. Cloudflare caps a WebSocket
/// message at 1 MiB; a resume backlog of big rounds can be larger, so frames
/// are packed into messages of at most this size (a frame is never split).
const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Frames packed into socket messages, each with the position of its last
/// frame that has an id.
#[derive(Default)]
struct Outbox {
    messages: Vec<(Vec<u8>, Option<Position>)>,
}

impl Outbox {
    fn extend(&mut self, frame: Vec<u8>, id: Option<Position>) {
        match self.messages.last_mut() {
            Some((last, position)) if last.len() + frame.len() <= MAX_MESSAGE_BYTES => {
                last.extend(frame);
                *position = id.or(*position);
            }
            _ => self.messages.push((frame, id)),
        }
    }

    fn messages(&self) -> impl Iterator<Item = &[u8]> {
        self.messages.iter().map(|(bytes, _)| bytes.as_slice())
    }

    /// The messages with their heads, numbered from `first` on; `base`:
    /// the stream's position before them; `initial`: the `initial` frame
    /// once they are all read, carried by the last one.
    fn numbered(&self, first: u64, base: Option<Position>, initial: &[u8]) -> Vec<Vec<u8>> {
        let mut position = base;
        let last = self.messages.len().saturating_sub(1);
        self.messages
            .iter()
            .enumerate()
            .map(|(i, (bytes, id))| {
                position = id.or(position);
                let initial = (i == last).then_some(initial);
                MessageHead::message(first + i as u64, position, initial, bytes)
            })
            .collect()
    }

    /// The first messages of a new socket: all numbered `after` (the last
    /// message sent before it), with the stream's position `head`; at least
    /// one, which tells the number even without frames.
    fn first_messages(&self, after: u64, head: Option<Position>, initial: &[u8]) -> Vec<Vec<u8>> {
        if self.messages.is_empty() {
            return vec![MessageHead::message(after, head, Some(initial), &[])];
        }
        let last = self.messages.len() - 1;
        self.messages
            .iter()
            .enumerate()
            .map(|(i, (bytes, _))| {
                MessageHead::message(after, head, (i == last).then_some(initial), bytes)
            })
            .collect()
    }
}

/// What a client resuming just after `anchor` (or after an update sent while
/// it was the newest round) missed, in the order the stream sent it: each
/// round after the anchor as a `message` (with its current body), and each
/// update after the position, placed after the round that was newest when
/// it was sent. `updates` are those after the position, by number.
fn backlog<'a>(
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
fn is_stale(update: &Round, row: &StoredRound) -> bool {
    serde_json::from_str::<Round>(&row.json).is_ok_and(|stored| update.timestamp < stored.timestamp)
}

fn json_text(body: String) -> Result<Response> {
    let headers = worker::Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::builder()
        .with_headers(headers)
        .fixed(body.into_bytes()))
}

fn frame(event: &str, row: &StoredRound) -> Result<Vec<u8>> {
    sse::round_frame(event, row.round_id, &row.json).map_err(to_err)
}

fn to_err(err: sse::FrameError) -> worker::Error {
    worker::Error::RustError(err.to_string())
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
    fn frames_are_packed_without_splitting_and_within_the_bound() {
        let mut out = Outbox::default();
        let small = vec![b'a'; 1000];
        let big = vec![b'b'; MAX_MESSAGE_BYTES + 10];
        for i in 0..300 {
            out.extend(small.clone(), Some(Position::round(i)));
        }
        out.extend(big.clone(), None);
        out.extend(small.clone(), None);
        let messages: Vec<&[u8]> = out.messages().collect();
        // 300 × 1000 bytes fill one message of 262 frames and start a second.
        assert_eq!(messages[0].len(), 262 * 1000);
        assert_eq!(messages[1].len(), 38 * 1000);
        assert_eq!(messages[2], &big[..], "an oversized frame travels alone");
        assert_eq!(messages[3], &small[..]);
        assert_eq!(messages.len(), 4);

        // Numbered from 7 on, each message tells the position after it: the
        // id-less ones keep the one before.
        let numbered = out.numbered(7, None, b"ini");
        let heads: Vec<MessageHead> = numbered
            .iter()
            .map(|m| {
                let mut head = [0u8; MessageHead::LEN];
                head.copy_from_slice(&m[..MessageHead::LEN]);
                MessageHead::decode(&head).unwrap()
            })
            .collect();
        let positions: Vec<(u64, Option<i64>)> = heads
            .iter()
            .map(|h| (h.number, h.position.map(|p| p.round)))
            .collect();
        assert_eq!(
            positions,
            [
                (7, Some(261)),
                (8, Some(299)),
                (9, Some(299)),
                (10, Some(299))
            ]
        );
        assert_eq!(&numbered[2][MessageHead::LEN..], &big[..]);
        let initials: Vec<Option<u32>> = heads.iter().map(|h| h.initial).collect();
        assert_eq!(
            initials,
            [None, None, None, Some(3)],
            "the last one carries it"
        );
        assert_eq!(&numbered[3][MessageHead::LEN..MessageHead::LEN + 3], b"ini");
        let first = out.first_messages(4, None, b"");
        assert_eq!(first.len(), 4);
        let empty = Outbox::default().first_messages(4, Some(Position::round(9)), b"x");
        assert_eq!(empty.len(), 1, "a first message even without frames");
    }
}
