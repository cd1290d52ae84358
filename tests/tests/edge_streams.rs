//! The edge's streams under `wrangler dev` (real workerd, local KV and
//! Durable Object storage): resume, reset, dedup, updates and backfills,
//! per-type and multiplexed streams.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use devstack::edge::{Edge, TIMEOUT, events, frame, frame_at, round};
use devstack::sse::SseClient;
use serde_json::json;
use shared::EventKind::{Backfill, New, Update};

const RETRY: &str = "retry: 3000\n\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_the_gap_then_goes_live_with_no_duplicate() {
    let edge = Edge::start(&[]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let rounds: Vec<_> = (1..=5).map(|id| round(id, "crash", "multiplier")).collect();
    edge.store(events(New, &rounds[..3])).await.unwrap();

    // Resumed from round 1 (header, as browsers send it): 2 and 3, then live.
    let mut a = edge
        .sse_with(
            &format!("/sse/crash?api_key={key}"),
            &[("last-event-id", "1")],
        )
        .await
        .unwrap();
    a.read_frames(3, TIMEOUT).await.unwrap();
    // Resumed from the latest (query parameter): nothing to replay.
    let mut b = edge
        .sse(&format!("/sse/crash?api_key={key}&last_event_id=3"))
        .await
        .unwrap();
    b.read_frames(1, TIMEOUT).await.unwrap();

    edge.store(events(New, &rounds[3..4])).await.unwrap();
    a.read_frames(4, TIMEOUT).await.unwrap();
    b.read_frames(2, TIMEOUT).await.unwrap();
    assert_eq!(
        a.text(),
        format!(
            "{RETRY}{}{}{}",
            frame("message", &rounds[1]),
            frame("message", &rounds[2]),
            frame("message", &rounds[3])
        )
    );
    assert_eq!(b.text(), format!("{RETRY}{}", frame("message", &rounds[3])));

    // A malformed id is refused.
    let response = edge
        .http
        .get(edge.url(&format!("/sse/crash?api_key={key}&last_event_id=abc")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .starts_with(r#"{"error":{"code":"bad_request","#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_older_than_the_history_gets_reset_then_initial() {
    let edge = Edge::start(&[("HISTORY_LIMIT", "3")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let rounds: Vec<_> = (1..=5).map(|id| round(id, "crash", "multiplier")).collect();
    edge.store(events(New, &rounds)).await.unwrap();
    let mut client = edge
        .sse_with(
            &format!("/sse/crash?api_key={key}"),
            &[("last-event-id", "1")],
        )
        .await
        .unwrap();
    client.read_frames(3, TIMEOUT).await.unwrap();
    assert_eq!(
        client.text(),
        format!(
            "{RETRY}event: reset\ndata: {{\"stream\":\"game:crash\"}}\n\n{}",
            frame("initial", &rounds[4])
        )
    );
    // Only the last 3 rounds are kept.
    let stats = edge.stats("game", "crash").await.unwrap();
    assert_eq!(stats["rounds"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_batch_stores_and_sends_nothing_twice() {
    let edge = Edge::start(&[]).await.unwrap();
    edge.seed(&[("dice", "dice")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let mut client = edge.sse(&format!("/sse/dice?api_key={key}")).await.unwrap();
    client.read_frames(2, TIMEOUT).await.unwrap();
    let rounds: Vec<_> = (1..=3).map(|id| round(id, "dice", "dice")).collect();
    assert_eq!(
        edge.store(events(New, &rounds[..2])).await.unwrap(),
        json!({"stored": 2, "duplicates": 0})
    );
    assert_eq!(
        edge.store(events(New, &rounds[..2])).await.unwrap(),
        json!({"stored": 0, "duplicates": 2})
    );
    assert_eq!(
        edge.store(events(New, &rounds)).await.unwrap(),
        json!({"stored": 1, "duplicates": 2})
    );
    client.read_frames(5, TIMEOUT).await.unwrap();
    assert_eq!(
        client.text(),
        format!(
            "{RETRY}{}{}{}{}",
            frame("initial", &round(0, "dice", "dice")),
            frame("message", &rounds[0]),
            frame("message", &rounds[1]),
            frame("message", &rounds[2])
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfills_are_stored_silently_and_updates_sent_only_when_changed() {
    let edge = Edge::start(&[]).await.unwrap();
    edge.seed(&[("wheel", "wheel")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let mut live = edge
        .sse(&format!("/sse/wheel?api_key={key}"))
        .await
        .unwrap();
    live.read_frames(2, TIMEOUT).await.unwrap();

    // Snapshot rows: stored, the newest becomes latest, nothing is broadcast.
    let r10 = round(10, "wheel", "wheel");
    let r5 = round(5, "wheel", "wheel");
    edge.store(events(Backfill, &[r10.clone(), r5.clone()]))
        .await
        .unwrap();
    let mut late = edge
        .sse(&format!("/sse/wheel?api_key={key}"))
        .await
        .unwrap();
    late.read_frames(2, TIMEOUT).await.unwrap();
    assert_eq!(late.text(), format!("{RETRY}{}", frame("initial", &r10)));

    // An update that changes nothing is not news; one that does is `update`.
    assert_eq!(
        edge.store(events(Update, std::slice::from_ref(&r10)))
            .await
            .unwrap(),
        json!({"stored": 0, "duplicates": 1})
    );
    let mut corrected = r10.clone();
    corrected.extras = r#"{"n": 10, "settled": true}"#.into();
    edge.store(events(Update, &[corrected.clone()]))
        .await
        .unwrap();
    let r11 = round(11, "wheel", "wheel");
    edge.store(events(New, std::slice::from_ref(&r11)))
        .await
        .unwrap();
    live.read_frames(4, TIMEOUT).await.unwrap();
    assert_eq!(
        live.text(),
        format!(
            "{RETRY}{}{}{}",
            frame("initial", &round(0, "wheel", "wheel")),
            // The stream's newest round (by arrival) was 5, and this is its
            // first update.
            frame_at("update", "5.1", &corrected),
            frame("message", &r11)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_after_an_update_misses_and_repeats_nothing() {
    let edge = Edge::start(&[]).await.unwrap();
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let path = format!("/sse/crash?api_key={key}");
    let mut a = edge.sse(&path).await.unwrap();
    a.read_frames(2, TIMEOUT).await.unwrap();
    let r1 = round(1, "crash", "multiplier");
    let r2 = round(2, "crash", "multiplier");
    edge.store(events(New, &[r1.clone(), r2.clone()]))
        .await
        .unwrap();
    let mut r1b = r1.clone();
    r1b.extras = r#"{"n": 1, "v": 2}"#.into();
    r1b.timestamp += 10;
    edge.store(events(Update, std::slice::from_ref(&r1b)))
        .await
        .unwrap();
    a.read_frames(5, TIMEOUT).await.unwrap();
    let update_id = "2.1";
    assert_eq!(
        a.text(),
        format!(
            "{RETRY}{}{}{}{}",
            frame("initial", &round(0, "crash", "multiplier")),
            frame("message", &r1),
            frame("message", &r2),
            frame_at("update", update_id, &r1b)
        )
    );
    // The opening (`retry:` and `initial`) then `live`: nothing replayed.
    assert_eq!(
        live_markers(&a),
        [(2, json!({"stream": "game:crash", "replayed": 0}))]
    );
    drop(a);

    // Missed while away: round 3, then an update of round 2.
    let r3 = round(3, "crash", "multiplier");
    edge.store(events(New, std::slice::from_ref(&r3)))
        .await
        .unwrap();
    let mut r2b = r2.clone();
    r2b.extras = r#"{"n": 2, "v": 2}"#.into();
    r2b.timestamp += 10;
    edge.store(events(Update, std::slice::from_ref(&r2b)))
        .await
        .unwrap();

    // Resumed from the update's id: exactly what was missed, in order.
    let mut b = edge
        .sse_with(&path, &[("last-event-id", update_id)])
        .await
        .unwrap();
    b.read_frames(3, TIMEOUT).await.unwrap();
    assert_eq!(
        b.text(),
        format!(
            "{RETRY}{}{}",
            frame("message", &r3),
            frame_at("update", "3.2", &r2b)
        )
    );
    assert_eq!(
        live_markers(&b),
        [(3, json!({"stream": "game:crash", "replayed": 2}))]
    );
    // Resumed from round 2 instead: the update of round 1 too.
    let mut c = edge
        .sse_with(&path, &[("last-event-id", "2")])
        .await
        .unwrap();
    c.read_frames(4, TIMEOUT).await.unwrap();
    assert_eq!(
        c.text(),
        format!(
            "{RETRY}{}{}{}",
            frame_at("update", "2.1", &r1b),
            frame("message", &r3),
            frame_at("update", "3.2", &r2b)
        )
    );
    assert_eq!(
        live_markers(&c),
        [(4, json!({"stream": "game:crash", "replayed": 3}))]
    );
}

/// The `live` markers a client got: how many frames came before each, and
/// its data.
fn live_markers(client: &SseClient) -> Vec<(usize, serde_json::Value)> {
    client
        .markers_of("live")
        .into_iter()
        .map(|m| (m.after_frames, m.data.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_opens_with_the_last_rounds_then_live() {
    let edge = Edge::start(&[]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let rounds: Vec<_> = (1..=5).map(|id| round(id, "crash", "multiplier")).collect();
    edge.store(events(New, &rounds)).await.unwrap();
    // Round 4 corrected after round 5 arrived: update 5.1.
    let mut r4b = rounds[3].clone();
    r4b.extras = r#"{"n": 4, "v": 2}"#.into();
    r4b.timestamp += 10;
    edge.store(events(Update, std::slice::from_ref(&r4b)))
        .await
        .unwrap();

    // The last 3 rounds, oldest first, with their current bodies and the
    // update since; then `live`; then news.
    let mut a = edge
        .sse(&format!("/sse/crash?api_key={key}&rewind=3"))
        .await
        .unwrap();
    a.read_markers("live", 1, TIMEOUT).await.unwrap();
    let r6 = round(6, "crash", "multiplier");
    edge.store(events(New, std::slice::from_ref(&r6)))
        .await
        .unwrap();
    a.read_frames(6, TIMEOUT).await.unwrap();
    assert_eq!(
        a.text(),
        format!(
            "{RETRY}{}{}{}{}{}",
            frame("message", &rounds[2]),
            frame("message", &r4b),
            frame("message", &rounds[4]),
            frame_at("update", "5.1", &r4b),
            frame("message", &r6)
        )
    );
    assert_eq!(
        live_markers(&a),
        [(5, json!({"stream": "game:crash", "replayed": 4}))]
    );

    // More than the stream holds: all of it. On a type stream too.
    let mut b = edge
        .sse(&format!("/sse/type/multiplier?api_key={key}&rewind=100"))
        .await
        .unwrap();
    b.read_markers("live", 1, TIMEOUT).await.unwrap();
    assert_eq!(b.frames().len(), 8, "{}", b.text());
    assert_eq!(
        live_markers(&b),
        [(8, json!({"stream": "type:multiplier", "replayed": 7}))]
    );

    // With a resume point, rewind is ignored.
    let mut c = edge
        .sse_with(
            &format!("/sse/crash?api_key={key}&rewind=50"),
            &[("last-event-id", "6")],
        )
        .await
        .unwrap();
    c.read_markers("live", 1, TIMEOUT).await.unwrap();
    assert_eq!(c.text(), RETRY);
    assert_eq!(
        live_markers(&c),
        [(1, json!({"stream": "game:crash", "replayed": 0}))]
    );

    // Multiplexed: per member, each member's rounds then its `live`.
    let mut d = edge
        .sse(&format!(
            "/sse?api_key={key}&games=crash&types=multiplier&rewind=2"
        ))
        .await
        .unwrap();
    d.read_markers("live", 2, TIMEOUT).await.unwrap();
    // Each member: round 5, the update sent after it, round 6.
    assert_eq!(d.frames().len(), 7, "{}", d.text());
    // Each opening is written whole in one step: the last one ends with
    // both members at round 6.
    assert!(
        d.text()
            .ends_with(&frame_at("message", "g:crash:6,t:multiplier:6", &r6)),
        "{}",
        d.text()
    );
    let mut streams: Vec<String> = d
        .markers_of("live")
        .iter()
        .map(|m| {
            assert_eq!(m.data["replayed"], 3);
            m.data["stream"].as_str().unwrap().to_string()
        })
        .collect();
    streams.sort();
    assert_eq!(streams, ["game:crash", "type:multiplier"]);

    // Out of range or not a number: 400 before anything opens.
    for bad in ["0", "101", "-1", "x", ""] {
        let response = edge
            .http
            .get(edge.url(&format!("/sse/crash?api_key={key}&rewind={bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "rewind={bad}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_streams_and_multiplexed_streams() {
    let edge = Edge::start(&[]).await.unwrap();
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let key = edge.open_key().await.unwrap();

    // Every game of a type, on one stream.
    let mut by_type = edge
        .sse(&format!("/sse/type/multiplier?api_key={key}"))
        .await
        .unwrap();
    by_type.read_frames(2, TIMEOUT).await.unwrap();
    let crash = round(1, "crash", "multiplier");
    let dice = round(2, "dice", "dice");
    let aviator = round(3, "aviator", "multiplier");
    edge.store(events(New, &[crash.clone(), dice.clone(), aviator.clone()]))
        .await
        .unwrap();
    by_type.read_frames(4, TIMEOUT).await.unwrap();
    assert_eq!(
        by_type.text(),
        format!(
            "{RETRY}{}{}{}",
            frame("initial", &round(0, "crash", "multiplier")),
            frame("message", &crash),
            frame("message", &aviator)
        )
    );

    // Several games on one connection: `id:` is a cursor over the members.
    let mut multi = edge
        .sse(&format!("/sse?games=crash,dice&api_key={key}"))
        .await
        .unwrap();
    multi.read_frames(3, TIMEOUT).await.unwrap();
    let initial: Vec<String> = multi.frames()[1..].to_vec();
    let crash_json = serde_json::to_string(&crash).unwrap();
    let dice_json = serde_json::to_string(&dice).unwrap();
    assert!(
        initial.contains(&format!(
            "id: g:crash:1\nevent: initial\ndata: {crash_json}\n\n"
        )),
        "{initial:?}"
    );
    assert!(
        initial
            .iter()
            .any(|f| f.ends_with(&format!("event: initial\ndata: {dice_json}\n\n"))),
        "{initial:?}"
    );
    assert!(
        initial
            .iter()
            .any(|f| f.starts_with("id: g:crash:1,g:dice:2\n")),
        "{initial:?}"
    );

    let crash4 = round(4, "crash", "multiplier");
    edge.store(events(New, std::slice::from_ref(&crash4)))
        .await
        .unwrap();
    multi.read_frames(4, TIMEOUT).await.unwrap();
    let crash4_json = serde_json::to_string(&crash4).unwrap();
    assert_eq!(
        multi.frames()[3],
        format!("id: g:crash:4,g:dice:2\nevent: message\ndata: {crash4_json}\n\n")
    );
    drop(multi);

    // Resuming with the cursor replays what each member missed, and only that.
    let dice5 = round(5, "dice", "dice");
    let crash6 = round(6, "crash", "multiplier");
    edge.store(events(New, &[dice5.clone(), crash6.clone()]))
        .await
        .unwrap();
    let mut resumed = edge
        .sse_with(
            &format!("/sse?games=crash,dice&api_key={key}"),
            &[("last-event-id", "g:crash:4,g:dice:2")],
        )
        .await
        .unwrap();
    resumed.read_frames(3, TIMEOUT).await.unwrap();
    let data: Vec<String> = resumed.frames()[1..]
        .iter()
        .map(|f| f.split("data: ").nth(1).unwrap_or_default().to_string())
        .collect();
    assert_eq!(data.len(), 2);
    assert!(
        data.contains(&format!("{}\n\n", serde_json::to_string(&dice5).unwrap())),
        "{data:?}"
    );
    assert!(
        data.contains(&format!("{}\n\n", serde_json::to_string(&crash6).unwrap())),
        "{data:?}"
    );
    // After both, the cursor covers both members.
    assert!(
        resumed.frames()[2].starts_with("id: g:crash:6,g:dice:5\n"),
        "{:?}",
        resumed.frames()
    );

    // Bounds and bad cursors are 400 with a clear message.
    for (query, needle) in [
        ("games=a,b,c,d,e,f,g", "at most 6 streams"),
        ("games=", "at least one stream"),
        ("games=crash&last_event_id=g:dice:1", "not requested"),
        ("games=crash&last_event_id=5", "malformed"),
    ] {
        let response = edge
            .http
            .get(edge.url(&format!("/sse?{query}&api_key={key}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{query}");
        let body = response.text().await.unwrap();
        assert!(body.contains(needle), "{query}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_one_socket_message_is_replayed_whole() {
    let edge = Edge::start(&[]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    // 40 rounds of ~60 KB: a 2.4 MB backlog, over the 1 MiB a WebSocket
    // message between the object and the Worker may carry.
    let pad = "p".repeat(60_000);
    let rounds: Vec<_> = (1..=41)
        .map(|id| {
            let mut r = round(id, "big", "multiplier");
            r.extras = format!("{{\"pad\": \"{pad}\"}}");
            r
        })
        .collect();
    for chunk in rounds.chunks(8) {
        edge.store(events(New, chunk)).await.unwrap();
    }
    let mut client = edge
        .sse_with(
            &format!("/sse/big?api_key={key}"),
            &[("last-event-id", "1")],
        )
        .await
        .unwrap();
    client.read_frames(41, TIMEOUT).await.unwrap();
    let expected: String = rounds[1..].iter().map(|r| frame("message", r)).collect();
    assert_eq!(client.frames().concat(), format!("{RETRY}{expected}"));
}

/// Each connection gets its own `retry:` between a third and twice
/// `RETRY_MS`, so browsers that all lost their stream at once (a deploy, an
/// object restart) do not all come back in the same second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_delays_are_spread() {
    let edge = Edge::start(&[("RETRY_JITTER", "on")]).await.unwrap();
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let mut retries = Vec::new();
    for _ in 0..20 {
        let mut client = edge
            .sse(&format!("/sse/crash?api_key={key}"))
            .await
            .unwrap();
        client.read_frames(1, TIMEOUT).await.unwrap();
        let text = client.text();
        let retry: u64 = text
            .strip_prefix("retry: ")
            .and_then(|r| r.split_once("\n\n"))
            .and_then(|(ms, _)| ms.parse().ok())
            .unwrap_or_else(|| panic!("no retry frame first: {text:?}"));
        retries.push(retry);
    }
    assert!(
        retries.iter().all(|r| (1000..=6000).contains(r)),
        "{retries:?}"
    );
    retries.sort_unstable();
    retries.dedup();
    // 20 draws from 5 001 values: fewer than 10 distinct would be a broken
    // spread, not bad luck.
    assert!(retries.len() >= 10, "{retries:?}");
}
