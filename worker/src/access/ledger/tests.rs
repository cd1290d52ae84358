#![allow(clippy::unwrap_used)]

use super::*;

const TIMING: Timing = Timing {
    refresh_every_ms: 60_000.0,
    retry_every_ms: 15_000.0,
    stale_ms: 11_000.0,
};

fn lease(key: &str, id: &str) -> Lease {
    Lease {
        key_id: key.into(),
        lease: id.into(),
        unreported_secs: 0,
        max_streams: 2,
        token: None,
    }
}

fn ids(leases: &[Lease]) -> Vec<&str> {
    let mut ids: Vec<&str> = leases.iter().map(|l| l.lease.as_str()).collect();
    ids.sort_unstable();
    ids
}

#[test]
fn confirmed_leases_are_refreshed_every_period_and_count_their_seconds() {
    let mut book = Book::default();
    let a = book.hold(lease("k", "a"), true, 1_000.0);
    assert!(
        !book.due(16_000.0, TIMING),
        "a heartbeat is not a refresh period"
    );
    assert!(book.begin_refresh(30_000.0, TIMING).is_none());
    let sent = book.begin_refresh(61_000.0, TIMING).unwrap();
    assert_eq!(ids(&sent), ["a"]);
    assert_eq!(sent[0].unreported_secs, 60);
    assert!(book.end_refresh(Ok(&[])).is_empty());
    assert!(!book.is_lost(a));
    let last = book.release(a, 62_500.0).unwrap();
    assert_eq!(last.unreported_secs, 1, "seconds are counted once");
    assert!(!book.due(200_000.0, TIMING), "nothing left to refresh");
}

#[test]
fn a_stream_let_in_failing_open_is_admitted_at_the_next_heartbeat_or_lost() {
    let mut book = Book::default();
    let held = book.hold(lease("k", "held"), true, 0.0);
    let open = book.hold(lease("k", "open"), false, 1_000.0);
    assert_eq!(book.held(), (2, 1));
    // Pending: due at the next heartbeat, not a whole period later.
    assert!(book.due(15_000.0, TIMING));
    let sent = book.begin_refresh(15_000.0, TIMING).unwrap();
    assert_eq!(ids(&sent), ["held", "open"]);
    // Upstash is still down: try again a heartbeat later.
    book.end_refresh(Err(()));
    assert!(!book.due(20_000.0, TIMING));
    let sent = book.begin_refresh(30_000.0, TIMING).unwrap();
    assert_eq!(
        sent.iter().map(|l| l.unreported_secs).sum::<u64>(),
        30 + 29,
        "seconds of a failed refresh are counted by the next"
    );
    // Upstash answers: the key was full, the fail-open stream loses.
    book.end_refresh(Ok(&["open".to_string()]));
    assert!(book.is_lost(open));
    assert_eq!(book.held(), (1, 0));
    assert!(!book.is_lost(held));
    assert!(
        book.release(open, 31_000.0).is_none(),
        "nothing to give back"
    );
    assert!(!book.is_lost(open));
    // All confirmed now: back to the long period.
    assert!(!book.due(50_000.0, TIMING));
    assert!(book.due(90_000.0, TIMING));
}

#[test]
fn a_stream_that_fails_open_and_finds_room_is_counted_from_then_on() {
    let mut book = Book::default();
    let open = book.hold(lease("k", "open"), false, 0.0);
    let sent = book.begin_refresh(15_000.0, TIMING).unwrap();
    assert_eq!(ids(&sent), ["open"]);
    book.end_refresh(Ok(&[]));
    assert!(!book.is_lost(open));
    assert!(!book.due(30_000.0, TIMING), "confirmed: the long period");
}

#[test]
fn fail_open_admissions_are_capped_by_the_streams_this_isolate_holds() {
    let mut book = Book::default();
    assert!(book.may_fail_open("k", 2));
    book.hold(lease("k", "1"), true, 0.0);
    book.hold(lease("other", "2"), false, 0.0);
    assert!(book.may_fail_open("k", 2));
    let second = book.hold(lease("k", "3"), false, 0.0);
    assert!(!book.may_fail_open("k", 2));
    assert!(book.may_fail_open("k", 0), "0: no cap");
    book.release(second, 1.0);
    assert!(book.may_fail_open("k", 2));
}

