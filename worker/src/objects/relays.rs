//! The stream object's side of its relays (DESIGN §3.7b): where a subscriber
//! goes once the object holds `RELAY_CAPACITY` sockets, and how each stored
//! batch's frames reach every relay in order.
//!
//! Each message the object broadcasts while it has relays gets the next push
//! number (kept in `meta`, so it survives eviction). A subscriber placed on a
//! relay gets, from the object, its backlog and a ticket naming the last push
//! that backlog holds; the relay then sends it the pushes after that one.
//! Pushes go out one at a time, in number order, to every relay, and the
//! object answers a placement only once every push up to its ticket has been
//! delivered: so a subscriber sees each frame exactly once. A push carries
//! the number of the last one the relay acknowledged, so a relay that missed
//! one ends its streams (the browsers resume from the object) instead of
//! skipping a round.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use futures_channel::oneshot;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use worker::{Date, Env, Result, State};

use crate::objects::{RelayStub, Ticket, relay_object};
use crate::relay_object::TICKET_TTL_MS;

/// The relays table, created with the stream object's other tables.
pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS relays (
    idx INTEGER PRIMARY KEY,
    sockets INTEGER NOT NULL,
    placed_at REAL NOT NULL,
    active INTEGER NOT NULL
)";

/// A relay as the stream object knows it.
#[derive(Debug, Clone, Deserialize)]
struct Relay {
    idx: u32,
    /// Sockets it had when last heard of, plus those placed on it since.
    sockets: u64,
    /// When a subscriber was last placed on it (ms since the epoch).
    placed_at: f64,
    /// Pushed to; an inactive relay is forgotten until it is needed again.
    #[serde(deserialize_with = "flag")]
    active: bool,
    /// The last push it acknowledged (memory only: unknown after eviction).
    #[serde(skip)]
    last_ok: Option<u64>,
}

fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    Ok(i64::deserialize(d)? != 0)
}

/// One relay in the stream's stats.
#[derive(Debug, Serialize)]
pub(crate) struct RelayStats {
    pub(crate) name: String,
    pub(crate) sockets: u64,
    pub(crate) instance: String,
}

/// The relays of one stream object and its queue of pushes.
#[derive(Default)]
pub(crate) struct Relays {
    /// Loaded on first use.
    rows: RefCell<Option<Vec<Relay>>>,
    /// Number of the last push assigned (loaded with `rows`).
    counter: Cell<u64>,
    /// Assigned, not yet delivered, in order.
    queue: RefCell<VecDeque<(u64, js_sys::ArrayBuffer)>>,
    draining: Cell<bool>,
    /// Every push up to this one was delivered (or given up on).
    delivered: Cell<u64>,
    /// Placements waiting for a push to be delivered.
    waiters: RefCell<Vec<(u64, oneshot::Sender<()>)>>,
}

fn now() -> f64 {
    Date::now().as_millis() as f64
}

/// A relay may be forgotten once no ticket to it can still be used.
fn placements_expired(relay: &Relay, at: f64) -> bool {
    at - relay.placed_at > 2.0 * TICKET_TTL_MS
}

impl Relays {
    /// Loads the counter and the relays once per instance; nothing when
    /// the tables do not exist yet.
    fn load(&self, state: &State) -> Result<()> {
        if self.rows.borrow().is_some() {
            return Ok(());
        }
        #[derive(Deserialize)]
        struct Count {
            n: i64,
        }
        #[derive(Deserialize)]
        struct Value {
            value: i64,
        }
        let sql = state.storage().sql();
        let exists: Vec<Count> = sql
            .exec(
                "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'relays'",
                None,
            )?
            .to_array()?;
        // The relays table comes with `meta` (the stream object creates
        // its tables together).
        let rows: Vec<Relay> = if exists.first().is_some_and(|c| c.n > 0) {
            let counter: Vec<Value> = sql
                .exec("SELECT value FROM meta WHERE name = 'push'", None)?
                .to_array()?;
            let counter = counter.first().map_or(0, |v| v.value.max(0) as u64);
            self.counter.set(counter);
            self.delivered.set(counter);
            sql.exec(
                "SELECT idx, sockets, placed_at, active FROM relays ORDER BY idx",
                None,
            )?
            .to_array()?
        } else {
            Vec::new()
        };
        *self.rows.borrow_mut() = Some(rows);
        Ok(())
    }

    /// Number of the last message sent (0 before the first).
    pub(crate) fn counter(&self, state: &State) -> Result<u64> {
        self.load(state)?;
        Ok(self.counter.get())
    }

    /// Takes `count` message numbers; returns the first. The tables must
    /// exist. Runs in the same synchronous step as the store that sends the
    /// messages, so numbers follow storage order.
    pub(crate) fn number(&self, state: &State, count: u64) -> Result<u64> {
        self.load(state)?;
        let first = self.counter.get() + 1;
        if count == 0 {
            return Ok(first);
        }
        self.counter.set(first + count - 1);
        state.storage().sql().exec(
            "INSERT INTO meta (name, value) VALUES ('push', ?)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            vec![(self.counter.get() as i64).into()],
        )?;
        Ok(first)
    }

