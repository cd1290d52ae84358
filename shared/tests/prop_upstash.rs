//! Property tests of the Upstash REST protocol (`shared::upstash`): any
//! reply (status and body) decodes to a typed value or a typed error, never
//! a panic; a server error is never a success; values and commands survive
//! their encoding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{any_text, config, tricky_string};
use proptest::prelude::*;
use serde_json::{Value as Json, json};
use shared::upstash::{
    Command, Encoding, Error, PATH_MULTI_EXEC, PATH_PIPELINE, PATH_SINGLE, Request, Value,
    decode_many, decode_single,
};

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![Just(Encoding::Plain), Just(Encoding::Base64)]
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => prop::sample::select(vec![200u16, 201, 204, 299, 300, 400, 401, 404, 429, 500, 502, 503]),
        1 => any::<u16>(),
    ]
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>().prop_map(Json::from), // NaN and infinities become null
        any_text(16).prop_map(Json::String),
        prop::sample::select(vec!["OK", "", "YQ==", "/w==", "not base64!", "ERR x"])
            .prop_map(Json::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::btree_map(
                prop_oneof![
                    prop::sample::select(vec!["result", "error"]).prop_map(str::to_owned),
                    tricky_string(6),
                ],
                inner,
                0..4
            )
            .prop_map(|map| Json::Object(map.into_iter().collect())),
        ]
    })
}

/// Reply bodies: random bytes, arbitrary JSON, and JSON of the protocol's
/// shapes holding arbitrary values.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        any_json().prop_map(|j| j.to_string().into_bytes()),
        any_json().prop_map(|j| json!({ "result": j }).to_string().into_bytes()),
        any_json().prop_map(|j| json!({ "error": j }).to_string().into_bytes()),
        prop::collection::vec(
            prop_oneof![
                any_json().prop_map(|j| json!({ "result": j })),
                any_json().prop_map(|j| json!({ "error": j })),
                any_json(),
            ],
            0..5
        )
        .prop_map(|items| Json::Array(items).to_string().into_bytes()),
    ]
}

/// A value that plain encoding can carry (strings are UTF-8 text).
fn plain_value() -> impl Strategy<Value = Value> {
    value(any_text(16).prop_map(String::into_bytes))
}

/// A value that base64 encoding can carry (strings are any bytes).
fn base64_value() -> impl Strategy<Value = Value> {
    value(prop::collection::vec(any::<u8>(), 0..24))
}

fn value(bytes: impl Strategy<Value = Vec<u8>> + 'static) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<i64>().prop_map(Value::Int),
        // Finite and not an integer i64 holds: those come back as `Int`.
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float),
        bytes.prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop::collection::vec(inner, 0..5).prop_map(Value::Array)
    })
}

/// The JSON of `value` as Upstash sends it in `encoding`.
fn to_json(value: &Value, encoding: Encoding) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Int(n) => Json::from(*n),
        Value::Float(f) => Json::from(*f),
        Value::Bytes(bytes) => match encoding {
            Encoding::Plain => Json::String(String::from_utf8(bytes.clone()).unwrap()),
            Encoding::Base64 => Json::String(BASE64.encode(bytes)),
        },
        Value::Array(items) => Json::Array(items.iter().map(|v| to_json(v, encoding)).collect()),
    }
}

/// Whether a JSON reply object carries an `error`.
fn has_error(json: &Json) -> bool {
    json.get("error").is_some()
}

