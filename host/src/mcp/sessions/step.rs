//! The front door's session step: every request that names a session, or
//! opens one, passes the table here before it reaches rmcp's sessions.

use super::{InUse, NoRoom, Sessions};
use crate::audit::{Client, Event};
use crate::mcp::client_address::ClientAddress;
use crate::mcp::envelope::{CancelsRequest, JsonRpcMethod, RequestId};
use crate::mcp::protocol::{self, SESSION_HEADER};
use crate::mcp::stateless::CancelCalls;
use crate::mcp::{drain, http_errors};
use crate::principal::{self, Principal};
use crate::shared_state::Claim;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use std::sync::Arc;
use std::time::Instant;

/// Who holds a request's sessions: its principal, or for public mode's
/// anonymous clients the principal at the client's address (the one a
/// trusted proxy forwarded).
fn owner_key(request: &Request) -> Arc<str> {
    let extensions = request.extensions();
    let Some(principal) = extensions.get::<Principal>() else {
        return principal::LOCAL_ID.into();
    };
    match extensions.get::<ClientAddress>() {
        Some(address) if principal.is_anonymous() => {
            format!("{}@{}", principal.id, address.0).into()
        }
        _ => principal.id.as_str().into(),
    }
}

/// The front door's session step, in front of rmcp's sessions. `held`
/// (what the steps before count the request by) is kept with the answer
/// until it has been sent, in the one body wrapper this step adds.
pub async fn guard<H: Send + Sync + Unpin + 'static>(
    sessions: &Arc<Sessions>,
    request: Request,
    held: H,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    let principal = request
        .extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or_else(Principal::local);
    let owner = owner_key(&request);
    let session = match session_id(request.headers()) {
        Ok(session) => session,
        Err(why) => {
            return http_errors::jsonrpc_error(
                StatusCode::BAD_REQUEST,
                protocol::INVALID_REQUEST,
                why.into(),
            );
        }
    };
    let Some(id) = session else {
        if request.method() == Method::POST && opens_session(&request) {
            // Boxed, as the refusal below: rare paths, kept out of the size
            // of every request's future.
            let response = Box::pin(open(sessions, owner, request, next)).await;
            return drain::held_until_sent(response, held);
        }
        return Box::pin(without_session(sessions, owner, request, held, next)).await;
    };
    let request_id = request.extensions().get::<RequestId>().cloned();
    let key = request_id.as_ref().map(|id| id.key);
    let ended = match sessions.table.claim(&id, &owner, Instant::now(), key) {
        Claim::Owned(ended) => CancelCalls(ended),
        Claim::Unknown => return session_not_found(),
        Claim::DuplicateId => {
            let echoed = request_id.map_or(serde_json::Value::Null, |id| id.id);
            return http_errors::jsonrpc_error_for(
                StatusCode::BAD_REQUEST,
                echoed,
                protocol::INVALID_REQUEST,
                "a request with this id is still in flight on this session; give each \
                 request its own id"
                    .into(),
            );
        }
        Claim::Foreign => {
            sessions.metrics.auth_failure("foreign-session");
            tracing::info!(
                principal = %principal.id,
                "refused: {} on a session another principal opened",
                request.method()
            );
            Box::pin(sessions.audit.record(Event::SessionRefused {
                request: request.method().to_string(),
                reason: "the session belongs to another principal",
                client: Client {
                    transport: "http",
                    session: Some(id.to_string()),
                    name: None,
                    principal: principal.id.clone(),
                },
            }))
            .await;
            return session_not_found();
        }
    };
    let in_use = InUse {
        sessions: sessions.clone(),
        id: id.clone(),
        request: key,
    };
    let deleting = request.method() == Method::DELETE;
    if deleting {
        // Its calls stop first, so their last answers go out before the
        // session closes.
        ended.0.cancel();
    }
    let mut request = request;
    request.extensions_mut().insert(ended);
    let mut response = next(request).await;
    if deleting && response.status().is_success() {
        sessions.forget(&id);
        // rmcp answers 202; clients expect 200 or 204 ("Session
        // termination failed: 202" in the Python SDK's log otherwise).
        *response.status_mut() = StatusCode::NO_CONTENT;
        return response;
    }
    // The session stays in use while the response (an event stream,
    // maybe long) is being sent.
    drain::held_until_sent(response, (in_use, held))
}

