//! The signed HTTP client for `POST /internal/rounds` (DESIGN §3.5).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shared::{IngestBatch, IngestReply, signature};

/// How a delivery failed, which decides what happens to the messages.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// 400: the edge says the batch can never be stored.
    #[error("edge rejected the batch (400): {0}")]
    Rejected(String),
    /// 413: the batch is too big; smaller ones may pass.
    #[error("edge refused the batch as too large (413)")]
    TooLarge,
    /// 401: our signature was refused, a configuration problem. Retry,
    /// drop nothing.
    #[error("edge refused the signature (401): check that INGEST_SECRET matches the Worker's")]
    Unauthorized,
    /// Anything else (5xx, 429, timeout, network): retry.
    #[error("edge unavailable: {0}")]
    Retryable(String),
}

/// A pooled client bound to one edge and one secret.
#[derive(Clone)]
pub struct EdgeClient {
    http: reqwest::Client,
    base: String,
    url: String,
    secret: Vec<u8>,
}

/// One POST's answer and how long it took.
pub struct Posted {
    /// The edge's verdict.
    pub result: Result<IngestReply, EdgeError>,
    /// Status label for metrics (`200`, `503`, `error`, …).
    pub status: String,
    /// Wall time of the POST.
    pub elapsed: Duration,
}

impl EdgeClient {
    /// A client posting to `<base_url>/internal/rounds`.
    pub fn new(base_url: &str, secret: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        let base = base_url.trim_end_matches('/').to_string();
        Ok(Self {
            http,
            url: format!("{base}/internal/rounds"),
            base,
            secret: secret.as_bytes().to_vec(),
        })
    }

    /// Posts one batch; `Ok` only on a 2xx.
    pub async fn post(&self, batch: &IngestBatch) -> Posted {
        let started = Instant::now();
        let (result, status) = self.post_inner(batch).await;
        Posted {
            result,
            status,
            elapsed: started.elapsed(),
        }
    }

    async fn post_inner(&self, batch: &IngestBatch) -> (Result<IngestReply, EdgeError>, String) {
        let body = match serde_json::to_vec(batch) {
            Ok(body) => body,
            Err(e) => return (Err(EdgeError::Rejected(e.to_string())), "error".into()),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let Ok(header) =
            signature::sign(&self.secret, i64::try_from(now).unwrap_or(i64::MAX), &body)
        else {
            return (Err(EdgeError::Unauthorized), "error".into());
        };
        let sent = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(signature::HEADER, header)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                let label = if e.is_timeout() { "timeout" } else { "error" };
                return (Err(EdgeError::Retryable(e.to_string())), label.into());
            }
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let result = match status {
            200..=299 => Ok(serde_json::from_str(&text).unwrap_or_default()),
            400 => Err(EdgeError::Rejected(text)),
            401 => Err(EdgeError::Unauthorized),
            413 => Err(EdgeError::TooLarge),
            code => Err(EdgeError::Retryable(format!("status {code}"))),
        };
        (result, status.to_string())
    }

    /// Whether the edge answers `/healthz`.
    pub async fn healthy(&self) -> bool {
        matches!(self.http.get(format!("{}/healthz", self.base)).send().await, Ok(r) if r.status().is_success())
    }
}
