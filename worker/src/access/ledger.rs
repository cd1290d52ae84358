//! The isolate's book of stream leases and remembered refusals: every
//! decision `access::limits` carries out against Upstash, as plain data
//! (no `worker`, no clock: times come in as arguments), tested natively.
//!
//! - A stream admitted by Upstash holds a *confirmed* lease. One admitted
//!   while Upstash could not be asked (fail open) holds a *pending* one: its
//!   id is not in Redis yet, so the next refresh takes it in like a lapsed
//!   lease, or reports it lost when the key is full (its stream then ends).
//! - Fail-open admissions of a key are capped per isolate at the key's
//!   `max_streams`, counting every stream of that key this isolate holds.
//! - Leases are refreshed every `refresh_every`; while any is pending, or
//!   after a refresh failed, every `retry_every` (a heartbeat) instead.
//! - A rate-limit refusal is remembered until its window ends, so a caller
//!   refused once costs no Upstash call until then.
//! - A release Upstash did not take (it refused us, or could not be asked)
//!   is tried again with the next refresh, due at the next heartbeat: else
//!   the ended stream would hold its key's slot for a whole lease TTL.

use std::collections::{HashMap, HashSet};

use shared::limits::Lease;

/// A stream's entry in the book.
pub(crate) type Handle = u64;

/// Remembered refusals kept at most; beyond, new ones are not remembered
/// (they are then asked of Upstash again), so the book's memory is bounded.
const MAX_REFUSALS: usize = 10_000;

/// Releases kept for another try at most (beyond, the oldest lapse by
/// themselves within their TTL).
const MAX_UNRELEASED: usize = 10_000;

/// Slack so a timer firing a little early still counts.
const SLACK_MS: f64 = 50.0;

struct Held {
    lease: Lease,
    /// Up to when stream seconds were counted (ms).
    counted_ms: f64,
    /// Redis holds this lease (else it was admitted failing open).
    confirmed: bool,
}

/// A refresh sent and not yet answered.
struct InFlight {
    since_ms: f64,
    /// The leases it carries, with the seconds it counts for each.
    batch: Vec<(Handle, u64)>,
    /// Leases of the batch released meanwhile: the refresh may have put
    /// them back, so they are released again once it is answered.
    released: Vec<Lease>,
}

/// What a rate-limit refusal was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Rate {
    /// New streams per minute.
    Connects,
    /// REST requests per minute.
    Requests,
}

/// How often leases are refreshed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// `LEASE_REFRESH_SECS`, in ms.
    pub(crate) refresh_every_ms: f64,
    /// While a lease is pending or the last refresh failed (a heartbeat).
    pub(crate) retry_every_ms: f64,
    /// A refresh still unanswered after this long was cancelled with its
    /// request, and no longer holds up the next.
    pub(crate) stale_ms: f64,
}

/// The book (one per isolate).
#[derive(Default)]
pub(crate) struct Book {
    leases: HashMap<Handle, Held>,
    next: Handle,
    last_refresh_ms: f64,
    /// The last refresh failed: retry sooner.
    failed: bool,
    in_flight: Option<InFlight>,
    /// Streams whose lease was lost (their key was full when it was taken
    /// back): each ends at its next tick.
    lost: HashSet<Handle>,
    /// Rate-limit refusals, per key and rate: until when (ms).
    refusals: HashMap<(String, Rate), f64>,
    /// Releases that failed, to try again.
    unreleased: Vec<Lease>,
    /// How many held leases are pending (not confirmed): kept as a count,
    /// since every stream's tick asks whether a refresh is due.
    pending: usize,
}

impl Book {
    /// Enters `lease` for a stream admitted at `now_ms`: `confirmed` when
    /// Upstash admitted it, pending when it failed open.
    pub(crate) fn hold(&mut self, lease: Lease, confirmed: bool, now_ms: f64) -> Handle {
        if self.leases.is_empty() && self.in_flight.is_none() {
            // A fresh lease lives a whole TTL: nothing to refresh yet.
            self.last_refresh_ms = now_ms;
        }
        self.next += 1;
        self.pending += usize::from(!confirmed);
        self.leases.insert(
            self.next,
            Held {
                lease,
                counted_ms: now_ms,
                confirmed,
            },
        );
        self.next
    }

    /// Whether one more stream of `key_id` may be let in without asking
    /// Upstash: this isolate holds fewer than `max_streams` of the key's
    /// streams (0: no cap).
    pub(crate) fn may_fail_open(&self, key_id: &str, max_streams: u32) -> bool {
        max_streams == 0
            || self
                .leases
                .values()
                .filter(|held| held.lease.key_id == key_id)
                .count()
                < max_streams as usize
    }

    /// Whether a refresh is due at `now_ms`.
    pub(crate) fn due(&self, now_ms: f64, timing: Timing) -> bool {
        if self.leases.is_empty() && self.unreleased.is_empty() {
            return false;
        }
        if let Some(flight) = &self.in_flight
            && now_ms - flight.since_ms < timing.stale_ms
        {
            return false;
        }
        let pending = self.failed || !self.unreleased.is_empty() || self.pending > 0;
        let every = if pending {
            timing.retry_every_ms
        } else {
            timing.refresh_every_ms
        };
        now_ms - self.last_refresh_ms >= every - SLACK_MS
    }

    /// Starts a refresh if one is due: the leases to send, each with the
    /// whole seconds streamed since they were last counted.
    pub(crate) fn begin_refresh(&mut self, now_ms: f64, timing: Timing) -> Option<Vec<Lease>> {
        if !self.due(now_ms, timing) {
            return None;
        }
        self.last_refresh_ms = now_ms;
        let mut batch = Vec::with_capacity(self.leases.len());
        let mut leases = Vec::with_capacity(self.leases.len());
        for (handle, held) in &mut self.leases {
            let lease = take_seconds(held, now_ms);
            batch.push((*handle, lease.unreported_secs));
            leases.push(lease);
        }
        self.in_flight = Some(InFlight {
            since_ms: now_ms,
            batch,
            released: Vec::new(),
        });
        Some(leases)
    }

