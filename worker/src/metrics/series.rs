//! A stream's figures per minute for the last day: rounds stored, the
//! commit → edge delay as a histogram, viewers (peak and last). The stream
//! object keeps one row per minute in SQLite (`objects::history`) and
//! running totals since its first store; everything here is plain data.

use serde::{Deserialize, Serialize};

/// Upper bounds, in seconds, of the delay histogram's buckets (one more
/// bucket, `+Inf`, follows). Fine below 100 ms, where a healthy feed is,
/// and up to 10 s, past which a round is simply late.
pub(crate) const DELAY_BOUNDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Minutes kept: a day.
pub(crate) const KEEP_MINUTES: u32 = 1440;

/// Minutes a series covers when the caller does not say.
pub(crate) const DEFAULT_MINUTES: u32 = 60;

/// The minute (since the Unix epoch) of `unix_ms`.
pub(crate) fn minute_of(unix_ms: f64) -> i64 {
    (unix_ms / 60_000.0).floor() as i64
}

/// `?minutes=` of the series route: 1 to [`KEEP_MINUTES`], [`DEFAULT_MINUTES`]
/// when absent.
pub(crate) fn parse_minutes(raw: Option<&str>) -> Result<u32, String> {
    match raw {
        None => Ok(DEFAULT_MINUTES),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|m| (1..=KEEP_MINUTES).contains(m))
            .ok_or_else(|| format!("minutes must be 1 to {KEEP_MINUTES}")),
    }
}

/// Commit → edge delays: a count per bucket of [`DELAY_BOUNDS`] (not
/// cumulative; the last is `+Inf`) and their sum.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Delays {
    /// One count per bucket, `DELAY_BOUNDS.len() + 1` once anything was
    /// observed (empty before).
    pub(crate) counts: Vec<u64>,
    /// Sum of the delays, in milliseconds.
    pub(crate) sum_ms: f64,
}

impl Delays {
    /// Counts one delay. A negative one (the database's clock ahead of the
    /// edge's) counts as zero.
    pub(crate) fn observe(&mut self, delay_ms: f64) {
        let delay_ms = if delay_ms.is_finite() {
            delay_ms.max(0.0)
        } else {
            0.0
        };
        self.widen();
        let seconds = delay_ms / 1000.0;
        let bucket = DELAY_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DELAY_BOUNDS.len());
        self.counts[bucket] += 1;
        self.sum_ms += delay_ms;
    }

    fn widen(&mut self) {
        if self.counts.len() != DELAY_BOUNDS.len() + 1 {
            self.counts.resize(DELAY_BOUNDS.len() + 1, 0);
        }
    }

    /// Adds `other`'s delays to these.
    pub(crate) fn add(&mut self, other: &Delays) {
        if other.counts.is_empty() {
            return;
        }
        self.widen();
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.sum_ms += other.sum_ms;
    }

    /// How many delays were counted.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(upper bound, delays in the bucket)` for every bucket, `+Inf`
    /// (`f64::INFINITY`) last: what `prometheus-client` takes (it adds them
    /// up into Prometheus's cumulative buckets).
    pub(crate) fn buckets(&self) -> Vec<(f64, u64)> {
        DELAY_BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .enumerate()
            .map(|(i, bound)| (bound, self.counts.get(i).copied().unwrap_or(0)))
            .collect()
    }

    /// The `q` quantile (0–1), in seconds, estimated as Prometheus's
    /// `histogram_quantile` does: linear within the bucket it falls in; in
    /// the `+Inf` bucket, the highest finite bound. `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * count as f64;
        let mut below = 0u64;
        for (i, n) in self.counts.iter().enumerate() {
            let upto = below + n;
            if *n > 0 && upto as f64 >= rank {
                let Some(upper) = DELAY_BOUNDS.get(i) else {
                    return DELAY_BOUNDS.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { DELAY_BOUNDS[i - 1] };
                let within = (rank - below as f64) / *n as f64;
                return Some(lower + (upper - lower) * within.clamp(0.0, 1.0));
            }
            below = upto;
        }
        DELAY_BOUNDS.last().copied()
    }
}

/// One minute of a stream, as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Minute {
    /// Minutes since the Unix epoch.
    pub(crate) minute: i64,
    /// Rounds stored (new rounds; not replays or corrections).
    pub(crate) rounds: u64,
    /// Their commit → edge delays.
    pub(crate) delays: Delays,
    /// The most viewers seen in the minute, if the count changed in it.
    pub(crate) viewers_peak: Option<u64>,
    /// The viewers at the minute's last change, if it changed in it.
    pub(crate) viewers_last: Option<u64>,
}

impl Minute {
    /// Adds a batch's rounds to the minute.
    pub(crate) fn add_rounds(&mut self, rounds: u64, delays: &Delays) {
        self.rounds += rounds;
        self.delays.add(delays);
    }

    /// The viewers changed to `viewers` during the minute.
    pub(crate) fn set_viewers(&mut self, viewers: u64) {
        self.viewers_peak = Some(self.viewers_peak.unwrap_or(0).max(viewers));
        self.viewers_last = Some(viewers);
    }
}

