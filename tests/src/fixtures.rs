//! Test data: the real Debezium events of `tests/fixtures/debezium/` and API
//! keys made the way the admin route will make them.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;
use shared::apikey;

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

/// A plaintext API key and what KV stores for it.
pub struct TestKey {
    /// The key a client presents (`sk_test_…`).
    pub plaintext: String,
    /// `key:<sha256>`.
    pub kv_key: String,
    /// The record stored under `kv_key`.
    pub record_json: String,
}

/// A fresh random test key readable for every game, never expiring.
pub fn test_key(name: &str) -> anyhow::Result<TestKey> {
    let mut failed = false;
    let plaintext = apikey::generate(apikey::PREFIX_TEST, |buf| {
        failed |= getrandom::fill(buf).is_err()
    });
    anyhow::ensure!(!failed, "no randomness available for the API key");
    let record = apikey::ApiKeyRecord {
        id: format!("key_{}", &apikey::hash_hex(&plaintext)[..12]),
        name: name.to_string(),
        games: None,
        types: None,
        origins: None,
        max_streams: None,
        connects_per_minute: None,
        created_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        expires_at: None,
        revoked: false,
    };
    Ok(TestKey {
        kv_key: apikey::kv_key(&plaintext),
        record_json: serde_json::to_string(&record)?,
        plaintext,
    })
}

/// A random secret of 32 hex characters for `INGEST_SECRET`.
pub fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
