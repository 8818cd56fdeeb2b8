//! The `no-order-execution` guardrail: no plugin sends a request that could
//! place, change or cancel an order, whatever its rules allow.
//!
//! It is matched on the canonical request (see [`super::canonical`]), so an
//! encoded, dotted or parameterised path is judged as the server would read
//! it. A request is an order request when its method writes (anything but
//! GET, HEAD and OPTIONS) and
//!
//! - any path segment, decoded and in any case, holds the word `order` or
//!   `orders` (`/orders`, `/v2/Orders/42`, `/api/orders.json`,
//!   `/bulk-orders`), or
//! - the path matches one of the operator's extra patterns, or
//! - the host is one of the operator's broker hosts, where every write is
//!   refused.

use super::canonical::CanonicalUrl;
use super::{HostPattern, glob_match};
use serde::Deserialize;
use std::fmt;

/// The guardrail's name in `policies/host.toml`, errors and the audit log.
pub const NAME: &str = "no-order-execution";

/// `[guardrails.no-order-execution]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersSpec {
    /// The operator's switch; on unless set to false.
    #[serde(default = "on")]
    pub enabled: bool,
    /// More order routes, as path patterns (`*` matches anything), beyond
    /// every path with an `order` or `orders` segment.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Broker hosts (`api.broker.example`, `*.broker.example`) where every
    /// write is refused, whatever its path.
    #[serde(default)]
    pub brokers: Vec<String>,
}

fn on() -> bool {
    true
}

impl Default for OrdersSpec {
    fn default() -> Self {
        OrdersSpec {
            enabled: true,
            paths: Vec::new(),
            brokers: Vec::new(),
        }
    }
}

/// The guardrail in force.
#[derive(Clone, Debug, Default)]
pub struct OrderGuard {
    /// Extra path patterns, lower case.
    paths: Vec<String>,
    brokers: Vec<HostPattern>,
}

/// Why a request counts as an order request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderRoute {
    /// A segment holds `order` or `orders`.
    Segment(String),
    /// The path matches an operator pattern.
    Pattern(String),
    /// The host is a broker's.
    Broker,
}

impl fmt::Display for OrderRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderRoute::Segment(segment) => write!(f, "the path segment {segment:?} names orders"),
            OrderRoute::Pattern(pattern) => write!(f, "the path matches {pattern}"),
            OrderRoute::Broker => f.write_str("every write to a broker host is refused"),
        }
    }
}

/// Whether `method` can change something on the server: anything but the
/// safe methods of RFC 9110 that a broker API answers (GET, HEAD, OPTIONS).
/// Unknown methods count as writes.
pub fn is_write(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// Whether a decoded, lower-case segment names orders: one of its words
/// (runs of letters and digits) is `order` or `orders`.
fn names_orders(segment: &str) -> bool {
    segment
        .split(|c: char| !c.is_alphanumeric())
        .any(|word| word == "order" || word == "orders")
}

impl OrderGuard {
    /// The guardrail `spec` describes; `None` when the operator turned it off.
    pub fn resolve(spec: &OrdersSpec) -> Result<Option<OrderGuard>, String> {
        if !spec.enabled {
            return Ok(None);
        }
        let bad = |why: String| format!("[guardrails.{NAME}] {why}");
        let brokers = spec
            .brokers
            .iter()
            .map(|host| HostPattern::parse(host).map_err(|e| bad(format!("broker {host:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let paths = spec
            .paths
            .iter()
            .map(|path| {
                if path.starts_with('/') {
                    Ok(path.to_lowercase())
                } else {
                    Err(bad(format!("path {path:?} must start with /")))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(OrderGuard { paths, brokers }))
    }

    /// Why `method` on `url` is an order request, if it is.
    pub fn route(&self, method: &str, url: &CanonicalUrl) -> Option<OrderRoute> {
        if !is_write(method) {
            return None;
        }
        if let Some(segment) = url.segments.iter().find(|s| names_orders(s)) {
            return Some(OrderRoute::Segment(segment.clone()));
        }
        let path = url.path.to_lowercase();
        if let Some(pattern) = self.paths.iter().find(|p| glob_match(p, &path)) {
            return Some(OrderRoute::Pattern(pattern.clone()));
        }
        self.brokers
            .iter()
            .any(|broker| broker.matches(&url.host))
            .then_some(OrderRoute::Broker)
    }
}

impl fmt::Display for OrderGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "refuses every write (any method but GET, HEAD and OPTIONS) to a path with an \
             `order` or `orders` segment, on any host",
        )?;
        if !self.paths.is_empty() {
            write!(f, "; also to {}", self.paths.join(", "))?;
        }
        if !self.brokers.is_empty() {
            let hosts: Vec<String> = self.brokers.iter().map(ToString::to_string).collect();
            write!(f, "; and every write to {}", hosts.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> CanonicalUrl {
        CanonicalUrl::parse(&text.parse().unwrap()).unwrap()
    }

    fn guard(paths: &[&str], brokers: &[&str]) -> OrderGuard {
        let spec = OrdersSpec {
            enabled: true,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            brokers: brokers.iter().map(|b| b.to_string()).collect(),
        };
        OrderGuard::resolve(&spec).unwrap().unwrap()
    }

    #[test]
    fn writes_to_any_order_segment_are_order_requests() {
        let guard = guard(&[], &[]);
        for (method, target) in [
            ("POST", "http://x/orders"),
            ("POST", "http://x/%6Frders"),
            ("POST", "http://x/v%32/orders"),
            ("PUT", "http://x/ORDERS/1"),
            ("PATCH", "http://x/api/v1/Orders/1"),
            ("DELETE", "http://x/v2/orders/42"),
            ("POST", "http://x/api/orders.json"),
            ("POST", "http://x/v2/bulk-orders"),
            ("POST", "http://x/order"),
            ("POST", "http://x/v2/bars/../orders"),
            ("FROB", "http://x/orders"),
            ("TRACE", "http://x/orders"),
        ] {
            assert!(
                guard.route(method, &url(target)).is_some(),
                "{method} {target}"
            );
        }
        for (method, target) in [
            ("GET", "http://x/orders"),
            ("HEAD", "http://x/v2/orders"),
            ("OPTIONS", "http://x/orders"),
            ("POST", "http://x/positions"),
            ("POST", "http://x/orderbook"),
            ("POST", "http://x/reorders"),
        ] {
            assert!(
                guard.route(method, &url(target)).is_none(),
                "{method} {target}"
            );
        }
    }

    #[test]
    fn operator_patterns_and_broker_hosts_widen_it() {
        let guard = guard(&["/api/trade*"], &["*.broker.example"]);
        let post = |target: &str| guard.route("POST", &url(target));
        assert_eq!(
            post("http://x/API/Trade/1"),
            Some(OrderRoute::Pattern("/api/trade*".into()))
        );
        assert_eq!(
            post("http://api.broker.example/anything"),
            Some(OrderRoute::Broker)
        );
        assert_eq!(post("http://broker.example/anything"), None);
        assert_eq!(
            guard.route("GET", &url("http://api.broker.example/x")),
            None
        );
    }

    #[test]
    fn turned_off_it_is_absent_and_bad_specs_are_named() {
        let off = OrdersSpec {
            enabled: false,
            ..OrdersSpec::default()
        };
        assert!(OrderGuard::resolve(&off).unwrap().is_none());
        let bad = OrdersSpec {
            paths: vec!["orders".into()],
            ..OrdersSpec::default()
        };
        assert!(OrderGuard::resolve(&bad).unwrap_err().contains(NAME));
    }
}
