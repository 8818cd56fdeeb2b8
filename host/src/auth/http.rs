//! The HTTP side of auth: the middleware every `/mcp` request passes, its
//! 401/403/429 answers, and the OAuth protected-resource metadata (RFC 9728)
//! that tells MCP clients where to get a token.

use super::rate::Limiter;
use super::{Authenticator, Credentials, Mode, Principal, Refusal, gateway};
use crate::mcp::http_errors;
use crate::mcp::sessions::SESSION_HEADER;
use crate::metrics::Metrics;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The path of the protected-resource metadata.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// What the middleware needs.
pub struct Gate {
    pub auth: Authenticator,
    /// Requests per principal (or client address, for anonymous clients).
    pub requests: Limiter,
    /// Failed authentications per client address.
    pub failures: Limiter,
    /// How long a body (read here in gateway mode) may take to arrive.
    pub read_timeout: std::time::Duration,
    pub metrics: Arc<Metrics>,
}

impl Gate {
    /// Where clients find the metadata: next to the configured resource.
    fn metadata_url(&self) -> Option<String> {
        let resource: http::Uri = self.auth.resource.as_deref()?.parse().ok()?;
        Some(format!(
            "{}://{}{METADATA_PATH}",
            resource.scheme_str()?,
            resource.authority()?
        ))
    }
}

/// The front door's authentication step: authenticates a request, applies
/// the principal's request budget, and passes the principal on in the
/// request's extensions.
pub async fn authenticate(
    gate: &Gate,
    request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    let address = match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => format!("address {}", peer.ip()),
        None => "an unknown address".to_owned(),
    };
    if let Err(wait) = gate.failures.check(&address, Instant::now()) {
        let refusal = Refusal {
            status: 429,
            reason: "auth-rate-limited",
            detail: format!("too many failed authentications from {address}"),
            retry_after: Some(wait.as_secs() + 1),
        };
        return refuse(gate, refusal);
    }
    let (mut parts, body) = request.into_parts();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Only bad credentials count against the address: a valid token short
    // of a scope is not a guess.
    let refused = |refusal: Refusal| {
        if refusal.status == 401 {
            let _ = gate.failures.take(&address, Instant::now());
        }
        refuse(gate, refusal)
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let signed = gateway::Signed {
        method: parts.method.as_str(),
        target: parts
            .uri
            .path_and_query()
            .map_or("/", |target| target.as_str()),
        session: header(SESSION_HEADER),
        user: header(gateway::USER),
        timestamp: header(gateway::TIMESTAMP),
        nonce: header(gateway::NONCE),
        signature: header(gateway::SIGNATURE),
    };
    // A gateway signature covers the body, so in gateway mode the body is
    // read once the headers pass; in the other modes nothing of it is read
    // before the credentials pass.
    if let Err(refusal) = gate.auth.check_before_body(&signed, now) {
        return refused(refusal);
    }
    let body = if gate.auth.mode == Mode::Gateway {
        match http_errors::read_body(body, gate.read_timeout).await {
            Ok(bytes) => Ok(bytes),
            Err(refusal) => return refusal,
        }
    } else {
        Err(body)
    };
    let credentials = Credentials {
        authorization: header(header::AUTHORIZATION.as_str()),
        gateway: signed,
        body: body.as_ref().map_or(&[][..], |bytes| &bytes[..]),
    };
    let principal = match gate.auth.authenticate(&credentials, now) {
        Ok(principal) => principal,
        Err(refusal) => return refused(refusal),
    };
    let budget = match gate.auth.mode {
        Mode::Public => address,
        _ => format!("principal {}", principal.id),
    };
    if let Err(wait) = gate.requests.take(&budget, Instant::now()) {
        let refusal = Refusal {
            status: 429,
            reason: "rate-limited",
            detail: format!("too many requests from {budget}"),
            retry_after: Some(wait.as_secs() + 1),
        };
        return refuse(gate, refusal);
    }
    parts.extensions.insert(principal);
    let body = body.map_or_else(|unread| unread, Body::from);
    next(Request::from_parts(parts, body)).await
}

/// The answer to a refused request. Its detail may quote what the client
/// sent, so it is cut once more here, where it is logged, put in the body
/// and in the challenge header.
fn refuse(gate: &Gate, mut refusal: Refusal) -> Response {
    crate::capability::denials::truncate(&mut refusal.detail, 2 * crate::client_text::ECHO_BYTES);
    gate.metrics.auth_failure(refusal.reason);
    tracing::info!(
        status = refusal.status,
        reason = refusal.reason,
        "refused: {}",
        refusal.detail
    );
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::UNAUTHORIZED);
    // A JSON-RPC error body, so clients can show why, beside the
    // WWW-Authenticate challenge that says what to do.
    let code = match refusal.status {
        429 => http_errors::SERVER_BUSY,
        _ => http_errors::UNAUTHORIZED,
    };
    let mut response = http_errors::jsonrpc_error(status, code, refusal.detail.clone());
    let headers = response.headers_mut();
    let metadata = gate
        .metadata_url()
        .map(|url| format!(", resource_metadata=\"{url}\""))
        .unwrap_or_default();
    let challenge = match (refusal.status, gate.auth.mode) {
        (401, Mode::Gateway) => Some("Gateway realm=\"mcp\"".to_owned()),
        (401, _) if refusal.reason == "missing" => Some(format!("Bearer realm=\"mcp\"{metadata}")),
        (401, _) => Some(format!(
            "Bearer realm=\"mcp\", error=\"invalid_token\", error_description=\"{}\"{metadata}",
            refusal.detail.replace('"', "'")
        )),
        (403, _) => Some(format!(
            "Bearer realm=\"mcp\", error=\"insufficient_scope\", scope=\"{}\"{metadata}",
            gate.auth.required_scope
        )),
        _ => None,
    };
    if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::WWW_AUTHENTICATE, value);
    }
    if let Some(seconds) = refusal.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The protected-resource metadata document (RFC 9728).
pub async fn metadata(State(gate): State<Arc<Gate>>) -> Response {
    let Some(resource) = &gate.auth.resource else {
        return http_errors::jsonrpc_error(
            StatusCode::NOT_FOUND,
            http_errors::INVALID_REQUEST,
            "no protected-resource metadata: the host config sets no [auth] resource".into(),
        );
    };
    axum::Json(serde_json::json!({
        "resource": resource,
        "authorization_servers": gate.auth.authorization_servers,
        "scopes_supported": [gate.auth.required_scope, gate.auth.write_scope],
        "bearer_methods_supported": ["header"],
    }))
    .into_response()
}

/// The principal the MCP service passed a request on with; the local user
/// when there is none (stdio).
pub fn principal_of(parts: Option<&http::request::Parts>) -> Principal {
    parts
        .and_then(|parts| parts.extensions.get::<Principal>())
        .cloned()
        .unwrap_or_else(Principal::local)
}
