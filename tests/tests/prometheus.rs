//! The deploy's monitoring, checked by Prometheus itself: `promtool` checks
//! the configuration and the alert rules and runs the rules' unit tests; a
//! real Prometheus, on the deployed configuration pointed at the local
//! stack, scrapes ingest and the Worker, loads the alerts, and runs every
//! query of the Grafana dashboard. Grafana itself is not installable here
//! (not in Debian's archive), so its dashboard is checked through the
//! queries it would send.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;

use devstack::edge::TIMEOUT;
use devstack::prometheus::{Prometheus, Targets, deploy_dir, promtool};
use devstack::scrape::declared_names;
use devstack::stack::{PREFIX, Stack, StackOptions, ingest_ops_url};
use devstack::{fixtures, repo_root, wait_for};
use serde_json::Value;

#[test]
fn promtool_checks_the_configuration_the_rules_and_their_unit_tests() {
    let dir = deploy_dir();
    // The credentials file is the operator's: syntax only here (the
    // scrape test below checks the whole configuration with one).
    promtool(
        &dir,
        &["check", "config", "--syntax-only", "prometheus.yml"],
    )
    .unwrap();
    let rules = promtool(&dir, &["check", "rules", "alerts.yml"]).unwrap();
    assert!(rules.contains("SUCCESS: 8 rules found"), "{rules}");
    let tests = promtool(&dir, &["test", "rules", "alerts.test.yml"]).unwrap();
    assert!(tests.contains("SUCCESS"), "{tests}");
    // Every alert has a unit test.
    let alerts = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let unit = std::fs::read_to_string(dir.join("alerts.test.yml")).unwrap();
    for line in alerts.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            assert!(
                unit.contains(&format!("alertname: {name}")),
                "{name} has no unit test in alerts.test.yml"
            );
        }
    }
}

/// The metric names a PromQL query reads (`gamefeed_…`, `ingest_…`).
fn metric_names(query: &str) -> Vec<String> {
    query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("gamefeed_") || t.starts_with("ingest_"))
        .map(str::to_string)
        .collect()
}

/// Every query of the dashboard's panels, and its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("deploy/grafana/gamefeed.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "gamefeed");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut queries = Vec::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate id: {panel}"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{} is wider than the grid", panel["title"]);
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            queries.push((
                panel["title"].as_str().unwrap().to_string(),
                expr.to_string(),
            ));
        }
    }
    assert!(queries.len() >= 10, "{queries:?}");
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_ingest_and_the_edge_and_runs_every_dashboard_query() {
    let state = tempfile::tempdir().unwrap();
    let mut stack = Stack::up(StackOptions::on_free_ports(state.path(), 3600).unwrap())
        .await
        .expect("the stack starts");
    stack
        .edge
        .seed(&[("crash", "multiplier"), ("dice", "dice")])
        .await
        .unwrap();
    // A real Debezium insert through NATS and ingest: ingest has posted to
    // the edge (its answers' metric exists) once the round is stored.
    let insert = fixtures::read("debezium/rounds-insert.json").unwrap();
    stack
        .publish(&format!("{PREFIX}.public.rounds"), insert)
        .await
        .unwrap();
    wait_for("the insert stored at the edge", TIMEOUT, || async {
        let stats = stack.edge.stats("game", "crash-classic").await.ok()?;
        (stats["rounds"] == 1).then_some(())
    })
    .await
    .unwrap();
    let ops = ingest_ops_url(&mut stack.ingest).await.unwrap();
    let edge = stack.edge.worker.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let mut prometheus = Prometheus::start(
        dir.path(),
        &Targets {
            ingest: ops.trim_start_matches("http://"),
            edge: edge.trim_start_matches("http://"),
            admin_token: &stack.edge.admin_token,
        },
    )
    .await
    .unwrap();
    let mut jobs = prometheus.all_up(2).await.unwrap();
    jobs.sort();
    assert_eq!(jobs, ["gamefeed-edge", "ingest"]);

    // What Prometheus read agrees with the admin route.
    let stats = stack.edge.stats("game", "crash").await.unwrap();
    let read = prometheus
        .api(
            "query",
            &[(
                "query",
                r#"gamefeed_rounds_stored_total{stream="game:crash"}"#,
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        read["result"][0]["value"][1],
        stats["rounds"].to_string(),
        "{read}"
    );
    let (_, overview) = stack
        .edge
        .admin(reqwest::Method::GET, "/admin/overview", None)
        .await
        .unwrap();
    let known = overview["streams"].as_array().unwrap().len();
    assert!(known >= 5, "3 games and at least 2 types: {overview}");
    let streams = prometheus
        .api("query", &[("query", "count(gamefeed_viewers)")])
        .await
        .unwrap();
    assert_eq!(
        streams["result"][0]["value"][1],
        known.to_string(),
        "{streams}"
    );

    // Every metric the alerts and the dashboard read is one the targets declare.
    let http = devstack::http_client();
    let ingest_text = http
        .get(format!("{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let edge_text = http
        .get(format!("{edge}/admin/metrics"))
        .bearer_auth(&stack.edge.admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let declared: BTreeSet<String> = declared_names(&ingest_text)
        .into_iter()
        .chain(declared_names(&edge_text))
        .collect();
    let rules = prometheus.api("rules", &[]).await.unwrap();
    let mut alerts = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let query = rule["query"].as_str().unwrap();
            for name in metric_names(query) {
                assert!(
                    declared.contains(&name),
                    "alert {}: {name} is no metric",
                    rule["name"]
                );
            }
            assert_eq!(rule["health"], "ok", "{rule}");
            alerts.push(rule["name"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(alerts.len(), 8, "{alerts:?}");
    for (title, expr) in dashboard_queries() {
        for name in metric_names(&expr) {
            assert!(
                declared.contains(&name),
                "panel {title}: {name} is no metric"
            );
        }
        // Grafana fills in `$stream`; "All" is `.*`.
        let query = expr.replace("$stream", ".*");
        prometheus
            .api("query", &[("query", &query)])
            .await
            .unwrap_or_else(|e| panic!("panel {title}: {e}"));
    }

    // The admin token is in no log and in no URL Prometheus reports.
    let targets = prometheus.api("targets", &[]).await.unwrap().to_string();
    assert!(!targets.contains(&stack.edge.admin_token));
    let prometheus_log = std::fs::read_to_string(prometheus.proc.log_path()).unwrap();
    assert!(!prometheus_log.contains(&stack.edge.admin_token));
    let worker_log = std::fs::read_to_string(stack.edge.worker.proc.log_path()).unwrap();
    assert!(
        !worker_log.contains(&stack.edge.admin_token),
        "the admin token in the Worker's log"
    );
}
