//! API key checks (DESIGN §3.4): the presented key is hashed and looked up in
//! KV; the plaintext key is never stored, logged or echoed.

use shared::apikey::{self, ApiKeyRecord};
use shared::error::ErrorCode;
use worker::{Date, Env, Request};

use crate::config::KEYS;
use crate::error::{ApiError, ApiResult};

/// The key from `?api_key=` (EventSource cannot send headers) or from
/// `Authorization: Bearer <key>`.
fn presented_key(req: &Request) -> Option<String> {
    if let Ok(url) = req.url()
        && let Some((_, key)) = url.query_pairs().find(|(name, _)| name == "api_key")
    {
        return Some(key.into_owned());
    }
    let header = req.headers().get("authorization").ok().flatten()?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))?;
    Some(token.trim().to_string())
}

/// Resolves the request's key to its record, or answers 401/403/503.
///
/// This is the one place a stream is admitted; per-key limits (DESIGN §3.8)
/// hook in here.
pub(crate) async fn authenticate(req: &Request, env: &Env) -> ApiResult<ApiKeyRecord> {
    let key = presented_key(req).ok_or_else(|| {
        ApiError::new(
            ErrorCode::MissingApiKey,
            "an API key is required: ?api_key=… or Authorization: Bearer …",
        )
    })?;
    let unknown = || ApiError::new(ErrorCode::InvalidApiKey, "unknown API key");
    if !apikey::is_well_formed(&key) {
        return Err(unknown());
    }
    let record = env
        .kv(KEYS)?
        .get(&apikey::kv_key(&key))
        .json::<ApiKeyRecord>()
        .await
        .map_err(|err| {
            worker::console_error!("API key lookup failed: {err}");
            ApiError::unavailable("API key store unavailable, retry shortly")
        })?
        .ok_or_else(unknown)?;
    record
        .check_usable(Date::now().as_millis() as i64)
        .map_err(|why| ApiError::new(ErrorCode::InvalidApiKey, why.to_string()))?;
    if let Some(allowed) = &record.origins
        && let Some(origin) = req.headers().get("origin").ok().flatten()
        && !allowed.iter().any(|o| o == &origin)
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "origin not allowed for this API key",
        ));
    }
    Ok(record)
}
