//! The HTTP side of auth: the middleware every `/mcp` request passes, its
//! 401/403/429 answers, and the OAuth protected-resource metadata (RFC 9728)
//! that tells MCP clients where to get a token.

use super::client_address::ClientAddress;
use super::http_errors;
use super::protocol::{self, SESSION_HEADER};
use crate::auth::{Authenticator, Credentials, Mode, Refusal, gateway};
use crate::metrics::Metrics;
use crate::principal::Principal;
use crate::shared_state::RateBuckets;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The path of the protected-resource metadata.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// What the middleware needs.
pub struct Gate {
    pub auth: Authenticator,
    /// Requests per principal (or client address, for anonymous clients).
    pub requests: Arc<dyn RateBuckets>,
    /// Failed authentications per client address and per credential.
    pub failures: Arc<dyn RateBuckets>,
    /// Credentials that authenticated recently.
    pub recent: RecentCredentials,
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
    let address = match request.extensions().get::<ClientAddress>() {
        Some(address) => format!("address {}", address.0),
        None => "an unknown address".to_owned(),
    };
    // Failed authentications are limited per presented credential and per
    // address (the client's, as a trusted proxy forwards it). Past the
    // address's limit, credentials that authenticated recently still get
    // in: one client guessing behind a shared address does not lock out
    // the others.
    let credential = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| gate.recent.fingerprint(value.as_bytes()));
    let credential_key = credential.map(|print| format!("credential {print:016x}"));
    let arrived = Instant::now();
    if let Some(key) = &credential_key
        && let Err(wait) = gate.failures.check(key, arrived)
    {
        let refusal = Refusal {
            status: 429,
            reason: "auth-rate-limited",
            detail: "this credential failed too many times; wait, or use a valid one".to_owned(),
            retry_after: Some(wait.as_secs() + 1),
        };
        return refuse(gate, refusal);
    }
    if let Err(wait) = gate.failures.check(&address, arrived)
        && !credential.is_some_and(|print| gate.recent.contains(print))
    {
        let refusal = Refusal {
            status: 429,
            reason: "auth-rate-limited",
            detail: format!(
                "too many failed authentications from {address}; credentials that \
                 authenticated recently are still accepted"
            ),
            retry_after: Some(wait.as_secs() + 1),
        };
        return refuse(gate, refusal);
    }
    let (mut parts, body) = request.into_parts();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Only bad credentials count: a request without any (a client finding
    // out how to authenticate) or a valid token short of a scope is not a
    // guess.
    let refused = |refusal: Refusal| {
        if refusal.status == 401 && refusal.reason != "missing" {
            let _ = gate.failures.take(&address, arrived);
            if let Some(key) = &credential_key {
                let _ = gate.failures.take(key, arrived);
            }
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
        body_sha256: header(gateway::BODY_SHA256),
    };
    // Nothing of the body is read before the credentials pass: a gateway
    // signature covers the body's digest, sent in a header.
    let credentials = Credentials {
        authorization: header(header::AUTHORIZATION.as_str()),
        gateway: signed,
    };
    let principal = match gate.auth.authenticate(&credentials, now) {
        Ok(principal) => principal,
        Err(refusal) => return refused(refusal),
    };
    // Then, in gateway mode, the body is read (bounded in size and time)
    // and held to the digest that was signed.
    let body = if gate.auth.mode == Mode::Gateway {
        let bytes = match http_errors::read_body(body, gate.read_timeout).await {
            Ok(bytes) => bytes,
            Err(refusal) => return refusal,
        };
        if let Err(rejected) = gateway::body_matches(&credentials.gateway, &bytes) {
            return refused(Refusal::unauthenticated(rejected));
        }
        Body::from(bytes)
    } else {
        body
    };
    if let Some(print) = credential {
        gate.recent.remember(print);
    }
    let budget = match gate.auth.mode {
        Mode::Public => address,
        _ => format!("principal {}", principal.id),
    };
    if let Err(wait) = gate.requests.take(&budget, arrived) {
        let refusal = Refusal {
            status: 429,
            reason: "rate-limited",
            detail: format!("too many requests from {budget}"),
            retry_after: Some(wait.as_secs() + 1),
        };
        return refuse(gate, refusal);
    }
    parts.extensions.insert(principal);
    next(Request::from_parts(parts, body)).await
}

/// Credentials that authenticated recently, by keyed fingerprint (the
/// credential itself is never kept): these still get in from an address
/// past its failed-authentication limit. Bounded: past
/// [`RecentCredentials::MAX`], the oldest half is forgotten.
#[derive(Default)]
pub struct RecentCredentials {
    key: std::hash::RandomState,
    seen: std::sync::Mutex<HashMap<u64, Instant>>,
}

impl RecentCredentials {
    /// The most credentials remembered.
    const MAX: usize = 10_000;

    fn fingerprint(&self, credential: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.key.hash_one(credential)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Instant>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn contains(&self, print: u64) -> bool {
        self.lock().contains_key(&print)
    }

    fn remember(&self, print: u64) {
        let now = Instant::now();
        let mut seen = self.lock();
        if seen.len() >= Self::MAX && !seen.contains_key(&print) {
            let mut ages: Vec<Instant> = seen.values().copied().collect();
            let (_, median, _) = ages.select_nth_unstable(Self::MAX / 2);
            let median = *median;
            seen.retain(|_, used| *used > median);
        }
        seen.insert(print, now);
    }
}

/// The answer to a refused request. Its detail may quote what the client
/// sent, so it is cut once more here, where it is logged, put in the body
/// and in the challenge header.
fn refuse(gate: &Gate, mut refusal: Refusal) -> Response {
    crate::printable::truncate(&mut refusal.detail, 2 * crate::client_text::ECHO_BYTES);
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
        429 => protocol::SERVER_BUSY,
        _ => protocol::UNAUTHORIZED,
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
            protocol::INVALID_REQUEST,
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
