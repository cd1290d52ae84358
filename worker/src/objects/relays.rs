//! The stream object's side of its relays: its [`RelayBook`] (the rules, in
//! `fanout::relays`) loaded from and saved to SQLite, and the pushes sent
//! to every relay in order.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};

use futures_channel::oneshot;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use worker::{Env, Result, State};

use crate::error;
use crate::fanout::relays::{Relay, RelayBook, Ticket};
use crate::objects::history::table_exists;
use crate::objects::protocol::relay_object;
use crate::objects::stubs::RelayStub;
use crate::platform::now_ms;

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
    book: RefCell<Option<RelayBook>>,
    /// Numbered, not yet delivered, in order.
    queue: RefCell<VecDeque<(u64, js_sys::ArrayBuffer)>>,
    draining: Cell<bool>,
    /// Placements waiting for a push to be delivered.
    waiters: RefCell<Vec<(u64, oneshot::Sender<()>)>>,
    /// Clients each active relay serves, as it last said; loaded on first
    /// use.
    viewers: RefCell<Option<BTreeMap<u32, u64>>>,
}

impl Relays {
    /// Loads the book once per instance; empty when the tables do not
    /// exist yet.
    fn load(&self, state: &State) -> Result<()> {
        if self.book.borrow().is_some() {
            return Ok(());
        }
        #[derive(Deserialize)]
        struct Value {
            value: i64,
        }
        let sql = state.storage().sql();
        // The relays table comes with `meta` (the stream object creates
        // its tables together).
        let book = if table_exists(&sql, "relays")? {
            let counter: Vec<Value> = sql
                .exec("SELECT value FROM meta WHERE name = 'push'", None)?
                .to_array()?;
            let counter = counter.first().map_or(0, |v| v.value.max(0) as u64);
            let rows: Vec<Relay> = sql
                .exec(
                    "SELECT idx, sockets, placed_at, active FROM relays ORDER BY idx",
                    None,
                )?
                .to_array()?;
            RelayBook::loaded(rows, counter)
        } else {
            RelayBook::default()
        };
        *self.book.borrow_mut() = Some(book);
        Ok(())
    }

    /// Runs `f` on the loaded book.
    fn with<T>(&self, state: &State, f: impl FnOnce(&mut RelayBook) -> T) -> Result<T> {
        self.load(state)?;
        let mut book = self.book.borrow_mut();
        Ok(f(book.get_or_insert_with(RelayBook::default)))
    }

    /// Number of the last message sent (0 before the first).
    pub(crate) fn counter(&self, state: &State) -> Result<u64> {
        self.with(state, |book| book.counter())
    }

