#![allow(clippy::unwrap_used, clippy::float_cmp)]

use super::*;

fn delays(ms: &[f64]) -> Delays {
    let mut d = Delays::default();
    for m in ms {
        d.observe(*m);
    }
    d
}

#[test]
fn a_delay_lands_in_the_first_bucket_whose_bound_holds_it() {
    let d = delays(&[0.0, 1.0, 1.5, 10.0, 10.01, 999.0, 1000.0, 60_000.0]);
    assert_eq!(d.counts.len(), DELAY_BOUNDS.len() + 1);
    assert_eq!(d.counts[0], 2, "0 and 1 ms are within 1 ms");
    assert_eq!(d.counts[1], 1, "1.5 ms");
    assert_eq!(d.counts[3], 1, "10 ms is within 10 ms");
    assert_eq!(d.counts[4], 1, "10.01 ms is past it");
    assert_eq!(d.counts[12], 2, "999 ms and 1 s are within 1 s");
    assert_eq!(d.counts[16], 1, "a minute is past every bound");
    assert_eq!(d.count(), 8);
    assert_eq!(
        d.sum_ms,
        0.0 + 1.0 + 1.5 + 10.0 + 10.01 + 999.0 + 1000.0 + 60_000.0
    );
}

#[test]
fn a_negative_or_broken_delay_counts_as_zero() {
    let d = delays(&[-250.0, f64::NAN, f64::INFINITY]);
    assert_eq!(d.counts[0], 3);
    assert_eq!(d.sum_ms, 0.0);
}

#[test]
fn buckets_are_listed_with_infinity_last() {
    let d = delays(&[0.5, 3.0, 3.0, 20_000.0]);
    let b = d.buckets();
    assert_eq!(b.len(), DELAY_BOUNDS.len() + 1);
    assert_eq!(b[0], (0.001, 1));
    assert_eq!(b[1], (0.0025, 0));
    assert_eq!(b[2], (0.005, 2));
    assert_eq!(b.last().copied(), Some((f64::INFINITY, 1)));
    assert_eq!(
        Delays::default().buckets().iter().map(|b| b.1).sum::<u64>(),
        0
    );
}

#[test]
fn quantiles_interpolate_within_a_bucket_as_histogram_quantile_does() {
    // 100 delays in (20 ms, 30 ms]: the median is halfway through it.
    let d = delays(&[25.0; 100]);
    let p50 = d.quantile(0.5).unwrap();
    assert!((p50 - 0.025).abs() < 1e-9, "{p50}");
    let p99 = d.quantile(0.99).unwrap();
    assert!((p99 - 0.0299).abs() < 1e-9, "{p99}");
    // 90 fast and 10 slow: the 99th percentile is among the slow ones.
    let mut mixed = delays(&[4.0; 90]);
    mixed.add(&delays(&[700.0; 10]));
    let p50 = mixed.quantile(0.5).unwrap();
    assert!(p50 > 0.0025 && p50 <= 0.005, "{p50}");
    let p99 = mixed.quantile(0.99).unwrap();
    assert!(p99 > 0.5 && p99 <= 1.0, "{p99}");
    assert_eq!(Delays::default().quantile(0.5), None);
    assert_eq!(mixed.quantile(1.5), None);
    // Past every bound: the highest finite bound, as Prometheus answers.
    assert_eq!(delays(&[90_000.0]).quantile(0.99), Some(10.0));
}

#[test]
fn adding_keeps_counts_and_sums() {
    let mut a = delays(&[2.0, 40.0]);
    a.add(&Delays::default());
    a.add(&delays(&[40.0]));
    assert_eq!(a.count(), 3);
    assert_eq!(a.sum_ms, 82.0);
    let mut empty = Delays::default();
    empty.add(&a);
    assert_eq!(empty, a);
}

#[test]
fn minutes_parse_within_a_day() {
    assert_eq!(parse_minutes(None), Ok(60));
    assert_eq!(parse_minutes(Some("1")), Ok(1));
    assert_eq!(parse_minutes(Some("1440")), Ok(1440));
    for bad in ["0", "1441", "-5", "x", "", "60.5"] {
        assert!(parse_minutes(Some(bad)).is_err(), "{bad}");
    }
    assert_eq!(minute_of(0.0), 0);
    assert_eq!(minute_of(59_999.0), 0);
    assert_eq!(minute_of(60_000.0), 1);
    assert_eq!(minute_of(-1.0), -1);
}

fn minute(m: i64, rounds: u64, viewers: &[u64]) -> Minute {
    let mut row = Minute {
        minute: m,
        ..Minute::default()
    };
    row.add_rounds(rounds, &delays(&vec![15.0; rounds as usize]));
    for v in viewers {
        row.set_viewers(*v);
    }
    row
}

#[test]
fn a_series_fills_every_minute_and_carries_the_viewers() {
    let rows = [
        minute(103, 2, &[7, 4]),
        minute(100, 1, &[]),
        minute(90, 50, &[99]),  // before the window
        minute(106, 50, &[99]), // after it
    ];
    let s = series("game:crash", &rows, 105, 6, Some(5));
    assert_eq!(s.t, vec![6000, 6060, 6120, 6180, 6240, 6300]);
    assert_eq!(s.rounds, vec![1, 0, 0, 2, 0, 0]);
    assert_eq!(s.viewers_last, vec![5, 5, 5, 4, 4, 4]);
    assert_eq!(
        s.viewers_peak,
        vec![5, 5, 5, 7, 4, 4],
        "a minute's peak is at least what it began with"
    );
    assert_eq!(s.delay_p50[1], None);
    let p50 = s.delay_p50[0].unwrap();
    assert!(p50 > 0.01 && p50 <= 0.02, "{p50}");
    assert_eq!(s.window.rounds, 3);
    assert_eq!(s.window.rounds_per_minute, 0.5);
    assert_eq!(s.window.viewers_peak, 7);
    assert_eq!(s.window.delay.count, 3);
    assert!((s.window.delay.sum - 0.045).abs() < 1e-9);
    assert_eq!(s.window.delay.counts.len(), DELAY_BOUNDS.len() + 1);
}

#[test]
fn a_series_with_nothing_stored_is_all_zero() {
    let s = series("type:dice", &[], 10, 3, None);
    assert_eq!(s.rounds, vec![0, 0, 0]);
    assert_eq!(s.viewers_last, vec![0, 0, 0]);
    assert_eq!(s.window.delay_p99, None);
    assert_eq!(s.window.delay.counts, vec![0; DELAY_BOUNDS.len() + 1]);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["window"]["delay"]["bounds"][0], 0.001);
    assert!(json["delay_p50"][0].is_null());
}