proptest! {
    #![proptest_config(config(1000))]

    /// Any status and body decode to a value or a typed error, never a
    /// panic; 401 is always `Unauthorized`; a body carrying `error` is never
    /// a success; a success needs a 2xx status.
    #[test]
    fn any_reply_is_a_typed_verdict(
        status in status(),
        body in body(),
        encoding in encoding(),
        commands in 0usize..6,
    ) {
        let single = decode_single(status, &body, encoding);
        let many = decode_many(status, &body, encoding, commands);
        let json: Option<Json> = serde_json::from_slice(&body).ok();
        if status == 401 {
            prop_assert_eq!(&single, &Err(Error::Unauthorized));
            prop_assert_eq!(&many, &Err(Error::Unauthorized));
        }
        if single.is_ok() || many.is_ok() {
            prop_assert!((200..300).contains(&status));
        }
        if json.as_ref().is_some_and(has_error) {
            prop_assert!(single.is_err());
            prop_assert!(many.is_err());
        }
        if let Ok(results) = &many {
            prop_assert_eq!(results.len(), commands);
            let Some(Json::Array(items)) = &json else {
                return Err(TestCaseError::fail("a pipeline result from a non-array"));
            };
            for (item, result) in items.iter().zip(results) {
                if has_error(item) {
                    prop_assert!(matches!(result, Err(Error::Server(_))));
                }
            }
        }
    }

    /// Every value round-trips through its reply JSON, plain and base64, as
    /// a single reply and inside a pipeline next to a failing command.
    #[test]
    fn values_round_trip(
        plain in plain_value(),
        binary in base64_value(),
        error in any_text(24),
        status in 200u16..300,
    ) {
        for (value, encoding) in [(plain, Encoding::Plain), (binary, Encoding::Base64)] {
            let reply = json!({ "result": to_json(&value, encoding) }).to_string();
            prop_assert_eq!(decode_single(status, reply.as_bytes(), encoding), Ok(value.clone()));

            let pipeline = json!([
                { "result": to_json(&value, encoding) },
                { "error": error },
                { "result": "OK" },
            ])
            .to_string();
            prop_assert_eq!(
                decode_many(status, pipeline.as_bytes(), encoding, 3),
                Ok(vec![
                    Ok(value.clone()),
                    Err(Error::Server(error.clone())),
                    Ok(Value::Bytes(b"OK".to_vec())),
                ])
            );
            for wrong in [2, 4] {
                prop_assert!(matches!(
                    decode_many(status, pipeline.as_bytes(), encoding, wrong),
                    Err(Error::Malformed(_))
                ));
            }
        }
    }

    /// Integers read back from `Int` and from their decimal text; nil
    /// counts as 0; text is text when it is UTF-8.
    #[test]
    fn typed_accessors_agree(n in any::<i64>(), text in any_text(16), bytes in prop::collection::vec(any::<u8>(), 0..16)) {
        prop_assert_eq!(Value::Int(n).as_i64(), Ok(n));
        prop_assert_eq!(Value::Bytes(n.to_string().into_bytes()).as_i64(), Ok(n));
        prop_assert_eq!(Value::Bytes(n.to_string().into_bytes()).as_count(), Ok(n));
        prop_assert_eq!(Value::Nil.as_count(), Ok(0));
        let as_text = Value::Bytes(text.clone().into_bytes());
        prop_assert_eq!(as_text.as_str(), Ok(text.as_str()));
        prop_assert_eq!(
            Value::Bytes(bytes.clone()).as_str().is_ok(),
            std::str::from_utf8(&bytes).is_ok()
        );
        // Never a panic, whatever the bytes.
        let _ = Value::Bytes(bytes).as_i64();
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// A command of any arguments is a JSON array of exactly those strings,
    /// alone, in a pipeline and in a transaction.
    #[test]
    fn commands_round_trip(
        commands in prop::collection::vec(
            (tricky_string(8), prop::collection::vec(any_text(16), 0..5), prop::collection::vec(any::<i64>(), 0..3)),
            1..4,
        ),
        encoding in encoding(),
    ) {
        let commands: Vec<(Command, Vec<String>)> = commands
            .into_iter()
            .map(|(name, args, numbers)| {
                let command = Command::new(&name).args(&args).args(&numbers);
                let mut parts = vec![name];
                parts.extend(args);
                parts.extend(numbers.iter().map(i64::to_string));
                (command, parts)
            })
            .collect();
        for (command, parts) in &commands {
            prop_assert_eq!(command.parts(), parts.as_slice());
            let request = Request::single(command, encoding);
            prop_assert_eq!(request.path, PATH_SINGLE);
            prop_assert_eq!(request.base64, encoding == Encoding::Base64);
            let sent: Vec<String> = serde_json::from_slice(&request.body).unwrap();
            prop_assert_eq!(&sent, parts);
        }
        let only: Vec<Command> = commands.iter().map(|(c, _)| c.clone()).collect();
        let want: Vec<Vec<String>> = commands.into_iter().map(|(_, p)| p).collect();
        for (request, path) in [
            (Request::pipeline(&only, encoding), PATH_PIPELINE),
            (Request::multi_exec(&only, encoding), PATH_MULTI_EXEC),
        ] {
            prop_assert_eq!(request.path, path);
            let sent: Vec<Vec<String>> = serde_json::from_slice(&request.body).unwrap();
            prop_assert_eq!(&sent, &want);
        }
    }
}
