//! The stream object's book of its relays, pure: where a subscriber goes
//! once the object holds `RELAY_CAPACITY` sockets, how pushes are numbered,
//! which relay each push goes to, and when a relay is forgotten.
//! `objects::relays` loads and saves the book and sends the pushes.
//!
//! Each message the object broadcasts gets the next number (kept in
//! storage, so it survives eviction). A subscriber placed on a relay gets,
//! from the object, its backlog and a [`Ticket`] naming the last message
//! that backlog holds; the relay then sends it the pushes after that one.
//! Pushes go out one at a time, in number order, to every active relay,
//! and the object answers a placement only once every push up to its
//! ticket was delivered: so a subscriber sees each frame exactly once. A
//! push names the last one the relay acknowledged, so a relay that missed
//! one ends its streams (the browsers resume from the object) instead of
//! skipping a round.

use serde::Deserialize;

/// A ticket older than this is refused: the stream object forgets an idle
/// relay only after twice this long without placing anyone on it.
pub(crate) const TICKET_TTL_MS: f64 = 5_000.0;

/// A placement on a relay, as the stream object issued it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ticket {
    /// The relay's index.
    pub(crate) relay: u32,
    /// The last push the subscriber's backlog already holds: the relay sends
    /// it the pushes after this one.
    pub(crate) after: u64,
    /// When the ticket was issued (ms since the epoch): relays refuse old
    /// tickets, so the stream object can forget a relay safely.
    pub(crate) issued: f64,
}

/// A relay as the stream object knows it (a row of its `relays` table).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Relay {
    /// Its index.
    pub(crate) idx: u32,
    /// Sockets it had when last heard of, plus those placed on it since.
    pub(crate) sockets: u64,
    /// When a subscriber was last placed on it (ms since the epoch).
    pub(crate) placed_at: f64,
    /// Pushed to; an inactive relay is forgotten until it is needed again.
    #[serde(deserialize_with = "flag")]
    pub(crate) active: bool,
    /// The last push it acknowledged (memory only: unknown after eviction).
    #[serde(skip)]
    pub(crate) last_ok: Option<u64>,
}

fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(i64::deserialize(d)? != 0)
}

impl Relay {
    /// No ticket to it can still be used: it may be forgotten.
    fn placements_expired(&self, at: f64) -> bool {
        at - self.placed_at > 2.0 * TICKET_TTL_MS
    }
}

/// What a relay answered to a push or a stats call: its socket count, or
/// that it could not be reached.
pub(crate) type Heard = Option<u64>;

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub(crate) struct RelayBook {
    relays: Vec<Relay>,
    /// Number of the last message numbered.
    counter: u64,
    /// Every push up to this one was delivered (or given up on).
    delivered: u64,
}

impl RelayBook {
    /// The book as storage holds it.
    pub(crate) fn loaded(relays: Vec<Relay>, counter: u64) -> Self {
        Self {
            relays,
            counter,
            delivered: counter,
        }
    }

    /// Number of the last message sent (0 before the first).
    pub(crate) fn counter(&self) -> u64 {
        self.counter
    }

    /// Takes `count` message numbers; returns the first. The caller stores
    /// the new counter in the same synchronous step as the store that sends
    /// the messages, so numbers follow storage order.
    pub(crate) fn number(&mut self, count: u64) -> u64 {
        let first = self.counter + 1;
        self.counter += count;
        first
    }

    /// Whether any relay is pushed to.
    pub(crate) fn has_active(&self) -> bool {
        self.relays.iter().any(|r| r.active)
    }

    /// The active relays, with the last push each acknowledged.
    pub(crate) fn active(&self) -> Vec<(u32, Option<u64>)> {
        self.relays
            .iter()
            .filter(|r| r.active)
            .map(|r| (r.idx, r.last_ok))
            .collect()
    }

    /// The relays push `number` goes to, with the push each acknowledged
    /// last: relays placed after it was numbered hold it in their
    /// subscribers' backlogs already.
    pub(crate) fn targets(&self, number: u64) -> Vec<(u32, Option<u64>)> {
        self.active()
            .into_iter()
            .filter(|(_, last_ok)| last_ok.is_none_or(|n| n < number))
            .collect()
    }

