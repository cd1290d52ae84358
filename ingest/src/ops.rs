//! The operations endpoints, on their own address apart from any traffic:
//! `/healthz` (the process is up), `/readyz` (NATS connected and the edge
//! reachable) and `/metrics` (Prometheus text format).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// What the endpoints look at.
pub struct OpsState {
    /// Metrics to expose.
    pub metrics: Arc<Metrics>,
    /// Set by the NATS connection's event callback.
    pub nats_connected: AtomicBool,
    /// Set by the periodic probe of the edge's `/healthz`.
    pub edge_reachable: AtomicBool,
}

/// The router (a function, so tests can call it without a socket).
pub fn app(state: Arc<OpsState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<OpsState>>) -> impl IntoResponse {
    let nats = state.nats_connected.load(Ordering::Relaxed);
    let edge = state.edge_reachable.load(Ordering::Relaxed);
    let body = format!("{{\"nats_connected\":{nats},\"edge_reachable\":{edge}}}\n");
    let status = if nats && edge {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics(State(state): State<Arc<OpsState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Serves the endpoints on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<OpsState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("METRICS_ADDR {addr}: {e}"))?;
    // The bound address, so a port 0 can be read back (tests, scrapers).
    match listener.local_addr() {
        Ok(bound) => tracing::info!("operations endpoint on http://{bound}"),
        Err(err) => tracing::warn!("operations endpoint bound, address unknown: {err}"),
    }
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_text(state: Arc<OpsState>, path: &str) -> (u16, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app(state)).await });
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        (status, out)
    }

    #[tokio::test]
    async fn readiness_follows_nats_and_edge() {
        let state = Arc::new(OpsState {
            metrics: Arc::new(Metrics::new()),
            nats_connected: AtomicBool::new(true),
            edge_reachable: AtomicBool::new(false),
        });
        let (status, body) = get_text(state.clone(), "/readyz").await;
        assert_eq!(status, 503);
        assert!(
            body.contains(r#"{"nats_connected":true,"edge_reachable":false}"#),
            "{body}"
        );
        state.edge_reachable.store(true, Ordering::Relaxed);
        assert_eq!(get_text(state.clone(), "/readyz").await.0, 200);
        assert_eq!(get_text(state.clone(), "/healthz").await.0, 200);
        state.metrics.received.inc();
        let (status, body) = get_text(state, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("ingest_messages_received_total 1"), "{body}");
    }
}
