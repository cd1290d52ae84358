//! Method and path → handler. Hand-written rather than `worker::Router`
//! because the route set is small and this keeps the 404/405 distinction and
//! the JSON error rendering in one obvious place.

use shared::error::ErrorCode;
use worker::{Env, Headers, Method, Request, Response, Result};

use crate::error::{ApiError, ApiResult};
use crate::{bridge, ingest};

/// Handles one request to the Worker.
pub async fn handle(req: Request, env: Env) -> Result<Response> {
    let path = req.path();
    let method = req.method();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let outcome: ApiResult<Response> = match segments.as_slice() {
        ["healthz"] => match allow(&method, &[Method::Get, Method::Head]) {
            Ok(()) => healthz(),
            Err(e) => Err(e),
        },
        ["sse", game] => match allow(&method, &[Method::Get]) {
            Ok(()) => bridge::game_stream(req, env, game).await,
            Err(e) => Err(e),
        },
        ["internal", "rounds"] => match allow(&method, &[Method::Post]) {
            Ok(()) => ingest::post_rounds(req, env).await,
            Err(e) => Err(e),
        },
        _ => Err(ApiError::new(ErrorCode::NotFound, "no such route")),
    };
    match outcome {
        Ok(response) => Ok(response),
        Err(err) => err.into_response(),
    }
}

fn allow(method: &Method, allowed: &[Method]) -> ApiResult<()> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("method {method} not allowed here"),
        ))
    }
}

fn healthz() -> ApiResult<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::builder()
        .with_headers(headers)
        .fixed(br#"{"status":"ok"}"#.to_vec()))
}
