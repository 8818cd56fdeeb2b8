//! The session table in memory: who owns each Streamable HTTP session,
//! when its owner last used it, what is open on it, and the bounds on how
//! many there are.
//!
//! [`SessionTable`]'s guarantees, which any backend keeps:
//! - a session is claimed only by the principal that opened it;
//! - at most [`SessionLimits::max`] sessions (open or being opened) and
//!   [`SessionLimits::per_owner`] per owner: an owner past its share loses
//!   its own least recently used idle session, never someone else's; with
//!   the table full, room is made from whoever holds the most, and only if
//!   that is more than the newcomer would then hold;
//! - a session with a request or stream open on it is never evicted or
//!   expired.

use super::{Claim, NoRoom, SessionTable};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

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

/// Every session of this process, in its memory.
pub struct MemorySessions {
    limits: SessionLimits,
    table: Mutex<Table>,
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
    /// Cancelled when the session ends: what its calls still running are
    /// stopped by.
    ended: CancellationToken,
}

/// What one owner holds, as [`MemorySessions::admit`] weighs it.
#[derive(Default)]
struct Holding<'a> {
    count: usize,
    /// Its least recently used session with nothing open on it.
    oldest_idle: Option<(Instant, &'a Arc<str>)>,
}

impl MemorySessions {
    /// An empty table held to `limits`.
    pub fn new(limits: SessionLimits) -> MemorySessions {
        MemorySessions {
            limits,
            table: Mutex::new(Table::default()),
        }
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
}

impl SessionTable for MemorySessions {
    fn limits(&self) -> SessionLimits {
        self.limits
    }

    fn admit(&self, owner: &Arc<str>) -> Result<Vec<Arc<str>>, NoRoom> {
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
        let own = held.get(owner).map_or(0, |holding| holding.count);
        let mut evicted: Vec<Arc<str>> = Vec::new();
        if own >= self.limits.per_owner {
            let mut idle: Vec<(Instant, Arc<str>)> = table
                .sessions
                .iter()
                .filter(|(_, entry)| entry.owner == *owner && entry.open == 0)
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
                Some((count, id, holder)) if holder != owner && count > own + 1 => {
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
        Ok(evicted)
    }

    fn bind(&self, id: Arc<str>, owner: Arc<str>, ended: CancellationToken) {
        let mut table = self.lock();
        table.opening = table.opening.saturating_sub(1);
        table.sessions.insert(
            id,
            Entry {
                owner,
                last_used: Instant::now(),
                open: 0,
                ids: HashSet::new(),
                ended,
            },
        );
    }

    fn abandon(&self) {
        let mut table = self.lock();
        table.opening = table.opening.saturating_sub(1);
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

    fn expire(&self, now: Instant) -> Vec<Arc<str>> {
        let idle = self.limits.idle;
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
    }

    fn remove(&self, id: &str) -> Option<CancellationToken> {
        self.lock().sessions.remove(id).map(|entry| entry.ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_owner: usize) -> SessionLimits {
        SessionLimits {
            max,
            per_owner,
            idle: Duration::from_secs(60),
        }
    }

    fn open(sessions: &MemorySessions, owner: &str, id: &str) -> Vec<Arc<str>> {
        try_open(sessions, owner, id).expect("room")
    }

    fn try_open(sessions: &MemorySessions, owner: &str, id: &str) -> Result<Vec<Arc<str>>, NoRoom> {
        let evicted = sessions.admit(&owner.into())?;
        sessions.bind(id.into(), owner.into(), CancellationToken::new());
        Ok(evicted)
    }

    #[test]
    fn a_session_is_usable_only_by_its_owner() {
        let sessions = MemorySessions::new(limits(10, 10));
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
        let sessions = MemorySessions::new(limits(10, 2));
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
        let sessions = MemorySessions::new(limits(2, 2));
        open(&sessions, "alice", "a1");
        sessions.admit(&"bob".into()).expect("one place left");
        assert_eq!(sessions.admit(&"carol".into()).err(), Some(NoRoom::Full));
        sessions.abandon();
        assert!(sessions.admit(&"carol".into()).is_ok());
    }

    #[test]
    fn an_id_in_flight_is_refused_until_its_request_is_done() {
        let sessions = MemorySessions::new(limits(10, 10));
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
        let sessions = MemorySessions::new(limits(10, 2));
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
        let sessions = MemorySessions::new(limits(4, 4));
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
        let sessions = MemorySessions::new(limits(3, 3));
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

    #[test]
    fn only_unused_sessions_expire() {
        let sessions = MemorySessions::new(limits(10, 10));
        open(&sessions, "alice", "idle");
        open(&sessions, "alice", "streaming");
        sessions.claim("streaming", "alice", Instant::now(), None);
        let expired = sessions.expire(Instant::now() + Duration::from_secs(61));
        assert_eq!(expired, vec![Arc::<str>::from("idle")]);
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

    #[test]
    fn a_removed_session_hands_back_the_token_that_stops_its_calls() {
        let sessions = MemorySessions::new(limits(10, 10));
        let ended = CancellationToken::new();
        sessions.admit(&"alice".into()).expect("room");
        sessions.bind("s1".into(), "alice".into(), ended.clone());
        let token = sessions.remove("s1").expect("it was there");
        token.cancel();
        assert!(ended.is_cancelled());
        assert!(sessions.remove("s1").is_none());
        assert!(matches!(
            sessions.claim("s1", "alice", Instant::now(), None),
            Claim::Unknown
        ));
    }
}