    /// What the relays answered to push `number`; returns the relays to
    /// forget: those found empty past their last placement, and those that
    /// could not be reached (their streams were asked to end, so nobody is
    /// left to push to, and were they kept, every batch would wait on them
    /// again; a joiner still holding a ticket to one is refused or times
    /// out, and asks again).
    pub(crate) fn pushed(&mut self, number: u64, heard: &[(u32, Heard)], at: f64) -> Vec<u32> {
        let mut forget = Vec::new();
        for &(idx, sockets) in heard {
            let Some(relay) = self.relays.iter_mut().find(|r| r.idx == idx) else {
                continue;
            };
            match sockets {
                Some(sockets) => {
                    relay.last_ok = Some(number);
                    relay.sockets = sockets;
                    if sockets == 0 && relay.placements_expired(at) {
                        forget.push(idx);
                    }
                }
                None => forget.push(idx),
            }
        }
        forget
    }

    /// Every push up to `number` reached its relays (or was given up on).
    pub(crate) fn delivered(&mut self, number: u64) {
        self.delivered = number;
    }

    /// The last push delivered.
    pub(crate) fn delivered_up_to(&self) -> u64 {
        self.delivered
    }

    /// Places a subscriber whose backlog holds every message up to now on
    /// a relay with room (`full`: a relay that turned the last placement
    /// away), reusing a forgotten relay or adding one; returns the relay to
    /// save, the ticket, and whether the relay was forgotten before: then
    /// the caller stops it again at `ticket.after` before answering, which
    /// ends whatever sockets it may still hold (a relay forgotten because it
    /// failed may not have heard that it should end them, and they missed
    /// what was sent meanwhile) and voids tickets issued before. The caller
    /// must deliver every push up to `ticket.after` before answering, or the
    /// subscriber gets them twice.
    pub(crate) fn place(
        &mut self,
        capacity: u64,
        full: Option<u32>,
        at: f64,
    ) -> (Relay, Ticket, bool) {
        let after = self.counter;
        if let Some(relay) = full.and_then(|f| self.relays.iter_mut().find(|r| r.idx == f)) {
            relay.sockets = relay.sockets.max(capacity);
        }
        let found = self
            .relays
            .iter()
            .position(|r| r.active && r.sockets < capacity)
            .or_else(|| self.relays.iter().position(|r| !r.active));
        let reactivated = found.is_some_and(|i| !self.relays[i].active);
        let index = found.unwrap_or_else(|| {
            let idx = self.relays.iter().map(|r| r.idx + 1).max().unwrap_or(0);
            self.relays.push(Relay {
                idx,
                sockets: 0,
                placed_at: at,
                active: false,
                last_ok: None,
            });
            self.relays.len() - 1
        });
        let relay = &mut self.relays[index];
        if !relay.active {
            relay.active = true;
            relay.sockets = 0;
            // Everything up to now is in the subscriber's backlog.
            relay.last_ok = Some(after);
        }
        relay.sockets += 1;
        relay.placed_at = at;
        let ticket = Ticket {
            relay: relay.idx,
            after,
            issued: at,
        };
        (relay.clone(), ticket, reactivated)
    }

    /// What the relays answered to a stats call: the ones that answered,
    /// with their socket counts, and the relays to forget (found empty past
    /// their last placement). A relay that could not be asked is neither.
    pub(crate) fn counted(
        &mut self,
        heard: &[(u32, Heard)],
        at: f64,
    ) -> (Vec<(u32, u64)>, Vec<u32>) {
        let mut counted = Vec::new();
        let mut forget = Vec::new();
        for &(idx, sockets) in heard {
            let (Some(relay), Some(sockets)) =
                (self.relays.iter_mut().find(|r| r.idx == idx), sockets)
            else {
                continue;
            };
            if sockets == 0 && relay.placements_expired(at) {
                forget.push(idx);
            } else {
                relay.sockets = sockets;
                counted.push((idx, sockets));
            }
        }
        (counted, forget)
    }

    /// A relay says it has no socket left: whether to forget it now (else a
    /// subscriber placed on it may still arrive, and the next push or stats
    /// finds it empty).
    pub(crate) fn idle(&mut self, idx: u32, at: f64) -> bool {
        self.relays
            .iter_mut()
            .find(|r| r.idx == idx && r.active)
            .is_some_and(|relay| {
                relay.sockets = 0;
                relay.placements_expired(at)
            })
    }

    /// Stops pushing to a relay; returns its row to save.
    pub(crate) fn forget(&mut self, idx: u32) -> Option<Relay> {
        let relay = self.relays.iter_mut().find(|r| r.idx == idx)?;
        relay.active = false;
        relay.sockets = 0;
        relay.last_ok = None;
        Some(relay.clone())
    }
}

#[cfg(test)]
mod tests;
