//! Tests of the parent module.

use shared::cursor::Position;
use shared::{EventKind, Round};

use super::*;

#[test]
fn object_names_do_not_collide_and_read_back() {
    assert_ne!(game_object("dice"), type_object("dice"));
    assert_eq!(relay_object("game:crash", 3), "relay:game:crash:3");
    assert_ne!(relay_object("game:crash", 1), game_object("crash"));
    let name = relay_object("type:multiplier", 12);
    assert_eq!(parse_relay_name(&name), Some(("type:multiplier", 12)));
    assert_eq!(parse_relay_name("sse"), None);
    assert_eq!(parse_relay_name("relay:game:crash:x"), None);
}

fn stream_round_trip(call: StreamCall) {
    let wire = call.encode();
    let body = call
        .body()
        .transpose()
        .expect("encodes")
        .unwrap_or_default();
    let back = StreamCall::decode(wire.verb, &wire.target, &body);
    assert_eq!(back.as_ref(), Ok(&call), "{wire:?}");
    assert_eq!(
        wire.upgrade,
        matches!(call, StreamCall::Subscribe { .. }),
        "only subscriptions upgrade"
    );
}

#[test]
fn every_stream_call_round_trips() {
    let at = Position {
        round: 12,
        update: Some(3),
    };
    let event = RoundEvent {
        kind: EventKind::Update,
        round: Round {
            round_id: 12,
            game_id: 1,
            game_slug: "crash".into(),
            game_type: "multiplier".into(),
            finished_at: "2026-12-03T08:00:00Z".into(),
            extras: "{}".into(),
            timestamp: 1,
        },
    };
    for resume in [
        FeedResume::Live,
        FeedResume::Start,
        FeedResume::At(at),
        FeedResume::At(Position::round(-4)),
    ] {
        for full in [None, Some(0), Some(7)] {
            stream_round_trip(StreamCall::Subscribe { resume, full });
        }
    }
    for start in [
        Start::Latest,
        Start::After(at),
        Start::Rewind(1),
        Start::Rewind(MAX_REWIND),
    ] {
        stream_round_trip(StreamCall::Opening { start });
    }
    stream_round_trip(StreamCall::Latest);
    stream_round_trip(StreamCall::Rounds {
        limit: 5,
        before: i64::MAX,
    });
    stream_round_trip(StreamCall::Stats);
    stream_round_trip(StreamCall::Disconnect);
    stream_round_trip(StreamCall::Viewers);
    stream_round_trip(StreamCall::Figures);
    for minutes in [1, 60, 1440] {
        stream_round_trip(StreamCall::Series { minutes });
    }
    stream_round_trip(StreamCall::RelayViewers {
        relay: 3,
        viewers: 1234,
    });
    stream_round_trip(StreamCall::Store(vec![event.clone(), event]));
    stream_round_trip(StreamCall::Store(Vec::new()));
    stream_round_trip(StreamCall::RelayIdle { relay: 4 });
}

#[test]
fn every_relay_and_directory_call_round_trips() {
    let ticket = Ticket {
        relay: 3,
        after: 41,
        issued: 1_764_748_800_123.0,
    };
    for call in [
        RelayCall::Join(ticket),
        RelayCall::Push {
            number: 9,
            prev: None,
        },
        RelayCall::Push {
            number: 9,
            prev: Some(8),
        },
        RelayCall::Stats,
        RelayCall::Disconnect,
        RelayCall::Stop { after: 41 },
        RelayCall::Viewers(0),
        RelayCall::Viewers(98_765),
    ] {
        let wire = call.encode();
        assert_eq!(RelayCall::decode(wire.verb, &wire.target), Ok(call));
    }
    let entry = GameEntry {
        slug: "crash".into(),
        game_id: 1,
        game_type: "multiplier".into(),
        latest_round_id: 9,
    };
    for call in [
        DirectoryCall::Games,
        DirectoryCall::Upsert(vec![entry]),
        DirectoryCall::Fault(true),
        DirectoryCall::Fault(false),
        DirectoryCall::AddFailedOpen(17),
        DirectoryCall::FailedOpen,
    ] {
        let wire = call.encode();
        let body = call
            .body()
            .transpose()
            .expect("encodes")
            .unwrap_or_default();
        assert_eq!(
            DirectoryCall::decode(wire.verb, &wire.target, &body),
            Ok(call)
        );
    }
}

