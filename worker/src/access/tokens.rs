//! Browser tokens: [`resolve`] turns a presented `st_…` token back into its
//! parent key's record with the token's scopes (`routes::tokens` mints
//! them).
//!
//! The pattern: a partner's server holds the `sk_live_` key and mints tokens;
//! its pages stream with `?token=st_…`. A token is verified with
//! `TOKEN_SECRET` alone; its parent's record (through the isolate's key
//! cache) decides revocation, origins and limits, so a token counts against
//! its key and dies with it.

use shared::apikey::ApiKeyRecord;
use shared::error::ErrorCode;
use shared::token::{self, TokenError};
use worker::Env;

use crate::access::keys;
use crate::error::{ApiError, ApiResult};
use crate::platform::now_ms;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, message)
}

/// `TOKEN_SECRET`, when set and strong (the configuration said why not
/// otherwise, once).
pub(crate) fn signing_secret(env: &Env) -> Option<String> {
    crate::config::get(env).token_secret.clone()
}

/// A token turned back into its parent key.
pub(crate) struct Resolved {
    /// The parent key's record, with the token's scopes.
    pub(crate) record: ApiKeyRecord,
    /// The parent's `key:<sha256>`.
    pub(crate) kv_key: String,
    /// When the token expires (ms since the epoch).
    pub(crate) expires_ms: i64,
}

/// The parent key's record (with the token's scopes), or 401
/// `invalid_token`.
pub(crate) async fn resolve(env: &Env, presented: &str) -> ApiResult<Resolved> {
    let secret = signing_secret(env).ok_or_else(|| invalid("browser tokens are not enabled"))?;
    let now = now_ms() as i64;
    let claims = token::verify(secret.as_bytes(), presented, now / 1000).map_err(|e| {
        invalid(match e {
            TokenError::Expired => "token expired",
            TokenError::Forged | TokenError::Malformed | TokenError::WeakSecret => "invalid token",
        })
    })?;
    let gone = || invalid("the token's API key is no longer valid");
    let kv_key = keys::kv_key_of_id(env, &claims.key_id)
        .await?
        .ok_or_else(gone)?;
    let mut record = keys::lookup(env, &kv_key).await?.ok_or_else(gone)?;
    record.check_usable(now).map_err(|_| gone())?;
    if claims.games.is_some() || claims.types.is_some() {
        // Narrowed at minting, where it was checked to be within the key's.
        record.games = claims.games;
        record.types = claims.types;
    }
    Ok(Resolved {
        record,
        kv_key,
        expires_ms: claims.expires.saturating_mul(1000),
    })
}
