//! The `no-order-execution` guardrail: no plugin sends a request that could
//! place, change or cancel an order, or close a position, whatever its rules
//! allow.
//!
//! It has two lines, both judged on the canonical request (see
//! [`super::canonical`]), so an encoded, dotted or parameterised path is
//! judged as the server would read it:
//!
//! 1. **Declared brokers are default-deny** ([`super::brokers`]): a request
//!    whose destination resolves to a broker's address is refused unless it
//!    is a GET or HEAD to one of the broker's read routes. This is the line
//!    that holds: it needs no guess about what a path means.
//! 2. **Words, on every other host**: a request is refused when a word of
//!    its path — segments split at punctuation, at lower-to-upper case
//!    changes and between letters and digits (`AddOrder` is `add order`,
//!    `ordersV2` is `orders v 2`) — is in [`WRITE_WORDS`] and its method
//!    writes (anything but GET, HEAD and OPTIONS), or is in [`READ_WORDS`]
//!    (or such a word is in its query) whatever the method, or the path
//!    matches one of the operator's extra patterns. It cannot see an order
//!    in a body (a GraphQL mutation, a JSON-RPC call, a batch), a word glued
//!    into lower-case text (`neworder`), or a vocabulary it does not know:
//!    declare brokers.

use super::brokers::{Broker, BrokerSpec};
use super::canonical::CanonicalUrl;
use super::glob_match;
use serde::Deserialize;
use std::fmt;

/// The guardrail's name in `policies/host.toml`, errors and the audit log.
pub const NAME: &str = "no-order-execution";

/// Words that name an order or a position change: refused in the path of
/// any request that writes.
pub const WRITE_WORDS: &[&str] = &[
    "order",
    "orders",
    "trade",
    "trades",
    "trading",
    "execute",
    "execution",
    "executions",
    "exec",
    "liquidate",
    "liquidation",
    "exercise",
    "close",
    "buy",
    "sell",
    "deal",
    "deals",
    "place",
    "submit",
    "cancel",
    "position",
    "positions",
];

/// Imperative words that place or undo an order even on a GET (some
/// exchanges take orders as GETs): refused in the path or the query of any
/// request.
pub const READ_WORDS: &[&str] = &[
    "buy",
    "sell",
    "execute",
    "liquidate",
    "exercise",
    "place",
    "submit",
    "cancel",
];

/// `[guardrails.no-order-execution]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersSpec {
    /// The operator's switch; on unless set to false.
    #[serde(default = "on")]
    pub enabled: bool,
    /// More order routes, as path patterns (`*` matches anything), beyond
    /// the words.
    #[serde(default)]
    pub paths: Vec<String>,
    /// The brokers: default-deny endpoints with their read routes.
    #[serde(default)]
    pub brokers: Vec<BrokerSpec>,
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
    /// The declared brokers.
    pub brokers: Vec<Broker>,
}

/// Why a request counts as an order request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderRoute {
    /// A word of the path (or query) names an order action.
    Word { word: String, part: String },
    /// The path matches an operator pattern.
    Pattern(String),
    /// The destination is a declared broker, and the request is not one of
    /// its read routes.
    Broker(String),
}

impl fmt::Display for OrderRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderRoute::Word { word, part } => {
                write!(f, "the word {word:?} in {part:?} names an order action")
            }
            OrderRoute::Pattern(pattern) => write!(f, "the path matches {pattern}"),
            OrderRoute::Broker(name) => write!(
                f,
                "the destination is the broker {name:?}, where only its read routes are allowed"
            ),
        }
    }
}

/// Whether `method` can change something on the server: anything but the
/// safe methods of RFC 9110 that a broker API answers (GET, HEAD, OPTIONS).
/// Unknown methods count as writes.
pub fn is_write(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// The words of `text`, lower case: runs of letters and digits, split where
/// lower case turns upper (`addOrder`), where an upper-case run gives way to
/// a capitalised word (`HTTPOrder`), and between letters and digits
/// (`orders2`).
pub fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for run in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let chars: Vec<char> = run.chars().collect();
        let mut word = String::new();
        for (i, &c) in chars.iter().enumerate() {
            let previous = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match previous {
                None => false,
                Some(p) => {
                    (p.is_ascii_lowercase() && c.is_ascii_uppercase())
                        || (p.is_ascii_digit() != c.is_ascii_digit())
                        || (p.is_ascii_uppercase()
                            && c.is_ascii_uppercase()
                            && next.is_some_and(|n| n.is_ascii_lowercase()))
                }
            };
            if boundary && !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            word.push(c.to_ascii_lowercase());
        }
        if !word.is_empty() {
            words.push(word);
        }
    }
    words
}

