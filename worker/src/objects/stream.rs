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

use std::cell::{Cell, RefCell};

use js_sys::Uint8Array;
use shared::cursor::Position;
use shared::sse::{self, EVENT_UPDATE};
use shared::{IngestReply, RoundEvent};
use worker::{
    DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage,
    WebSocketPair, durable_object,
};

use crate::fanout::message::{MessageHead, Outbox};
use crate::fanout::store::{self, Stored};
use crate::fanout::viewers::{self, Tell, Throttle};
use crate::metrics::exposition::StreamFigures;
use crate::metrics::series::{Delays, minute_of, series};
use crate::objects::history::{History, to_err};
use crate::objects::protocol::{Closed, FeedResume, SocketNote, Start, StreamCall, Viewers};
use crate::objects::relays::Relays;
use crate::objects::stubs;
use crate::platform::now_ms;

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
    /// The stream's SQLite history.
    history: History,
    /// Where subscribers past `RELAY_CAPACITY` go, and the pushes to them.
    relays: Relays,
    /// Openings served by this instance (most joins are served by the
    /// isolates' feeds instead; stats show how many were not).
    openings: Cell<u64>,
    /// The stream's name, once a call said it (alarms and socket messages
    /// come without one; then the sockets' tags tell it).
    name: RefCell<Option<String>>,
    /// The viewers last told to the feeds, at most once per `VIEWERS_SECS`.
    audience: RefCell<Throttle>,
    /// Fault injection for tests (`ALLOW_FAULTS`, and
    /// `FAULT_SUBSCRIBE=hang-once`): the instance's first subscription is
    /// never answered, as from an object that stopped answering. Cleared
    /// once used.
    hang_subscribe: Cell<bool>,
}

impl DurableObject for StreamObject {
    fn new(state: State, env: Env) -> Self {
        // Tables are created by the first store, not here: an object that a
        // client merely asked about (a mistyped game) writes nothing.
        let instance = crate::platform::instance_id();
        let audience =
            Throttle::new(crate::config::get(&env).feed.viewers_every.as_millis() as f64);
        Self {
            history: History::new(&state),
            state,
            hang_subscribe: Cell::new(crate::config::get(&env).faults.subscribe_hangs_once),
            env,
            instance,
            relays: Relays::default(),
            openings: Cell::new(0),
            name: RefCell::new(None),
            audience: RefCell::new(audience),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let (name, call) = match stubs::read_call(&mut req, true, StreamCall::decode).await {
            Ok(parsed) => parsed,
            Err(refusal) => return stubs::refusal(refusal),
        };
        if self.name.borrow().is_none() {
            *self.name.borrow_mut() = Some(name.clone());
        }
        match call {
            StreamCall::Subscribe { resume, full } => {
                if self.hang_subscribe.replace(false) {
                    futures_util::future::pending::<()>().await;
                }
                self.subscribe(&name, resume, full).await
            }
            StreamCall::Opening { start } => {
                self.openings.set(self.openings.get() + 1);
                let opening = self.history.opening(&name, start)?;
                let after = self.relays.counter(&self.state)?;
                let frames: Vec<u8> = opening.messages().flatten().copied().collect();
                stubs::opening_reply(after, &frames)
            }
            StreamCall::Latest => match self.history.latest()? {
                Some(row) => json_text(row.json),
                None => json_text("null".into()),
            },
            StreamCall::Rounds { limit, before } => json_text(self.history.rounds(limit, before)?),
            StreamCall::Disconnect => {
                // Every bridge ends its client's stream; browsers reconnect
                // and resume. For maintenance, and to test that path.
                let sockets = self.state.get_websockets_with_tag(SUBSCRIBER);
                for socket in &sockets {
                    let _ = socket.close(Some(1012), Some("stream restarting"));
                }
                let relayed = self.relays.disconnect(&self.env, &self.state, &name).await;
                Response::from_json(&Closed {
                    closed: sockets.len() as u64 + relayed,
                })
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
                    "rounds": self.history.count()?,
                    "viewers": self.viewers()?,
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
                self.relays.set_viewers(&self.state, relay, None)?;
                self.audience_changed().await?;
                Response::ok("")
            }
            StreamCall::Series { minutes } => {
                let now = minute_of(now_ms());
                let (rows, carry) = self.history.series_rows(now - i64::from(minutes) + 1)?;
                Response::from_json(&series(&name, &rows, now, minutes, carry))
            }
            StreamCall::Figures => {
                let (rounds, delays) = self.history.totals()?;
                let local = self.state.get_websockets_with_tag(SUBSCRIBER).len() as u64;
                let relays = if self.history.has_tables()? {
                    self.relays.active_count(&self.state)?
                } else {
                    0
                };
                Response::from_json(&StreamFigures {
                    stream: name,
                    viewers: self.viewers()?,
                    relays,
                    sockets: local,
                    rounds,
                    delays,
                })
            }
            StreamCall::Viewers => Response::from_json(&Viewers {
                viewers: self.viewers()?,
            }),
            StreamCall::RelayViewers { relay, viewers } => {
                // The table exists once a relay was placed; an object from
                // before it was added gets it here.
                self.history.create_tables()?;
                self.relays.set_viewers(&self.state, relay, Some(viewers))?;
                self.audience_changed().await?;
                Response::ok("")
            }
        }
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        if stubs::note_members(&ws, message)? {
            self.audience_changed().await?;
        }
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        // A change of the viewers that came too soon after the last told.
        self.audience_changed().await?;
        Response::ok("")
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
        self.left(&ws).await
    }

    async fn websocket_error(&self, ws: WebSocket, err: worker::Error) -> Result<()> {
        worker::console_warn!("subscriber socket error: {err}");
        self.left(&ws).await
    }
}

impl StreamObject {
    /// The clients of the stream: those the feeds on its own sockets serve
    /// and those its relays' sockets serve.
    fn viewers(&self) -> Result<u64> {
        let own = stubs::members_served(&self.state.get_websockets_with_tag(SUBSCRIBER));
        Ok(viewers::total([own], self.relays.viewers(&self.state)?))
    }