#[test]
fn a_refresh_answered_late_or_never_does_not_hold_up_the_next() {
    let mut book = Book::default();
    book.hold(lease("k", "a"), true, 0.0);
    assert!(book.begin_refresh(60_000.0, TIMING).is_some());
    assert!(!book.due(70_000.0, TIMING));
    // Its request was cancelled: it never answers.
    assert!(book.begin_refresh(135_000.0, TIMING).is_some());
}

#[test]
fn a_lease_released_during_a_refresh_is_released_again_after_it() {
    let mut book = Book::default();
    let a = book.hold(lease("k", "a"), true, 0.0);
    let b = book.hold(lease("k", "b"), true, 0.0);
    book.begin_refresh(60_000.0, TIMING).unwrap();
    let gone = book.release(a, 61_000.0).unwrap();
    assert_eq!(gone.unreported_secs, 1);
    let again = book.end_refresh(Ok(&[]));
    assert_eq!(ids(&again), ["a"]);
    assert_eq!(
        again[0].unreported_secs, 0,
        "its seconds went with the first"
    );
    // Released after the refresh was answered: nothing to do again.
    book.begin_refresh(120_000.0, TIMING).unwrap();
    book.end_refresh(Ok(&[]));
    book.release(b, 121_000.0).unwrap();
    assert!(book.end_refresh(Ok(&[])).is_empty());
}

#[test]
fn a_release_that_failed_is_tried_again_at_the_next_heartbeat() {
    let mut book = Book::default();
    let a = book.hold(lease("k", "a"), true, 0.0);
    let gone = book.release(a, 1_000.0).unwrap();
    assert!(
        !book.due(20_000.0, TIMING),
        "nothing held, nothing to retry"
    );
    book.release_failed(gone);
    // Due at the next heartbeat, though no lease is held.
    assert!(!book.due(10_000.0, TIMING));
    assert!(book.due(15_000.0, TIMING));
    assert!(book.begin_refresh(15_000.0, TIMING).unwrap().is_empty());
    let again = book.take_unreleased();
    assert_eq!(ids(&again), ["a"]);
    assert!(book.take_unreleased().is_empty(), "taken once");
    book.end_refresh(Ok(&[]));
    assert!(!book.due(100_000.0, TIMING), "done with");
}

#[test]
fn refusals_are_remembered_until_their_window_ends() {
    let mut book = Book::default();
    assert_eq!(book.refused("k", Rate::Connects, 0.0), None);
    book.remember_refusal("k", Rate::Connects, 30_000.0, 0.0);
    assert_eq!(book.refused("k", Rate::Connects, 0.0), Some(30));
    assert_eq!(book.refused("k", Rate::Connects, 29_500.0), Some(1));
    assert_eq!(book.refused("k", Rate::Requests, 1.0), None, "apart");
    assert_eq!(book.refused("other", Rate::Connects, 1.0), None);
    assert_eq!(book.refused("k", Rate::Connects, 30_000.0), None);
    assert_eq!(book.refused("k", Rate::Connects, 1.0), None, "forgotten");
}

#[test]
fn remembered_refusals_are_bounded() {
    let mut book = Book::default();
    for i in 0..MAX_REFUSALS + 10 {
        book.remember_refusal(&format!("k{i}"), Rate::Requests, 10.0, 0.0);
    }
    assert_eq!(book.refusals.len(), MAX_REFUSALS);
    // Once those windows ended, room again.
    book.remember_refusal("late", Rate::Requests, 100.0, 20.0);
    assert_eq!(book.refused("late", Rate::Requests, 20.0), Some(1));
    assert_eq!(book.refusals.len(), 1);
}

#[test]
fn fail_open_counts_are_reported_once_each_and_at_most_every_period() {
    let mut tally = FailOpenTally::default();
    assert_eq!(tally.take(0.0, 5000.0), None, "nothing to report");
    tally.count();
    tally.count();
    assert_eq!(tally.take(0.0, 5000.0), Some(2));
    tally.count();
    assert_eq!(tally.take(10_000.0, 5000.0), None, "one report at a time");
    tally.done(2, true);
    assert_eq!(tally.take(1000.0, 5000.0), None, "too soon after the last");
    assert_eq!(tally.take(5000.0, 5000.0), Some(1));
    tally.done(1, false);
    tally.count();
    assert_eq!(
        tally.take(10_000.0, 5000.0),
        Some(2),
        "a failed report is added back"
    );
    tally.done(2, true);
    assert_eq!(tally.take(20_000.0, 5000.0), None, "all were taken");
}
