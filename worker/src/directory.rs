//! The directory of known games: one Durable Object (`directory`) holding
//! each game's slug, id, type and latest round id, kept by the ingest route
//! after every stored batch. It answers `GET /api/games` and tells the API key
//! check which type a game has.

// The `#[durable_object]` macro generates undocumented public glue.
#![allow(missing_docs)]

use serde::{Deserialize, Serialize};
use worker::{DurableObject, Env, Method, Request, Response, Result, State, durable_object};

/// Object name of the one directory.
pub(crate) const NAME: &str = "directory";

/// One game as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GameEntry {
    /// Slug.
    pub(crate) slug: String,
    /// `games.id`.
    pub(crate) game_id: i64,
    /// Type.
    #[serde(rename = "type")]
    pub(crate) game_type: String,
    /// Highest round id stored for the game.
    pub(crate) latest_round_id: i64,
}

/// The directory's Durable Object.
#[durable_object]
pub struct Directory {
    state: State,
}

impl DurableObject for Directory {
    fn new(state: State, _env: Env) -> Self {
        let created = state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS games (
                slug TEXT PRIMARY KEY,
                game_id INTEGER NOT NULL,
                game_type TEXT NOT NULL,
                latest_round_id INTEGER NOT NULL
            )",
            None,
        );
        if let Err(err) = created {
            worker::console_error!("creating the games table failed: {err}");
        }
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let sql = self.state.storage().sql();
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/upsert") => {
                let entries: Vec<GameEntry> = match req.json().await {
                    Ok(entries) => entries,
                    Err(err) => return Response::error(format!("bad entries: {err}"), 400),
                };
                for e in entries {
                    sql.exec(
                        "INSERT INTO games (slug, game_id, game_type, latest_round_id) VALUES (?, ?, ?, ?)
                         ON CONFLICT(slug) DO UPDATE SET game_id = excluded.game_id,
                           game_type = excluded.game_type,
                           latest_round_id = MAX(latest_round_id, excluded.latest_round_id)",
                        vec![e.slug.into(), e.game_id.into(), e.game_type.into(), e.latest_round_id.into()],
                    )?;
                }
                Response::empty()
            }
            (Method::Get, "/games") => {
                let rows: Vec<Row> = sql
                    .exec(
                        "SELECT slug, game_id, game_type, latest_round_id FROM games ORDER BY slug",
                        None,
                    )?
                    .to_array()?;
                let games: Vec<GameEntry> = rows.into_iter().map(Row::into_entry).collect();
                Response::from_json(&games)
            }
            _ => Response::error("not found", 404),
        }
    }
}

#[derive(Deserialize)]
struct Row {
    slug: String,
    game_id: i64,
    game_type: String,
    latest_round_id: i64,
}

impl Row {
    fn into_entry(self) -> GameEntry {
        GameEntry {
            slug: self.slug,
            game_id: self.game_id,
            game_type: self.game_type,
            latest_round_id: self.latest_round_id,
        }
    }
}

/// Every known game, from the directory object.
pub(crate) async fn games(env: &Env) -> Result<Vec<GameEntry>> {
    let stub = env
        .durable_object(crate::config::DIRECTORY)?
        .get_by_name(NAME)?;
    let mut response = stub
        .fetch_with_str("https://directory.internal/games")
        .await?;
    if response.status_code() != 200 {
        return Err(worker::Error::RustError(format!(
            "directory answered {}",
            response.status_code()
        )));
    }
    response.json().await
}

thread_local! {
    // Plain data, so sharing it across requests is allowed.
    static TYPES: std::cell::RefCell<Option<(f64, Vec<GameEntry>)>> = const { std::cell::RefCell::new(None) };
}

/// How long an isolate reuses the directory for admission checks. A game's
/// type almost never changes; without this, every connect of a type-scoped
/// key would call the one directory object.
const TYPES_TTL_MS: f64 = 10_000.0;

/// The games, as recently as `TYPES_TTL_MS` ago, for telling a game's type.
pub(crate) async fn games_for_admission(env: &Env) -> Result<Vec<GameEntry>> {
    let now = worker::Date::now().as_millis() as f64;
    let cached = TYPES.with(|t| {
        t.borrow()
            .as_ref()
            .filter(|(at, _)| now - at < TYPES_TTL_MS)
            .map(|(_, games)| games.clone())
    });
    if let Some(games) = cached {
        return Ok(games);
    }
    let fresh = games(env).await?;
    TYPES.with(|t| *t.borrow_mut() = Some((now, fresh.clone())));
    Ok(fresh)
}

/// Records what a stored batch taught about games.
pub(crate) async fn upsert(env: &Env, entries: &[GameEntry]) -> Result<()> {
    let stub = env
        .durable_object(crate::config::DIRECTORY)?
        .get_by_name(NAME)?;
    let body =
        serde_json::to_string(entries).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let mut init = worker::RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let response = stub
        .fetch_with_request(Request::new_with_init(
            "https://directory.internal/upsert",
            &init,
        )?)
        .await?;
    if !(200..300).contains(&response.status_code()) {
        return Err(worker::Error::RustError(format!(
            "directory answered {}",
            response.status_code()
        )));
    }
    Ok(())
}
