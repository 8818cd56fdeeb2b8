//! JSON-RPC errors on the HTTP transport, as the specification says: every
//! refusal is a JSON-RPC error object with `"id"` (the request's when it
//! can be read, else `null`), never a plain-text body that clients can
//! only report as "the server returned an error".
//!
//! [`frame`] reads each POST body before rmcp does (bounded in size and
//! time), answers
//! bodies that are not JSON with -32700, and after rmcp answers, turns its
//! plain-text refusals into JSON-RPC errors.

use super::server::SERVED_METHODS;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The body was not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// The body was JSON but not a request this endpoint takes.
pub const INVALID_REQUEST: i64 = -32600;
/// The method is one the host serves but its params do not fit it.
pub const INVALID_PARAMS: i64 = -32602;
/// The host cannot take the request now (too many sessions, rate limit).
pub const SERVER_BUSY: i64 = -32000;
/// The request's credentials were missing, invalid or insufficient.
pub const UNAUTHORIZED: i64 = -32001;

/// The largest request body read (the same bound the MCP service keeps).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// The header naming what a request acts on (SEP-2243).
const MCP_NAME: &str = "mcp-name";

/// The largest plain-text refusal from rmcp carried into a JSON error.
const MAX_REFUSAL_TEXT: usize = 64 * 1024;

/// The method a POST body names, for the layers behind [`frame`].
#[derive(Clone, Debug)]
pub struct JsonRpcMethod(pub String);

/// The envelope of a message as it is on the wire: borrowed from the
/// body, `params` skipped over (checked to be JSON, not kept).
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    /// `None` when absent, `Some("null")` for `"id": null`.
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default)]
    #[allow(dead_code)] // Read to check it is JSON at all.
    params: Option<serde::de::IgnoredAny>,
}

fn present<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(value).map(Some)
}

/// What [`frame`] reads of a body before rmcp parses all of it: the
/// method and the id, once the envelope is known to be valid.
struct Peek<'a> {
    method: Option<Cow<'a, str>>,
    /// `None` when absent, `Some(Value::Null)` for `"id": null`.
    id: Option<Value>,
}

/// The longest string id the host accepts: it is kept while the request
/// is in flight, and echoed in its answer.
const MAX_ID_BYTES: usize = 256;

/// A request's id, as the session table tracks requests in flight: the
/// id as the client sent it (for an error that echoes it), and a key.
#[derive(Clone, Debug)]
pub struct RequestId {
    pub id: Value,
    pub key: u64,
}

impl RequestId {
    fn of(id: &Value) -> RequestId {
        use std::hash::{Hash, Hasher};
        // Tagged by kind: the string "1" and the number 1 are two ids.
        let mut hasher = std::hash::DefaultHasher::new();
        match id {
            Value::String(text) => (0u8, text.as_str()).hash(&mut hasher),
            Value::Number(number) if let Some(number) = number.as_i64() => {
                (1u8, number).hash(&mut hasher)
            }
            other => (2u8, other.to_string()).hash(&mut hasher),
        }
        let key = hasher.finish();
        RequestId {
            id: id.clone(),
            key,
        }
    }
}

/// The request a `notifications/cancelled` names, for the layers behind
/// [`frame`]: without a session, the host finds the call by it.
#[derive(Clone, Debug)]
pub struct CancelsRequest(pub RequestId);

#[derive(Deserialize)]
struct CancelPeek {
    params: CancelParams,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelParams {
    request_id: Value,
}

/// The deepest nesting of arrays and objects a message may have: what
/// serde_json (and so rmcp) parses.
const MAX_NESTING: usize = 127;

/// How deeply `json` nests arrays and objects, brackets inside strings
/// aside. One pass over the bytes, no allocation.
fn nesting(json: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &byte in json {
        match (in_string, byte) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') => in_string = false,
            (true, _) => {}
            (false, b'"') => in_string = true,
            (false, b'[' | b'{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The task a task method names.
#[derive(Deserialize)]
struct TaskPeek {
    params: TaskParams,
}

#[derive(Deserialize)]
struct TaskParams {
    #[serde(rename = "taskId")]
    task_id: String,
}

/// Task methods whose `Mcp-Name` (the task id) rmcp requires on
/// 2026-07-28 requests, though clients (fastmcp, mcp-remote) leave it out:
/// the id is in the body, and the header exists only for intermediaries
/// to route on, so the host fills it in from there.
const TASK_METHODS: [&str; 3] = ["tasks/get", "tasks/update", "tasks/cancel"];

/// A JSON-RPC error response with `id` null.
pub fn jsonrpc_error(status: StatusCode, code: i64, message: String) -> Response {
    jsonrpc_error_for(status, Value::Null, code, message)
}

pub fn jsonrpc_error_for(status: StatusCode, id: Value, code: i64, message: String) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code, "message": message },
    });
    (status, axum::Json(body)).into_response()
}

