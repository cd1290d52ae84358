//! A Worker alone under `wrangler dev`, driven the way ingest and operators
//! drive it: signed batches, admin calls, SSE clients. For the edge's tests.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use shared::{EventKind, IngestBatch, Round, RoundEvent, signature};

use crate::http_client;
use crate::sse::SseClient;
use crate::stack::{Worker, WorkerOptions};

/// Generous: a slow CI machine must not fail a correct system.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The Worker with known secrets and a private state directory.
pub struct Edge {
    /// The Worker.
    pub worker: Worker,
    /// `INGEST_SECRET`.
    pub secret: String,
    /// `ADMIN_TOKEN`.
    pub admin_token: String,
    /// A client for requests.
    pub http: reqwest::Client,
    // Dropped after the worker (fields drop in order).
    _state: Option<tempfile::TempDir>,
}

/// A round of game `slug` (type `game_type`) with a deterministic body.
pub fn round(round_id: i64, slug: &str, game_type: &str) -> Round {
    Round {
        round_id,
        game_id: 1,
        game_slug: slug.into(),
        game_type: game_type.into(),
        finished_at: "2026-11-21T05:01:02.500000Z".into(),
        extras: format!("{{\"n\": {round_id}}}"),
        timestamp: 1_795_239_260_000 + round_id,
    }
}

/// `kind` events of `rounds`.
pub fn events(kind: EventKind, rounds: &[Round]) -> Vec<RoundEvent> {
    rounds
        .iter()
        .cloned()
        .map(|round| RoundEvent { kind, round })
        .collect()
}

/// The SSE frame the edge sends for `round` as `event`.
pub fn frame(event: &str, round: &Round) -> String {
    frame_at(event, &round.round_id.to_string(), round)
}

/// The SSE frame for `round` as `event` with `id: <id>` (an update's id is
/// the stream's newest round and the update's number: `12.3`).
pub fn frame_at(event: &str, id: &str, round: &Round) -> String {
    let json = serde_json::to_string(round).unwrap_or_default();
    format!("id: {id}\nevent: {event}\ndata: {json}\n\n")
}

/// The secrets of a state directory, kept in `secrets.json` (mode 0600) so a
/// second run over the same state reuses them, and with them the API key
/// already in the Worker's KV.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Secrets {
    /// `INGEST_SECRET`.
    pub ingest_secret: String,
    /// `ADMIN_TOKEN`.
    pub admin_token: String,
    /// `TOKEN_SECRET` (signs browser tokens); made on first use by a state
    /// directory that predates it.
    #[serde(default)]
    pub token_secret: String,
    /// The test API key, once created.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Its id.
    #[serde(default)]
    pub api_key_id: Option<String>,
}

impl Secrets {
    fn file(dir: &Path) -> std::path::PathBuf {
        dir.join("secrets.json")
    }

    /// The secrets saved in `dir`, or new ones, saved.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let file = Self::file(dir);
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut secrets: Self = serde_json::from_str(&text)
                .with_context(|| format!("{} is damaged: start with --fresh", file.display()))?;
            if secrets.token_secret.is_empty() {
                secrets.token_secret = crate::fixtures::random_secret()?;
                secrets.save(dir)?;
            }
            return Ok(secrets);
        }
        let secrets = Self {
            ingest_secret: crate::fixtures::random_secret()?,
            admin_token: crate::fixtures::random_secret()?,
            token_secret: crate::fixtures::random_secret()?,
            api_key: None,
            api_key_id: None,
        };
        secrets.save(dir)?;
        Ok(secrets)
    }

    /// Writes them to `dir/secrets.json`, readable by the owner only.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir)?;
        let file = Self::file(dir);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)
            .with_context(|| format!("writing {}", file.display()))?;
        out.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(())
    }
}

impl Edge {
    /// Starts the Worker with `vars` on top of the test secrets, with its
    /// state in a temporary directory and on a free port it binds itself.
    pub async fn start(vars: &[(&str, &str)]) -> anyhow::Result<Self> {
        let state = tempfile::tempdir()?;
        let mut edge = Self::start_in(state.path(), None, vars).await?;
        edge._state = Some(state);
        Ok(edge)
    }

