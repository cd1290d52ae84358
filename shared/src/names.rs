//! Game slugs and game types appear in URLs, log lines and Durable Object
//! names (the Worker's `objects` module), so both are held to one
//! conservative alphabet.

/// Longest accepted slug or type.
pub const MAX_LEN: usize = 64;

/// A slug or type that is not `[a-z0-9][a-z0-9_-]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to 64 characters of a-z, 0-9, '-' or '_', starting with a letter or digit")]
pub struct InvalidName;

/// Checks a game slug or game type.
pub fn validate(name: &str) -> Result<&str, InvalidName> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'));
    if ok { Ok(name) } else { Err(InvalidName) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_slugs() {
        for ok in [
            "crash",
            "crash-classic",
            "dice_duel",
            "7up",
            &"a".repeat(64),
        ] {
            assert_eq!(validate(ok), Ok(ok));
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "-crash",
            "_x",
            "Crash",
            "cr ash",
            "crash/..",
            "é",
            "a\nb",
            &"a".repeat(65),
        ] {
            assert_eq!(validate(bad), Err(InvalidName), "{bad:?}");
        }
    }
}
