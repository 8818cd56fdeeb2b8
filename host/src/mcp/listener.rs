//! The HTTP listener: accepts connections up to a cap, serves each with
//! hyper, and closes those that are slow to send a request.
//!
//! `axum::serve` accepts without limit and never times a client out, so a
//! few thousand silent sockets exhaust the host's file descriptors. Here a
//! connection is accepted only while a slot is free (the rest wait in the
//! kernel's backlog), and a connection must send each request's headers
//! within the read timeout, which also closes keep-alive connections left
//! idle that long. The body has the same deadline (see
//! [`http_errors::frame`](super::http_errors::frame)).

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

/// How many connections, and how long a client may take to send a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max: usize,
    /// Time to send a request's headers (and, separately, its body); a
    /// connection idle this long between requests is closed too.
    pub read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max: 1024,
            read_timeout: Duration::from_secs(20),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops
/// accepting and asks every connection to close once its requests in
/// flight are answered. Returns when every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max));
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only, as before: MCP clients speak it, and HTTP/2 would be
    // a second protocol to bound.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout);
    let mut was_full = false;
    loop {
        let full = slots.available_permits() == 0;
        if full && !was_full {
            tracing::warn!(
                connections = limits.max,
                "connection cap reached ([http] max_connections): new connections wait"
            );
        }
        was_full = full;
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    wait_after_accept_error(e).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Responses go out in several small writes (headers, then events):
        // without TCP_NODELAY, Nagle's algorithm holds them back ~40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            router.clone().call(request.map(axum::body::Body::new))
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(tcp), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%remote, "connection ended: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Running out of file descriptors (or memory) makes every accept fail at
/// once: wait for some to be freed rather than spin. A connection that
/// failed before it was accepted is simply gone.
async fn wait_after_accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!("cannot accept a connection: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
