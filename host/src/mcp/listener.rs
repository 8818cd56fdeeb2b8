//! The HTTP listener: accepts connections within a budget, serves each
//! with hyper, and closes those that are slow to send a request or to read
//! their answer.
//!
//! `axum::serve` accepts without limit and never times a client out, so a
//! few thousand silent sockets exhaust the host's file descriptors. Here:
//! - at most `max` connections are served at once, and at most
//!   `per_address` from one address (a trusted proxy's aside: its clients
//!   are counted by the address it forwards); a connection past its
//!   address's share is answered 429 at once and closed;
//! - past `max` (or its address's share), one more connection per address,
//!   up to a few, is accepted into a reserve that serves only the public paths (`/health`, `/ready`,
//!   `/metrics`), so a host whose slots are all held still answers its
//!   health checks; the rest wait in the kernel's backlog;
//! - a connection must send each request's headers within the read
//!   timeout, which also closes keep-alive connections left idle that long
//!   (the body has the same deadline, see
//!   [`http_errors::frame`](super::http_errors::frame));
//! - a write that the client does not take within the write timeout ends
//!   the connection, so a client that stops reading (an event stream it
//!   never drains) cannot hold a slot or the host's shutdown.

use super::client_address::TrustedProxies;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

/// How many connections, and how patient with slow clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max: usize,
    /// Connections served at once from one address.
    pub per_address: usize,
    /// Time to send a request's headers (and, separately, its body); a
    /// connection idle this long between requests is closed too.
    pub read_timeout: Duration,
    /// Time the client may take to take one write of an answer.
    pub write_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max: 1024,
            per_address: 128,
            read_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Connections kept for the public paths once `max` are open.
pub const RESERVED: usize = 16;

/// How long a reserved connection may take to send its one request.
const RESERVED_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The answer to a connection past its address's share, written before
/// anything is read.
fn over_address() -> Vec<u8> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": super::protocol::SERVER_BUSY,
            "message": "too many connections from this address \
                        ([http] max_connections_per_address); reuse the ones open",
        },
    })
    .to_string();
    format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
         connection: close\r\nretry-after: 1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What the listener counts: connections served, and per address.
#[derive(Default)]
struct Open {
    served: usize,
    by_address: HashMap<IpAddr, usize>,
    reserved_by_address: HashMap<IpAddr, usize>,
}

/// How an accepted connection is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Within the budget: served in full.
    Served,
    /// In the reserve: the public paths only, one request.
    Reserved,
    /// Past its address's share: refused.
    OverAddress,
}

/// The connection budget: decides each connection's place and gives it
/// back when the connection closes.
struct ConnectionBudget {
    limits: ConnectionLimits,
    trusted: TrustedProxies,
    open: Mutex<Open>,
}

impl ConnectionBudget {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn place(&self, address: IpAddr) -> Place {
        let counted = !self.trusted.trusts(address);
        let mut open = self.lock();
        let from_address = open.by_address.get(&address).copied().unwrap_or(0);
        let over_share = counted && from_address >= self.limits.per_address;
        if over_share || open.served >= self.limits.max {
            // One reserved connection per address, for health checks.
            let reserved = open.reserved_by_address.entry(address).or_default();
            if *reserved >= 1 {
                return Place::OverAddress;
            }
            *reserved += 1;
            return Place::Reserved;
        }
        open.served += 1;
        *open.by_address.entry(address).or_default() += 1;
        Place::Served
    }

    fn leave(&self, address: IpAddr, place: Place) {
        let mut open = self.lock();
        let counts = match place {
            Place::Served => {
                open.served -= 1;
                &mut open.by_address
            }
            Place::Reserved => &mut open.reserved_by_address,
            Place::OverAddress => return,
        };
        if let Some(count) = counts.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&address);
            }
        }
    }
}

/// Marks a request that came on a reserved connection: the front door
/// serves it only on a public path.
#[derive(Clone, Copy, Debug)]
pub struct ReservedConnection;

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops
/// accepting and asks every connection to close once its requests in
/// flight are answered. Returns when every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    trusted: TrustedProxies,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max + RESERVED));
    let budget = Arc::new(ConnectionBudget {
        limits,
        trusted,
        open: Mutex::default(),
    });
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only, as before: MCP clients speak it, and HTTP/2 would be
    // a second protocol to bound.
    let mut served = http1::Builder::new();
    served
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout);
    let mut reserved = http1::Builder::new();
    reserved
        .timer(TokioTimer::new())
        .header_read_timeout(RESERVED_READ_TIMEOUT.min(limits.read_timeout))
        .keep_alive(false);
    let mut was_full = false;
    loop {
        let full = slots.available_permits() <= RESERVED;
        if full && !was_full {
            tracing::warn!(
                connections = limits.max,
                "connection cap reached ([http] max_connections): only health checks are \
                 served to new connections"
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
        let address = remote.ip().to_canonical();
        let place = budget.place(address);
        if place == Place::OverAddress {
            tokio::spawn(async move {
                // Written, then the request read and dropped, so that the
                // client reads the answer rather than a reset.
                let mut tcp = tcp;
                let refuse = async {
                    tcp.write_all(&over_address()).await?;
                    tcp.shutdown().await?;
                    let mut sink = [0u8; 4096];
                    while tcp.read(&mut sink).await? > 0 {}
                    Ok::<_, std::io::Error>(())
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), refuse).await;
                drop(slot);
            });
            continue;
        }
        // Responses go out in several small writes (headers, then events):
        // without TCP_NODELAY, Nagle's algorithm holds them back ~40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let mut io = TimeoutStream::new(tcp);
        io.set_write_timeout(Some(limits.write_timeout));
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            if place == Place::Reserved {
                request.extensions_mut().insert(ReservedConnection);
            }
            router.clone().call(request.map(axum::body::Body::new))
        });
        let builder = if place == Place::Reserved {
            &reserved
        } else {
            &served
        };
        let connection =
            graceful.watch(builder.serve_connection(TokioIo::new(Box::pin(io)), service));
        let budget = budget.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%remote, "connection ended: {e}");
            }
            budget.leave(address, place);
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
