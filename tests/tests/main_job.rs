//! The main-job command itself (`scripts/dev.sh` runs this binary), as a user
//! runs it: up, rounds flowing, Ctrl-C leaving no process; a second run
//! resuming the same state and key; a `kill -9`'d run's leftovers stopped by
//! the next start. Its state goes to a temporary directory
//! (`GAMEFEED_STATE_DIR`), never the checkout's `.local/`, and every port is
//! 0: each part binds a free port itself, and the test reads the Worker's
//! URL from what the command prints (a port picked here and released could
//! be taken by anything in the minutes between its runs).

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use devstack::http_client;
use devstack::process::group_alive;
use devstack::runs::RunRecord;
use devstack::sse::SseClient;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// Starting the whole chain on a slow machine: generous.
const TIMEOUT: Duration = Duration::from_secs(180);

/// One devstack process and every line it prints (stdout and stderr).
struct Run {
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Run {
    fn start(state: &Path, args: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_devstack"))
            .args(args)
            .env("GAMEFEED_STATE_DIR", state)
            .env("GAMEFEED_PG_PORT", "0")
            .env("GAMEFEED_NATS_PORT", "0")
            .env("GAMEFEED_WORKER_PORT", "0")
            .env("GAMEFEED_ROUND_EVERY_MS", "200")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("devstack starts");
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for out in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(out).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; returns it.
    async fn line(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                _ => panic!(
                    "no line with {needle:?}; devstack printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The Worker's URL and the API key it printed once up.
    async fn worker_and_key(&mut self) -> (String, String) {
        let line = self.line("demo page").await;
        let page = line.split_whitespace().last().unwrap();
        let worker = page.split("/?").next().unwrap().to_string();
        let line = self.line("API key").await;
        (worker, line.split_whitespace().last().unwrap().to_string())
    }

    /// Ctrl-C, and its exit status.
    async fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id().unwrap()).unwrap();
        kill(Pid::from_raw(pid), Signal::SIGINT).unwrap();
        tokio::time::timeout(TIMEOUT, self.child.wait())
            .await
            .expect("devstack stops after Ctrl-C")
            .unwrap()
    }
}

/// Stops whatever a failed test left running over `state`.
struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(record) = RunRecord::load(self.0) {
            record.stop_children();
        }
    }
}

async fn a_round_arrives(worker: &str, key: &str) {
    let url = format!("{worker}/sse/crash?api_key={key}");
    let mut client = SseClient::connect(&http_client(), &url)
        .await
        .unwrap()
        .expect("the printed key opens a stream");
    client
        .read_until("event: message", TIMEOUT)
        .await
        .expect("the generator's rounds reach the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_job_comes_up_stops_cleanly_resumes_and_recovers_from_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _cleanup = Cleanup(&state);

    // First run: up, a new database, rounds flowing to the printed key.
    let mut first = Run::start(&state, &[]);
    first.line("Up and running (4 rounds").await;
    let (worker, key) = first.worker_and_key().await;
    a_round_arrives(&worker, &key).await;
    // Limits are on, and the printed command shows the key's usage.
    let health = http_client()
        .get(format!("{worker}/healthz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(health.contains(r#""limits":"on""#), "{health}");
    // The console's URL is printed, and answers with its page.
    let console_line = first
        .seen
        .iter()
        .find(|l| l.trim_start().starts_with("console"))
        .cloned()
        .expect("a console line among the printed ones");
    let console_url = console_line.split_whitespace().nth(1).unwrap();
    assert_eq!(console_url, format!("{worker}/console"), "{console_line}");
    let page = http_client().get(console_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/console.js"));
    let usage_line = first.line("its usage").await;
    let command = usage_line.trim().trim_start_matches("its usage").trim();
    let output = tokio::process::Command::new("sh")
        .args(["-c", command])
        .current_dir(devstack::repo_root())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{command}: {output:?}");
    let usage: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(usage["usage"][0]["connects"].as_i64() >= Some(1), "{usage}");
    let groups = RunRecord::load(&state).expect("run.json while running");
    assert_eq!(groups.children.len(), 7, "seven process groups recorded");
    assert!(first.interrupt().await.success());
    for (name, pid, _) in &groups.children {
        assert!(!group_alive(*pid), "{name} (pid {pid}) outlived Ctrl-C");
    }

    // Second run: the same state, the same key, more rounds.
    let mut second = Run::start(&state, &[]);
    second.line("resuming the state of an earlier run").await;
    let up = second.line("Up and running (").await;
    assert!(!up.contains("(4 rounds"), "{up}");
    let (worker, second_key) = second.worker_and_key().await;
    assert_eq!(second_key, key, "the key survives a restart");
    a_round_arrives(&worker, &key).await;

    // A third start beside it is refused, and changes nothing.
    let mut beside = Run::start(&state, &[]);
    beside.line("already running").await;
    let status = tokio::time::timeout(TIMEOUT, beside.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());

    // kill -9: its children live on; the next start stops them and comes up.
    let orphans = RunRecord::load(&state).unwrap();
    second.child.start_kill().unwrap();
    second.child.wait().await.unwrap();
    assert!(
        orphans.children.iter().any(|(_, pid, _)| group_alive(*pid)),
        "kill -9 leaves the children running"
    );
    let mut third = Run::start(&state, &[]);
    third
        .line("left running by an earlier run that was killed")
        .await;
    third.line("Up and running (").await;
    for (name, pid, _) in &orphans.children {
        assert!(!group_alive(*pid), "{name} (pid {pid}) of the killed run");
    }
    let (worker, third_key) = third.worker_and_key().await;
    assert_eq!(third_key, key);
    a_round_arrives(&worker, &key).await;
    assert!(third.interrupt().await.success());

    // --fresh: an empty database and a new key.
    let mut fresh = Run::start(&state, &["--fresh"]);
    fresh.line("Up and running (4 rounds").await;
    assert_ne!(fresh.worker_and_key().await.1, key);
    assert!(fresh.interrupt().await.success());
}
