//! `ingest decode`: reads Debezium events (one JSON per line, optionally
//! preceded by its subject and a tab) and prints, one JSON per line, the
//! round event ingest would send or why it would not. For operators checking
//! a connector's output.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use serde_json::{Value, json};

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
        let answer: Value = match debezium::decode(subject, payload.as_bytes(), prefix) {
            Ok(Decoded::Round { kind, row }) => {
                let game_id = row.round.game_id;
                match debezium::enrich(kind, row, |id| games.get(&id).cloned()) {
                    Some(event) => json!({ "line": n, "event": event }),
                    None => {
                        json!({ "line": n, "wait": format!("game {game_id} not known yet: ingest would redeliver it later") })
                    }
                }
            }
            Ok(Decoded::Game(info)) => {
                let answer = json!({ "line": n, "game": { "id": info.id, "slug": info.slug, "type": info.game_type } });
                games.insert(info.id, info);
                answer
            }
            Ok(Decoded::Skip(reason)) => json!({ "line": n, "skip": reason }),
            Err(err) => json!({ "line": n, "error": err.to_string() }),
        };
        writeln!(output, "{answer}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["event"]["kind"], "new");
        assert_eq!(lines[0]["event"]["round"]["round_id"], 3);
        assert_eq!(lines[1], json!({"line": 2, "skip": "heartbeat"}));
        assert!(lines[2]["error"].as_str().unwrap().contains("not JSON"));
        assert_eq!(lines[3]["game"]["slug"], "crash-classic");
    }
}
