//! What leaves this repository for a build or a deploy carries no secret and
//! no test switch.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use devstack::repo_root;

#[test]
fn the_container_build_context_leaves_local_secrets_out() {
    // No docker here: the rules are checked as written. Each local file that
    // holds a secret must be excluded by a line of .dockerignore.
    let rules = std::fs::read_to_string(repo_root().join(".dockerignore"))
        .expect(".dockerignore exists next to the Containerfile's build context");
    let rules: Vec<&str> = rules
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in [
        ".local",
        ".dev.vars",
        "**/secrets.json",
        "**/*.env",
        ".wrangler",
        "target",
    ] {
        assert!(rules.contains(&needed), ".dockerignore lacks {needed}");
    }
}

#[test]
fn no_deployed_environment_allows_fault_injection_or_holds_a_secret() {
    let config = std::fs::read_to_string(repo_root().join("wrangler.toml")).unwrap();
    assert!(
        !config.contains("ALLOW_FAULTS"),
        "fault injection is for tests"
    );
    for secret in ["INGEST_SECRET =", "ADMIN_TOKEN =", "TOKEN_SECRET ="] {
        assert!(
            !config.contains(secret),
            "{secret} belongs in wrangler secret put"
        );
    }
}
