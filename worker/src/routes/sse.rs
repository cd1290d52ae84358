//! The SSE routes: `GET /sse/:game`, `GET /sse/type/:type` and the
//! multiplexed `GET /sse?games=…&types=…`. They read the resume point and
//! the members, admit the request, and hand over to `clients::client`.

use shared::cursor::{self, Position, StreamName};
use worker::{Context, Env, Request, Response};

use crate::access::admission;
use crate::clients::client::open;
use crate::error::{ApiError, ApiResult};
use crate::fanout::message::{MAX_REWIND, Start};
use crate::http::query;

/// `GET /sse/:game` and `GET /sse/type/:type`: one stream, whose `id:` is
/// the round id.
pub(crate) async fn single_stream(
    req: Request,
    env: Env,
    ctx: Context,
    stream: StreamName,
) -> ApiResult<Response> {
    let fresh = fresh_start(&req)?;
    let start = match last_event_id(&req) {
        None => fresh,
        Some(raw) => Start::After(raw.parse::<Position>().map_err(|_| {
            ApiError::bad_request("Last-Event-ID must be an id this stream sent (12 or 12.3)")
        })?),
    };
    let admitted = admission::admit(&req, &env, std::slice::from_ref(&stream)).await?;
    open(&req, &env, ctx, admitted, vec![(stream, start)], false).await
}

/// `GET /sse?games=a,b&types=x`: several streams on one connection, whose
/// `id:` is a cursor over all of them.
pub(crate) async fn multiplexed_stream(
    req: Request,
    env: Env,
    ctx: Context,
) -> ApiResult<Response> {
    let members = cursor::parse_members(
        query(&req, "games").as_deref(),
        query(&req, "types").as_deref(),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fresh = fresh_start(&req)?;
    let resume = cursor::parse(&last_event_id(&req).unwrap_or_default(), &members)
        .map_err(|e| ApiError::bad_request(format!("Last-Event-ID: {e}")))?;
    // A rewind is for a first connection: with a cursor, a member it does
    // not name starts with its latest round.
    let unnamed = if resume.is_empty() {
        fresh
    } else {
        Start::Latest
    };
    let admitted = admission::admit(&req, &env, &members).await?;
    let members = members
        .into_iter()
        .map(|m| {
            let start = resume.get(&m).copied().map_or(unnamed, Start::After);
            (m, start)
        })
        .collect();
    open(&req, &env, ctx, admitted, members, true).await
}

/// Where a stream without a resume point starts: `?rewind=N` (1 to
/// [`MAX_REWIND`]) opens with its last N rounds, else its latest.
fn fresh_start(req: &Request) -> ApiResult<Start> {
    let Some(raw) = query(req, "rewind") else {
        return Ok(Start::Latest);
    };
    match raw.parse::<u32>() {
        Ok(n) if (1..=MAX_REWIND).contains(&n) => Ok(Start::Rewind(n)),
        _ => Err(ApiError::bad_request(format!(
            "rewind must be a whole number from 1 to {MAX_REWIND}"
        ))),
    }
}

/// `Last-Event-ID` from the header (browsers, on reconnect) or
/// `?last_event_id=` (the header cannot be set on a first `EventSource`
/// connection); empty counts as absent.
fn last_event_id(req: &Request) -> Option<String> {
    let from_header = req.headers().get("last-event-id").ok().flatten();
    let from_query = query(req, "last_event_id");
    from_header.or(from_query).filter(|id| !id.is_empty())
}