/// A request body, read whole: at most [`MAX_BODY`] bytes (else 413),
/// arriving within `read_timeout` (else 408).
pub async fn read_body(
    body: Body,
    read_timeout: std::time::Duration,
) -> Result<axum::body::Bytes, Response> {
    match tokio::time::timeout(read_timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(jsonrpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID_REQUEST,
            format!("the request body is larger than {MAX_BODY} bytes"),
        )),
        Err(_) => Err(jsonrpc_error(
            StatusCode::REQUEST_TIMEOUT,
            INVALID_REQUEST,
            format!(
                "the request body did not arrive within {} s",
                read_timeout.as_secs()
            ),
        )),
    }
}

/// The framing step of the front door: see the module's documentation. A
/// body must arrive within `read_timeout`.
///
/// A request on a session that names no task is not parsed here: rmcp
/// parses it, and only a refusal from rmcp makes this step read the body
/// (to say whether it was JSON at all, and to echo its id). Parsing every
/// body twice cost each call about 2 % of its CPU time.
pub async fn frame(
    read_timeout: std::time::Duration,
    request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    if request.method() != Method::POST {
        return as_jsonrpc(next(request).await, None).await;
    }
    let (mut parts, body) = request.into_parts();
    let bytes = match read_body(body, read_timeout).await {
        Ok(bytes) => bytes,
        Err(refusal) => return refusal,
    };
    // What the layers behind need to know before rmcp answers: the
    // request's id (two in flight on one session must differ), whether a
    // request without a session opens one, and which task a task method
    // without `Mcp-Name` names. The envelope is checked here, so every
    // message that is not a valid JSON-RPC one gets the code for why.
    let peek = match Peek::of(&bytes) {
        Ok(peek) => peek,
        Err(not_a_message) => return not_a_message.refusal(),
    };
    if let Some(id) = peek.request_id() {
        parts.extensions.insert(id);
    }
    if let Some(method) = &peek.method {
        if method == "notifications/cancelled"
            && let Ok(cancel) = serde_json::from_slice::<CancelPeek>(&bytes)
            && (cancel.params.request_id.is_string() || cancel.params.request_id.is_i64())
        {
            parts
                .extensions
                .insert(CancelsRequest(RequestId::of(&cancel.params.request_id)));
        }
        parts
            .extensions
            .insert(JsonRpcMethod(method.as_ref().into()));
    }
    let unnamed = !parts.headers.contains_key(MCP_NAME);
    if unnamed && memchr::memmem::find(&bytes, b"\"tasks/").is_some() {
        let is_task_method = peek
            .method
            .as_deref()
            .is_some_and(|method| TASK_METHODS.contains(&method));
        if is_task_method
            && unnamed
            && let Ok(task) = serde_json::from_slice::<TaskPeek>(&bytes)
            && let Ok(task) = header::HeaderValue::from_str(&task.params.task_id)
        {
            parts.headers.insert(MCP_NAME, task);
        }
    }
    drop(peek);
    let response = next(Request::from_parts(parts, Body::from(bytes.clone()))).await;
    as_jsonrpc(response, Some(&bytes)).await
}

/// rmcp's answer, with a plain-text refusal made a JSON-RPC error (see
/// [`into_jsonrpc`]). The rewrite is boxed: it is rare, and inline its
/// future would add to the size of every request's.
async fn as_jsonrpc(response: Response, body: Option<&[u8]>) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    Box::pin(into_jsonrpc(response, body)).await
}

