//! Streamable HTTP sessions (2025-11-25), held to bounds and to their owner.
//!
//! rmcp's session manager keeps a session until someone deletes it, and
//! lets anyone who names it use it. This layer sits in front of it and
//! guarantees:
//! - a session belongs to the principal that opened it: a request on it by
//!   another principal is answered 404, exactly as for a session that does
//!   not exist, and is audited;
//! - at most [`SessionLimits::max`] sessions at once and
//!   [`SessionLimits::per_owner`] per principal: a principal past its share
//!   loses its own least recently used session, never someone else's; a
//!   new session past the global bound is refused with 503;
//! - a session its owner has not used for [`SessionLimits::idle`] (no
//!   request, no open stream) is closed and freed. Only the owner's own
//!   requests count: notifications the host sends (a plugin reloaded) do
//!   not keep a session alive.

mod step;

pub use step::guard;

use super::stateless::{self, CancelCalls};
use crate::audit::AuditLog;
use crate::metrics::Metrics;
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How many sessions, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions open at once, across all principals.
    pub max: usize,
    /// Sessions open at once per principal (per address, for anonymous
    /// clients).
    pub per_owner: usize,
    /// A session unused this long is closed.
    pub idle: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max: 1000,
            per_owner: 32,
            idle: Duration::from_secs(600),
        }
    }
}

/// The session table in front of rmcp's session manager.
pub struct Sessions {
    manager: Arc<LocalSessionManager>,
    limits: SessionLimits,
    table: Mutex<Table>,
    audit: AuditLog,
    metrics: Arc<Metrics>,
    /// Requests without a session in flight, for their cancellations.
    sessionless: Arc<stateless::SessionlessRequests>,
}

#[derive(Default)]
struct Table {
    sessions: HashMap<Arc<str>, Entry>,
    /// Sessions being opened: counted against the bound until they are.
    opening: usize,
}

struct Entry {
    owner: Arc<str>,
    last_used: Instant,
    /// Requests and streams on the session still open.
    open: usize,
    /// The ids of its requests in flight (as keys): a second request with
    /// one of them would take the first one's answer.
    ids: HashSet<u64>,
    /// Cancelled when the session ends (deleted by its client): what its
    /// calls still running are stopped by.
    ended: CancelCalls,
}

/// What one owner holds, as [`Sessions::admit`] weighs it.
#[derive(Default)]
struct Holding<'a> {
    count: usize,
    /// Its least recently used session with nothing open on it.
    oldest_idle: Option<(Instant, &'a Arc<str>)>,
}

/// Why a new session was refused.
#[derive(Debug, PartialEq, Eq)]
enum NoRoom {
    /// The host holds its most sessions, none of which may be closed.
    Full,
    /// The owner holds its share, and every one is in use.
    OwnShareInUse,
}