    /// Starts the Worker with its state and logs under `dir`, on `port` (or a
    /// free one that wrangler binds itself: no other process can take it
    /// between its choice and its use, so there is nothing to retry).
    pub async fn start_in(
        dir: &Path,
        port: Option<u16>,
        vars: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let saved = Secrets::load_or_create(dir)?;
        let (secret, admin_token) = (saved.ingest_secret.clone(), saved.admin_token.clone());
        let mut all = vec![
            ("INGEST_SECRET", secret.clone()),
            ("ADMIN_TOKEN", admin_token.clone()),
            ("TOKEN_SECRET", saved.token_secret.clone()),
        ];
        // Exact `retry:` frames in the tests' expected text; the spread has
        // its own test.
        if !vars.iter().any(|(name, _)| *name == "RETRY_JITTER") {
            all.push(("RETRY_JITTER", "off".to_string()));
        }
        all.extend(vars.iter().map(|(k, v)| (*k, (*v).to_string())));
        let worker = Worker::start(WorkerOptions {
            port,
            persist: &dir.join("wrangler"),
            log: &dir.join("logs").join("worker.log"),
            vars: all,
        })
        .await?;
        Ok(Self {
            worker,
            secret,
            admin_token,
            http: http_client(),
            _state: None,
        })
    }

    /// An already started Worker with these secrets.
    pub fn with_worker(worker: Worker, secret: String, admin_token: String) -> Self {
        Self {
            worker,
            secret,
            admin_token,
            http: http_client(),
            _state: None,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.worker.url)
    }

    /// Posts a signed batch; returns status and body.
    pub async fn post(&self, events: Vec<RoundEvent>) -> anyhow::Result<(u16, String)> {
        let body = serde_json::to_vec(&IngestBatch { events })?;
        self.post_raw(&body, true).await
    }

    /// Posts `body` as a batch, signed or not.
    pub async fn post_raw(&self, body: &[u8], signed: bool) -> anyhow::Result<(u16, String)> {
        let mut request = self
            .http
            .post(self.url("/internal/rounds"))
            .body(body.to_vec());
        if signed {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let header = signature::sign(self.secret.as_bytes(), now, body)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            request = request.header(signature::HEADER, header);
        }
        let response = request.send().await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// Posts a signed batch and insists on 200.
    pub async fn store(&self, events: Vec<RoundEvent>) -> anyhow::Result<Value> {
        let (status, body) = self.post(events).await?;
        if status != 200 {
            bail!("batch refused with {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// Makes the games `(slug, type)` known to the edge, as their first
    /// round does (a stream of a game or type nobody stored a round of is
    /// `404`): stores round 0 of each, below every id a test uses.
    pub async fn seed(&self, games: &[(&str, &str)]) -> anyhow::Result<()> {
        let rounds: Vec<Round> = games
            .iter()
            .map(|(slug, game_type)| round(0, slug, game_type))
            .collect();
        self.store(events(shared::EventKind::New, &rounds)).await?;
        Ok(())
    }

    /// An admin call; returns status and JSON body (`null` if empty).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.admin_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).context(text)?
        };
        Ok((status, value))
    }

    /// `POST /api/tokens` with `key` and `body`: status and JSON body
    /// (`null` when it is not JSON).
    pub async fn mint(&self, key: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .post(self.url("/api/tokens"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// Creates a key through the admin route; returns (key, id).
    pub async fn create_key(&self, spec: Value) -> anyhow::Result<(String, String)> {
        let (status, body) = self
            .admin(reqwest::Method::POST, "/admin/keys", Some(spec))
            .await?;
        if status != 201 {
            bail!("key creation answered {status}: {body}");
        }
        let key = body["key"].as_str().context("no key")?.to_string();
        let id = body["id"].as_str().context("no id")?.to_string();
        Ok((key, id))
    }

    /// A key that may read everything.
    pub async fn open_key(&self) -> anyhow::Result<String> {
        Ok(self
            .create_key(json!({"name": "all access", "test": true}))
            .await?
            .0)
    }

    /// A stream object's statistics (`kind` = game or type).
    pub async fn stats(&self, kind: &str, name: &str) -> anyhow::Result<Value> {
        let (status, body) = self
            .admin(
                reqwest::Method::GET,
                &format!("/admin/streams/{kind}/{name}"),
                None,
            )
            .await?;
        if status != 200 {
            bail!("stats answered {status}: {body}");
        }
        Ok(body)
    }

    /// Opens an SSE stream at `path_and_query`, insisting on 200.
    pub async fn sse(&self, path_and_query: &str) -> anyhow::Result<SseClient> {
        self.sse_with(path_and_query, &[]).await
    }

    /// Opens an SSE stream with extra request headers, insisting on 200.
    pub async fn sse_with(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<SseClient> {
        match SseClient::connect_with(&self.http, &self.url(path_and_query), headers).await? {
            Ok(client) => Ok(client),
            Err(refused) => bail!("stream refused with {}: {}", refused.status, refused.body),
        }
    }

    /// A GET with the key as a bearer token: status and body.
    pub async fn get(&self, path: &str, key: &str) -> anyhow::Result<(u16, String)> {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await?;
        Ok((response.status().as_u16(), response.text().await?))
    }
}
