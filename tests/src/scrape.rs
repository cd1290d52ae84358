//! Reading a Prometheus scrape in tests: the samples of an OpenMetrics (or
//! Prometheus) text body, by their name and labels as written, and the
//! metric names it declares.

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

/// The metric names a scrape declares (`# TYPE` lines), with the sample
/// names each kind adds (`_total` for counters; `_bucket`, `_sum`,
/// `_count` for histograms).
pub fn declared_names(scrape: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.push(name.to_string());
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[],
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    names
}
