//! A real Prometheus (Debian's `prometheus`, installed by `scripts/setup.sh`)
//! running the deploy's configuration against local targets, and
//! `promtool`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::process::{Proc, listening_ports};
use crate::{repo_root, wait_for_proc};

/// `deploy/prometheus`.
pub fn deploy_dir() -> PathBuf {
    repo_root().join("deploy/prometheus")
}

/// Runs `promtool args…` in `dir`; its output, or an error with it.
pub fn promtool(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running promtool (scripts/setup.sh installs it)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("promtool {} failed:\n{text}", args.join(" "));
    }
    Ok(text)
}

/// Where the deployed configuration names its targets and secret, and what
/// a local run puts there instead.
pub struct Targets<'a> {
    /// `host:port` of ingest's operations endpoint.
    pub ingest: &'a str,
    /// `host:port` of the Worker (plain HTTP locally).
    pub edge: &'a str,
    /// The Worker's admin token.
    pub admin_token: &'a str,
}

/// A running Prometheus.
pub struct Prometheus {
    /// The process.
    pub proc: Proc,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    http: reqwest::Client,
}

impl Prometheus {
    /// Writes `deploy/prometheus/prometheus.yml` into `dir` with `targets`
    /// in place of the deployed ones and short intervals, checks it with
    /// `promtool check config`, and starts Prometheus on it (port 0, read
    /// back). Fails when a place the substitution expects is gone from the
    /// deployed file.
    pub async fn start(dir: &Path, targets: &Targets<'_>) -> anyhow::Result<Self> {
        let deployed = std::fs::read_to_string(deploy_dir().join("prometheus.yml"))?;
        let token_file = dir.join("admin-token");
        write_private(&token_file, targets.admin_token)?;
        let token_path = token_file.to_string_lossy().into_owned();
        let mut config = deployed;
        for (from, to) in [
            ("ingest.internal:9464", targets.ingest),
            ("feed.example.com", targets.edge),
            ("scheme: https", "scheme: http"),
            ("/etc/prometheus/gamefeed-admin-token", token_path.as_str()),
            ("scrape_interval: 15s", "scrape_interval: 1s"),
            ("evaluation_interval: 15s", "evaluation_interval: 1s"),
            ("scrape_interval: 30s", "scrape_interval: 2s"),
            ("scrape_timeout: 15s", "scrape_timeout: 2s"),
        ] {
            if !config.contains(from) {
                bail!("deploy/prometheus/prometheus.yml no longer has {from:?}");
            }
            config = config.replace(from, to);
        }
        std::fs::write(dir.join("prometheus.yml"), config)?;
        std::fs::copy(deploy_dir().join("alerts.yml"), dir.join("alerts.yml"))?;
        promtool(dir, &["check", "config", "prometheus.yml"])?;
        let data = dir.join("data");
        let mut proc = Proc::spawn(
            "prometheus",
            Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg("--web.listen-address=127.0.0.1:0")
                .current_dir(dir),
            &dir.join("prometheus.log"),
        )?;
        let http = crate::http_client();
        let pid = proc.id();
        let url = wait_for_proc(&mut proc, "Prometheus", Duration::from_secs(60), || {
            let http = http.clone();
            async move {
                for port in listening_ports(pid) {
                    let url = format!("http://127.0.0.1:{port}");
                    let ready = http.get(format!("{url}/-/ready")).send().await.ok()?;
                    if ready.status().is_success() {
                        return Some(url);
                    }
                }
                None
            }
        })
        .await?;
        Ok(Self { proc, url, http })
    }

    /// `GET /api/v1/<path>` with `query`; the `data` of a success.
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/{path}", self.url), query)?;
        let body: Value = self.http.get(url).send().await?.json().await?;
        if body["status"] != "success" {
            bail!("{path} {query:?}: {body}");
        }
        Ok(body["data"].clone())
    }

    /// Waits until every active target's last scrape was healthy and there
    /// are `want` of them; their `job` labels. Fails at once, with its log,
    /// if Prometheus exits.
    pub async fn all_up(&mut self, want: usize) -> anyhow::Result<Vec<String>> {
        let http = self.http.clone();
        let url = self.url.clone();
        wait_for_proc(
            &mut self.proc,
            "Prometheus's targets up",
            crate::edge::TIMEOUT,
            || {
                let http = http.clone();
                let url = url.clone();
                async move {
                    let body: Value = http
                        .get(format!("{url}/api/v1/targets"))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    let targets = body["data"]["activeTargets"].as_array()?;
                    let up = targets.len() == want && targets.iter().all(|t| t["health"] == "up");
                    up.then(|| {
                        targets
                            .iter()
                            .map(|t| t["labels"]["job"].as_str().unwrap_or("").to_string())
                            .collect()
                    })
                }
            },
        )
        .await
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
