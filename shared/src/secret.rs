//! Strength checks for the shared secrets (`INGEST_SECRET`, `ADMIN_TOKEN`,
//! `TOKEN_SECRET`): a value copied from an example, or too short or uniform
//! to be random, is refused by ingest and by the Worker alike.

/// Shortest secret accepted: 32 characters, e.g. 16 random bytes in hex
/// (`openssl rand -hex 32` gives 64).
pub const MIN_LEN: usize = 32;

/// Words that mark a value copied from an example instead of generated.
const PLACEHOLDERS: [&str; 12] = [
    "replace-with",
    "replace_with",
    "replacewith",
    "replace-me",
    "replaceme",
    "change-me",
    "change_me",
    "changeme",
    "example",
    "placeholder",
    "your-secret",
    "your_secret",
];

/// Fewest distinct characters of a random-looking secret.
const MIN_DISTINCT: usize = 6;

/// Why a secret was refused; the message names the setting, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakSecret {
    /// A placeholder from an example file.
    #[error("{0} is a placeholder, not a secret: generate one (e.g. `openssl rand -hex 32`)")]
    Placeholder(&'static str),
    /// Shorter than [`MIN_LEN`].
    #[error("{0} must be at least {MIN_LEN} characters (e.g. `openssl rand -hex 32`)")]
    TooShort(&'static str),
    /// Too few distinct characters to be random.
    #[error("{0} uses too few distinct characters to be random (e.g. `openssl rand -hex 32`)")]
    Uniform(&'static str),
}

/// Checks the secret `value` of setting `name`.
pub fn check(name: &'static str, value: &str) -> Result<(), WeakSecret> {
    let lower = value.trim().to_ascii_lowercase();
    if PLACEHOLDERS.iter().any(|word| lower.contains(word)) {
        return Err(WeakSecret::Placeholder(name));
    }
    if value.chars().count() < MIN_LEN {
        return Err(WeakSecret::TooShort(name));
    }
    let distinct: std::collections::BTreeSet<char> = value.chars().collect();
    if distinct.len() < MIN_DISTINCT {
        return Err(WeakSecret::Uniform(name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_short_and_uniform_values_are_refused() {
        for placeholder in [
            "replace-with-a-long-random-secret",
            "change-me-change-me-change-me-change-me",
            "please-changeme-before-production-use",
            "an-EXAMPLE-value-that-is-long-enough-to-pass",
        ] {
            assert_eq!(
                check("INGEST_SECRET", placeholder),
                Err(WeakSecret::Placeholder("INGEST_SECRET"))
            );
        }
        assert_eq!(
            check("ADMIN_TOKEN", "0123456789abcdef"),
            Err(WeakSecret::TooShort("ADMIN_TOKEN"))
        );
        assert_eq!(
            check("ADMIN_TOKEN", &"ab".repeat(20)),
            Err(WeakSecret::Uniform("ADMIN_TOKEN"))
        );
        let message = check("ADMIN_TOKEN", "change-me").unwrap_err().to_string();
        assert!(
            message.starts_with("ADMIN_TOKEN is a placeholder"),
            "{message}"
        );
        assert!(!message.contains("change-me"), "never the value: {message}");
    }

    #[test]
    fn generated_secrets_pass() {
        assert_eq!(
            check(
                "INGEST_SECRET",
                "9f1c2b7e4a6d8c0f3e5a7b9d1c3e5f70a2b4c6d8e0f1a3b5"
            ),
            Ok(())
        );
    }
}
