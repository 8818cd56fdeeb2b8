//! What one client may hold open at once: requests, and among them
//! long-lived event streams (a session's GET stream, a
//! `subscriptions/listen`), counted per client (a principal, or an
//! anonymous client's address) and per address.
//!
//! Without it, a few clients holding streams take every connection the
//! host serves. A request past its client's share is answered 429 at once;
//! a stream or request is counted until its answer has been sent.

use super::client_address::ClientAddress;
use super::envelope::JsonRpcMethod;
use super::{http_errors, protocol};
use crate::principal::Principal;
use axum::extract::Request;
use axum::response::Response;
use http::{Method, StatusCode};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// How much one client may hold open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Long-lived streams per client; [`PER_ADDRESS`] times that per address.
    pub streams: usize,
    /// Requests (streams included) per client; [`PER_ADDRESS`] times that
    /// per address.
    pub requests: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            streams: 32,
            requests: 128,
        }
    }
}

/// How many clients' shares one address holds: users behind one NAT
/// share an address (behind a trusted proxy, each has its own).
pub const PER_ADDRESS: usize = 4;

/// Who a request is counted as: its principal, or for clients nobody
/// authenticated (the local user without auth, public mode's anonymous)
/// its address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    Principal(Arc<str>),
    Address(IpAddr),
}

impl ClientKey {
    /// The key of `request`, from what the front door put in its extensions.
    pub fn of(request: &Request) -> ClientKey {
        let extensions = request.extensions();
        let principal = extensions.get::<Principal>();
        let address = extensions.get::<ClientAddress>();
        match (principal, address) {
            (Some(principal), _) if !principal.is_anonymous() && !principal.local => {
                ClientKey::Principal(principal.id.as_str().into())
            }
            (_, Some(address)) => ClientKey::Address(address.0),
            (_, None) => ClientKey::Principal(crate::principal::LOCAL_ID.into()),
        }
    }
}

/// The counts, by client and by address.
#[derive(Default)]
struct Counts {
    by_client: HashMap<ClientKey, Held>,
    by_address: HashMap<IpAddr, Held>,
}

#[derive(Default, Clone, Copy)]
struct Held {
    requests: usize,
    streams: usize,
}

/// The budget of every client.
pub struct Budget {
    limits: ClientLimits,
    counts: Mutex<Counts>,
}

/// One request counted in the [`Budget`]; given back on drop, once its
/// answer has been sent.
pub struct Counted {
    budget: Arc<Budget>,
    client: ClientKey,
    address: Option<IpAddr>,
    stream: bool,
}

/// Whether a request opens a long-lived stream.
fn is_stream(request: &Request) -> bool {
    request.method() == Method::GET
        || request
            .extensions()
            .get::<JsonRpcMethod>()
            .is_some_and(|method| *method == JsonRpcMethod::Listen)
}

