//! JSON-RPC errors on the HTTP transport, as the specification says: every
//! refusal is a JSON-RPC error object with `"id"` (the request's when it
//! can be read, else `null`), never a plain-text body that clients can
//! only report as "the server returned an error".
//!
//! [`frame`] reads each POST body before rmcp does (bounded in size and
//! time), answers
//! bodies that are not JSON with -32700, and after rmcp answers, turns its
//! plain-text refusals into JSON-RPC errors.

use super::envelope::{CancelPeek, CancelsRequest, JsonRpcMethod, NotAMessage, Peek, RequestId};
use super::protocol::{INVALID_PARAMS, INVALID_REQUEST, MAX_BODY, SERVED_METHODS};
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use serde::Deserialize;
use serde_json::Value;

/// The header naming what a request acts on (SEP-2243).
const MCP_NAME: &str = "mcp-name";

/// The largest plain-text refusal from rmcp carried into a JSON error.
const MAX_REFUSAL_TEXT: usize = 64 * 1024;

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
/// Every body's envelope is read here ([`Peek::of`]: `params` skipped);
/// only a refusal from rmcp makes this step check the rest of the body
/// ([`Peek::checked`]), to give the code for why rmcp could not read it.
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
        Err(not_a_message) => return refusal(not_a_message),
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
        parts.extensions.insert(JsonRpcMethod::of(method));
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

/// The answer to a body that is not a JSON-RPC message.
fn refusal(not_a_message: NotAMessage) -> Response {
    let NotAMessage { code, message, id } = not_a_message;
    jsonrpc_error_for(StatusCode::BAD_REQUEST, id, code, message)
}

/// rmcp's plain-text refusal of a request whose body was `body`, made a
/// JSON-RPC error.
async fn into_jsonrpc(response: Response, body: Option<&[u8]>) -> Response {
    let status = response.status();
    // A body that is not a message is refused for that, whatever else
    // rmcp found wrong.
    let peek = match body.map(Peek::checked).transpose() {
        Ok(peek) => peek,
        Err(not_a_message) => return refusal(not_a_message),
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
    use crate::mcp::protocol::PARSE_ERROR;
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
