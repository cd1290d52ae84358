//! Tests of the parent module.

use std::collections::HashMap;

use super::*;

#[derive(Default)]
struct Map(HashMap<String, String>);

impl Source for Map {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
    fn secret(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

const STRONG: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn with(pairs: &[(&str, &str)]) -> Config {
    let mut map = Map::default();
    for name in [ADMIN_TOKEN, INGEST_SECRET, TOKEN_SECRET] {
        map.0.insert(name.into(), STRONG.into());
    }
    for (name, value) in pairs {
        map.0.insert((*name).into(), (*value).into());
    }
    Config::parse(&map)
}

#[test]
fn defaults_hold_when_nothing_is_set() {
    let config = with(&[]);
    assert!(config.problems.is_empty(), "{:?}", config.problems);
    assert_eq!(config.stream.heartbeat, Duration::from_secs(15));
    assert_eq!(config.stream.retry_ms, 3000);
    assert!(config.stream.retry_jitter);
    assert_eq!(config.relay_capacity, 10_000);
    assert_eq!(config.feed.group, 0);
    assert_eq!(config.feed.rotate_after, 200_000);
    assert!(!config.limits.fail_closed);
    assert!(config.limits.upstash.is_none());
    assert!(!config.faults.allowed);
    assert_eq!(config.limits.refresh_every, Duration::from_secs(60));
    assert_eq!(config.limits.lease_ttl, Duration::from_secs(180));
    assert_eq!(config.limits.retry_every, Duration::from_secs(15));
    assert_eq!(config.limits.token_max_streams, 3);
}

#[test]
fn a_bad_number_is_named_with_its_value_and_replacement() {
    let config = with(&[("HEARTBEAT_SECS", "fifteen"), ("RELAY_CAPACITY", "50000")]);
    assert_eq!(config.stream.heartbeat, Duration::from_secs(15));
    assert_eq!(config.relay_capacity, 32_000, "clamped, as before");
    assert_eq!(config.problem_names(), ["HEARTBEAT_SECS", "RELAY_CAPACITY"]);
    assert!(config.problems[0].message.contains("\"fifteen\""));
    assert!(config.problems[0].message.contains("using 15"));
    let zero = with(&[("HEARTBEAT_SECS", "0")]);
    assert_eq!(zero.stream.heartbeat, Duration::from_secs(1));
    assert_eq!(zero.problem_names(), ["HEARTBEAT_SECS"]);
}

#[test]
fn a_safety_setting_with_a_bad_value_fails_closed() {
    let typo = with(&[("LIMITS_FAIL", "clsoed")]);
    assert!(typo.limits.fail_closed, "a typo must not fail open");
    assert_eq!(typo.problem_names(), ["LIMITS_FAIL"]);
    assert!(with(&[("LIMITS_FAIL", "Closed")]).limits.fail_closed);
    assert!(!with(&[("LIMITS_FAIL", "OPEN")]).limits.fail_closed);

    let faults = with(&[("ALLOW_FAULTS", "yes"), ("FAULT_RELAY_PUSH", "hang")]);
    assert!(!faults.faults.allowed && !faults.faults.relay_pushes_hang);
    assert_eq!(faults.problem_names(), ["ALLOW_FAULTS"]);
    let on = with(&[("ALLOW_FAULTS", "1"), ("FAULT_RELAY_PUSH", "hang")]);
    assert!(on.faults.allowed && on.faults.relay_pushes_hang);
    assert!(!on.faults.subscribe_hangs_once);
}

#[test]
fn weak_or_missing_secrets_close_what_they_protect_without_their_value() {
    let weak = with(&[
        (ADMIN_TOKEN, "change-me-change-me-change-me-change-me"),
        (TOKEN_SECRET, "short"),
    ]);
    assert!(weak.admin_token.is_none() && weak.token_secret.is_none());
    assert_eq!(weak.problem_names(), [ADMIN_TOKEN, TOKEN_SECRET]);
    assert!(
        weak.problems[0]
            .message
            .contains("ADMIN_TOKEN is a placeholder")
    );
    for problem in &weak.problems {
        assert!(!problem.message.contains("change-me-change"), "{problem:?}");
        assert!(!problem.message.contains("short"), "{problem:?}");
    }
    let missing = Config::parse(&Map::default());
    assert_eq!(missing.problem_names(), [ADMIN_TOKEN, INGEST_SECRET]);
    assert!(
        missing.token_secret.is_none(),
        "optional: off, not an error"
    );
    let half = with(&[(UPSTASH_URL, "https://x.upstash.io")]);
    assert!(half.limits.upstash.is_none());
    assert_eq!(half.problem_names(), [UPSTASH_URL]);
}

/// Every environment of `wrangler.toml` parses without a problem.
#[test]
fn every_environment_of_wrangler_toml_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../wrangler.toml");
    let text = std::fs::read_to_string(path).expect("wrangler.toml");
    let doc: toml::Table = text.parse().expect("wrangler.toml is TOML");
    let vars = |table: &toml::Table| -> Vec<(String, String)> {
        table
            .get("vars")
            .and_then(|v| v.as_table())
            .expect("every environment lists its [vars]")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("vars are strings").to_string()))
            .collect()
    };
    let mut environments = vec![("local".to_string(), vars(&doc))];
    let envs = doc.get("env").and_then(|e| e.as_table()).expect("[env.*]");
    for (name, env) in envs {
        environments.push((name.clone(), vars(env.as_table().expect("a table"))));
    }
    assert!(environments.len() >= 3, "local, staging, production");
    for (name, pairs) in environments {
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let config = with(&pairs);
        assert!(config.problems.is_empty(), "{name}: {:?}", config.problems);
        assert!(!config.faults.allowed, "{name}: faults never deployed");
    }
}
