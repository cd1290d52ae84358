//! A relay's rules, pure: which joins it takes, and which pushes it sends.
//! `objects::relay` holds the sockets and carries them out.
//!
//! A relay stores nothing and decides nothing about the stream: the stream
//! object numbers its pushes and hands every subscriber its backlog. In
//! memory the relay keeps the last few pushes (lost when it sleeps, which is
//! fine): a subscriber whose ticket was issued just before pushes it has not
//! seen gets them on joining, and one whose pushes are gone is told to ask
//! again.

use serde::{Deserialize, Serialize};

use crate::fanout::relays::{TICKET_TTL_MS, Ticket};
use crate::fanout::ring::Ring;

/// Pushes kept for subscribers still joining: at most this many…
const RING_PUSHES: usize = 256;
/// …and none older than this…
const RING_MS: f64 = 10_000.0;
/// …and no more bytes than this (a push is up to 256 KiB; 256 of them would
/// be half an object's 128 MB).
const RING_BYTES: usize = 8 * 1024 * 1024;

/// Why a relay turned a subscriber away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum JoinRefused {
    /// At capacity: ask the stream object for another placement.
    Full,
    /// The ticket is too old, or the relay no longer holds every push after
    /// it: ask again.
    Stale,
}

/// A join the relay takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Joined<B> {
    /// The pushes after the ticket the relay already holds: sent first.
    pub(crate) pending: Vec<B>,
    /// The ticket names pushes this relay never got (it was forgotten and
    /// placed again meanwhile): every socket already here would miss them,
    /// so they end first (they resume from the stream object).
    pub(crate) reset: bool,
}

/// What to do with a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Delivered already (a retried push): nothing is sent twice.
    Duplicate,
    /// Send it to every socket; first, when `missed` names pushes that
    /// never arrived (`first..=last`), end every stream here: the clients
    /// reconnect and resume from the stream object, missing nothing.
    Send {
        /// The pushes lost on the way, if any.
        missed: Option<(u64, u64)>,
    },
}

/// See the module documentation. `B` is a kept push's message.
pub(crate) struct RelayCore<B> {
    ring: Ring<B>,
    /// The oldest push from which on `ring` holds every one.
    first: Option<u64>,
    /// The last push received.
    last: Option<u64>,
}

impl<B: Clone> Default for RelayCore<B> {
    fn default() -> Self {
        Self {
            ring: Ring::new(RING_PUSHES, RING_MS, RING_BYTES),
            first: None,
            last: None,
        }
    }
}

impl<B: Clone> RelayCore<B> {
    /// Whether a subscriber with `ticket` may join now (the relay holding
    /// `sockets` of at most `capacity`); if so, the pushes to send it first.
    pub(crate) fn join(
        &mut self,
        ticket: &Ticket,
        now: f64,
        sockets: usize,
        capacity: usize,
    ) -> Result<Joined<B>, JoinRefused> {
        if (now - ticket.issued).abs() > TICKET_TTL_MS {
            return Err(JoinRefused::Stale);
        }
        if sockets >= capacity {
            return Err(JoinRefused::Full);
        }
        let pending = match self.last {
            Some(last) if last > ticket.after => {
                if self.first.is_none_or(|first| first > ticket.after + 1) {
                    // The pushes after the ticket are gone.
                    return Err(JoinRefused::Stale);
                }
                self.ring
                    .after(ticket.after)
                    .map(|k| k.item.clone())
                    .collect()
            }
            Some(last) if last < ticket.after => {
                self.forget(Some(ticket.after + 1));
                return Ok(Joined {
                    pending: Vec::new(),
                    reset: true,
                });
            }
            // Nothing heard yet, and nobody here: the first joiner tells
            // where the stream is, so a push that was lost before it
            // (whose `prev` names it) is noticed as a gap.
            None if sockets == 0 => {
                self.forget(Some(ticket.after + 1));
                Vec::new()
            }
            _ => Vec::new(),
        };
        Ok(Joined {
            pending,
            reset: false,
        })
    }

    /// A push numbered `number` arrived; `prev`: the push the stream object
    /// last delivered here, when it knows. What this relay last received
    /// tells best; after it slept, what the stream object last delivered.
    pub(crate) fn push(
        &mut self,
        number: u64,
        prev: Option<u64>,
        now: f64,
        message: B,
        bytes: usize,
    ) -> Push {
        if self.last.is_some_and(|last| number <= last) {
            return Push::Duplicate;
        }
        let expected = self.last.or(prev).map(|n| n + 1);
        let missed = expected
            .filter(|e| *e != number)
            .map(|e| (e, number.saturating_sub(1)));
        if missed.is_some() {
            self.forget(Some(number));
        }
        self.ring.push(number, now, message, bytes);
        self.first = self.ring.front().map(|k| k.number).or(Some(number));
        self.last = Some(number);
        Push::Send { missed }
    }

