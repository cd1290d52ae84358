//! Decode throughput on one core: the Debezium fixtures (schemas off and on,
//! insert, snapshot, update, delete) decoded and enriched in a loop.
//!   cargo run --release -p ingest --example bench_decode
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use ingest::debezium::{self, Decoded};

fn main() {
    let dir = format!("{}/../tests/fixtures/debezium", env!("CARGO_MANIFEST_DIR"));
    let names = [
        "rounds-insert.json",
        "rounds-insert-with-schema.json",
        "rounds-snapshot-read.json",
        "rounds-update.json",
        "rounds-delete.json",
    ];
    let payloads: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(format!("{dir}/{n}")).unwrap())
        .collect();
    let total = 500_000;
    let mut events = 0usize;
    let mut bytes = 0usize;
    // Warm-up.
    for p in &payloads {
        let _ = debezium::decode("dbserver1.public.rounds", p, "dbserver1");
    }
    let started = Instant::now();
    for i in 0..total {
        let p = &payloads[i % payloads.len()];
        bytes += p.len();
        if let Ok(Decoded::Round { kind, row }) =
            debezium::decode("dbserver1.public.rounds", p, "dbserver1")
            && debezium::enrich(kind, row, |_| None).is_some()
        {
            events += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "decode: {total} messages ({:.1} MB) in {secs:.2} s = {:.0} messages/s on one core ({events} round events)",
        bytes as f64 / 1e6,
        total as f64 / secs
    );
    println!("of which schema-on envelopes: 1 in 5 (each ~4x larger)");
}