/// The first word of `text` in `vocabulary`.
fn word_in(text: &str, vocabulary: &[&str]) -> Option<String> {
    words(text)
        .into_iter()
        .find(|word| vocabulary.contains(&word.as_str()))
}

impl OrderGuard {
    /// The guardrail `spec` describes, broker variables read through
    /// `lookup`; `None` when the operator turned it off.
    pub fn resolve(
        spec: &OrdersSpec,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<OrderGuard>, String> {
        if !spec.enabled {
            return Ok(None);
        }
        let bad = |why: String| format!("[guardrails.{NAME}] {why}");
        let brokers = spec
            .brokers
            .iter()
            .map(|broker| Broker::resolve(broker, lookup).map_err(bad))
            .collect::<Result<Vec<_>, _>>()?;
        let mut names: Vec<&str> = brokers.iter().map(|b| b.name.as_str()).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(bad(format!("two brokers are named {:?}", twice[0])));
        }
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

    /// The broker named `name`, if declared.
    pub fn broker(&self, name: &str) -> Option<&Broker> {
        self.brokers.iter().find(|broker| broker.name == name)
    }

    /// Why `method` on `url` is an order request by its words or the
    /// operator's patterns, if it is. (Brokers are judged by address, once
    /// the destination is resolved.)
    pub fn route(&self, method: &str, url: &CanonicalUrl) -> Option<OrderRoute> {
        let vocabulary = match is_write(method) {
            true => WRITE_WORDS,
            false => READ_WORDS,
        };
        for segment in &url.segments {
            if let Some(word) = word_in(segment, vocabulary) {
                return Some(OrderRoute::Word {
                    word,
                    part: segment.clone(),
                });
            }
        }
        if let Some(query) = &url.query {
            let decoded = super::meaning::decode_query(query);
            if let Some(word) = word_in(&decoded, READ_WORDS) {
                return Some(OrderRoute::Word {
                    word,
                    part: "the query".into(),
                });
            }
        }
        if !is_write(method) {
            return None;
        }
        let path = url.path.to_lowercase();
        self.paths
            .iter()
            .find(|p| glob_match(p, &path))
            .map(|pattern| OrderRoute::Pattern(pattern.clone()))
    }
}

impl fmt::Display for OrderGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for broker in &self.brokers {
            let endpoints: Vec<String> = broker.endpoints.iter().map(ToString::to_string).collect();
            let routes: Vec<&str> = broker.routes.iter().map(|r| r.text()).collect();
            write!(
                f,
                "the broker {:?} at {} (every spelling of those addresses) takes only {}; ",
                broker.name,
                endpoints.join(", "),
                match routes.is_empty() {
                    true => "nothing".to_owned(),
                    false => format!("GET/HEAD of {}", routes.join(", ")),
                }
            )?;
        }
        write!(
            f,
            "on other hosts, a write whose path has one of the words {} and any request whose \
             path or query has one of {} is refused",
            WRITE_WORDS.join(" "),
            READ_WORDS.join(" ")
        )?;
        if !self.paths.is_empty() {
            write!(f, "; so are writes to {}", self.paths.join(", "))?;
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

    fn guard(paths: &[&str]) -> OrderGuard {
        let spec = OrdersSpec {
            enabled: true,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            brokers: Vec::new(),
        };
        OrderGuard::resolve(&spec, &|_| None).unwrap().unwrap()
    }

    #[test]
    fn words_split_at_case_digits_and_punctuation() {
        assert_eq!(words("AddOrder"), ["add", "order"]);
        assert_eq!(words("ordersV2"), ["orders", "v", "2"]);
        assert_eq!(words("placeOrder"), ["place", "order"]);
        assert_eq!(words("HTTPOrderSend"), ["http", "order", "send"]);
        assert_eq!(words("order.place"), ["order", "place"]);
        assert_eq!(words("bulk-orders_v3"), ["bulk", "orders", "v", "3"]);
        assert_eq!(words("orderbook"), ["orderbook"]);
        assert_eq!(words(""), Vec::<String>::new());
    }

    #[test]
    fn writes_naming_an_order_action_are_order_requests() {
        let guard = guard(&[]);
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
            ("POST", "http://x/0/private/AddOrder"),
            ("POST", "http://x/ordersV2"),
            ("POST", "http://x/trade"),
            ("POST", "http://x/execute"),
            ("POST", "http://x/positions/close"),
            ("DELETE", "http://x/v2/positions"),
            ("DELETE", "http://x/v2/positions/AAPL"),
            ("POST", "http://x/api/placeOrder"),
            ("POST", "http://x/rpc/order.place"),
            ("POST", "http://x/v1/liquidate"),
            ("POST", "http://x/options/exercise"),
            ("POST", "http://x/fx/deal"),
            ("POST", "http://x/iserver/reply/cancelOrder"),
            ("POST", "http://x/spot/Buy"),
            ("PUT", "http://x/v2/sell"),
            ("POST", "http://x/v3/trades/1/close"),
            ("GET", "http://x/api/v2/private/buy"),
            ("GET", "http://x/api/v2/private/sell"),
            ("GET", "http://x/executeOrder"),
            ("GET", "http://x/api?command=buy"),
            ("GET", "http://x/api?action=SELL&pair=btc"),
            ("GET", "http://x/api?op=%70lace"),
            ("HEAD", "http://x/cancel"),
            ("OPTIONS", "http://x/buy"),
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
            ("GET", "http://x/v2/positions"),
            ("GET", "http://x/v2/stocks/AAPL/trades"),
            ("POST", "http://x/orderbook"),
            ("POST", "http://x/reorders"),
            ("POST", "http://x/v2/backtests"),
            ("POST", "http://x/api/strategies"),
            ("GET", "http://x/bars?close=1"),
        ] {
            assert!(
                guard.route(method, &url(target)).is_none(),
                "{method} {target}"
            );
        }
    }