    /// The stream object forgot this relay when its last message was
    /// `after`: a ticket issued before may name pushes this relay never got
    /// (the one that failed), so only tickets from `after` on are taken.
    pub(crate) fn stop(&mut self, after: u64) {
        self.forget(Some(after + 1));
    }

    /// Drops the kept pushes; from `next` on (if given) they are kept again.
    fn forget(&mut self, next: Option<u64>) {
        self.ring.clear();
        self.first = next;
        self.last = next.map(|n| n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(pending: &[u64]) -> Joined<u64> {
        Joined {
            pending: pending.to_vec(),
            reset: false,
        }
    }

    fn ticket(after: u64) -> Ticket {
        Ticket {
            relay: 0,
            after,
            issued: 1000.0,
        }
    }

    #[test]
    fn joins_get_the_pushes_after_their_ticket_or_are_refused() {
        let mut relay: RelayCore<u64> = RelayCore::default();
        assert_eq!(
            relay.join(&ticket(5), 1000.0, 0, 1),
            Ok(joined(&[])),
            "nothing yet"
        );
        assert_eq!(relay.join(&ticket(5), 1000.0, 1, 1), Err(JoinRefused::Full));
        let late = 1000.0 + TICKET_TTL_MS + 1.0;
        assert_eq!(relay.join(&ticket(5), late, 0, 1), Err(JoinRefused::Stale));
        for n in 6..=8 {
            assert_eq!(
                relay.push(n, Some(n - 1), 1000.0, n, 1),
                Push::Send { missed: None }
            );
        }
        assert_eq!(relay.join(&ticket(6), 1000.0, 0, 9), Ok(joined(&[7, 8])));
        assert_eq!(relay.join(&ticket(8), 1000.0, 0, 9), Ok(joined(&[])));
        assert_eq!(
            relay.join(&ticket(4), 1000.0, 0, 9),
            Err(JoinRefused::Stale),
            "7's gone"
        );
        assert_eq!(relay.join(&ticket(5), 1000.0, 0, 9), Ok(joined(&[6, 7, 8])));
    }

    #[test]
    fn the_ring_is_bounded_by_bytes() {
        let mut relay: RelayCore<u64> = RelayCore::default();
        let big = RING_BYTES / 4;
        for n in 1..=8 {
            relay.push(n, Some(n - 1), 0.0, n, big);
        }
        // Four pushes of a quarter of the bound each: 5..=8 are kept.
        assert_eq!(
            relay.join(&ticket_at(4, 0.0), 0.0, 0, 9).map(|j| j.pending),
            Ok(vec![5, 6, 7, 8])
        );
        assert_eq!(
            relay.join(&ticket_at(3, 0.0), 0.0, 0, 9),
            Err(JoinRefused::Stale)
        );
    }

    fn ticket_at(after: u64, issued: f64) -> Ticket {
        Ticket {
            relay: 0,
            after,
            issued,
        }
    }

    #[test]
    fn a_retried_push_is_not_sent_twice_and_a_gap_ends_the_streams() {
        let mut relay: RelayCore<u64> = RelayCore::default();
        assert_eq!(
            relay.push(3, None, 0.0, 3, 1),
            Push::Send { missed: None },
            "first heard"
        );
        assert_eq!(relay.push(3, Some(2), 0.0, 3, 1), Push::Duplicate);
        assert_eq!(
            relay.push(6, Some(5), 0.0, 6, 1),
            Push::Send {
                missed: Some((4, 5))
            }
        );
        assert_eq!(
            relay.join(
                &Ticket {
                    relay: 0,
                    after: 3,
                    issued: 0.0
                },
                0.0,
                0,
                9
            ),
            Err(JoinRefused::Stale)
        );
        assert_eq!(
            relay.join(
                &Ticket {
                    relay: 0,
                    after: 5,
                    issued: 0.0
                },
                0.0,
                0,
                9
            ),
            Ok(joined(&[6]))
        );
        // After sleeping, the stream object's `prev` tells what was missed.
        let mut woken: RelayCore<u64> = RelayCore::default();
        assert_eq!(
            woken.push(9, Some(7), 0.0, 9, 1),
            Push::Send {
                missed: Some((8, 8))
            }
        );
        // Stopped after 12: tickets before it may have missed a push.
        woken.stop(12);
        let at = |after| Ticket {
            relay: 0,
            after,
            issued: 0.0,
        };
        assert_eq!(woken.join(&at(11), 0.0, 0, 9), Err(JoinRefused::Stale));
        assert_eq!(woken.join(&at(12), 0.0, 0, 9), Ok(joined(&[])));
        assert_eq!(
            woken.push(13, Some(12), 0.0, 13, 1),
            Push::Send { missed: None }
        );
        // Placed again later: its sockets missed 14 and 15 and end.
        assert_eq!(
            woken.join(&at(15), 0.0, 1, 9),
            Ok(Joined {
                pending: vec![],
                reset: true
            })
        );
        assert_eq!(
            woken.push(16, Some(15), 0.0, 16, 1),
            Push::Send { missed: None }
        );
    }
}
