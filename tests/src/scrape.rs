//! Reading a Prometheus scrape in tests: the samples of an OpenMetrics (or
//! Prometheus) text body, by their name and labels as written.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

/// Every sample of `text`: `name{labels}` (exactly as written) → value.
/// Fails on a line that is neither a comment nor `series value`.
pub fn samples(text: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .with_context(|| format!("no value in {line:?}"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .with_context(|| format!("bad value in {line:?}"))?,
        };
        if out.insert(series.to_string(), value).is_some() {
            bail!("{series} written twice");
        }
    }
    Ok(out)
}
