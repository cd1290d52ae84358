//! The per-isolate cache of API key records, kept apart from
//! the I/O so its rules can be tested natively.
//!
//! Rules:
//! - an answer younger than the TTL is used as is;
//! - an older one is refreshed by one request while the others keep using it,
//!   but only for [`REFRESH_TIMEOUT_MS`]: a refresh whose request was
//!   cancelled mid-read never reports back, and must not pin the old answer;
//! - no answer is used past TTL + [`MAX_STALE_MS`], refresh or not, so a
//!   revoked key stops working within a bounded time in every isolate;
//! - unknown keys are remembered apart from known ones, each side evicting
//!   its least recently used entry, so a flood of junk keys cannot push out
//!   the keys of open streams.

use std::num::NonZeroUsize;

use lru::LruCache;
use shared::apikey::ApiKeyRecord;

/// A refresh that has not reported back after this long is presumed lost.
pub(crate) const REFRESH_TIMEOUT_MS: f64 = 10_000.0;
/// How long past its TTL an answer may still serve while being refreshed.
pub(crate) const MAX_STALE_MS: f64 = 10_000.0;
/// Known keys remembered per isolate.
pub(crate) const KNOWN_MAX: usize = 10_000;
/// Unknown keys remembered per isolate.
pub(crate) const UNKNOWN_MAX: usize = 1_000;

struct Entry {
    record: Option<ApiKeyRecord>,
    fetched_ms: f64,
    /// When the refresh in flight started, if one is.
    refresh_started_ms: Option<f64>,
}

/// What the caller should do for a key.
#[derive(Debug, PartialEq)]
pub(crate) enum Decision {
    /// Use this answer (`None`: the key is unknown).
    Use(Option<ApiKeyRecord>),
    /// Ask KV, then report with [`KeyCache::store`] or [`KeyCache::failed`].
    Fetch,
}

/// Known and unknown keys, each an LRU.
pub(crate) struct KeyCache {
    known: LruCache<String, Entry>,
    unknown: LruCache<String, Entry>,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::with_capacity(KNOWN_MAX, UNKNOWN_MAX)
    }
}

impl KeyCache {
    /// A cache holding at most `known` known and `unknown` unknown keys.
    pub(crate) fn with_capacity(known: usize, unknown: usize) -> Self {
        let size = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        Self {
            known: LruCache::new(size(known)),
            unknown: LruCache::new(size(unknown)),
        }
    }

    /// Decides for `key` at `now_ms` with answers fresh for `ttl_ms`.
    pub(crate) fn decide(&mut self, key: &str, now_ms: f64, ttl_ms: f64) -> Decision {
        let entry = match self.known.get_mut(key) {
            Some(entry) => entry,
            None => match self.unknown.get_mut(key) {
                Some(entry) => entry,
                None => return Decision::Fetch,
            },
        };
        let age = now_ms - entry.fetched_ms;
        // A clock that went backwards makes the answer suspect too.
        if (0.0..ttl_ms).contains(&age) {
            return Decision::Use(entry.record.clone());
        }
        let refreshing = entry
            .refresh_started_ms
            .is_some_and(|started| (0.0..REFRESH_TIMEOUT_MS).contains(&(now_ms - started)));
        if refreshing && age < ttl_ms + MAX_STALE_MS {
            return Decision::Use(entry.record.clone());
        }
        if !refreshing {
            entry.refresh_started_ms = Some(now_ms);
        }
        Decision::Fetch
    }

    /// Records KV's answer for `key`, fetched at `now_ms`.
    pub(crate) fn store(&mut self, key: &str, record: Option<ApiKeyRecord>, now_ms: f64) {
        self.forget(key);
        let entry = Entry {
            fetched_ms: now_ms,
            refresh_started_ms: None,
            record,
        };
        if entry.record.is_some() {
            self.known.put(key.to_string(), entry);
        } else {
            self.unknown.put(key.to_string(), entry);
        }
    }

    /// A fetch for `key` failed: the next request may try again at once.
    pub(crate) fn failed(&mut self, key: &str) {
        for side in [&mut self.known, &mut self.unknown] {
            if let Some(entry) = side.peek_mut(key) {
                entry.refresh_started_ms = None;
            }
        }
    }