impl Budget {
    pub fn new(limits: ClientLimits) -> Arc<Budget> {
        Arc::new(Budget {
            limits,
            counts: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a request of `client` from `address`, or says which share is
    /// full.
    fn take(
        self: &Arc<Self>,
        client: ClientKey,
        address: Option<IpAddr>,
        stream: bool,
    ) -> Result<Counted, &'static str> {
        let limits = self.limits;
        let mut counts = self.lock();
        let held = counts.by_client.get(&client).copied().unwrap_or_default();
        if stream && held.streams >= limits.streams {
            return Err(
                "too many event streams open for this client ([http] max_streams_per_client); \
                        close one first",
            );
        }
        if held.requests >= limits.requests {
            return Err(
                "too many requests open for this client ([http] max_requests_per_client); \
                        wait for some to finish",
            );
        }
        // A client known by its address is counted there once.
        let address = address.filter(|_| !matches!(client, ClientKey::Address(_)));
        if let Some(address) = address {
            let held = counts.by_address.get(&address).copied().unwrap_or_default();
            if stream && held.streams >= limits.streams * PER_ADDRESS {
                return Err("too many event streams open from this address \
                            ([http] max_streams_per_client, four times per address)");
            }
            if held.requests >= limits.requests * PER_ADDRESS {
                return Err("too many requests open from this address \
                            ([http] max_requests_per_client, four times per address)");
            }
            add(counts.by_address.entry(address).or_default(), stream);
        }
        add(counts.by_client.entry(client.clone()).or_default(), stream);
        Ok(Counted {
            budget: self.clone(),
            client,
            address,
            stream,
        })
    }
}

fn add(held: &mut Held, stream: bool) {
    held.requests += 1;
    held.streams += usize::from(stream);
}

/// Takes one request (and stream) back; whether nothing is held any more.
fn remove(held: &mut Held, stream: bool) -> bool {
    held.requests -= 1;
    held.streams -= usize::from(stream);
    held.requests == 0
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut counts = self.budget.lock();
        if let Some(held) = counts.by_client.get_mut(&self.client)
            && remove(held, self.stream)
        {
            counts.by_client.remove(&self.client);
        }
        if let Some(address) = self.address
            && let Some(held) = counts.by_address.get_mut(&address)
            && remove(held, self.stream)
        {
            counts.by_address.remove(&address);
        }
    }
}

/// The front door's budget step: counts the request against `client`'s
/// share and its address's, or refuses it with 429 when a share is full.
/// `next` gets the count to hold until the answer has been sent (the step
/// that wraps the answer's body keeps it there, so one wrapper holds all).
pub async fn hold(
    budget: &Arc<Budget>,
    request: Request,
    next: impl AsyncFnOnce(Request, Counted) -> Response,
) -> Response {
    let address = request
        .extensions()
        .get::<ClientAddress>()
        .map(|address| address.0);
    let stream = is_stream(&request);
    let counted = match budget.take(ClientKey::of(&request), address, stream) {
        Ok(counted) => counted,
        Err(why) => {
            let mut response = http_errors::jsonrpc_error(
                StatusCode::TOO_MANY_REQUESTS,
                protocol::SERVER_BUSY,
                why.into(),
            );
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(1));
            return response;
        }
    };
    let mut response = next(request, counted).await;
    if stream {
        response.extensions_mut().insert(LongLived);
    }
    response
}

/// Marks the answer to a long-lived stream: shutdown does not wait for it
/// to end as it waits for calls, it ends it.
#[derive(Clone, Copy, Debug)]
pub struct LongLived;

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    fn user(name: &str) -> ClientKey {
        ClientKey::Principal(name.into())
    }

    #[test]
    fn a_client_holds_its_share_of_streams_and_no_more() {
        let budget = Budget::new(ClientLimits {
            streams: 2,
            requests: 3,
        });
        let first = budget.take(user("alice"), ip(1), true).expect("one");
        let _second = budget.take(user("alice"), ip(1), true).expect("two");
        assert!(budget.take(user("alice"), ip(1), true).is_err());
        // Another client, and a plain request, still get in.
        assert!(budget.take(user("bob"), ip(2), true).is_ok());
        let third = budget.take(user("alice"), ip(1), false).expect("a request");
        assert!(budget.take(user("alice"), ip(1), false).is_err());
        drop(third);
        drop(first);
        assert!(budget.take(user("alice"), ip(1), true).is_ok());
    }

    #[test]
    fn many_clients_from_one_address_share_four_shares_and_counts_go_away() {
        let budget = Budget::new(ClientLimits {
            streams: 1,
            requests: 1,
        });
        let held: Vec<_> = (0..PER_ADDRESS)
            .map(|n| {
                budget
                    .take(user(&format!("user{n}")), ip(1), true)
                    .expect("a share")
            })
            .collect();
        assert!(budget.take(user("user9"), ip(1), true).is_err());
        assert!(budget.take(user("user9"), ip(2), true).is_ok());
        drop(held);
        let counts = budget.lock();
        assert!(counts.by_client.is_empty() && counts.by_address.is_empty());
    }
}