    /// Takes `count` message numbers; returns the first. The tables must
    /// exist. Runs in the same synchronous step as the store that sends the
    /// messages, so numbers follow storage order.
    pub(crate) fn number(&self, state: &State, count: u64) -> Result<u64> {
        let (first, counter) = self.with(state, |book| (book.number(count), book.counter()))?;
        if count > 0 {
            state.storage().sql().exec(
                "INSERT INTO meta (name, value) VALUES ('push', ?)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                vec![(counter as i64).into()],
            )?;
        }
        Ok(first)
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

    /// Queues numbered messages for every relay; nothing while the stream
    /// has none.
    pub(crate) fn enqueue(
        &self,
        state: &State,
        messages: &[(u64, js_sys::ArrayBuffer)],
    ) -> Result<()> {
        if messages.is_empty() || !self.with(state, |book| book.has_active())? {
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
            let targets = self.with(state, |book| book.targets(number))?;
            let sends = targets.iter().map(|&(idx, prev)| {
                let message = &message;
                async move {
                    let sockets = push(env, stream, idx, number, prev, message).await;
                    (idx, sockets.ok())
                }
            });
            let heard = join_all(sends).await;
            let forget = self.with(state, |book| book.pushed(number, &heard, now_ms()))?;
            for idx in forget {
                self.forget(env, state, stream, idx).await?;
            }
            self.with(state, |book| book.delivered(number))?;
            self.wake();
        }
    }

    fn wake(&self) {
        let delivered = self
            .book
            .borrow()
            .as_ref()
            .map_or(0, RelayBook::delivered_up_to);
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
        env: &Env,
        state: &State,
        stream: &str,
        capacity: usize,
        full: Option<u32>,
    ) -> Result<Ticket> {
        let (relay, ticket, reactivated) =
            self.with(state, |book| book.place(capacity as u64, full, now_ms()))?;
        Self::save(state, &relay)?;
        if reactivated {
            // Whatever it still holds missed what was sent while it was
            // forgotten (see `RelayBook::place`).
            let stopped = match RelayStub::new(env, stream, relay.idx) {
                Ok(stub) => stub.stop(ticket.after).await,
                Err(err) => Err(err),
            };
            if let Err(err) = stopped {
                worker::console_warn!("clearing relay {} failed: {err}", relay.idx);
            }
        }
        // Pushes numbered up to the ticket must reach the relay before the
        // subscriber does, or it would get them twice.
        let delivered = self.with(state, |book| book.delivered_up_to())?;
        if self.draining.get() && delivered < ticket.after {
            let (tx, rx) = oneshot::channel();
            self.waiters.borrow_mut().push((ticket.after, tx));
            let _ = rx.await;
        }
        Ok(ticket)
    }

    /// Socket counts of the active relays, asked of each; relays found empty
    /// and past their last placement are forgotten.
    pub(crate) async fn stats(
        &self,
        env: &Env,
        state: &State,
        stream: &str,
    ) -> Result<Vec<RelayStats>> {
        let active = self.with(state, |book| book.active())?;
        let asked = join_all(active.iter().map(|&(idx, _)| async move {
            let count = match RelayStub::new(env, stream, idx) {
                Ok(stub) => stub.stats().await,
                Err(err) => Err(err),
            };
            if let Err(err) = &count {
                worker::console_warn!("stats of relay {idx} failed: {err}");
            }
            (idx, count.ok())
        }))
        .await;
        let heard: Vec<(u32, Option<u64>)> = asked
            .iter()
            .map(|(idx, count)| (*idx, count.as_ref().map(|c| c.sockets)))
            .collect();
        let (counted, forget) = self.with(state, |book| book.counted(&heard, now_ms()))?;
        let out = counted
            .into_iter()
            .filter_map(|(idx, sockets)| {
                let instance = asked
                    .iter()
                    .find(|(i, _)| *i == idx)
                    .and_then(|(_, count)| count.as_ref())
                    .map(|c| c.instance.clone())?;
                Some(RelayStats {
                    name: relay_object(stream, idx),
                    sockets,
                    instance,
                })
            })
            .collect();
        for idx in forget {
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
        if self.with(state, |book| book.idle(idx, now_ms()))? {
            self.forget(env, state, stream, idx).await?;
        }
        Ok(())
    }

    /// Stops pushing to a relay and tells it to drop what it keeps.
    async fn forget(&self, env: &Env, state: &State, stream: &str, idx: u32) -> Result<()> {
        let (relay, after) = self.with(state, |book| (book.forget(idx), book.counter()))?;
        let Some(relay) = relay else {
            return Ok(());
        };
        Self::save(state, &relay)?;
        self.set_viewers(state, idx, None)?;
        let stopped = match RelayStub::new(env, stream, idx) {
            Ok(stub) => stub.stop(after).await,
            Err(err) => Err(err),
        };
        if let Err(err) = stopped {
            worker::console_warn!("stopping relay {idx} failed: {err}");
        }
        Ok(())
    }

    /// How many relays are in use, from the book (no relay is called).
    pub(crate) fn active_count(&self, state: &State) -> Result<u64> {
        Ok(self.with(state, |book| book.active().len())? as u64)
    }

    /// The clients each relay serves, as they said.
    pub(crate) fn viewers(&self, state: &State) -> Result<Vec<u64>> {
        self.with_viewers(state, |v| v.values().copied().collect())
    }

    /// A relay said how many clients its sockets serve (`None`: forgotten).
    /// A relay the book does not hold as active is not counted: its word
    /// may have crossed its forgetting.
    pub(crate) fn set_viewers(&self, state: &State, idx: u32, viewers: Option<u64>) -> Result<()> {
        let active = self.with(state, |book| book.active().iter().any(|(i, _)| *i == idx))?;
        let viewers = viewers.filter(|_| active);
        let changed = self.with_viewers(state, |v| match viewers {
            Some(n) => v.insert(idx, n) != Some(n),
            None => v.remove(&idx).is_some(),
        })?;
        if !changed {
            return Ok(());
        }
        let sql = state.storage().sql();
        match viewers {
            Some(n) => sql.exec(
                "INSERT INTO relay_viewers (idx, viewers) VALUES (?, ?)
                 ON CONFLICT(idx) DO UPDATE SET viewers = excluded.viewers",
                vec![
                    i64::from(idx).into(),
                    (n.min(i64::MAX as u64) as i64).into(),
                ],
            )?,
            None => sql.exec(
                "DELETE FROM relay_viewers WHERE idx = ?",
                vec![i64::from(idx).into()],
            )?,
        };
        Ok(())
    }

    fn with_viewers<T>(
        &self,
        state: &State,
        f: impl FnOnce(&mut BTreeMap<u32, u64>) -> T,
    ) -> Result<T> {
        if self.viewers.borrow().is_none() {
            #[derive(Deserialize)]
            struct Row {
                idx: i64,
                viewers: i64,
            }
            let sql = state.storage().sql();
            let rows: Vec<Row> = if table_exists(&sql, "relay_viewers")? {
                sql.exec("SELECT idx, viewers FROM relay_viewers", None)?
                    .to_array()?
            } else {
                Vec::new()
            };
            let loaded = rows
                .into_iter()
                .filter_map(|r| Some((u32::try_from(r.idx).ok()?, u64::try_from(r.viewers).ok()?)))
                .collect();
            *self.viewers.borrow_mut() = Some(loaded);
        }
        let mut viewers = self.viewers.borrow_mut();
        Ok(f(viewers.get_or_insert_with(BTreeMap::new)))
    }

    /// Tells every active relay the stream's viewers, for their sockets.
    pub(crate) async fn tell_viewers(&self, env: &Env, state: &State, stream: &str, viewers: u64) {
        let Ok(active) = self.with(state, |book| book.active()) else {
            return;
        };
        join_all(active.iter().map(|&(idx, _)| async move {
            let told = match RelayStub::new(env, stream, idx) {
                Ok(stub) => stub.viewers(viewers).await,
                Err(err) => Err(err),
            };
            if let Err(err) = told {
                worker::console_warn!("telling relay {idx} the viewers failed: {err}");
            }
        }))
        .await;
    }

    /// Ends every stream held by a relay; returns how many.
    pub(crate) async fn disconnect(&self, env: &Env, state: &State, stream: &str) -> u64 {
        let Ok(active) = self.with(state, |book| book.active()) else {
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

/// One push to one relay; a try that timed out or could not be carried is
/// tried once more (a refusal would be refused again). A relay that cannot
/// be reached is asked to end its streams (they resume from the stream
/// object) and is then forgotten; if it is used again, its first push names
/// the last one it acknowledged, so it ends whatever streams it still holds.
async fn push(
    env: &Env,
    stream: &str,
    idx: u32,
    number: u64,
    prev: Option<u64>,
    message: &js_sys::ArrayBuffer,
) -> error::Result<u64> {
    let stub = RelayStub::new(env, stream, idx)?;
    let mut result = stub.push(number, prev, message).await;
    if result.as_ref().is_err_and(|err| err.kind().is_transient()) {
        result = stub.push(number, prev, message).await;
    }
    if let Err(err) = &result {
        worker::console_error!("push {number} to {} failed: {err}", stub.name());
        let _ = stub.disconnect().await;
    }
    result
}
