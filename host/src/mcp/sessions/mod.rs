//! Streamable HTTP sessions (2025-11-25), held to bounds and to their owner.
//!
//! rmcp's session manager keeps a session until someone deletes it, and
//! lets anyone who names it use it. This layer sits in front of it, keeps
//! its books in the shared state's [`SessionTable`], and guarantees:
//! - a session belongs to the principal that opened it: a request on it by
//!   another principal is answered 404, exactly as for a session that does
//!   not exist, and is audited;
//! - at most `[http] max_sessions` sessions at once and
//!   `max_sessions_per_user` per principal: a principal past its share
//!   loses its own least recently used session, never someone else's; a
//!   new session past the global bound is refused with 503;
//! - a session its owner has not used for the idle time (no
//!   request, no open stream) is closed and freed. Only the owner's own
//!   requests count: notifications the host sends (a plugin reloaded) do
//!   not keep a session alive.

mod step;

pub use step::guard;

use super::stateless;
use crate::audit::AuditLog;
use crate::metrics::Metrics;
use crate::shared_state::{NoRoom, SessionTable};
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The session table in front of rmcp's session manager.
pub struct Sessions {
    manager: Arc<LocalSessionManager>,
    /// Who owns each session, and the bounds (in the shared state).
    table: Arc<dyn SessionTable>,
    audit: AuditLog,
    metrics: Arc<Metrics>,
    /// Requests without a session in flight, for their cancellations.
    sessionless: Arc<stateless::SessionlessRequests>,
}

/// A place for one session being opened; given back on drop if the
/// session never opened.
struct Opening {
    sessions: Arc<Sessions>,
    owner: Arc<str>,
    /// The owner's sessions to close to make room.
    evicted: Vec<Arc<str>>,
    bound: bool,
}

/// One request or stream on a session: while it lives the session is in
/// use and does not expire.
struct InUse {
    sessions: Arc<Sessions>,
    id: Arc<str>,
    /// The request's id key, while it is in flight.
    request: Option<u64>,
}

impl Sessions {
    /// The table `table` in front of `manager`, and the task that expires
    /// idle sessions (it ends when the table is dropped).
    pub fn new(
        manager: Arc<LocalSessionManager>,
        table: Arc<dyn SessionTable>,
        audit: AuditLog,
        metrics: Arc<Metrics>,
    ) -> Arc<Sessions> {
        let limits = table.limits();
        let sessions = Arc::new(Sessions {
            manager,
            table,
            audit,
            metrics,
            sessionless: Arc::default(),
        });
        let weak = Arc::downgrade(&sessions);
        let period = (limits.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            loop {
                ticks.tick().await;
                let Some(sessions) = weak.upgrade() else {
                    return;
                };
                sessions.expire(Instant::now()).await;
            }
        });
        sessions
    }

    /// A place for a new session of `owner`, made as
    /// [`SessionTable::admit`] makes it.
    fn admit(self: &Arc<Self>, owner: Arc<str>) -> Result<Opening, NoRoom> {
        let evicted = self.table.admit(&owner)?;
        Ok(Opening {
            sessions: self.clone(),
            owner,
            evicted,
            bound: false,
        })
    }

    /// Closes sessions nobody has used for the idle time.
    async fn expire(&self, now: Instant) {
        for id in self.table.expire(now) {
            self.close(&id).await;
        }
    }

    async fn close(&self, id: &str) {
        if let Err(e) = self.manager.close_session(&id.into()).await {
            tracing::debug!("closing session {id}: {e}");
        }
    }

    fn forget(&self, id: &str) {
        if let Some(ended) = self.table.remove(id) {
            ended.cancel();
        }
    }
}

impl Opening {
    fn bind(mut self, id: Arc<str>) {
        self.sessions
            .table
            .bind(id, self.owner.clone(), CancellationToken::new());
        self.bound = true;
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        if !self.bound {
            self.sessions.table.abandon();
        }
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.sessions.table.release(&self.id, self.request);
    }
}

#[cfg(test)]
mod tests {
    use super::step::session_id;
    use crate::mcp::protocol::SESSION_HEADER;

    #[test]
    fn a_session_header_is_one_visible_ascii_id_or_refused() {
        let headers = |values: &[&[u8]]| {
            let mut map = http::HeaderMap::new();
            for value in values {
                map.append(
                    SESSION_HEADER,
                    http::HeaderValue::from_bytes(value).unwrap(),
                );
            }
            map
        };
        assert_eq!(session_id(&headers(&[])), Ok(None));
        let id = b"6a1c5b2e-0b5f-4c39-9a57-2b1f0f5f2a11";
        assert_eq!(
            session_id(&headers(&[id])).unwrap().as_deref(),
            Some("6a1c5b2e-0b5f-4c39-9a57-2b1f0f5f2a11")
        );
        for bad in [
            &b"\x80"[..],
            b"a\x80b",
            b"\xff\xfe",
            b"two words",
            b"tab\there",
            b"",
            &[b'a'; 129],
            "caf\u{e9}".as_bytes(),
        ] {
            assert!(session_id(&headers(&[bad])).is_err(), "{bad:?}");
        }
        assert!(session_id(&headers(&[id, id])).is_err());
    }
}