/// Why `message` is not a valid JSON-RPC envelope (see [`Peek::checked`]): the
/// error code, the message and the id an answer may echo. The stdio
/// transport asks this of lines rmcp could not parse, so both transports
/// give the same code for the same fault.
pub(super) fn envelope_problem(message: &[u8]) -> Option<(i64, String, Value)> {
    Peek::checked(message)
        .err()
        .map(|problem| (problem.code, problem.message, problem.id))
}

/// Why a body is not a JSON-RPC message.
struct NotAMessage {
    code: i64,
    message: String,
    /// The id to echo, when the message's own could be read.
    id: Value,
}

impl NotAMessage {
    fn refusal(self) -> Response {
        jsonrpc_error_for(StatusCode::BAD_REQUEST, self.id, self.code, self.message)
    }

    fn invalid(message: impl Into<String>, id: Value) -> NotAMessage {
        NotAMessage {
            code: INVALID_REQUEST,
            message: message.into(),
            id,
        }
    }
}

impl<'a> Peek<'a> {
    /// The envelope of the message in `body`, checked whole: UTF-8 and
    /// nested at most serde_json's 128 levels (else -32700), as well as
    /// what [`Peek::of`] checks. Asked of messages rmcp refused, to say why.
    fn checked(body: &'a [u8]) -> Result<Peek<'a>, NotAMessage> {
        let unreadable = |message: String| NotAMessage {
            code: PARSE_ERROR,
            message,
            id: Value::Null,
        };
        if let Err(e) = std::str::from_utf8(body) {
            return Err(unreadable(format!("the body is not UTF-8 JSON: {e}")));
        }
        if nesting(body) > MAX_NESTING {
            return Err(unreadable(format!(
                "the body nests arrays and objects more than {MAX_NESTING} deep"
            )));
        }
        Peek::of(body)
    }

    /// The envelope of the message in `body`: JSON (else -32700), an
    /// object with `"jsonrpc": "2.0"`, each member once, and a request's
    /// id a string or a signed 64-bit integer (else -32600).
    ///
    /// `params` is only skipped over: bytes that are not UTF-8 inside its
    /// strings, or nesting past serde_json's limit, are found by rmcp's
    /// parse, and [`Peek::checked`] then names them. Checking them here
    /// too would read every body three times.
    fn of(body: &'a [u8]) -> Result<Peek<'a>, NotAMessage> {
        let wire = serde_json::from_slice::<Wire>(body).map_err(|e| match e.is_data() {
            true => NotAMessage::invalid(
                format!(
                    "the body is JSON but not a JSON-RPC message (an object with \
                     \"jsonrpc\": \"2.0\", each member once): {e}"
                ),
                Value::Null,
            ),
            false => NotAMessage {
                code: PARSE_ERROR,
                message: format!("the body is not JSON: {e}"),
                id: Value::Null,
            },
        })?;
        // A raw id is JSON already: reading it as a value cannot fail.
        let id = wire
            .id
            .map(|raw| serde_json::from_str::<Value>(raw.get()).unwrap_or(Value::Null));
        let echoed = match &id {
            Some(id @ Value::String(text)) if text.len() <= MAX_ID_BYTES => id.clone(),
            Some(id @ Value::Number(n)) if n.is_i64() => id.clone(),
            Some(_) if wire.method.is_some() => {
                return Err(NotAMessage::invalid(
                    format!(
                        "a request's id must be a string of at most {MAX_ID_BYTES} bytes or a \
                         signed 64-bit integer (not null, a fraction or an object)"
                    ),
                    Value::Null,
                ));
            }
            _ => Value::Null,
        };
        if !wire.jsonrpc.is_some_and(says_2_0) {
            return Err(NotAMessage::invalid(
                "the message must say \"jsonrpc\": \"2.0\"",
                echoed,
            ));
        }
        Ok(Peek {
            method: wire.method,
            id,
        })
    }

    /// The id of a request (a message with a method and an id).
    fn request_id(&self) -> Option<RequestId> {
        let id = self.id.as_ref().filter(|_| self.method.is_some())?;
        Some(RequestId::of(id))
    }

    /// The id an error about this message may echo, and the method it
    /// names: an id that is not a string, number or null makes the whole
    /// message invalid, naming nothing.
    fn echoed(&self) -> (Value, Option<&str>) {
        match &self.id {
            Some(id @ (Value::String(_) | Value::Number(_))) => {
                (id.clone(), self.method.as_deref())
            }
            Some(Value::Null) | None => (Value::Null, self.method.as_deref()),
            _ => (Value::Null, None),
        }
    }
}

/// Whether a raw `jsonrpc` member is the string "2.0", however spelled.
fn says_2_0(raw: &RawValue) -> bool {
    raw.get() == r#""2.0""#
        || serde_json::from_str::<Cow<str>>(raw.get()).is_ok_and(|text| text == "2.0")
}

/// rmcp's plain-text refusal of a request whose body was `body`, made a
/// JSON-RPC error.
async fn into_jsonrpc(response: Response, body: Option<&[u8]>) -> Response {
    let status = response.status();
    // A body that is not a message is refused for that, whatever else
    // rmcp found wrong.
    let peek = match body.map(Peek::checked).transpose() {
        Ok(peek) => peek,
        Err(not_a_message) => return not_a_message.refusal(),
    };
    let (id, method) = peek.as_ref().map_or((Value::Null, None), Peek::echoed);
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REFUSAL_TEXT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => status.canonical_reason().unwrap_or("refused").to_owned(),
    };
    // rmcp says 415 both for a wrong Content-Type and for JSON that is not
    // a message; by now the body is known to be JSON. A message naming a
    // method the host serves failed on its params.
    let not_a_message =
        status == StatusCode::UNSUPPORTED_MEDIA_TYPE && text.starts_with("fail to deserialize");
    let (status, code, text) = match method {
        Some(method) if not_a_message && SERVED_METHODS.contains(&method) => (
            StatusCode::BAD_REQUEST,
            INVALID_PARAMS,
            format!("invalid params for {method:?}: they do not fit its schema"),
        ),
        _ if not_a_message => (StatusCode::BAD_REQUEST, INVALID_REQUEST, text),
        _ => (status, INVALID_REQUEST, text),
    };
    let mut answer = jsonrpc_error_for(status, id, code, text);
    // Headers rmcp set (Allow on 405, say) stay.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the framing answers for `body` in front of a service that
    /// refuses everything as rmcp does, in plain text.
    fn framed(body: Vec<u8>) -> (StatusCode, Value) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let request = Request::post("/mcp").body(Body::from(body)).unwrap();
            let refuse_as_rmcp_does = async |_| {
                let text = "fail to deserialize request body";
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, text).into_response()
            };
            let response = frame(
                std::time::Duration::from_secs(5),
                request,
                refuse_as_rmcp_does,
            )
            .await;
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice(&bytes).expect("every answer is JSON"),
            )
        })
    }

    #[test]
    fn nesting_counts_brackets_outside_strings() {
        assert_eq!(nesting(br#"{"a":[1,{"b":"[[[{"}]}"#), 3);
        assert_eq!(nesting(br#"{"a":"\"[["}"#), 1);
        assert_eq!(nesting(&[b'['; 500]), 500);
        assert_eq!(nesting(b"42"), 0);
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        let json = prop_oneof![
            Just(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"x"}"#.to_owned()),
            Just(r#"{"jsonrpc":"2.0","id":"a","method":"nope"}"#.to_owned()),
            Just(r#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#.to_owned()),
            Just(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.to_owned()),
            Just(r#""just a string""#.to_owned()),
            Just(
                r#"{"jsonrpc":"2.0","method":"tasks/get","params":{"taskId":"t\u0000"}}"#
                    .to_owned()
            ),
            "[ -~]{0,200}",
        ];
        prop_oneof![
            json.prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..300),
        ]
    }

    proptest! {
        #[test]
        fn every_body_gets_a_jsonrpc_error_with_an_id_it_may_echo(body in body()) {
            let (status, answer) = framed(body);
            prop_assert!(status.is_client_error(), "{status}");
            prop_assert_eq!(&answer["jsonrpc"], "2.0");
            let id = answer.get("id").expect("id is always there");
            prop_assert!(id.is_null() || id.is_string() || id.is_number(), "{answer}");
            let code = answer["error"]["code"].as_i64().unwrap();
            prop_assert!([PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS].contains(&code), "{answer}");
        }
    }
}
