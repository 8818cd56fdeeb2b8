//! Reading a client's JSON-RPC message by its method, on both transports.
//!
//! rmcp's `ClientJsonRpcMessage` is an untagged union: its parse buffers the
//! whole message, then tries each request type in turn until one fits, and
//! every type whose method does not match builds and drops a
//! `serde_json::Error`. A `tools/call` is the fourteenth type tried: about
//! 22,000 instructions of a 189,000-instruction plugin call over stdio.
//!
//! This repository's copy of rmcp (`host/vendor/README.md`) adds
//! `client_message_from_slice`, which reads the envelope first and parses
//! a message whose method rmcp defines as that method's type alone, and
//! its HTTP transport reads every POST body with it; the stdio transport
//! (`stdio.rs`) calls it too. The tests below hold it to what rmcp's untagged parse
//! gives, for every method and for the envelopes, ids and params that
//! could tell the two apart. (Tests only: the crate's own folder is not
//! part of this workspace, so they live here.)

use proptest::prelude::*;
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, client_message_by_method as by_method,
    client_message_from_slice as parse,
};
use serde_json::{Value, json};

/// What rmcp's own parse gives, in a form that can be compared: the
/// message serialised again (with its `_meta`, kept in extensions).
fn outcome(parsed: serde_json::Result<ClientJsonRpcMessage>) -> Result<Value, ()> {
    parsed
        .map(|message| serde_json::to_value(message).expect("a parsed message serialises"))
        .map_err(|_| ())
}

fn both_ways(bytes: &[u8]) -> (Result<Value, ()>, Result<Value, ()>) {
    (
        outcome(parse(bytes)),
        outcome(serde_json::from_slice::<ClientJsonRpcMessage>(bytes)),
    )
}

#[test]
fn a_tool_call_takes_the_typed_path_and_keeps_its_meta() {
    let bytes = serde_json::to_vec(&json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "hello__greet", "arguments": {"who": "x", "n": 1.5},
                   "_meta": {"progressToken": "p"}}
    }))
    .unwrap();
    let typed = by_method(&bytes).expect("the typed path takes a plain tool call");
    let ClientJsonRpcMessage::Request(request) = &typed else {
        panic!("{typed:?}")
    };
    let ClientRequest::CallToolRequest(call) = &request.request else {
        panic!("{typed:?}")
    };
    assert_eq!(call.params.name, "hello__greet");
    let (ours, rmcps) = both_ways(&bytes);
    assert_eq!(ours, rmcps);
    assert_eq!(ours.unwrap()["params"]["_meta"]["progressToken"], "p");
}

#[test]
fn every_method_a_client_uses_takes_the_typed_path() {
    for message in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": "a", "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": "c"}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "resources/list"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "resources/templates/list"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read",
               "params": {"uri": "market://quotes/AAPL"}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "prompts/list"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "prompts/get",
               "params": {"name": "p", "arguments": {"a": "b"}}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                          "clientInfo": {"name": "c", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
               "params": {"requestId": 1, "reason": "user"}}),
        json!({"jsonrpc": "2.0", "method": "notifications/progress",
               "params": {"progressToken": 1, "progress": 0.5}}),
    ] {
        let bytes = serde_json::to_vec(&message).unwrap();
        assert!(by_method(&bytes).is_some(), "{message}");
        let (ours, rmcps) = both_ways(&bytes);
        assert!(rmcps.is_ok(), "{message}");
        assert_eq!(ours, rmcps, "{message}");
    }
}

#[test]
fn unusual_envelopes_are_left_to_rmcp() {
    for message in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "result": {}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "extra": true}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "no/such/method"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 3}}),
        json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "a"}}),
        json!({"jsonrpc": "2.0", "id": 1, "result": {}}),
    ] {
        let bytes = serde_json::to_vec(&message).unwrap();
        assert!(by_method(&bytes).is_none(), "{message}");
        let (ours, rmcps) = both_ways(&bytes);
        assert_eq!(ours, rmcps, "{message}");
    }
    let duplicate = br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#;
    assert!(by_method(duplicate).is_none());
    assert_eq!(both_ways(duplicate).0, both_ways(duplicate).1);
}

