//! The public REST API: known games, a game's latest round, its history
//! and its viewers. Same keys and scopes as the streams.

use serde::Serialize;
use shared::cursor::StreamName;
use shared::error::ErrorCode;
use shared::names;
use worker::{Env, Request, Response};

use crate::access::admission::{self, Admitted};
use crate::error::{ApiError, ApiResult};
use crate::http::{self, to_json};
use crate::objects::directory;
use crate::objects::protocol::{GameEntry, Viewers};
use crate::objects::stubs::StreamStub;

/// Largest `limit` of the history route.
pub(crate) const MAX_LIMIT: u32 = 1000;
/// `limit` when none is given.
pub(crate) const DEFAULT_LIMIT: u32 = 50;

fn json(admitted: &Admitted, body: Vec<u8>) -> ApiResult<Response> {
    Ok(http::json(200, body, admitted.allow_origin.as_deref())?)
}

/// `GET /api/games`: the games this key may read.
pub(crate) async fn games(req: Request, env: Env) -> ApiResult<Response> {
    let admitted = admission::admit_request(&req, &env, &[]).await?;
    let record = &admitted.record;
    let games: Vec<GameEntry> = directory::games(&env)
        .await?
        .into_iter()
        .filter(|g| record.allows_game(&g.slug, Some(&g.game_type)))
        .collect();
    #[derive(Serialize)]
    struct Body {
        games: Vec<GameEntry>,
    }
    json(&admitted, to_json(&Body { games })?)
}

/// 404 for a game no round was ever stored of, answered from the
/// directory without building (and so creating) the game's object.
async fn known_game(env: &Env, stream: &StreamName) -> ApiResult<()> {
    if directory::knows(env, stream).await? {
        Ok(())
    } else {
        Err(ApiError::not_found("unknown game"))
    }
}

fn game_slug(raw: &str) -> ApiResult<StreamName> {
    names::validate(raw)
        .map(|s| StreamName::Game(s.to_owned()))
        .map_err(|e| ApiError::bad_request(format!("invalid game slug: {e}")))
}

/// `GET /api/games/:game/latest`.
pub(crate) async fn latest(req: Request, env: Env, game: &str) -> ApiResult<Response> {
    let stream = game_slug(game)?;
    let admitted = admission::admit_request(&req, &env, std::slice::from_ref(&stream)).await?;
    known_game(&env, &stream).await?;
    match StreamStub::of(&env, &stream)?.latest().await {
        Ok(Some(body)) => json(&admitted, body),
        Ok(None) => Err(ApiError::new(
            ErrorCode::NotFound,
            "no round stored for this game yet",
        )),
        Err(err) => {
            worker::console_error!("latest of {game}: {err}");
            Err(ApiError::unavailable("stream unavailable, retry shortly"))
        }
    }
}

/// `?limit=` of a rounds route: 1 to `MAX_LIMIT`, `DEFAULT_LIMIT` when absent.
pub(crate) fn rounds_limit(req: &Request) -> ApiResult<u32> {
    match http::query(req, "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| ApiError::bad_request(format!("limit must be 1 to {MAX_LIMIT}"))),
    }
}

/// `{"rounds":[…]}` around a JSON array of rounds.
pub(crate) fn rounds_body(array: &[u8]) -> Vec<u8> {
    let mut body = br#"{"rounds":"#.to_vec();
    body.extend_from_slice(array);
    body.push(b'}');
    body
}

/// `GET /api/games/:game/rounds?limit=&before=`: newest first.
pub(crate) async fn rounds(req: Request, env: Env, game: &str) -> ApiResult<Response> {
    let stream = game_slug(game)?;
    let query = |name: &str| http::query(&req, name);
    let limit = rounds_limit(&req)?;
    let before = match query("before") {
        None => i64::MAX,
        Some(raw) => raw
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request("before must be a round id"))?,
    };
    let admitted = admission::admit_request(&req, &env, std::slice::from_ref(&stream)).await?;
    known_game(&env, &stream).await?;
    match StreamStub::of(&env, &stream)?.rounds(limit, before).await {
        Ok(array) => json(&admitted, rounds_body(&array)),
        Err(err) => {
            worker::console_error!("history of {game}: {err}");
            Err(ApiError::unavailable("stream unavailable, retry shortly"))
        }
    }
}

/// `GET /api/games/:game/viewers`: the clients the game's stream has open,
/// across every isolate and relay.
pub(crate) async fn viewers(req: Request, env: Env, game: &str) -> ApiResult<Response> {
    let stream = game_slug(game)?;
    let admitted = admission::admit_request(&req, &env, std::slice::from_ref(&stream)).await?;
    known_game(&env, &stream).await?;
    match StreamStub::of(&env, &stream)?.viewers().await {
        Ok(viewers) => json(&admitted, to_json(&Viewers { viewers })?),
        Err(err) => {
            worker::console_error!("viewers of {game}: {err}");
            Err(ApiError::unavailable("stream unavailable, retry shortly"))
        }
    }
}
