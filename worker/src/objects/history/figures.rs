//! The stream's figures in its SQLite (see `metrics::series`): `series`,
//! one row per minute of the last day, and `totals`, one row of running
//! totals since the first store (Prometheus's counters must never go back).

use serde::Deserialize;
use worker::{Result, SqlStorageValue};

use super::History;
use crate::metrics::series::{Delays, KEEP_MINUTES, Minute};

/// Created with the stream object's other tables.
pub(super) const SERIES_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS series (
    minute INTEGER PRIMARY KEY,
    rounds INTEGER NOT NULL,
    delays TEXT NOT NULL,
    viewers_peak INTEGER,
    viewers_last INTEGER
)";

/// Created with the stream object's other tables.
pub(super) const TOTALS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    rounds INTEGER NOT NULL,
    delays TEXT NOT NULL
)";

#[derive(Deserialize)]
struct Row {
    minute: i64,
    rounds: i64,
    delays: String,
    viewers_peak: Option<i64>,
    viewers_last: Option<i64>,
}

impl Row {
    fn into_minute(self) -> Minute {
        Minute {
            minute: self.minute,
            rounds: u64::try_from(self.rounds).unwrap_or(0),
            delays: parse_delays(&self.delays),
            viewers_peak: self.viewers_peak.and_then(|v| u64::try_from(v).ok()),
            viewers_last: self.viewers_last.and_then(|v| u64::try_from(v).ok()),
        }
    }
}

/// Stored delays; a row this code did not write reads as none (they are
/// figures, not data a client depends on).
fn parse_delays(text: &str) -> Delays {
    serde_json::from_str(text).unwrap_or_default()
}

fn delays_text(delays: &Delays) -> Result<String> {
    serde_json::to_string(delays).map_err(|e| worker::Error::RustError(e.to_string()))
}

fn int(n: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn opt_int(n: Option<u64>) -> SqlStorageValue {
    n.map_or(SqlStorageValue::Null, int)
}

impl History {
    fn minute_row(&self, minute: i64) -> Result<Minute> {
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT minute, rounds, delays, viewers_peak, viewers_last FROM series WHERE minute = ?",
                vec![minute.into()],
            )?
            .to_array()?;
        Ok(rows.into_iter().next().map_or_else(
            || Minute {
                minute,
                ..Minute::default()
            },
            Row::into_minute,
        ))
    }

    fn put_minute(&self, row: &Minute) -> Result<()> {
        self.sql.exec(
            "INSERT OR REPLACE INTO series (minute, rounds, delays, viewers_peak, viewers_last)
             VALUES (?, ?, ?, ?, ?)",
            vec![
                row.minute.into(),
                int(row.rounds),
                delays_text(&row.delays)?.into(),
                opt_int(row.viewers_peak),
                opt_int(row.viewers_last),
            ],
        )?;
        if self.trimmed_before.get() < row.minute {
            self.sql.exec(
                "DELETE FROM series WHERE minute <= ?",
                vec![(row.minute - i64::from(KEEP_MINUTES)).into()],
            )?;
            self.trimmed_before.set(row.minute);
        }
        Ok(())
    }

    /// Counts a stored batch's new rounds and their delays in `minute` and
    /// in the totals. Call after `create_tables`.
    pub(crate) fn record_rounds(&self, minute: i64, rounds: u64, delays: &Delays) -> Result<()> {
        if rounds == 0 {
            return Ok(());
        }
        let mut row = self.minute_row(minute)?;
        row.add_rounds(rounds, delays);
        self.put_minute(&row)?;
        let (mut total_rounds, mut total) = self.totals()?;
        total_rounds += rounds;
        total.add(delays);
        self.sql.exec(
            "INSERT OR REPLACE INTO totals (id, rounds, delays) VALUES (0, ?, ?)",
            vec![int(total_rounds), delays_text(&total)?.into()],
        )?;
        Ok(())
    }

    /// The stream's viewers changed to `viewers` in `minute`. Nothing is
    /// written for a stream that never stored a round.
    pub(crate) fn record_viewers(&self, minute: i64, viewers: u64) -> Result<()> {
        if !self.has_tables()? {
            return Ok(());
        }
        let mut row = self.minute_row(minute)?;
        if row.viewers_last == Some(viewers) && row.viewers_peak >= Some(viewers) {
            return Ok(());
        }
        row.set_viewers(viewers);
        self.put_minute(&row)
    }

    /// The rows of minutes from `first` on, and the viewers at the last
    /// change before it.
    pub(crate) fn series_rows(&self, first: i64) -> Result<(Vec<Minute>, Option<u64>)> {
        if !self.has_tables()? {
            return Ok((Vec::new(), None));
        }
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT minute, rounds, delays, viewers_peak, viewers_last FROM series
                 WHERE minute >= ? ORDER BY minute",
                vec![first.into()],
            )?
            .to_array()?;
        #[derive(Deserialize)]
        struct Last {
            viewers_last: i64,
        }
        let before: Vec<Last> = self
            .sql
            .exec(
                "SELECT viewers_last FROM series WHERE minute < ? AND viewers_last IS NOT NULL
                 ORDER BY minute DESC LIMIT 1",
                vec![first.into()],
            )?
            .to_array()?;
        Ok((
            rows.into_iter().map(Row::into_minute).collect(),
            before
                .first()
                .and_then(|l| u64::try_from(l.viewers_last).ok()),
        ))
    }

    /// Rounds stored and their delays since the first store.
    pub(crate) fn totals(&self) -> Result<(u64, Delays)> {
        #[derive(Deserialize)]
        struct Totals {
            rounds: i64,
            delays: String,
        }
        if !self.has_tables()? {
            return Ok((0, Delays::default()));
        }
        let rows: Vec<Totals> = self
            .sql
            .exec("SELECT rounds, delays FROM totals WHERE id = 0", None)?
            .to_array()?;
        Ok(rows.into_iter().next().map_or((0, Delays::default()), |t| {
            (
                u64::try_from(t.rounds).unwrap_or(0),
                parse_delays(&t.delays),
            )
        }))
    }
}