    fn with_rows<T>(&self, state: &State, f: impl FnOnce(&mut Vec<Relay>) -> T) -> Result<T> {
        self.load(state)?;
        let mut rows = self.rows.borrow_mut();
        Ok(f(rows.get_or_insert_with(Vec::new)))
    }

    fn save(state: &State, relay: &Relay) -> Result<()> {
        state.storage().sql().exec(
            "INSERT INTO relays (idx, sockets, placed_at, active) VALUES (?, ?, ?, ?)
             ON CONFLICT(idx) DO UPDATE SET sockets = excluded.sockets,
               placed_at = excluded.placed_at, active = excluded.active",
            vec![
                i64::from(relay.idx).into(),
                (relay.sockets as i64).into(),
                relay.placed_at.into(),
                i64::from(relay.active).into(),
            ],
        )?;
        Ok(())
    }

    fn active(&self, state: &State) -> Result<Vec<(u32, Option<u64>)>> {
        self.with_rows(state, |rows| {
            rows.iter()
                .filter(|r| r.active)
                .map(|r| (r.idx, r.last_ok))
                .collect()
        })
    }

    /// Queues numbered messages for every relay; nothing while the stream
    /// has none.
    pub(crate) fn enqueue(
        &self,
        state: &State,
        messages: &[(u64, js_sys::ArrayBuffer)],
    ) -> Result<()> {
        if messages.is_empty() || self.active(state)?.is_empty() {
            return Ok(());
        }
        self.queue.borrow_mut().extend(messages.iter().cloned());
        Ok(())
    }

    /// Delivers the queued pushes in order; returns at once if another
    /// request is already delivering them (it delivers these too).
    pub(crate) async fn drain(&self, env: &Env, state: &State, stream: &str) -> Result<()> {
        if self.draining.replace(true) {
            return Ok(());
        }
        let result = self.drain_queue(env, state, stream).await;
        self.draining.set(false);
        self.wake();
        result
    }

    async fn drain_queue(&self, env: &Env, state: &State, stream: &str) -> Result<()> {
        loop {
            let next = self.queue.borrow_mut().pop_front();
            let Some((number, message)) = next else {
                return Ok(());
            };
            // Relays placed after this push was numbered hold it in their
            // subscribers' backlogs already.
            let targets: Vec<(u32, Option<u64>)> = self
                .active(state)?
                .into_iter()
                .filter(|(_, last_ok)| last_ok.is_none_or(|n| n < number))
                .collect();
            let sends = targets.iter().map(|&(idx, prev)| {
                let message = &message;
                async move { (idx, push(env, stream, idx, number, prev, message).await) }
            });
            let results = join_all(sends).await;
            let at = now();
            let mut idle = Vec::new();
            self.with_rows(state, |rows| {
                for (idx, result) in results {
                    let Some(relay) = rows.iter_mut().find(|r| r.idx == idx) else {
                        continue;
                    };
                    match result {
                        Ok(sockets) => {
                            relay.last_ok = Some(number);
                            relay.sockets = sockets;
                            if sockets == 0 && placements_expired(relay, at) {
                                idle.push(idx);
                            }
                        }
                        // Its streams were asked to end (they resume from
                        // the stream object), so nobody is left to push to;
                        // were it kept, every batch would wait on it again.
                        // A joiner still holding a ticket to it is refused
                        // or times out, and asks again.
                        Err(_) => idle.push(idx),
                    }
                }
            })?;
            for idx in idle {
                self.forget(env, state, stream, idx).await?;
            }
            self.delivered.set(number);
            self.wake();
        }
    }

    fn wake(&self) {
        let delivered = self.delivered.get();
        let draining = self.draining.get();
        self.waiters.borrow_mut().retain_mut(|(number, _)| {
            // A finished drain leaves nothing to wait for.
            *number > delivered && draining
        });
    }

    /// Places a subscriber on a relay and returns its ticket. `full`: a
    /// relay that turned the last placement away.
    pub(crate) async fn place(
        &self,
        state: &State,
        capacity: usize,
        full: Option<u32>,
    ) -> Result<Ticket> {
        let after = {
            self.load(state)?;
            self.counter.get()
        };
        let at = now();
        let capacity = capacity as u64;
        let relay = self.with_rows(state, |rows| {
            if let Some(relay) = full.and_then(|f| rows.iter_mut().find(|r| r.idx == f)) {
                relay.sockets = relay.sockets.max(capacity);
            }
            let index = rows
                .iter()
                .position(|r| r.active && r.sockets < capacity)
                .or_else(|| rows.iter().position(|r| !r.active));
            let relay = match index {
                Some(i) => &mut rows[i],
                None => {
                    let idx = rows.iter().map(|r| r.idx + 1).max().unwrap_or(0);
                    rows.push(Relay {
                        idx,
                        sockets: 0,
                        placed_at: at,
                        active: false,
                        last_ok: None,
                    });
                    let last = rows.len() - 1;
                    &mut rows[last]
                }
            };
            if !relay.active {
                relay.active = true;
                relay.sockets = 0;
                // Everything up to now is in the subscriber's backlog.
                relay.last_ok = Some(after);
            }
            relay.sockets += 1;
            relay.placed_at = at;
            relay.clone()
        })?;
        Self::save(state, &relay)?;
        // Pushes numbered up to `after` must reach the relay before the
        // subscriber does, or it would get them twice.
        if self.draining.get() && self.delivered.get() < after {
            let (tx, rx) = oneshot::channel();
            self.waiters.borrow_mut().push((after, tx));
            let _ = rx.await;
        }
        Ok(Ticket {
            relay: relay.idx,
            after,
            issued: at,
        })
    }

