//! Serving MCP over stdio and Streamable HTTP.

use super::{McpServer, Shared};
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
#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub addr: SocketAddr,
    /// Extra origins to accept besides the loopback ones.
    pub allowed_origins: Vec<String>,
}

/// Refuses addresses other clients could reach: without client
/// authentication, the endpoint is for this machine only.
pub fn check_listen_address(addr: SocketAddr) -> anyhow::Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve on {addr}: this host has no client authentication yet, so it only \
         listens on loopback (127.0.0.1 or [::1]). To reach it from elsewhere, put an \
         authenticating reverse proxy in front of a loopback address."
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
    check_listen_address(options.addr)?;
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.addr))?;
    let bound = listener.local_addr()?;

    let origins = LOOPBACK_ORIGINS
        .iter()
        .map(|o| o.to_string())
        .chain(options.allowed_origins);
    let config = StreamableHttpServerConfig::default()
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_cancellation_token(shutdown.child_token())
        .with_max_request_body_bytes(4 * 1024 * 1024);
    let service = StreamableHttpService::new(
        move || Ok(McpServer::new(shared.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    on_bound(bound);
    // Responses go out in several small writes (headers, then events):
    // without TCP_NODELAY, Nagle's algorithm holds them back ~40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}
