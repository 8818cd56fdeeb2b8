//! Serving MCP over Streamable HTTP.

use super::authenticate::{self, Gate, METADATA_PATH};
use super::budget::{self, Budget, ClientLimits};
use super::client_address::TrustedProxies;
use super::drain::{self, InFlight};
use super::http_errors;
use super::listener::{self, ConnectionLimits};
use super::protocol::{self, MAX_BODY};
use super::sessions::{self, Sessions};
use super::{McpServer, Shared};
use crate::auth::{self, Authenticator, Mode};
use crate::shared_state::{SessionLimits, SharedState};
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Browser origins accepted by default: pages served from this machine.
pub const LOOPBACK_ORIGINS: [&str; 3] =
    ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];

/// Options of the HTTP endpoint.
pub struct HttpOptions {
    pub addr: SocketAddr,
    /// Extra origins to accept besides the loopback ones.
    pub allowed_origins: Vec<String>,
    /// Who may call.
    pub auth: Authenticator,
    /// Request budgets.
    pub rate: auth::rate::RateConfig,
    /// How many sessions, and for how long.
    pub sessions: SessionLimits,
    /// How many connections, and how patient with slow clients.
    pub connections: ConnectionLimits,
    /// What one client may hold open.
    pub clients: ClientLimits,
    /// Proxies whose forwarded client addresses the host believes.
    pub trusted_proxies: TrustedProxies,
    /// How long shutdown waits for calls in flight.
    pub shutdown_deadline: Duration,
    /// Where rate buckets are kept.
    pub shared_state: SharedState,
}

/// Refuses addresses other clients could reach unless clients are
/// authenticated (or, in public mode, deliberately anonymous).
pub fn check_listen_address(addr: SocketAddr, mode: Mode) -> anyhow::Result<()> {
    if addr.ip().is_loopback() || mode != Mode::None {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve on {addr}: without [auth] in the host config, clients are not \
         authenticated, so the host only listens on loopback (127.0.0.1 or [::1]). Choose an \
         auth mode (public, gateway or direct) to serve other machines."
    )
}

/// Serves Streamable HTTP at `/mcp` until `shutdown` is cancelled. Calls
/// `on_bound` with the address actually bound (the port may have been 0).
///
/// On shutdown the listener closes and new requests are refused (503);
/// requests in flight finish (up to the deadline) and their answers are
/// sent; then sessions and their event streams end.
pub async fn serve_http(
    shared: Arc<Shared>,
    options: HttpOptions,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let mode = options.auth.mode;
    check_listen_address(options.addr, mode)?;
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.addr))?;
    let bound = listener.local_addr()?;

    let origins = LOOPBACK_ORIGINS
        .iter()
        .map(|o| o.to_string())
        .chain(options.allowed_origins);
    // Requests name this host as loopback, or by the configured resource's name.
    let hosts: Arc<[String]> = ["localhost", "127.0.0.1", "::1"]
        .map(str::to_owned)
        .into_iter()
        .chain(resource_host(&options.auth))
        .collect();
    // Sessions (and their open event streams) end only once the requests
    // in flight have been answered.
    let end_sessions = CancellationToken::new();
    let in_flight = InFlight::default();
    // The Host header is checked once, by `allowed_host` in front of every
    // path (rmcp's own check would repeat it, parsing its list per request).
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_cancellation_token(end_sessions.clone())
        .with_max_request_body_bytes(MAX_BODY);
    // Sessions expire by the table in front (only their client's own use
    // counts), not by rmcp's timer, which any notification resets.
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = None;
    let manager = Arc::new(manager);
    let sessions = Sessions::new(
        manager.clone(),
        options.shared_state.sessions(options.sessions),
        shared.audit.clone(),
        shared.metrics.clone(),
    );
    let serving = shared.clone();
    let endpoint = Arc::new(StreamableHttpService::new(
        move || Ok(McpServer::new(serving.clone())),
        manager,
        config,
    ));
    let gate = Arc::new(Gate {
        auth: options.auth,
        requests: options
            .shared_state
            .rate_buckets(options.rate.requests_per_minute),
        failures: options
            .shared_state
            .rate_buckets(options.rate.failed_auth_per_minute),
        recent: Default::default(),
        read_timeout: options.connections.read_timeout,
        metrics: shared.metrics.clone(),
    });
    let door = Arc::new(FrontDoor {
        hosts,
        draining: Draining {
            stopping: shutdown.clone(),
            in_flight: in_flight.clone(),
        },
        gate: (mode != Mode::None).then(|| gate.clone()),
        read_timeout: options.connections.read_timeout,
        sessions,
        budget: Budget::new(options.clients),
        trusted_proxies: options.trusted_proxies.clone(),
    });
    let health = shared.clone();
    let readiness = (shared.clone(), shutdown.clone());
    let metrics = shared;
    let router = axum::Router::new()
        .route(MCP_PATH, any(serve_mcp))
        .with_state(endpoint)
        .route("/health", get(move || self::health(health.clone())))
        .route("/ready", get(move || self::ready(readiness.clone())))
        .route("/metrics", get(move || self::metrics(metrics.clone())))
        .merge(
            axum::Router::new()
                .route(METADATA_PATH, get(authenticate::metadata))
                .route(&format!("{METADATA_PATH}/mcp"), get(authenticate::metadata))
                .with_state(gate),
        )
        .layer(from_fn_with_state(door, front_door));
    on_bound(bound);
    let deadline = options.shutdown_deadline;
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        in_flight.drain_at_shutdown(deadline).await;
        end_sessions.cancel();
    });
    let serving = listener::serve(
        listener,
        router,
        options.connections,
        options.trusted_proxies,
        shutdown.clone(),
    );
    // A client that never reads its stream cannot hold the host open.
    let overdue = async {
        shutdown.cancelled().await;
        tokio::time::sleep(deadline + Duration::from_secs(2)).await;
    };
    tokio::select! {
        () = serving => {}
        () = overdue => tracing::warn!("connections still open after the shutdown deadline: closing them"),
    }
    Ok(())
}