    /// Socket counts of the active relays, asked of each; relays found empty
    /// and past their last placement are forgotten.
    pub(crate) async fn stats(
        &self,
        env: &Env,
        state: &State,
        stream: &str,
    ) -> Result<Vec<RelayStats>> {
        let active = self.active(state)?;
        let asked = join_all(active.iter().map(|&(idx, _)| async move {
            let sockets = match RelayStub::new(env, stream, idx) {
                Ok(stub) => stub.stats().await,
                Err(err) => Err(err),
            };
            (idx, sockets)
        }))
        .await;
        let at = now();
        let mut out = Vec::new();
        let mut idle = Vec::new();
        self.with_rows(state, |rows| {
            for (idx, sockets) in asked {
                let Some(relay) = rows.iter_mut().find(|r| r.idx == idx) else {
                    continue;
                };
                match sockets {
                    Ok(count) if count.sockets == 0 && placements_expired(relay, at) => {
                        idle.push(idx);
                    }
                    Ok(count) => {
                        relay.sockets = count.sockets;
                        out.push(RelayStats {
                            name: relay_object(stream, idx),
                            sockets: count.sockets,
                            instance: count.instance,
                        });
                    }
                    Err(err) => worker::console_warn!("stats of relay {idx} failed: {err}"),
                }
            }
        })?;
        for idx in idle {
            self.forget(env, state, stream, idx).await?;
        }
        Ok(out)
    }

    /// A relay has no socket left: forgotten unless a subscriber placed on
    /// it may still arrive (then the next push or stats finds it empty).
    pub(crate) async fn idle(
        &self,
        env: &Env,
        state: &State,
        stream: &str,
        idx: u32,
    ) -> Result<()> {
        let at = now();
        let expired = self.with_rows(state, |rows| {
            rows.iter_mut()
                .find(|r| r.idx == idx && r.active)
                .map(|relay| {
                    relay.sockets = 0;
                    placements_expired(relay, at)
                })
        })?;
        if expired == Some(true) {
            self.forget(env, state, stream, idx).await?;
        }
        Ok(())
    }

    /// Stops pushing to a relay and tells it to drop what it keeps.
    async fn forget(&self, env: &Env, state: &State, stream: &str, idx: u32) -> Result<()> {
        let relay = self.with_rows(state, |rows| {
            rows.iter_mut().find(|r| r.idx == idx).map(|relay| {
                relay.active = false;
                relay.sockets = 0;
                relay.last_ok = None;
                relay.clone()
            })
        })?;
        if let Some(relay) = relay {
            Self::save(state, &relay)?;
            let stopped = match RelayStub::new(env, stream, idx) {
                Ok(stub) => stub.stop().await,
                Err(err) => Err(err),
            };
            if let Err(err) = stopped {
                worker::console_warn!("stopping relay {idx} failed: {err}");
            }
        }
        Ok(())
    }

    /// Ends every stream held by a relay; returns how many.
    pub(crate) async fn disconnect(&self, env: &Env, state: &State, stream: &str) -> u64 {
        let Ok(active) = self.active(state) else {
            return 0;
        };
        let closed = join_all(active.iter().map(|&(idx, _)| async move {
            match RelayStub::new(env, stream, idx) {
                Ok(stub) => stub.disconnect().await.unwrap_or(0),
                Err(_) => 0,
            }
        }))
        .await;
        closed.into_iter().sum()
    }
}

/// One push to one relay, tried twice (each try gives up after
/// `RELAY_CALL_TIMEOUT`). A relay that cannot be reached is asked to end its
/// streams (they resume from the stream object) and is then forgotten; if it
/// is used again, its first push names the last one it acknowledged, so it
/// ends whatever streams it still holds.
async fn push(
    env: &Env,
    stream: &str,
    idx: u32,
    number: u64,
    prev: Option<u64>,
    message: &js_sys::ArrayBuffer,
) -> Result<u64> {
    let stub = RelayStub::new(env, stream, idx)?;
    let mut result = stub.push(number, prev, message).await;
    if result.is_err() {
        result = stub.push(number, prev, message).await;
    }
    if let Err(err) = &result {
        worker::console_error!("push {number} to {} failed: {err}", stub.name());
        let _ = stub.disconnect().await;
    }
    result
}
