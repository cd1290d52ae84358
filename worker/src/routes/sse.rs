//! The SSE routes: `GET /sse/:game`, `GET /sse/type/:type` and the
//! multiplexed `GET /sse?games=…&types=…`. They read the resume point and
//! the members, admit the request, and hand over to `clients::client`.

use shared::cursor::{self, Position, StreamName};
use worker::{Context, Env, Request, Response};

use crate::access::admission;
use crate::clients::client::open;
use crate::error::{ApiError, ApiResult};
use crate::http::query;

/// `GET /sse/:game` and `GET /sse/type/:type`: one stream, whose `id:` is
/// the round id.
pub(crate) async fn single_stream(
    req: Request,
    env: Env,
    ctx: Context,
    stream: StreamName,
) -> ApiResult<Response> {
    let resume = match last_event_id(&req) {
        None => None,
        Some(raw) => Some(raw.parse::<Position>().map_err(|_| {
            ApiError::bad_request("Last-Event-ID must be an id this stream sent (12 or 12.3)")
        })?),
    };
    let admitted = admission::admit(&req, &env, std::slice::from_ref(&stream)).await?;
    open(&req, &env, ctx, admitted, vec![(stream, resume)], false).await
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
    let resume = cursor::parse(&last_event_id(&req).unwrap_or_default(), &members)
        .map_err(|e| ApiError::bad_request(format!("Last-Event-ID: {e}")))?;
    let admitted = admission::admit(&req, &env, &members).await?;
    let members = members
        .into_iter()
        .map(|m| {
            let id = resume.get(&m).copied();
            (m, id)
        })
        .collect();
    open(&req, &env, ctx, admitted, members, true).await
}

/// `Last-Event-ID` from the header (browsers, on reconnect) or
/// `?last_event_id=` (the header cannot be set on a first `EventSource`
/// connection); empty counts as absent.
fn last_event_id(req: &Request) -> Option<String> {
    let from_header = req.headers().get("last-event-id").ok().flatten();
    let from_query = query(req, "last_event_id");
    from_header.or(from_query).filter(|id| !id.is_empty())
}