/// rmcp's endpoint, shared rather than cloned: axum clones a route's
/// service on every request, and rmcp's clones its whole config with it.
type Endpoint = Arc<StreamableHttpService<McpServer, LocalSessionManager>>;

async fn serve_mcp(State(endpoint): State<Endpoint>, request: Request) -> Response {
    endpoint.handle(request).await.into_response()
}

/// The path MCP is served at.
const MCP_PATH: &str = "/mcp";

/// Whether `path` is one served to anyone on an allowed Host: health,
/// metrics and the protected-resource metadata. Every other path, whether
/// the router serves it or not, takes the whole front door, so no spelling
/// of a path can reach rmcp around authentication.
fn is_public(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics")
        || path
            .strip_prefix(METADATA_PATH)
            .is_some_and(|rest| rest.is_empty() || rest == MCP_PATH)
}

/// What every request passes through, each step able to answer in its
/// place: the Host check on every path, then (except on the public paths)
/// refusal once shutdown has started, authentication (in an auth mode), the
/// body's framing, the session table, and rmcp. One middleware rather than one per
/// step: each axum middleware boxes its future and clones the layers
/// beneath it per request, which cost a native call about a tenth of its
/// CPU time.
struct FrontDoor {
    hosts: Arc<[String]>,
    draining: Draining,
    gate: Option<Arc<Gate>>,
    read_timeout: Duration,
    sessions: Arc<Sessions>,
    budget: Arc<Budget>,
    trusted_proxies: TrustedProxies,
}

async fn front_door(
    State(door): State<Arc<FrontDoor>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let address = door.trusted_proxies.client_of(peer.ip(), request.headers());
        request.extensions_mut().insert(address);
    }
    let to_router = async |request| next.run(request).await;
    let to_mcp = async |request: Request| {
        if is_public(request.uri().path()) {
            return to_router(request).await;
        }
        if request
            .extensions()
            .get::<listener::ReservedConnection>()
            .is_some()
        {
            return http_errors::jsonrpc_error(
                http::StatusCode::SERVICE_UNAVAILABLE,
                protocol::SERVER_BUSY,
                "the host serves its most connections, in all or from this address ([http] \
                 max_connections, max_connections_per_address); this one serves only /health, \
                 /ready and /metrics: try again shortly, or reuse a connection"
                    .into(),
            );
        }
        let sessions = async |request, counted| {
            sessions::guard(&door.sessions, request, counted, to_router).await
        };
        let budgeted = async |request| budget::hold(&door.budget, request, sessions).await;
        let framed = async |request| http_errors::frame(door.read_timeout, request, budgeted).await;
        let authenticated = async |request| match &door.gate {
            Some(gate) => authenticate::authenticate(gate, request, framed).await,
            None => framed(request).await,
        };
        refuse_when_stopping(&door.draining, request, authenticated).await
    };
    allowed_host(&door.hosts, request, to_mcp).await
}

/// What [`refuse_when_stopping`] needs.
struct Draining {
    stopping: CancellationToken,
    in_flight: InFlight,
}