/// A request without a session: a cancellation stops the sessionless
/// request it names (of the same owner) and is accepted, as a notification
/// is; a request is kept, cancellable, until its answer has been sent.
async fn without_session<H: Send + Sync + Unpin + 'static>(
    sessions: &Arc<Sessions>,
    owner: Arc<str>,
    mut request: Request,
    held: H,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    if request.method() != Method::POST {
        return drain::held_until_sent(next(request).await, held);
    }
    if let Some(cancel) = request.extensions().get::<CancelsRequest>() {
        let stopped = sessions.sessionless.cancel(owner, cancel.0.key);
        tracing::debug!(stopped, "a cancellation without a session");
        return StatusCode::ACCEPTED.into_response();
    }
    let Some(key) = request.extensions().get::<RequestId>().map(|id| id.key) else {
        return drain::held_until_sent(next(request).await, held);
    };
    let (kept, cancel) = sessions.sessionless.keep(owner, key);
    request.extensions_mut().insert(cancel);
    let response = next(request).await;
    drain::held_until_sent(response, (kept, held))
}

/// The longest session id the host accepts; its own are UUIDs (36).
const MAX_SESSION_ID: usize = 128;

/// The session a request names, if any. A header that is present must be
/// one id of visible ASCII, as the host issues them: anything else is
/// refused rather than read as "no session", so that no request reaches
/// rmcp's session manager on a session this table has not seen.
pub(super) fn session_id(headers: &http::HeaderMap) -> Result<Option<Arc<str>>, &'static str> {
    let mut values = headers.get_all(SESSION_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("the request names more than one session (Mcp-Session-Id appears twice)");
    }
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_SESSION_ID
        || !bytes.iter().all(|b| b.is_ascii_graphic())
    {
        return Err(
            "the Mcp-Session-Id header is malformed: a session id is 1 to 128 visible \
                    ASCII characters, as the host issued it; omit it to start a new session",
        );
    }
    Ok(Some(Arc::from(value.to_str().unwrap_or_default())))
}

/// Whether a request is the kind that opens a session: `initialize`. The
/// body is parsed by [`http_errors`] before it gets here, which marks it.
fn opens_session(request: &Request) -> bool {
    request
        .extensions()
        .get::<JsonRpcMethod>()
        .is_some_and(|method| *method == JsonRpcMethod::Initialize)
}

async fn open(
    sessions: &Arc<Sessions>,
    owner: Arc<str>,
    request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    let mut opening = match sessions.admit(owner) {
        Ok(opening) => opening,
        Err(NoRoom::Full) => {
            sessions.metrics.auth_failure("sessions-full");
            tracing::warn!(
                "refused a new session: {} sessions are open, the most [http] max_sessions \
                 allows, and none can be closed for it",
                sessions.table.limits().max
            );
            return http_errors::jsonrpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                protocol::SERVER_BUSY,
                "too many sessions are open; retry later".into(),
            );
        }
        Err(NoRoom::OwnShareInUse) => {
            sessions.metrics.auth_failure("sessions-per-user");
            return http_errors::jsonrpc_error(
                StatusCode::TOO_MANY_REQUESTS,
                protocol::SERVER_BUSY,
                format!(
                    "you have {} sessions open, each with a call or stream in progress \
                     ([http] max_sessions_per_user); end one (DELETE it) to start another",
                    sessions.table.limits().per_owner
                ),
            );
        }
    };
    for id in std::mem::take(&mut opening.evicted) {
        sessions.close(&id).await;
    }
    let response = next(request).await;
    let opened = response
        .headers()
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok());
    if let Some(id) = opened {
        opening.bind(id.into());
    }
    response
}

/// The answer for a session that is not the caller's to use, whether or
/// not it exists: the two must look alike.
fn session_not_found() -> Response {
    http_errors::jsonrpc_error(
        StatusCode::NOT_FOUND,
        protocol::INVALID_REQUEST,
        "session not found; start a new one with initialize".into(),
    )
}