/// Spellings a message built from a `Value` cannot have: duplicate
/// members, ids past 64 bits or in exponent form, escaped method
/// names, invalid UTF-8 and nesting past serde_json's limit, trailing
/// bytes. Each parses to the same result both ways.
#[test]
fn raw_spellings_give_what_rmcps_gives() {
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let cases: Vec<&[u8]> = vec![
        br#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}"#,
        br#"{"jsonrpc":"2.0","id":1,"jsonrpc":"2.0","method":"ping"}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{},"params":{}}"#,
        br#"{"jsonrpc":"2.0","id":18446744073709551616,"method":"ping"}"#,
        br#"{"jsonrpc":"2.0","id":1e2,"method":"ping"}"#,
        br#"{"jsonrpc":"2.0","id":-0,"method":"ping"}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools\/list"}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"p\u0069ng"}"#,
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"\xff\"}}",
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\ud800"}}"#,
        deep.as_bytes(),
        br#"{"jsonrpc":"2.0","id":1,"method":"ping"} {}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"ping"}   "#,
        br#" {"jsonrpc":"2.0","method":"notifications/initialized","params":null}"#,
        br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
        b"",
    ];
    for bytes in cases {
        let (ours, rmcps) = both_ways(bytes);
        assert_eq!(ours, rmcps, "{}", String::from_utf8_lossy(bytes));
    }
}

/// Every method rmcp defines, and a few it does not.
const METHODS: &[&str] = &[
    "tools/call",
    "tools/list",
    "ping",
    "resources/read",
    "resources/list",
    "resources/templates/list",
    "prompts/get",
    "prompts/list",
    "completion/complete",
    "initialize",
    "server/discover",
    "logging/setLevel",
    "subscriptions/listen",
    "resources/subscribe",
    "resources/unsubscribe",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
    "skills/list",
    "skills/get",
    "resources/directory/read",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/initialized",
    "notifications/roots/list_changed",
    "no/such/method",
    "",
];

/// Params of every shape the typed and the untagged parses could
/// disagree on: each method's own fields, wrong types, `_meta`.
fn params() -> impl Strategy<Value = Option<Value>> {
    let leaf = prop_oneof![
        Just(json!("x")),
        Just(json!(1)),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!(u64::MAX)),
        Just(json!(null)),
        Just(json!(true)),
        Just(json!([])),
        Just(json!({})),
        Just(json!({"a": [1, "b"]})),
    ];
    let key = prop_oneof![
        Just("name"),
        Just("arguments"),
        Just("uri"),
        Just("cursor"),
        Just("level"),
        Just("requestId"),
        Just("reason"),
        Just("progressToken"),
        Just("progress"),
        Just("total"),
        Just("message"),
        Just("protocolVersion"),
        Just("capabilities"),
        Just("clientInfo"),
        Just("ref"),
        Just("argument"),
        Just("taskId"),
        Just("_meta"),
        Just("task"),
        Just("other"),
    ];
    let object = proptest::collection::btree_map(key, leaf.clone(), 0..5)
        .prop_map(|map| Value::Object(map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
    prop_oneof![
        Just(None),
        leaf.prop_map(Some),
        object.prop_map(Some),
        Just(Some(json!({"name": "t", "arguments": {"a": 1}}))),
        Just(Some(
            json!({"uri": "market://quotes/AAPL", "_meta": {"k": [1]}})
        )),
        Just(Some(json!({"requestId": 3, "reason": "user"}))),
        Just(Some(
            json!({"progressToken": "p", "progress": 0.5, "total": 1})
        )),
        Just(Some(
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                         "clientInfo": {"name": "c", "version": "1"}})
        )),
        Just(Some(json!({"level": "info"}))),
        Just(Some(json!({"cursor": "c2"}))),
    ]
}

fn message() -> impl Strategy<Value = Value> {
    let id = prop_oneof![
        Just(None),
        Just(Some(json!(1))),
        Just(Some(json!("a"))),
        Just(Some(Value::Null)),
        Just(Some(json!(1.5))),
        Just(Some(json!({}))),
        Just(Some(json!(-1))),
        Just(Some(json!(i64::MIN))),
        Just(Some(json!(u64::MAX))),
        Just(Some(json!(""))),
        Just(Some(json!([1]))),
    ];
    let version = prop_oneof![
        Just(Some(json!("2.0"))),
        Just(Some(json!("1.0"))),
        Just(None)
    ];
    (
        proptest::sample::select(METHODS),
        id,
        version,
        params(),
        proptest::sample::select(&[None, Some("extra"), Some("result"), Some("error")][..]),
    )
        .prop_map(|(method, id, version, params, extra)| {
            let mut message = json!({"method": method});
            if let Some(id) = id {
                message["id"] = id;
            }
            if let Some(version) = version {
                message["jsonrpc"] = version;
            }
            if let Some(params) = params {
                message["params"] = params;
            }
            if let Some(extra) = extra {
                message[extra] = json!({});
            }
            message
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]
    #[test]
    fn the_typed_parse_gives_what_rmcps_gives(message in message()) {
        let bytes = serde_json::to_vec(&message).unwrap();
        let (ours, rmcps) = both_ways(&bytes);
        prop_assert_eq!(ours, rmcps, "{}", message);
    }
}