/// The answer of `GET /admin/streams/…/series`: one entry per minute,
/// oldest first, in columns (as charting libraries take them), and the
/// window's totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Series {
    /// The stream's name.
    pub(crate) stream: String,
    /// Minutes covered.
    pub(crate) minutes: u32,
    /// Each minute's start, Unix seconds.
    pub(crate) t: Vec<i64>,
    /// Rounds stored in each minute.
    pub(crate) rounds: Vec<u64>,
    /// Each minute's median commit → edge delay, seconds (`null`: no round).
    pub(crate) delay_p50: Vec<Option<f64>>,
    /// Each minute's 99th percentile, seconds.
    pub(crate) delay_p99: Vec<Option<f64>>,
    /// Most viewers in each minute.
    pub(crate) viewers_peak: Vec<u64>,
    /// Viewers at each minute's end.
    pub(crate) viewers_last: Vec<u64>,
    /// The whole window.
    pub(crate) window: Window,
}

/// A series' totals over its whole window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Window {
    /// Rounds stored.
    pub(crate) rounds: u64,
    /// Rounds per minute, on average.
    pub(crate) rounds_per_minute: f64,
    /// Median commit → edge delay, seconds.
    pub(crate) delay_p50: Option<f64>,
    /// 99th percentile, seconds.
    pub(crate) delay_p99: Option<f64>,
    /// The histogram behind them: `counts` per bucket of `bounds` (then `+Inf`).
    pub(crate) delay: WindowDelays,
    /// Most viewers at once.
    pub(crate) viewers_peak: u64,
}

/// The window's delay histogram.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct WindowDelays {
    /// Upper bounds, seconds.
    pub(crate) bounds: &'static [f64],
    /// Delays per bucket (the last is `+Inf`).
    pub(crate) counts: Vec<u64>,
    /// Sum, seconds.
    pub(crate) sum: f64,
    /// How many.
    pub(crate) count: u64,
}

/// The series of `stream` over the `minutes` minutes up to and including
/// `now_minute`, from the stored `rows` (any order; those outside the
/// window are ignored) and `carry`, the viewers at the last change before
/// the window. A minute in which the viewers did not change has the count
/// of the one before; a minute's peak is at least the count it began with.
pub(crate) fn series(
    stream: &str,
    rows: &[Minute],
    now_minute: i64,
    minutes: u32,
    carry: Option<u64>,
) -> Series {
    let first = now_minute - i64::from(minutes) + 1;
    let mut ordered: Vec<&Minute> = rows
        .iter()
        .filter(|r| (first..=now_minute).contains(&r.minute))
        .collect();
    ordered.sort_by_key(|r| r.minute);
    let mut rows = ordered.into_iter().peekable();
    let mut out = Series {
        stream: stream.to_string(),
        minutes,
        t: Vec::with_capacity(minutes as usize),
        rounds: Vec::with_capacity(minutes as usize),
        delay_p50: Vec::with_capacity(minutes as usize),
        delay_p99: Vec::with_capacity(minutes as usize),
        viewers_peak: Vec::with_capacity(minutes as usize),
        viewers_last: Vec::with_capacity(minutes as usize),
        window: Window {
            rounds: 0,
            rounds_per_minute: 0.0,
            delay_p50: None,
            delay_p99: None,
            delay: WindowDelays {
                bounds: &DELAY_BOUNDS,
                counts: Vec::new(),
                sum: 0.0,
                count: 0,
            },
            viewers_peak: 0,
        },
    };
    let mut viewers = carry.unwrap_or(0);
    let mut total = Delays::default();
    for minute in first..=now_minute {
        let row = rows.next_if(|r| r.minute == minute);
        let (rounds, peak, last, delays) = match row {
            Some(r) => (
                r.rounds,
                r.viewers_peak.map_or(viewers, |p| p.max(viewers)),
                r.viewers_last.unwrap_or(viewers),
                Some(&r.delays),
            ),
            None => (0, viewers, viewers, None),
        };
        viewers = last;
        out.t.push(minute * 60);
        out.rounds.push(rounds);
        out.delay_p50.push(delays.and_then(|d| d.quantile(0.5)));
        out.delay_p99.push(delays.and_then(|d| d.quantile(0.99)));
        out.viewers_peak.push(peak);
        out.viewers_last.push(last);
        out.window.rounds += rounds;
        out.window.viewers_peak = out.window.viewers_peak.max(peak);
        if let Some(d) = delays {
            total.add(d);
        }
    }
    out.window.rounds_per_minute = out.window.rounds as f64 / f64::from(minutes.max(1));
    out.window.delay_p50 = total.quantile(0.5);
    out.window.delay_p99 = total.quantile(0.99);
    out.window.delay = WindowDelays {
        bounds: &DELAY_BOUNDS,
        count: total.count(),
        sum: total.sum_ms / 1000.0,
        counts: if total.counts.is_empty() {
            vec![0; DELAY_BOUNDS.len() + 1]
        } else {
            total.counts
        },
    };
    out
}

#[cfg(test)]
mod tests;