#[test]
fn what_is_no_call_is_refused_with_its_reason() {
    let refused = |r: Result<StreamCall, Refusal>| r.map_err(|r| r.status);
    for bad in [
        "/opening?rewind=0",
        "/opening?rewind=101",
        "/opening?rewind=-1",
        "/opening?rewind=2&last_event_id=3",
    ] {
        assert_eq!(
            refused(StreamCall::decode(Verb::Get, bad, b"")),
            Err(400),
            "{bad}"
        );
    }
    assert_eq!(
        refused(StreamCall::decode(Verb::Post, "/latest", b"")),
        Err(404)
    );
    assert_eq!(
        refused(StreamCall::decode(Verb::Get, "/nothing", b"")),
        Err(404)
    );
    assert_eq!(
        refused(StreamCall::decode(Verb::Get, "/rounds?limit=5", b"")),
        Err(400)
    );
    assert_eq!(
        refused(StreamCall::decode(Verb::Get, "/subscribe?from=middle", b"")),
        Err(400)
    );
    assert_eq!(
        refused(StreamCall::decode(
            Verb::Get,
            "/opening?last_event_id=x",
            b""
        )),
        Err(400)
    );
    assert_eq!(
        refused(StreamCall::decode(Verb::Post, "/store", b"{")),
        Err(400)
    );
    assert_eq!(
        RelayCall::decode(Verb::Post, "/push?number=-1").map_err(|r| r.status),
        Err(400)
    );
    assert_eq!(
        DirectoryCall::decode(Verb::Post, "/fault?failing=maybe", b"").map_err(|r| r.status),
        Err(400)
    );
}

#[test]
fn replies_round_trip() {
    let ticket = Ticket {
        relay: 2,
        after: (1 << 53) - 1,
        issued: 1_764_748_800_123.5,
    };
    assert_eq!(
        PlacementHead::decode(&PlacementHead::encode(&ticket)),
        Some(ticket)
    );
    assert_eq!(PlacementHead::decode(&[0u8; 10]), None, "too short");
    let mut bad = PlacementHead::encode(&ticket);
    bad[..8].copy_from_slice(&(-1f64).to_le_bytes());
    assert_eq!(PlacementHead::decode(&bad), None, "negative relay");
    for after in [0, 1, 77, (1 << 53) - 1] {
        assert_eq!(
            OpeningHead::decode(&OpeningHead::encode(after)),
            Some(after)
        );
    }
    assert_eq!(OpeningHead::decode(&f64::NAN.to_le_bytes()), None);
    for refused in [JoinRefused::Full, JoinRefused::Stale] {
        let json = serde_json::to_string(&JoinReply { refused }).expect("json");
        let back: JoinReply = serde_json::from_str(&json).expect("reads");
        assert_eq!(back.refused, refused);
    }
    assert_eq!(
        serde_json::to_string(&JoinReply {
            refused: JoinRefused::Full
        })
        .ok()
        .as_deref(),
        Some(r#"{"refused":"full"}"#)
    );
}

#[test]
fn socket_notes_read_back_and_noise_is_ignored() {
    for note in [
        SocketNote::Members(0),
        SocketNote::Members(12),
        SocketNote::Viewers(u64::MAX),
    ] {
        assert_eq!(SocketNote::decode(&note.encode()), Some(note));
    }
    assert_eq!(SocketNote::Viewers(1234).encode(), "viewers 1234");
    for noise in [
        "",
        "members",
        "members -1",
        "members x",
        "hello 3",
        "viewers 1 2",
    ] {
        assert_eq!(SocketNote::decode(noise), None, "{noise}");
    }
}