/// Who may use a session, as a request shows it.
enum Claim {
    Owned(CancelCalls),
    Unknown,
    Foreign,
    /// A request of the session with the same id is still in flight.
    DuplicateId,
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
    /// A table in front of `manager`, and the task that expires idle
    /// sessions (it ends when the table is dropped).
    pub fn new(
        manager: Arc<LocalSessionManager>,
        limits: SessionLimits,
        audit: AuditLog,
        metrics: Arc<Metrics>,
    ) -> Arc<Sessions> {
        let sessions = Arc::new(Sessions {
            manager,
            limits,
            table: Mutex::new(Table::default()),
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

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere while holding the lock leaves the table as it
        // was between two whole updates: still usable.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn claim(&self, id: &str, owner: &str, now: Instant, request: Option<u64>) -> Claim {
        let mut table = self.lock();
        match table.sessions.get_mut(id) {
            None => Claim::Unknown,
            Some(entry) if *entry.owner != *owner => Claim::Foreign,
            Some(entry) if request.is_some_and(|key| entry.ids.contains(&key)) => {
                Claim::DuplicateId
            }
            Some(entry) => {
                entry.ids.extend(request);
                entry.last_used = now;
                entry.open += 1;
                Claim::Owned(entry.ended.clone())
            }
        }
    }

    fn release(&self, id: &str, request: Option<u64>) {
        if let Some(entry) = self.lock().sessions.get_mut(id) {
            entry.open = entry.open.saturating_sub(1);
            entry.last_used = Instant::now();
            if let Some(key) = request {
                entry.ids.remove(&key);
            }
        }
    }

    /// A place for a new session of `owner`. Room is made by closing an
    /// idle session (no request or stream open on it, so no one's call or
    /// stream is ever cut): past its share, one of the owner's own, least
    /// recently used first; with the host full, one of whoever holds the
    /// most sessions, if that is more than `owner` would then hold. So a
    /// few addresses cannot fill the table and keep newcomers out.
    fn admit(self: &Arc<Self>, owner: Arc<str>) -> Result<Opening, NoRoom> {
        let mut table = self.lock();
        let mut held: HashMap<&Arc<str>, Holding> = HashMap::new();
        for (id, entry) in &table.sessions {
            let holding = held.entry(&entry.owner).or_default();
            holding.count += 1;
            if entry.open == 0
                && holding
                    .oldest_idle
                    .is_none_or(|(used, _)| entry.last_used < used)
            {
                holding.oldest_idle = Some((entry.last_used, id));
            }
        }
        let own = held.get(&owner).map_or(0, |holding| holding.count);
        let mut evicted: Vec<Arc<str>> = Vec::new();
        if own >= self.limits.per_owner {
            let mut idle: Vec<(Instant, Arc<str>)> = table
                .sessions
                .iter()
                .filter(|(_, entry)| entry.owner == owner && entry.open == 0)
                .map(|(id, entry)| (entry.last_used, id.clone()))
                .collect();
            let excess = own + 1 - self.limits.per_owner;
            if idle.len() < excess {
                return Err(NoRoom::OwnShareInUse);
            }
            idle.sort();
            evicted.extend(idle.into_iter().take(excess).map(|(_, id)| id));
        } else if table.sessions.len() + table.opening >= self.limits.max {
            let biggest = held
                .iter()
                .filter_map(|(holder, holding)| {
                    Some((holding.count, holding.oldest_idle?.1, *holder))
                })
                .max_by_key(|(count, _, _)| *count);
            match biggest {
                Some((count, id, holder)) if *holder != owner && count > own + 1 => {
                    evicted.push(id.clone());
                }
                _ => return Err(NoRoom::Full),
            }
        }
        for id in &evicted {
            table.sessions.remove(id);
        }
        if table.sessions.len() + table.opening >= self.limits.max {
            return Err(NoRoom::Full);
        }
        table.opening += 1;
        Ok(Opening {
            sessions: self.clone(),
            owner,
            evicted,
            bound: false,
        })
    }

    /// Closes sessions nobody has used for the idle time.
    async fn expire(&self, now: Instant) {
        let idle = self.limits.idle;
        let expired: Vec<Arc<str>> = {
            let mut table = self.lock();
            let expired: Vec<Arc<str>> = table
                .sessions
                .iter()
                .filter(|(_, entry)| entry.open == 0 && now - entry.last_used >= idle)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                table.sessions.remove(id);
            }
            expired
        };
        for id in expired {
            self.close(&id).await;
        }
    }

    async fn close(&self, id: &str) {
        if let Err(e) = self.manager.close_session(&id.into()).await {
            tracing::debug!("closing session {id}: {e}");
        }
    }

    fn forget(&self, id: &str) {
        if let Some(entry) = self.lock().sessions.remove(id) {
            entry.ended.0.cancel();
        }
    }
}

impl Opening {
    fn bind(mut self, id: Arc<str>) {
        let mut table = self.sessions.lock();
        table.opening -= 1;
        table.sessions.insert(
            id,
            Entry {
                owner: self.owner.clone(),
                last_used: Instant::now(),
                open: 0,
                ids: HashSet::new(),
                ended: CancelCalls::default(),
            },
        );
        self.bound = true;
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        if !self.bound {
            self.sessions.lock().opening -= 1;
        }
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.sessions.release(&self.id, self.request);
    }
}

#[cfg(test)]
mod tests {
    use super::step::session_id;
    use super::*;
    use crate::mcp::protocol::SESSION_HEADER;

    fn sessions(limits: SessionLimits) -> Arc<Sessions> {
        Arc::new(Sessions {
            manager: Arc::new(LocalSessionManager::default()),
            limits,
            table: Mutex::new(Table::default()),
            audit: AuditLog::disabled(),
            metrics: Arc::new(Metrics::default()),
            sessionless: Arc::default(),
        })
    }

    fn limits(max: usize, per_owner: usize) -> SessionLimits {
        SessionLimits {
            max,
            per_owner,
            idle: Duration::from_secs(60),
        }
    }

    fn open(sessions: &Arc<Sessions>, owner: &str, id: &str) -> Vec<Arc<str>> {
        try_open(sessions, owner, id).expect("room")
    }

    fn try_open(sessions: &Arc<Sessions>, owner: &str, id: &str) -> Result<Vec<Arc<str>>, NoRoom> {
        let mut opening = sessions.admit(owner.into())?;
        let evicted = std::mem::take(&mut opening.evicted);
        opening.bind(id.into());
        Ok(evicted)
    }

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

    #[test]
    fn a_session_is_usable_only_by_its_owner() {
        let sessions = sessions(limits(10, 10));
        open(&sessions, "alice", "s1");
        let now = Instant::now();
        assert!(matches!(
            sessions.claim("s1", "alice", now, None),
            Claim::Owned(_)
        ));
        assert!(matches!(
            sessions.claim("s1", "bob", now, None),
            Claim::Foreign
        ));
        assert!(matches!(
            sessions.claim("s2", "alice", now, None),
            Claim::Unknown
        ));
    }

