//! Drives a Node script of `client/test/` (the browser client's checks
//! against the real Worker, from Node or through Chromium) or
//! `console/test/` (the console in Chromium) and does what it asks: the script prints `{"ask": …}` lines (store these rounds, end this
//! stream's clients) and reads `ok` back on stdin; it prints `{"result": …}`
//! lines, and exits non-zero with its failed check on stderr.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use shared::EventKind::New;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::edge::{Edge, events, round};
use crate::repo_root;

/// The longest a scenario may take on a slow machine.
const SCENARIO: Duration = Duration::from_secs(240);

/// What a scenario script may ask of its Rust test.
pub trait Asks {
    /// Does what `ask` says; an error goes back to the script.
    fn answer(&self, ask: &Value) -> impl std::future::Future<Output = anyhow::Result<()>>;
}

/// The asks of `client/test`'s scripts, answered against an [`Edge`].
struct EdgeAsks<'a>(&'a Edge);

impl Asks for EdgeAsks<'_> {
    async fn answer(&self, ask: &Value) -> anyhow::Result<()> {
        answer(self.0, ask).await
    }
}

/// Runs scenario `name` of `client/test/<script>` against `edge` with the
/// API key `key`; answers its asks; returns its result lines. Fails with
/// the script's stderr when it exits non-zero, and when it runs longer
/// than [`SCENARIO`].
pub async fn drive(edge: &Edge, key: &str, script: &str, name: &str) -> anyhow::Result<Vec<Value>> {
    let env = [
        ("GAMEFEED_URL", edge.url("")),
        ("GAMEFEED_KEY", key.to_string()),
        ("GAMEFEED_ADMIN", edge.admin_token.clone()),
    ];
    let script = repo_root().join("client/test").join(script);
    drive_with(&script, name, &env, &EdgeAsks(edge)).await
}

/// Runs scenario `name` of the Node script `script` with `env`, answering
/// its asks with `asks`; as [`drive`].
pub async fn drive_with(
    script: &std::path::Path,
    name: &str,
    env: &[(&str, String)],
    asks: &impl Asks,
) -> anyhow::Result<Vec<Value>> {
    let root = repo_root();
    let mut child = tokio::process::Command::new(root.join("node_modules/.bin/node"))
        .arg(script)
        .arg(name)
        .envs(env.iter().map(|(k, v)| (k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting node")?;
    let (Some(mut stdin), Some(mut stderr), Some(stdout)) =
        (child.stdin.take(), child.stderr.take(), child.stdout.take())
    else {
        bail!("node's pipes are missing");
    };
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(stdout).lines();
    let mut results = Vec::new();
    let run = async {
        while let Some(line) = lines.next_line().await? {
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                println!("node: {line}");
                continue;
            };
            if let Some(result) = message.get("result") {
                results.push(result.clone());
            } else if let Some(ask) = message.get("ask") {
                let reply = match asks.answer(ask).await {
                    Ok(()) => "ok".to_string(),
                    Err(err) => format!("{err:#}"),
                };
                stdin.write_all(format!("{reply}\n").as_bytes()).await?;
            }
        }
        anyhow::Ok(())
    };
    match tokio::time::timeout(SCENARIO, run).await {
        Ok(ran) => ran?,
        Err(_) => {
            let _ = child.start_kill();
            let errors = errors.await.unwrap_or_default();
            bail!("scenario {name} took longer than {SCENARIO:?}:\n{errors}");
        }
    }
    let status = child.wait().await?;
    let errors = errors.await.unwrap_or_default();
    if !status.success() {
        bail!("scenario {name} failed:\n{errors}");
    }
    Ok(results)
}

/// Does what the script asked.
async fn answer(edge: &Edge, ask: &Value) -> anyhow::Result<()> {
    if let Some(ids) = ask.get("store").and_then(Value::as_array) {
        let game = ask["game"].as_str().context("store: no game")?;
        let game_type = ask["type"].as_str().context("store: no type")?;
        let rounds = ids
            .iter()
            .map(|id| id.as_i64().map(|id| round(id, game, game_type)))
            .collect::<Option<Vec<_>>>()
            .context("store: ids must be integers")?;
        edge.store(events(New, &rounds)).await?;
        return Ok(());
    }
    if let Some(stream) = ask.get("disconnect").and_then(Value::as_str) {
        let path = format!("/admin/streams/{stream}/disconnect");
        let (status, body) = edge.admin(reqwest::Method::POST, &path, None).await?;
        if status != 200 {
            bail!("disconnect answered {status}: {body}");
        }
        return Ok(());
    }
    bail!("unknown ask {ask}")
}
