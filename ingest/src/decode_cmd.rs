//! `ingest decode`: reads Debezium events (one JSON per line, optionally
//! preceded by its subject and a tab) and prints, one JSON per line, the
//! round event ingest would send or why it would not. For operators checking
//! a connector's output.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use serde_json::json;

use crate::debezium::{self, Decoded, GameInfo};

/// Decodes every line of `input` into `output`. Lines without a subject are
/// taken as `<prefix>.public.rounds`.
pub fn run(input: impl BufRead, mut output: impl Write, prefix: &str) -> std::io::Result<()> {
    let default_subject = format!("{prefix}.public.rounds");
    let mut games: HashMap<i64, GameInfo> = HashMap::new();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let (subject, payload) = match line.split_once('\t') {
            Some((subject, payload)) => (subject.trim(), payload),
            None => (default_subject.as_str(), line.as_str()),
        };
        let n = index + 1;
        let line: String = match debezium::decode(subject, payload.as_bytes(), prefix) {
            Ok(Decoded::Round { kind, row }) => {
                let game_id = row.round.game_id;
                match debezium::enrich(kind, row, |id| games.get(&id).cloned()) {
                    // Rendered by hand so the round keeps its contract field order.
                    Some(event) => match serde_json::to_string(&event) {
                        Ok(text) => format!("{{\"line\":{n},\"event\":{text}}}"),
                        Err(e) => json!({ "line": n, "error": e.to_string() }).to_string(),
                    },
                    None => json!({ "line": n, "wait": format!("game {game_id} not known yet: ingest would redeliver it later") })
                        .to_string(),
                }
            }
            Ok(Decoded::Game(info)) => {
                let line = json!({ "line": n, "game": { "id": info.id, "slug": info.slug, "type": info.game_type } });
                games.insert(info.id, info);
                line.to_string()
            }
            Ok(Decoded::Skip(reason)) => json!({ "line": n, "skip": reason }).to_string(),
            Err(err) => json!({ "line": n, "error": err.to_string() }).to_string(),
        };
        writeln!(output, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn one_answer_per_line() {
        let insert = std::fs::read_to_string(format!(
            "{}/../tests/fixtures/debezium/rounds-insert.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let input = format!(
            "{}\n__debezium-heartbeat.dbserver1\t{{\"ts_ms\":1}}\nnot json\n\ndbserver1.public.games\t{}\n",
            insert.trim(),
            r#"{"after":{"id":7,"slug":"crash-classic","type":"crash"},"source":{"ts_ms":1},"op":"r"}"#
        );
        let mut out = Vec::new();
        run(input.as_bytes(), &mut out, "dbserver1").unwrap();
        let out_copy = out.clone();
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["event"]["kind"], "new");
        assert_eq!(lines[0]["event"]["round"]["round_id"], 3);
        assert!(
            String::from_utf8_lossy(&out_copy).starts_with(
                r#"{"line":1,"event":{"kind":"new","round":{"round_id":3,"game_id":7,"#
            ),
            "the round keeps its field order"
        );
        assert_eq!(lines[1], json!({"line": 2, "skip": "heartbeat"}));
        assert!(lines[2]["error"].as_str().unwrap().contains("not JSON"));
        assert_eq!(lines[3]["game"]["slug"], "crash-classic");
    }
}