    #[test]
    fn an_owner_past_its_share_loses_its_own_oldest_session() {
        let sessions = sessions(limits(10, 2));
        open(&sessions, "bob", "b1");
        open(&sessions, "alice", "a1");
        open(&sessions, "alice", "a2");
        sessions.claim("a1", "alice", Instant::now(), None);
        sessions.release("a1", None);
        let evicted = open(&sessions, "alice", "a3");
        assert_eq!(evicted, vec![Arc::<str>::from("a2")]);
        assert_eq!(sessions.len(), 3);
        assert!(matches!(
            sessions.claim("b1", "bob", Instant::now(), None),
            Claim::Owned(_)
        ));
    }

    #[test]
    fn past_the_global_bound_new_sessions_are_refused_and_places_come_back() {
        let sessions = sessions(limits(2, 2));
        open(&sessions, "alice", "a1");
        let pending = sessions.admit("bob".into()).expect("one place left");
        assert_eq!(sessions.admit("carol".into()).err(), Some(NoRoom::Full));
        drop(pending);
        assert!(sessions.admit("carol".into()).is_ok());
    }

    #[test]
    fn an_id_in_flight_is_refused_until_its_request_is_done() {
        let sessions = sessions(limits(10, 10));
        open(&sessions, "alice", "s1");
        let now = Instant::now();
        assert!(matches!(
            sessions.claim("s1", "alice", now, Some(7)),
            Claim::Owned(_)
        ));
        assert!(matches!(
            sessions.claim("s1", "alice", now, Some(7)),
            Claim::DuplicateId
        ));
        assert!(matches!(
            sessions.claim("s1", "alice", now, Some(8)),
            Claim::Owned(_)
        ));
        sessions.release("s1", Some(7));
        assert!(matches!(
            sessions.claim("s1", "alice", now, Some(7)),
            Claim::Owned(_)
        ));
    }

    #[test]
    fn sessions_in_use_are_never_evicted() {
        let sessions = sessions(limits(10, 2));
        open(&sessions, "alice", "a1");
        open(&sessions, "alice", "a2");
        let now = Instant::now();
        sessions.claim("a1", "alice", now, None);
        sessions.claim("a2", "alice", now, None);
        assert_eq!(
            try_open(&sessions, "alice", "a3"),
            Err(NoRoom::OwnShareInUse)
        );
        sessions.release("a2", None);
        assert_eq!(
            try_open(&sessions, "alice", "a3"),
            Ok(vec![Arc::from("a2")])
        );
    }

    #[test]
    fn a_full_table_makes_room_from_whoever_holds_the_most() {
        let sessions = sessions(limits(4, 4));
        for id in ["m1", "m2", "m3"] {
            open(&sessions, "mallory", id);
        }
        open(&sessions, "trent", "t1");
        // Full: alice, holding none, gets mallory's oldest idle session.
        assert_eq!(
            try_open(&sessions, "alice", "a1"),
            Ok(vec![Arc::from("m1")])
        );
        assert_eq!(try_open(&sessions, "bob", "b1"), Ok(vec![Arc::from("m2")]));
        // Now everyone holds one: no one gives up a session for carol, and
        // mallory cannot take anyone's to grow.
        assert_eq!(try_open(&sessions, "carol", "c1"), Err(NoRoom::Full));
        assert_eq!(try_open(&sessions, "mallory", "m4"), Err(NoRoom::Full));
    }

    #[test]
    fn a_holder_whose_sessions_are_in_use_gives_none_up() {
        let sessions = sessions(limits(3, 3));
        open(&sessions, "mallory", "m1");
        open(&sessions, "mallory", "m2");
        open(&sessions, "trent", "t1");
        let now = Instant::now();
        sessions.claim("m1", "mallory", now, None);
        sessions.claim("m2", "mallory", now, None);
        assert_eq!(try_open(&sessions, "alice", "a1"), Err(NoRoom::Full));
        sessions.release("m2", None);
        assert_eq!(
            try_open(&sessions, "alice", "a1"),
            Ok(vec![Arc::from("m2")])
        );
    }

    #[tokio::test]
    async fn only_unused_sessions_expire() {
        let sessions = sessions(limits(10, 10));
        open(&sessions, "alice", "idle");
        open(&sessions, "alice", "streaming");
        sessions.claim("streaming", "alice", Instant::now(), None);
        sessions
            .expire(Instant::now() + Duration::from_secs(61))
            .await;
        let now = Instant::now();
        assert!(matches!(
            sessions.claim("idle", "alice", now, None),
            Claim::Unknown
        ));
        assert!(matches!(
            sessions.claim("streaming", "alice", now, None),
            Claim::Owned(_)
        ));
    }
}
