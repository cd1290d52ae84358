//! `POST /api/tokens`: a partner's server holds the `sk_live_` key and mints
//! short-lived `st_…` tokens for its pages, which stream with `?token=st_…`.
//! A token is verified with `TOKEN_SECRET` alone; its parent's record
//! decides revocation, origins and limits (`access::tokens`), so a token
//! counts against its key and dies with it.

use serde::{Deserialize, Serialize};
use shared::error::ErrorCode;
use shared::names;
use shared::token::{self, Claims, TokenError};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use worker::{Env, Request, Response};

use crate::access::admission;
use crate::access::tokens::signing_secret;
use crate::error::{ApiError, ApiResult};
use crate::platform::now_ms;

/// Largest body of `POST /api/tokens`.
const MAX_BODY: usize = 16 * 1024;

/// Body of `POST /api/tokens` (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    /// Lifetime in seconds (default 600, at most 3 600).
    #[serde(default)]
    ttl: Option<u64>,
    /// Narrow to these games.
    #[serde(default)]
    games: Option<Vec<String>>,
    /// Narrow to these game types.
    #[serde(default)]
    types: Option<Vec<String>>,
}

#[derive(Serialize)]
struct Minted {
    token: String,
    expires_at: String,
}

/// `POST /api/tokens`: a key in `Authorization: Bearer` (or `?api_key=`) mints
/// a token for its pages; `201 {"token","expires_at"}`.
pub(crate) async fn mint(mut req: Request, env: Env) -> ApiResult<Response> {
    let secret = signing_secret(&env)
        .ok_or_else(|| ApiError::unavailable("browser tokens are not enabled"))?;
    let admitted = admission::admit_request(&req, &env, &[]).await?;
    if admitted.via_token {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a token cannot mint tokens: use the API key",
        ));
    }
    let body = req.bytes().await?;
    if body.len() > MAX_BODY {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            "token request over 16 KiB",
        ));
    }
    let input: MintRequest = if body.iter().all(u8::is_ascii_whitespace) {
        MintRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid token request: {e}")))?
    };
    let ttl = input.ttl.unwrap_or(token::DEFAULT_TTL_SECS);
    if !(1..=token::MAX_TTL_SECS).contains(&ttl) {
        return Err(ApiError::bad_request(format!(
            "ttl must be 1 to {} seconds",
            token::MAX_TTL_SECS
        )));
    }
    let parent = &admitted.record;
    for game in input.games.iter().flatten() {
        names::validate(game).map_err(|e| ApiError::bad_request(format!("games: {e}")))?;
        if parent.games.is_some() || parent.types.is_some() {
            let within = admission::check_scopes(
                &env,
                parent,
                &[shared::cursor::StreamName::Game(game.clone())],
            )
            .await;
            match within {
                Ok(()) => {}
                // A key that may not read it; anything else (the directory
                // down) is no answer, and says so.
                Err(err) if err.code == ErrorCode::Forbidden => {
                    return Err(wider(&format!("game {game}")));
                }
                Err(err) => return Err(err),
            }
        }
    }
    for game_type in input.types.iter().flatten() {
        names::validate(game_type).map_err(|e| ApiError::bad_request(format!("types: {e}")))?;
        if !parent.allows_type(game_type) {
            return Err(wider(&format!("game type {game_type}")));
        }
    }
    let now = now_ms() as i64;
    let expires = now / 1000 + i64::try_from(ttl).unwrap_or(600);
    let mut nonce = [0u8; 8];
    crate::platform::random_bytes(&mut nonce)
        .map_err(|_| ApiError::unavailable("no randomness to mint a token with"))?;
    let claims = Claims {
        key_id: parent.id.clone(),
        games: input.games,
        types: input.types,
        expires,
        nonce: Some(nonce.iter().map(|b| format!("{b:02x}")).collect()),
    };
    let token = token::sign(secret.as_bytes(), &claims).map_err(|e| match e {
        // The claims would make a token longer than `verify` accepts.
        TokenError::Malformed => ApiError::bad_request(format!(
            "too many games or types for one token (at most {} bytes): mint several",
            token::MAX_LEN
        )),
        _ => ApiError::unavailable("browser tokens are not enabled"),
    })?;
    let expires_at = OffsetDateTime::from_unix_timestamp(expires)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    Ok(crate::http::json(
        201,
        crate::http::to_json(&Minted { token, expires_at })?,
        admitted.allow_origin.as_deref(),
    )?)
}

fn wider(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!("a token cannot be wider than its key: the key may not read {what}"),
    )
}