    /// Drops `key` (after the admin route changed it).
    pub(crate) fn forget(&mut self, key: &str) {
        self.known.pop(key);
        self.unknown.pop(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: f64 = 10_000.0;

    fn record() -> ApiKeyRecord {
        serde_json::from_value(serde_json::json!({
            "id": "k1", "name": "test", "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap_or_else(|e| panic!("record: {e}"))
    }

    #[test]
    fn fresh_answers_are_used_and_stale_ones_refreshed_by_one_request() {
        let mut cache = KeyCache::default();
        assert_eq!(cache.decide("a", 0.0, TTL), Decision::Fetch);
        cache.store("a", Some(record()), 0.0);
        assert_eq!(
            cache.decide("a", 5_000.0, TTL),
            Decision::Use(Some(record()))
        );
        // Stale: the first request refreshes, the next ones use the old answer.
        assert_eq!(cache.decide("a", 11_000.0, TTL), Decision::Fetch);
        assert_eq!(
            cache.decide("a", 11_001.0, TTL),
            Decision::Use(Some(record()))
        );
        cache.store("a", None, 11_500.0);
        assert_eq!(cache.decide("a", 11_600.0, TTL), Decision::Use(None));
    }

    #[test]
    fn a_refresh_that_never_reports_back_does_not_pin_the_old_answer() {
        let mut cache = KeyCache::default();
        cache.store("a", Some(record()), 0.0);
        assert_eq!(cache.decide("a", 10_000.0, TTL), Decision::Fetch);
        // Its request was cancelled: no store, no failed.
        assert_eq!(
            cache.decide("a", 10_000.0 + REFRESH_TIMEOUT_MS - 1.0, TTL),
            Decision::Use(Some(record()))
        );
        assert_eq!(
            cache.decide("a", 10_000.0 + REFRESH_TIMEOUT_MS, TTL),
            Decision::Fetch,
            "a lost refresh is retried"
        );
    }

    #[test]
    fn no_answer_is_trusted_past_its_maximum_age() {
        let mut cache = KeyCache::default();
        cache.store("a", Some(record()), 0.0);
        assert_eq!(cache.decide("a", TTL, TTL), Decision::Fetch);
        cache.failed("a");
        // A later refresh is in flight when the answer reaches its maximum age.
        assert_eq!(cache.decide("a", TTL + 5_000.0, TTL), Decision::Fetch);
        assert_eq!(
            cache.decide("a", TTL + MAX_STALE_MS - 1.0, TTL),
            Decision::Use(Some(record()))
        );
        assert_eq!(
            cache.decide("a", TTL + MAX_STALE_MS, TTL),
            Decision::Fetch,
            "past its maximum age the answer is never used, even with a refresh in flight"
        );
    }

    #[test]
    fn a_failed_refresh_lets_the_next_request_try_again() {
        let mut cache = KeyCache::default();
        cache.store("a", Some(record()), 0.0);
        assert_eq!(cache.decide("a", TTL, TTL), Decision::Fetch);
        cache.failed("a");
        assert_eq!(cache.decide("a", TTL + 1.0, TTL), Decision::Fetch);
    }

    #[test]
    fn junk_keys_cannot_push_out_known_ones() {
        let mut cache = KeyCache::with_capacity(100, 10);
        cache.store("good", Some(record()), 0.0);
        for i in 0..10_000 {
            cache.store(&format!("junk{i}"), None, 1.0);
        }
        assert_eq!(
            cache.decide("good", 2.0, TTL),
            Decision::Use(Some(record()))
        );
        assert_eq!(cache.decide("junk9999", 2.0, TTL), Decision::Use(None));
        assert_eq!(cache.decide("junk0", 2.0, TTL), Decision::Fetch, "evicted");
    }

    #[test]
    fn known_keys_evict_the_least_recently_used() {
        let mut cache = KeyCache::with_capacity(2, 2);
        cache.store("a", Some(record()), 0.0);
        cache.store("b", Some(record()), 0.0);
        assert!(matches!(cache.decide("a", 1.0, TTL), Decision::Use(_)));
        cache.store("c", Some(record()), 0.0);
        assert_eq!(cache.decide("b", 1.0, TTL), Decision::Fetch);
        assert!(matches!(cache.decide("a", 1.0, TTL), Decision::Use(_)));
    }

    #[test]
    fn a_key_that_becomes_unknown_moves_sides() {
        let mut cache = KeyCache::default();
        cache.store("a", Some(record()), 0.0);
        cache.store("a", None, 1.0);
        assert_eq!(cache.decide("a", 2.0, TTL), Decision::Use(None));
        cache.forget("a");
        assert_eq!(cache.decide("a", 2.0, TTL), Decision::Fetch);
    }
}
