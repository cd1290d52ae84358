//! Browser tokens (DESIGN §3.8): `POST /api/tokens` mints a short-lived `st_…`
//! credential from an API key, and [`resolve`] turns a presented token back
//! into its parent key's record with the token's scopes.
//!
//! The pattern: a partner's server holds the `sk_live_` key and mints tokens;
//! its pages stream with `?token=st_…`. A token is verified with
//! `TOKEN_SECRET` alone; its parent's record (through the isolate's key
//! cache) decides revocation, origins and limits, so a token counts against
//! its key and dies with it.

use std::cell::Cell;

use serde::{Deserialize, Serialize};
use shared::apikey::ApiKeyRecord;
use shared::error::ErrorCode;
use shared::names;
use shared::token::{self, Claims, TokenError};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use worker::{Date, Env, Request, Response};

use crate::auth;
use crate::config::{TOKEN_SECRET, secret};
use crate::error::{ApiError, ApiResult};

/// Largest body of `POST /api/tokens`.
const MAX_BODY: usize = 16 * 1024;

thread_local! {
    static SAID_NO_SECRET: Cell<bool> = const { Cell::new(false) };
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, message)
}

/// `TOKEN_SECRET`, if set and strong enough; said once in the log otherwise.
fn signing_secret(env: &Env) -> Option<String> {
    let found = secret(env, TOKEN_SECRET);
    let strong = found.as_deref().is_some_and(|s| {
        token::secret_ok(s.as_bytes()) && shared::secret::check(TOKEN_SECRET, s).is_ok()
    });
    if !strong && !SAID_NO_SECRET.with(|said| said.replace(true)) {
        worker::console_error!(
            "tokens: TOKEN_SECRET is missing, a placeholder or weaker than {} random characters: browser tokens are off",
            token::MIN_SECRET_LEN
        );
    }
    found.filter(|_| strong)
}

/// The parent key's record (with the token's scopes) and its `key:<sha256>`,
/// or 401 `invalid_token`.
pub(crate) async fn resolve(env: &Env, presented: &str) -> ApiResult<(ApiKeyRecord, String)> {
    let secret = signing_secret(env).ok_or_else(|| invalid("browser tokens are not enabled"))?;
    let now_ms = Date::now().as_millis() as i64;
    let claims = token::verify(secret.as_bytes(), presented, now_ms / 1000).map_err(|e| {
        invalid(match e {
            TokenError::Expired => "token expired",
            TokenError::Forged | TokenError::Malformed | TokenError::WeakSecret => "invalid token",
        })
    })?;
    let gone = || invalid("the token's API key is no longer valid");
    let kv_key = auth::kv_key_of_id(env, &claims.key_id)
        .await?
        .ok_or_else(gone)?;
    let mut record = auth::lookup(env, &kv_key).await?.ok_or_else(gone)?;
    record.check_usable(now_ms).map_err(|_| gone())?;
    if claims.games.is_some() || claims.types.is_some() {
        // Narrowed at minting, where it was checked to be within the key's.
        record.games = claims.games;
        record.types = claims.types;
    }
    Ok((record, kv_key))
}

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
    let admitted = auth::admit_request(&req, &env, &[]).await?;
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
            let within = auth::check_scopes(
                &env,
                parent,
                &[shared::cursor::StreamName::Game(game.clone())],
            )
            .await;
            if within.is_err() {
                return Err(wider(&format!("game {game}")));
            }
        }
    }
    for game_type in input.types.iter().flatten() {
        names::validate(game_type).map_err(|e| ApiError::bad_request(format!("types: {e}")))?;
        if !parent.allows_type(game_type) {
            return Err(wider(&format!("game type {game_type}")));
        }
    }
    let now_ms = Date::now().as_millis() as i64;
    let expires = now_ms / 1000 + i64::try_from(ttl).unwrap_or(600);
    let claims = Claims {
        key_id: parent.id.clone(),
        games: input.games,
        types: input.types,
        expires,
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
    crate::api::json_with_status(
        &admitted,
        201,
        serde_json::to_vec(&Minted { token, expires_at })?,
    )
}

fn wider(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!("a token cannot be wider than its key: the key may not read {what}"),
    )
}
