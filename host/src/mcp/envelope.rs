//! The JSON-RPC envelope of a message, read before rmcp parses the whole
//! of it, on both transports: whether it is a message at all (and the
//! code for why not), its method, and its id.

use super::protocol::{INVALID_REQUEST, PARSE_ERROR};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// What the layers behind the HTTP framing step need to know of the
/// method a POST body names: whether it opens a session or a long-lived
/// stream. Marked without copying the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonRpcMethod {
    /// `initialize`: the request opens a session.
    Initialize,
    /// `subscriptions/listen`: the answer is a long-lived stream.
    Listen,
    /// Any other method.
    Other,
}

impl JsonRpcMethod {
    pub fn of(method: &str) -> JsonRpcMethod {
        match method {
            "initialize" => JsonRpcMethod::Initialize,
            "subscriptions/listen" => JsonRpcMethod::Listen,
            _ => JsonRpcMethod::Other,
        }
    }
}

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

/// What the front door reads of a message before rmcp parses all of it: the
/// method and the id, once the envelope is known to be valid.
pub(super) struct Peek<'a> {
    pub method: Option<Cow<'a, str>>,
    /// `None` when absent, `Some(Value::Null)` for `"id": null`.
    pub id: Option<Value>,
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
    pub(super) fn of(id: &Value) -> RequestId {
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
pub(super) struct CancelPeek {
    pub params: CancelParams,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CancelParams {
    pub request_id: Value,
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
pub(super) struct NotAMessage {
    pub code: i64,
    pub message: String,
    /// The id to echo, when the message's own could be read.
    pub id: Value,
}

impl NotAMessage {
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
    pub(super) fn checked(body: &'a [u8]) -> Result<Peek<'a>, NotAMessage> {
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
    pub(super) fn of(body: &'a [u8]) -> Result<Peek<'a>, NotAMessage> {
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
    pub(super) fn request_id(&self) -> Option<RequestId> {
        let id = self.id.as_ref().filter(|_| self.method.is_some())?;
        Some(RequestId::of(id))
    }

    /// The id an error about this message may echo, and the method it
    /// names: an id that is not a string, number or null makes the whole
    /// message invalid, naming nothing.
    pub(super) fn echoed(&self) -> (Value, Option<&str>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_brackets_outside_strings() {
        assert_eq!(nesting(br#"{"a":[1,{"b":"[[[{"}]}"#), 3);
        assert_eq!(nesting(br#"{"a":"\"[["}"#), 1);
        assert_eq!(nesting(&[b'['; 500]), 500);
        assert_eq!(nesting(b"42"), 0);
    }
}
