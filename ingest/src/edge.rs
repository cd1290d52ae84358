//! The signed HTTP client for `POST /internal/rounds` (DESIGN §3.5).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shared::{IngestBatch, IngestReply, signature};

/// How a delivery failed, which decides what happens to the messages.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// 400: the edge says the batch can never be stored. Terminate.
    #[error("edge rejected the batch (400): {0}")]
    Rejected(String),
    /// 401: our signature was refused: a configuration problem. Retry later,
    /// drop nothing.
    #[error("edge refused the signature (401): check that INGEST_SECRET matches the Worker's")]
    Unauthorized,
    /// Anything else (5xx, timeout, network): retry.
    #[error("edge unavailable: {0}")]
    Retryable(String),
}

/// A pooled client bound to one edge and one secret.
#[derive(Clone)]
pub struct EdgeClient {
    http: reqwest::Client,
    url: String,
    secret: Vec<u8>,
}

impl EdgeClient {
    /// A client posting to `<base_url>/internal/rounds`.
    pub fn new(base_url: &str, secret: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            url: format!("{}/internal/rounds", base_url.trim_end_matches('/')),
            secret: secret.as_bytes().to_vec(),
        })
    }

    /// Posts one batch; `Ok` only on a 2xx.
    pub async fn post(&self, batch: &IngestBatch) -> Result<IngestReply, EdgeError> {
        let body = serde_json::to_vec(batch).map_err(|e| EdgeError::Rejected(e.to_string()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = signature::sign(&self.secret, i64::try_from(now).unwrap_or(i64::MAX), &body)
            .map_err(|_| EdgeError::Unauthorized)?;
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(signature::HEADER, header)
            .body(body)
            .send()
            .await
            .map_err(|e| EdgeError::Retryable(e.to_string()))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        match status.as_u16() {
            200..=299 => Ok(serde_json::from_str(&text).unwrap_or_default()),
            400 => Err(EdgeError::Rejected(text)),
            401 => Err(EdgeError::Unauthorized),
            code => Err(EdgeError::Retryable(format!("status {code}"))),
        }
    }
}
