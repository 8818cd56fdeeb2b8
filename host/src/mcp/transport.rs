//! Serving MCP over stdio and Streamable HTTP.

use super::{McpServer, Shared};
use crate::auth::http::{Gate, METADATA_PATH};
use crate::auth::rate::Limiter;
use crate::auth::{self, Authenticator, Mode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Browser origins accepted by default: pages served from this machine.
pub const LOOPBACK_ORIGINS: [&str; 3] =
    ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];

/// Serves one client on stdin/stdout until it disconnects. Nothing but
/// JSON-RPC is written to stdout: plugins' output is captured, and the
/// host's own log goes to stderr.
pub async fn serve_stdio(shared: Arc<Shared>) -> anyhow::Result<()> {
    let transport = rmcp::transport::io::stdio_pipes();
    let running = McpServer::new(shared)
        .serve(transport)
        .await
        .map_err(|e| anyhow::anyhow!("the stdio client did not initialise: {e}"))?;
    running.waiting().await?;
    Ok(())
}

/// Options of the HTTP endpoint.
pub struct HttpOptions {
    pub addr: SocketAddr,
    /// Extra origins to accept besides the loopback ones.
    pub allowed_origins: Vec<String>,
    /// Who may call.
    pub auth: Authenticator,
    /// Request budgets.
    pub rate: auth::rate::RateConfig,
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
    let hosts = ["localhost", "127.0.0.1", "::1"]
        .map(str::to_owned)
        .into_iter()
        .chain(resource_host(&options.auth));
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_cancellation_token(shutdown.child_token())
        .with_max_request_body_bytes(4 * 1024 * 1024);
    let serving = shared.clone();
    let service = StreamableHttpService::new(
        move || Ok(McpServer::new(serving.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let gate = Arc::new(Gate {
        auth: options.auth,
        requests: Limiter::new(options.rate.requests_per_minute),
        metrics: shared.metrics.clone(),
    });
    let mut mcp = axum::Router::new().nest_service("/mcp", service);
    if mode != Mode::None {
        mcp = mcp.layer(axum::middleware::from_fn_with_state(
            gate.clone(),
            auth::http::authenticate,
        ));
    }
    let health = shared.clone();
    let metrics = shared;
    let router = mcp
        .route("/health", get(move || self::health(health.clone())))
        .route("/metrics", get(move || self::metrics(metrics.clone())))
        .merge(
            axum::Router::new()
                .route(METADATA_PATH, get(auth::http::metadata))
                .route(&format!("{METADATA_PATH}/mcp"), get(auth::http::metadata))
                .with_state(gate),
        );
    on_bound(bound);
    // Responses go out in several small writes (headers, then events):
    // without TCP_NODELAY, Nagle's algorithm holds them back ~40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let router = router.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
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

/// The metrics, in the Prometheus (OpenMetrics) text format.
async fn metrics(shared: Arc<Shared>) -> axum::response::Response {
    let registry = shared.registry.load();
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