    /// The stream's name: said by every call; after an eviction, an alarm
    /// or a socket message learns it from a socket's tags.
    fn stream_name(&self) -> Option<String> {
        if let Some(name) = self.name.borrow().clone() {
            return Some(name);
        }
        let sockets = self.state.get_websockets_with_tag(SUBSCRIBER);
        let name = sockets
            .iter()
            .flat_map(|ws| self.state.get_tags(ws))
            .find(|tag| tag != SUBSCRIBER)?;
        *self.name.borrow_mut() = Some(name.clone());
        Some(name)
    }

    /// A socket closed: what its feed served no longer counts.
    async fn left(&self, ws: &WebSocket) -> Result<()> {
        ws.serialize_attachment(0u64)?;
        self.audience_changed().await
    }

    /// The viewers may have changed: told to every feed (directly, and
    /// through the relays) now, or at the alarm once that is allowed.
    async fn audience_changed(&self) -> Result<()> {
        let total = self.viewers()?;
        let now = now_ms();
        self.history.record_viewers(minute_of(now), total)?;
        let tell = self.audience.borrow_mut().offer(total, now);
        match tell {
            Tell::Now(viewers) => {
                let note = SocketNote::Viewers(viewers).encode();
                for socket in self.state.get_websockets_with_tag(SUBSCRIBER) {
                    let _ = socket.send_with_str(&note);
                }
                if let Some(name) = self.stream_name() {
                    self.relays
                        .tell_viewers(&self.env, &self.state, &name, viewers)
                        .await;
                }
            }
            Tell::At(at) => crate::platform::alarm_at(&self.state, at).await?,
            Tell::Nothing => {}
        }
        Ok(())
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
        let capacity = crate::config::get(&self.env).relay_capacity;
        let opening = match resume {
            FeedResume::Live => Outbox::default(),
            FeedResume::Start => self.history.everything()?,
            FeedResume::At(position) => self.history.opening(name, Start::After(position))?,
        };
        let after = self.relays.counter(&self.state)?;
        let head = self.history.head()?;
        let initial = self.history.initial_frame()?;
        if self.state.get_websockets_with_tag(SUBSCRIBER).len() < capacity {
            let pair = WebSocketPair::new()?;
            self.state
                .accept_websocket_with_tags(&pair.server, &[SUBSCRIBER, name]);
            for message in &opening.first_messages(after, head, &initial) {
                pair.server.send_with_bytes(message)?;
            }
            if let Some(viewers) = self.audience.borrow().told() {
                pair.server
                    .send_with_str(SocketNote::Viewers(viewers).encode())?;
            }
            return Response::from_websocket(pair.client);
        }
        // Same synchronous step as the opening: the ticket names the last
        // message whose frames the opening already holds.
        self.history.create_tables()?;
        let ticket = self
            .relays
            .place(&self.env, &self.state, name, capacity, full)
            .await?;
        let frames: Vec<u8> = opening.messages().flatten().copied().collect();
        stubs::placement_reply(
            &ticket,
            &MessageHead::message(after, head, Some(&initial), &frames),
        )
    }

    /// Stores `events` in order, idempotently by `round_id`, then sends the
    /// resulting frames to every subscriber as one message.
    ///
    /// Idempotency reaches past the kept history: a round id at or below the
    /// watermark (the highest id ever trimmed) that is not stored is a replay,
    /// and an update older (by commit time) than the stored round is stale.
    async fn store(&self, name: &str, events: &[RoundEvent]) -> Result<IngestReply> {
        self.history.create_tables()?;
        let watermark = self.history.watermark()?;
        let head = self.history.head()?;
        let initial_before = self.history.initial_frame()?;
        let mut reply = IngestReply::default();
        let mut out = Outbox::default();
        // Edge receipt: every round of the batch arrived now.
        let now = now_ms();
        let (mut fresh, mut delays) = (0u64, Delays::default());
        for event in events {
            let round = &event.round;
            let json = serde_json::to_string(round)
                .map_err(|e| worker::Error::RustError(e.to_string()))?;
            let known = self.history.find(round.round_id)?;
            let decided =
                store::decide(event.kind, round, &json, known.as_ref(), watermark, || {
                    self.history.last_logged_update(round.round_id)
                })?;
            let mut id = Position::round(round.round_id);
            let (changed, event_name) = match decided {
                Stored::Duplicate => (false, None),
                Stored::Insert { event } => {
                    self.history.insert(round.round_id, &json)?;
                    fresh += 1;
                    delays.observe(now - round.timestamp as f64);
                    (true, event)
                }
                Stored::Correct => {
                    self.history.replace(round.round_id, &json)?;
                    id = self.history.log_update(round.round_id, &json)?;
                    (true, Some(EVENT_UPDATE))
                }
                Stored::CorrectTrimmed => {
                    id = self.history.log_update(round.round_id, &json)?;
                    (true, Some(EVENT_UPDATE))
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
        self.history
            .trim(crate::config::get(&self.env).stream.history_limit)?;
        self.history.record_rounds(minute_of(now), fresh, &delays)?;
        let initial = self.history.initial_frame()?;
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

fn json_text(body: String) -> Result<Response> {
    let headers = worker::Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::builder()
        .with_headers(headers)
        .fixed(body.into_bytes()))
}