    #[test]
    fn operator_patterns_widen_it() {
        let guard = guard(&["/api/rebalance*"]);
        assert_eq!(
            guard.route("POST", &url("http://x/API/Rebalance/1")),
            Some(OrderRoute::Pattern("/api/rebalance*".into()))
        );
        assert_eq!(guard.route("GET", &url("http://x/api/rebalance")), None);
    }

    #[test]
    fn turned_off_it_is_absent_and_bad_specs_are_named() {
        let off = OrdersSpec {
            enabled: false,
            ..OrdersSpec::default()
        };
        assert!(OrderGuard::resolve(&off, &|_| None).unwrap().is_none());
        let bad = OrdersSpec {
            paths: vec!["orders".into()],
            ..OrdersSpec::default()
        };
        assert!(
            OrderGuard::resolve(&bad, &|_| None)
                .unwrap_err()
                .contains(NAME)
        );
        let twice = OrdersSpec {
            brokers: vec![BrokerSpec::Host("a".into()), BrokerSpec::Host("a".into())],
            ..OrdersSpec::default()
        };
        assert!(
            OrderGuard::resolve(&twice, &|_| None)
                .unwrap_err()
                .contains("two brokers")
        );
    }

    #[test]
    fn brokers_are_read_from_toml_as_hosts_or_tables() {
        let spec: OrdersSpec = toml::from_str(
            r#"
            brokers = ["api.broker.example", { name = "paper", hosts = ["localhost:8787"], preset = "alpaca", read = ["/v2/watchlists"] }]
            "#,
        )
        .unwrap();
        let guard = OrderGuard::resolve(&spec, &|_| None).unwrap().unwrap();
        assert_eq!(guard.brokers.len(), 2);
        assert!(
            guard
                .broker("paper")
                .unwrap()
                .allows("GET", "/v2/watchlists")
        );
        assert!(!guard.brokers[0].allows("GET", "/anything"));
        let error = toml::from_str::<OrdersSpec>("brokers = [{ name = \"x\", host = [] }]")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `host`"), "{error}");
    }
}
