//! The one ring buffer of the fan-out: numbered messages kept for clients
//! still joining, bounded by count, by age and by bytes (a few large
//! messages must not fill an isolate's or an object's 128 MB). Feeds keep
//! one per socket, relays one per object.

use std::collections::VecDeque;

/// A kept message: its number, when it arrived (ms), and the item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Kept<T> {
    /// The message's number in its stream.
    pub(crate) number: u64,
    /// Arrival, in ms.
    pub(crate) at: f64,
    /// Its size in bytes.
    pub(crate) bytes: usize,
    /// What is kept of it.
    pub(crate) item: T,
}

/// Messages in arrival order: at most `max_len` holding at most
/// `max_bytes` together, none older than `max_age_ms`.
#[derive(Debug, Clone)]
pub(crate) struct Ring<T> {
    kept: VecDeque<Kept<T>>,
    max_len: usize,
    max_age_ms: f64,
    max_bytes: usize,
    /// Bytes of the messages kept.
    bytes: usize,
}

impl<T> Ring<T> {
    /// An empty ring with these bounds.
    pub(crate) fn new(max_len: usize, max_age_ms: f64, max_bytes: usize) -> Self {
        Self {
            kept: VecDeque::new(),
            max_len,
            max_age_ms,
            max_bytes,
            bytes: 0,
        }
    }

    /// Keeps a message of `bytes` bytes, then drops what is past the bounds
    /// (the message itself, if it alone is over the bytes); returns the
    /// number of the last message dropped, if any was.
    pub(crate) fn push(&mut self, number: u64, at: f64, item: T, bytes: usize) -> Option<u64> {
        self.kept.push_back(Kept {
            number,
            at,
            bytes,
            item,
        });
        self.bytes += bytes;
        let mut dropped = None;
        while self.kept.front().is_some_and(|k| {
            self.kept.len() > self.max_len
                || at - k.at > self.max_age_ms
                || self.bytes > self.max_bytes
        }) {
            if let Some(old) = self.kept.pop_front() {
                self.bytes -= old.bytes;
                dropped = Some(old.number);
            }
        }
        dropped
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) {
        self.kept.clear();
        self.bytes = 0;
    }

    /// Bytes kept.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The oldest message kept.
    pub(crate) fn front(&self) -> Option<&Kept<T>> {
        self.kept.front()
    }

    /// The messages kept, oldest first.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &Kept<T>> {
        self.kept.iter()
    }

    /// The messages numbered after `number`, oldest first.
    pub(crate) fn after(&self, number: u64) -> impl Iterator<Item = &Kept<T>> {
        self.kept.iter().filter(move |k| k.number > number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_count_age_and_bytes() {
        let mut ring = Ring::new(3, 100.0, 1000);
        assert_eq!(ring.push(1, 0.0, "a", 1), None);
        assert_eq!(ring.push(2, 10.0, "b", 1), None);
        assert_eq!(ring.push(3, 20.0, "c", 1), None);
        assert_eq!(ring.push(4, 30.0, "d", 1), Some(1), "count");
        assert_eq!(ring.push(5, 125.0, "e", 1), Some(3), "age drops 2 and 3");
        let numbers: Vec<u64> = ring.iter().map(|k| k.number).collect();
        assert_eq!(numbers, [4, 5]);
        let after: Vec<&str> = ring.after(4).map(|k| k.item).collect();
        assert_eq!(after, ["e"]);
        ring.clear();
        assert!(ring.front().is_none());
        assert_eq!(ring.bytes(), 0);

        let mut ring = Ring::new(100, 1e9, 1000);
        ring.push(1, 0.0, "a", 400);
        ring.push(2, 0.0, "b", 400);
        assert_eq!(ring.push(3, 0.0, "c", 400), Some(1), "bytes");
        assert_eq!(ring.bytes(), 800);
        assert_eq!(
            ring.push(4, 0.0, "huge", 5000),
            Some(4),
            "alone over the bound"
        );
        assert_eq!((ring.front().map(|k| k.item), ring.bytes()), (None, 0));
    }
}