/// Refuses requests once shutdown has started, and counts the POSTs in
/// flight until their answers have been sent.
async fn refuse_when_stopping(
    draining: &Draining,
    request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    if draining.stopping.is_cancelled() {
        return http_errors::jsonrpc_error(
            http::StatusCode::SERVICE_UNAVAILABLE,
            protocol::SERVER_BUSY,
            "the host is shutting down".into(),
        );
    }
    if request.method() != http::Method::POST {
        return next(request).await;
    }
    let entered = draining.in_flight.enter();
    let response = next(request).await;
    if response.extensions().get::<budget::LongLived>().is_some() {
        // A stream (`subscriptions/listen`) is not a call to wait for:
        // it ends with the sessions, once the calls are done.
        return response;
    }
    drain::held_until_sent(response, entered)
}

/// Refuses requests that do not name this host (DNS rebinding: a page on
/// another site whose name resolves to loopback), on every path, and
/// absolute-form targets (`GET http://elsewhere/health`), which only
/// proxies take.
async fn allowed_host(
    hosts: &[String],
    request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    if request.uri().authority().is_some() {
        return http_errors::jsonrpc_error(
            http::StatusCode::BAD_REQUEST,
            protocol::INVALID_REQUEST,
            "absolute-form request targets are not served; send the path only".into(),
        );
    }
    // The listener speaks HTTP/1.1 only, so the host is named in `Host`.
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<http::uri::Authority>().ok());
    let allowed = host.is_some_and(|authority| {
        let name = authority.host().trim_matches(['[', ']']);
        hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name))
    });
    if !allowed {
        return http_errors::jsonrpc_error(
            http::StatusCode::FORBIDDEN,
            protocol::INVALID_REQUEST,
            "the Host header does not name this server".into(),
        );
    }
    next(request).await
}

/// The host name of the configured resource URL, if any.
fn resource_host(auth: &Authenticator) -> Option<String> {
    let uri: http::Uri = auth.resource.as_deref()?.parse().ok()?;
    Some(uri.host()?.trim_matches(['[', ']']).to_owned())
}

/// Liveness, and what is loaded.
async fn health(shared: Arc<Shared>) -> axum::response::Response {
    let registry = shared.registry.load();
    let failures: Vec<serde_json::Value> = registry
        .failures()
        .iter()
        .map(|f| serde_json::json!({ "file": f.path.display().to_string(), "reason": f.reason }))
        .collect();
    axum::Json(serde_json::json!({
        "status": "ok",
        "plugins": registry.plugins().iter().map(|p| &p.name).collect::<Vec<_>>(),
        "failed": failures,
    }))
    .into_response()
}

/// Readiness: whether the host takes new work (plugins loaded, not
/// shutting down). 503 otherwise, so a load balancer sends clients
/// elsewhere.
async fn ready((shared, stopping): (Arc<Shared>, CancellationToken)) -> axum::response::Response {
    let registry = shared.registry.load();
    let (status, state) = if stopping.is_cancelled() {
        (http::StatusCode::SERVICE_UNAVAILABLE, "stopping")
    } else if registry.plugins().is_empty() && !registry.failures().is_empty() {
        (http::StatusCode::SERVICE_UNAVAILABLE, "no plugin loaded")
    } else {
        (http::StatusCode::OK, "ready")
    };
    (status, axum::Json(serde_json::json!({ "status": state }))).into_response()
}

/// The metrics, in the Prometheus (OpenMetrics) text format.
async fn metrics(shared: Arc<Shared>) -> axum::response::Response {
    let registry = shared.registry.load();
    let stored = shared.keyvalue.as_ref().and_then(|s| s.stored_bytes());
    shared.metrics.set_keyvalue_bytes(stored);
    let text = shared.metrics.encode(
        shared.runtime.sandboxes_in_use(),
        registry.plugins().len(),
        registry.failures().len(),
    );
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_public_paths_skip_the_front_door() {
        for public in [
            "/health",
            "/metrics",
            METADATA_PATH,
            "/.well-known/oauth-protected-resource/mcp",
        ] {
            assert!(is_public(public), "{public}");
        }
        for guarded in [
            "/mcp",
            "/mcp/",
            "//health",
            "/health/",
            "/HEALTH",
            "/.well-known/oauth-protected-resource/",
            "/.well-known/oauth-protected-resource/mcp/",
            "/.well-known/oauth-protected-resourcex",
            "",
            "/",
        ] {
            assert!(!is_public(guarded), "{guarded}");
        }
    }
}
