//! Requests without a session (2026-07-28, which has none) in flight, so
//! that a `notifications/cancelled` naming one of them stops it.
//!
//! rmcp answers a sessionless notification by ignoring it (or, with
//! sessions on, refusing it for want of a session), so a client such as
//! mcp-remote that forwards a cancellation in its own POST would leave
//! the call running to its time limit. Here each sessionless request in
//! flight is kept, by its owner (who may cancel it) and its id, until its
//! answer has been sent; a cancellation from the same owner stops every
//! call with that id. Entries live exactly as long as their requests, so
//! the table is bounded by the connections the host accepts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Cancelled when the client ends a request's calls: by deleting the
/// session it came on (rmcp would let them run on for seconds, their
/// answers going nowhere), or, without a session, by cancelling the
/// request in a POST of its own. Put in the request's extensions for the
/// call pipeline.
#[derive(Clone, Default)]
pub struct CancelCalls(pub CancellationToken);

/// The sessionless requests in flight, by owner and request id.
#[derive(Default)]
pub struct SessionlessRequests {
    requests: Mutex<Requests>,
}

/// An owner and one of its request ids.
type Key = (Arc<str>, u64);

/// The requests kept under one key: each with its serial number.
type Same = Vec<(u64, CancellationToken)>;

#[derive(Default)]
struct Requests {
    by_id: HashMap<Key, Same>,
    next_serial: u64,
}

/// One request kept in [`SessionlessRequests`]; forgotten on drop (once its answer
/// has been sent).
pub struct Kept {
    in_flight: Arc<SessionlessRequests>,
    key: Key,
    serial: u64,
}

impl SessionlessRequests {
    /// Keeps the request `id` of `owner` while the returned guard lives;
    /// the token its calls stop by.
    pub fn keep(self: &Arc<Self>, owner: Arc<str>, id: u64) -> (Kept, CancelCalls) {
        let token = CancellationToken::new();
        let mut requests = self.lock();
        let serial = requests.next_serial;
        requests.next_serial += 1;
        let key = (owner, id);
        requests
            .by_id
            .entry(key.clone())
            .or_default()
            .push((serial, token.clone()));
        let kept = Kept {
            in_flight: self.clone(),
            key,
            serial,
        };
        (kept, CancelCalls(token))
    }

    /// Stops the calls of `owner`'s requests with the id `id`; how many.
    pub fn cancel(&self, owner: Arc<str>, id: u64) -> usize {
        let requests = self.lock();
        let Some(tokens) = requests.by_id.get(&(owner, id)) else {
            return 0;
        };
        for (_, token) in tokens {
            token.cancel();
        }
        tokens.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Requests> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let mut requests = self.in_flight.lock();
        if let Some(tokens) = requests.by_id.get_mut(&self.key) {
            tokens.retain(|(serial, _)| *serial != self.serial);
            if tokens.is_empty() {
                requests.by_id.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancellation_stops_only_its_owners_request_and_entries_go_with_their_requests() {
        let in_flight = Arc::new(SessionlessRequests::default());
        let (alice_kept, alice) = in_flight.keep("alice".into(), 1);
        let (_bob_kept, bob) = in_flight.keep("bob".into(), 1);
        assert_eq!(in_flight.cancel("alice".into(), 2), 0);
        assert_eq!(in_flight.cancel("alice".into(), 1), 1);
        assert!(alice.0.is_cancelled());
        assert!(!bob.0.is_cancelled());
        drop(alice_kept);
        assert_eq!(in_flight.cancel("alice".into(), 1), 0);
        assert_eq!(in_flight.lock().by_id.len(), 1);
    }
}
