//! Which address a request comes from, as every per-address limit counts
//! it: the connection's peer, or, when the peer is a proxy the operator
//! trusts (`[http] trusted_proxies`), the client address it forwarded.
//!
//! Without the setting, a proxy in front of the host is one address, and
//! every per-address limit would treat all its users as one client; with
//! it, a client behind an untrusted hop cannot pick its own address,
//! because `X-Forwarded-For` is read from the right and only past proxies
//! the operator named.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The address a request is counted under; put in its extensions by the
/// front door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(pub IpAddr);

/// The proxies whose `X-Forwarded-For` the host believes.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// The longest forwarded chain the host reads; entries further left are
/// the client's own claims anyway.
const MAX_HOPS: usize = 32;

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        TrustedProxies(networks)
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client address of a request from `peer` with `headers`: `peer`,
    /// unless it is a trusted proxy; then the rightmost forwarded address
    /// that is not one (or the leftmost, when all are). A chain that does
    /// not parse counts as the peer's own request.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddress {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return ClientAddress(peer);
        }
        let mut hops: Vec<IpAddr> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(text) = value.to_str() else {
                return ClientAddress(peer);
            };
            for hop in text.split(',') {
                match hop.trim().parse::<IpAddr>() {
                    Ok(address) if hops.len() < MAX_HOPS => hops.push(address.to_canonical()),
                    Ok(_) => {}
                    Err(_) => return ClientAddress(peer),
                }
            }
        }
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            client = hop;
            if !self.trusts(hop) {
                break;
            }
        }
        ClientAddress(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ])
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_peer_may_name_the_client() {
        let headers = forwarded(&["203.0.113.7"]);
        assert_eq!(
            proxies().client_of(ip("198.51.100.1"), &headers).0,
            ip("198.51.100.1")
        );
        assert_eq!(
            proxies().client_of(ip("10.1.2.3"), &headers).0,
            ip("203.0.113.7")
        );
        assert_eq!(
            TrustedProxies::default()
                .client_of(ip("10.1.2.3"), &headers)
                .0,
            ip("10.1.2.3")
        );
    }

    #[test]
    fn the_chain_is_read_from_the_right_past_trusted_hops_only() {
        // The client wrote "1.1.1.1" itself; the trusted proxies saw 203.0.113.7.
        let headers = forwarded(&["1.1.1.1, 203.0.113.7", "10.0.0.5"]);
        assert_eq!(
            proxies().client_of(ip("::1"), &headers).0,
            ip("203.0.113.7")
        );
        // A chain of trusted proxies only: the leftmost.
        assert_eq!(
            proxies().client_of(ip("::1"), &forwarded(&["10.0.0.9"])).0,
            ip("10.0.0.9")
        );
        // No header, or one that does not parse: the proxy itself.
        assert_eq!(
            proxies().client_of(ip("10.0.0.1"), &HeaderMap::new()).0,
            ip("10.0.0.1")
        );
        assert_eq!(
            proxies()
                .client_of(ip("10.0.0.1"), &forwarded(&["unknown"]))
                .0,
            ip("10.0.0.1")
        );
    }

    #[test]
    fn mapped_addresses_are_the_addresses_they_map() {
        let headers = forwarded(&["::ffff:203.0.113.7"]);
        assert_eq!(
            proxies().client_of(ip("::ffff:10.0.0.1"), &headers).0,
            ip("203.0.113.7")
        );
    }
}
