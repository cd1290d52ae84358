//! The one ring buffer of the fan-out: numbered messages kept for clients
//! still joining, bounded by count and by age. Feeds keep one per socket,
//! relays one per object.

use std::collections::VecDeque;

/// A kept message: its number, when it arrived (ms), and the item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Kept<T> {
    /// The message's number in its stream.
    pub(crate) number: u64,
    /// Arrival, in ms.
    pub(crate) at: f64,
    /// What is kept of it.
    pub(crate) item: T,
}

/// Messages in arrival order: at most `max_len`, none older than `max_age_ms`.
#[derive(Debug, Clone)]
pub(crate) struct Ring<T> {
    kept: VecDeque<Kept<T>>,
    max_len: usize,
    max_age_ms: f64,
}

impl<T> Ring<T> {
    /// An empty ring with these bounds.
    pub(crate) fn new(max_len: usize, max_age_ms: f64) -> Self {
        Self {
            kept: VecDeque::new(),
            max_len,
            max_age_ms,
        }
    }

    /// Keeps a message, then drops what is past the bounds; returns the
    /// number of the last message dropped, if any was.
    pub(crate) fn push(&mut self, number: u64, at: f64, item: T) -> Option<u64> {
        self.kept.push_back(Kept { number, at, item });
        let mut dropped = None;
        while self
            .kept
            .front()
            .is_some_and(|k| self.kept.len() > self.max_len || at - k.at > self.max_age_ms)
        {
            dropped = self.kept.pop_front().map(|k| k.number).or(dropped);
        }
        dropped
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) {
        self.kept.clear();
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
    fn bounded_by_count_and_age() {
        let mut ring = Ring::new(3, 100.0);
        assert_eq!(ring.push(1, 0.0, "a"), None);
        assert_eq!(ring.push(2, 10.0, "b"), None);
        assert_eq!(ring.push(3, 20.0, "c"), None);
        assert_eq!(ring.push(4, 30.0, "d"), Some(1), "count");
        assert_eq!(ring.push(5, 125.0, "e"), Some(3), "age drops 2 and 3");
        let numbers: Vec<u64> = ring.iter().map(|k| k.number).collect();
        assert_eq!(numbers, [4, 5]);
        let after: Vec<&str> = ring.after(4).map(|k| k.item).collect();
        assert_eq!(after, ["e"]);
        ring.clear();
        assert!(ring.front().is_none());
    }
}
