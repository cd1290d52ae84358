//! Test data: the real Debezium events of `tests/fixtures/debezium/`, and
//! random secrets.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

/// Path of a fixture file under `tests/fixtures/`.
pub fn path(relative: &str) -> PathBuf {
    crate::repo_root().join("tests/fixtures").join(relative)
}

/// Bytes of a fixture file under `tests/fixtures/`.
pub fn read(relative: &str) -> anyhow::Result<Vec<u8>> {
    let path = path(relative);
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// The Debezium insert fixture rewritten as round `round_id` finished and
/// committed at `commit_ms`: what the connector would publish for a fresh
/// INSERT.
pub fn debezium_insert(round_id: i64, commit_ms: i64) -> anyhow::Result<Vec<u8>> {
    let mut event: Value = serde_json::from_slice(&read("debezium/rounds-insert.json")?)?;
    let finished =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(commit_ms) * 1_000_000)?
            .format(&time::format_description::well_known::Rfc3339)?;
    event["after"]["id"] = round_id.into();
    event["after"]["finished_at"] = finished.into();
    event["source"]["ts_ms"] = commit_ms.into();
    event["ts_ms"] = commit_ms.into();
    Ok(serde_json::to_vec(&event)?)
}

/// A random secret of 32 hex characters for `INGEST_SECRET`.
pub fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