    /// The refresh was answered: `Ok` with the lease ids it lost, or `Err`
    /// when it failed. Returns leases released while it was in flight, to
    /// be released again (the refresh may have taken them back).
    pub(crate) fn end_refresh(&mut self, outcome: Result<&[String], ()>) -> Vec<Lease> {
        let Some(flight) = self.in_flight.take() else {
            return Vec::new();
        };
        self.failed = outcome.is_err();
        for (handle, secs) in flight.batch {
            let Some(held) = self.leases.get_mut(&handle) else {
                continue;
            };
            match outcome {
                Ok(lost) if lost.contains(&held.lease.lease) => {
                    self.pending -= usize::from(!held.confirmed);
                    self.leases.remove(&handle);
                    self.lost.insert(handle);
                }
                Ok(_) => {
                    self.pending -= usize::from(!held.confirmed);
                    held.confirmed = true;
                }
                // Not counted after all: counted with the next refresh.
                Err(()) => held.counted_ms -= secs as f64 * 1000.0,
            }
        }
        flight.released
    }

    /// Streams holding a lease, and how many of them are pending.
    pub(crate) fn held(&self) -> (usize, usize) {
        (self.leases.len(), self.pending)
    }

    /// Whether the stream holding `handle` lost its lease.
    pub(crate) fn is_lost(&self, handle: Handle) -> bool {
        self.lost.contains(&handle)
    }

    /// The stream holding `handle` ended at `now_ms`: its lease (with its
    /// last seconds) to give back, unless it was lost.
    pub(crate) fn release(&mut self, handle: Handle, now_ms: f64) -> Option<Lease> {
        self.lost.remove(&handle);
        let mut held = self.leases.remove(&handle)?;
        self.pending -= usize::from(!held.confirmed);
        let lease = take_seconds(&mut held, now_ms);
        if let Some(flight) = &mut self.in_flight
            && flight.batch.iter().any(|(h, _)| *h == handle)
        {
            flight.released.push(Lease {
                unreported_secs: 0,
                ..lease.clone()
            });
        }
        Some(lease)
    }

    /// A release Upstash did not take: tried again with the next refresh.
    pub(crate) fn release_failed(&mut self, lease: Lease) {
        if self.unreleased.len() >= MAX_UNRELEASED {
            self.unreleased.remove(0);
        }
        self.unreleased.push(lease);
    }

    /// The releases to try again, taken out of the book (call as a refresh
    /// begins; give back any that fail again with [`Self::release_failed`]).
    pub(crate) fn take_unreleased(&mut self) -> Vec<Lease> {
        std::mem::take(&mut self.unreleased)
    }

    /// Remembers that `key_id` was refused for `rate` until `until_ms`.
    pub(crate) fn remember_refusal(
        &mut self,
        key_id: &str,
        rate: Rate,
        until_ms: f64,
        now_ms: f64,
    ) {
        if self.refusals.len() >= MAX_REFUSALS {
            self.refusals.retain(|_, until| *until > now_ms);
        }
        if self.refusals.len() < MAX_REFUSALS {
            self.refusals.insert((key_id.to_string(), rate), until_ms);
        }
    }

    /// Whole seconds (at least 1) `key_id` stays refused for `rate` at
    /// `now_ms`, if a refusal is remembered.
    pub(crate) fn refused(&mut self, key_id: &str, rate: Rate, now_ms: f64) -> Option<u32> {
        let key = (key_id.to_string(), rate);
        let until = *self.refusals.get(&key)?;
        if until <= now_ms {
            self.refusals.remove(&key);
            return None;
        }
        Some((((until - now_ms) / 1000.0).ceil() as u32).max(1))
    }
}

/// Moves whole seconds streamed since last counted into the lease it
/// returns.
fn take_seconds(held: &mut Held, now_ms: f64) -> Lease {
    let secs = ((now_ms - held.counted_ms) / 1000.0).floor().max(0.0);
    held.counted_ms += secs * 1000.0;
    Lease {
        unreported_secs: secs as u64,
        ..held.lease.clone()
    }
}

#[cfg(test)]
mod tests;

/// Admissions this isolate let in failing open that the directory's total
/// (`gamefeed_limits_failed_open_total`) does not hold yet. They are
/// reported at most every `every_ms`, one report at a time; a report that
/// failed is added back for the next.
#[derive(Debug, Default)]
pub(crate) struct FailOpenTally {
    unreported: u64,
    in_flight: bool,
    last_sent_ms: Option<f64>,
}

impl FailOpenTally {
    /// One more admission let in failing open.
    pub(crate) fn count(&mut self) {
        self.unreported += 1;
    }

    /// The count to report now, if one is due; the report is then in
    /// flight until [`FailOpenTally::done`].
    pub(crate) fn take(&mut self, now_ms: f64, every_ms: f64) -> Option<u64> {
        let due = self
            .last_sent_ms
            .is_none_or(|last| now_ms - last + SLACK_MS >= every_ms);
        if self.in_flight || self.unreported == 0 || !due {
            return None;
        }
        self.in_flight = true;
        self.last_sent_ms = Some(now_ms);
        Some(std::mem::take(&mut self.unreported))
    }

    /// The report of `count` ended; `taken`: the directory added it.
    pub(crate) fn done(&mut self, count: u64, taken: bool) {
        self.in_flight = false;
        if !taken {
            self.unreported += count;
        }
    }
}
