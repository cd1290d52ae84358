//! Viewer counts, counted cheaply: each isolate's feed tells the socket's
//! other end (the stream object or a relay) how many clients it serves; a
//! relay tells the stream object its sum; the stream object adds up its own
//! sockets' counts and its relays', and tells every feed the total, which
//! each feed hands its clients as `event: viewers`. No message per join
//! crosses more than one hop, and each hop tells a changed count on at most
//! once per `VIEWERS_SECS`: a crowd joining costs a few messages, not one
//! per client.

/// What to do with a count that may have changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Tell {
    /// Tell it now.
    Now(u64),
    /// It changed, but was told too recently: offer it again at this time
    /// (ms), when it may be told.
    At(f64),
    /// Nothing new to tell.
    Nothing,
}

/// Tells a changing count on at most once per period, the first change at
/// once and the last one never lost.
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    told: Option<u64>,
    told_at: f64,
    every_ms: f64,
}

impl Throttle {
    /// A throttle that tells at most once per `every_ms`.
    pub(crate) fn new(every_ms: f64) -> Self {
        Self {
            told: None,
            told_at: f64::NEG_INFINITY,
            every_ms,
        }
    }

    /// The count is `count` at `now`: whether to tell it.
    pub(crate) fn offer(&mut self, count: u64, now: f64) -> Tell {
        if self.told == Some(count) {
            return Tell::Nothing;
        }
        let due = self.told_at + self.every_ms;
        if self.told.is_none() || now >= due {
            self.told = Some(count);
            self.told_at = now;
            Tell::Now(count)
        } else {
            Tell::At(due)
        }
    }

    /// The last count told, if any.
    pub(crate) fn told(&self) -> Option<u64> {
        self.told
    }

    /// The other end forgot what it was told (a new socket): the next offer
    /// is told at once.
    pub(crate) fn forget(&mut self) {
        self.told = None;
    }
}

/// The audience of a stream object: its own sockets' counts and its
/// relays' sums, added up.
pub(crate) fn total(
    sockets: impl IntoIterator<Item = u64>,
    relays: impl IntoIterator<Item = u64>,
) -> u64 {
    sockets
        .into_iter()
        .chain(relays)
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_told_at_once_then_at_most_once_per_period() {
        let mut t = Throttle::new(10_000.0);
        assert_eq!(t.offer(3, 0.0), Tell::Now(3));
        assert_eq!(t.offer(3, 1.0), Tell::Nothing);
        // Changes within the period wait for its end; none is lost.
        assert_eq!(t.offer(4, 2_000.0), Tell::At(10_000.0));
        assert_eq!(t.offer(5, 3_000.0), Tell::At(10_000.0));
        assert_eq!(t.told(), Some(3));
        assert_eq!(t.offer(5, 10_000.0), Tell::Now(5));
        // Back to what was told: nothing to say.
        assert_eq!(t.offer(5, 30_000.0), Tell::Nothing);
        assert_eq!(t.offer(0, 30_000.0), Tell::Now(0));
    }

    #[test]
    fn a_forgetful_other_end_is_told_at_once() {
        let mut t = Throttle::new(10_000.0);
        assert_eq!(t.offer(2, 0.0), Tell::Now(2));
        t.forget();
        assert_eq!(
            t.offer(2, 1.0),
            Tell::Now(2),
            "even the same count, even early"
        );
        assert_eq!(t.offer(3, 2.0), Tell::At(10_001.0));
    }

    #[test]
    fn totals_add_sockets_and_relays() {
        assert_eq!(total([1, 2], [10]), 13);
        assert_eq!(total([], []), 0);
        assert_eq!(total([u64::MAX], [1]), u64::MAX);
    }
}
