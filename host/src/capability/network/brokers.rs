//! Declared brokers: default-deny endpoints.
//!
//! The operator names each broker's endpoints (host names or addresses,
//! optionally with a port, or the variable holding its base URL) and the
//! read routes plugins may use there. A request whose destination resolves
//! to one of a broker's addresses is refused unless it is a GET or HEAD,
//! without a body, to one of those routes — whatever its path spells,
//! whatever name or address the plugin used for the host. Everything else a
//! broker could do (place, replace, cancel or confirm orders, close
//! positions, batch calls, GraphQL or JSON-RPC posts) is simply not listed.
//!
//! Addresses are compared, not names: `localhost`, `127.0.0.1`, `[::1]`,
//! `[::ffff:127.0.0.1]`, `0.0.0.0`, `2130706433` and the machine's own
//! interface addresses all reach a server on this machine, so a broker on
//! this machine matches every one of them.

use super::canonical::CanonicalUrl;
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr, UdpSocket};

/// One `[[guardrails.no-order-execution.brokers]]` table as written, or a
/// bare host string (every request to it refused).
#[derive(Debug, Clone)]
pub enum BrokerSpec {
    Host(String),
    Table(BrokerTable),
}

impl<'de> Deserialize<'de> for BrokerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through a value, so a table gets the table's own error messages
        // (unknown field, wrong type) rather than "no variant matched".
        let value = toml::Value::deserialize(deserializer)?;
        match value {
            toml::Value::String(host) => Ok(BrokerSpec::Host(host)),
            table @ toml::Value::Table(_) => BrokerTable::deserialize(table)
                .map(BrokerSpec::Table)
                .map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "a broker is a host name or a table with `name`, `hosts` and `read`, not {}",
                other.type_str()
            ))),
        }
    }
}

/// A broker declared as a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerTable {
    /// What messages and plugin policies call it.
    pub name: String,
    /// `host`, `host:port` or `[v6]:port`; without a port, every port.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// A host variable holding the broker's base URL (`BROKER_URL`): its
    /// host and port are one more endpoint, read when the policies load.
    #[serde(default)]
    pub from_env: Option<String>,
    /// Read routes of a well-known broker API (see [`PRESETS`]).
    #[serde(default)]
    pub preset: Option<String>,
    /// More read routes: `/v2/account`, `GET /v2/positions/{symbol}`,
    /// `HEAD /status`, `/v2/stocks/*`.
    #[serde(default)]
    pub read: Vec<String>,
}

/// Read routes of common broker APIs, for `preset = "…"`. Each lists what
/// research needs to read — account, positions, quotes and bars — and
/// nothing that places, changes or cancels an order (listing orders is left
/// out as well: add it with `read` if a plugin needs it).
pub const PRESETS: &[(&str, &[&str])] = &[
    (
        // Alpaca Trading API v2 and Market Data API v2.
        "alpaca",
        &[
            "/v2/account",
            "/v2/account/portfolio/history",
            "/v2/positions",
            "/v2/positions/{symbol}",
            "/v2/assets",
            "/v2/assets/{symbol}",
            "/v2/clock",
            "/v2/calendar",
            "/v2/stocks/*",
        ],
    ),
    (
        // OANDA v20 REST.
        "oanda",
        &[
            "/v3/accounts",
            "/v3/accounts/{account}",
            "/v3/accounts/{account}/summary",
            "/v3/accounts/{account}/positions",
            "/v3/accounts/{account}/openPositions",
            "/v3/accounts/{account}/positions/{instrument}",
            "/v3/accounts/{account}/pricing",
            "/v3/accounts/{account}/instruments",
            "/v3/instruments/{instrument}/candles",
        ],
    ),
    (
        // Tradier brokerage API v1.
        "tradier",
        &[
            "/v1/user/profile",
            "/v1/accounts/{account}/balances",
            "/v1/accounts/{account}/positions",
            "/v1/markets/quotes",
            "/v1/markets/history",
            "/v1/markets/clock",
        ],
    ),
    (
        // Interactive Brokers Client Portal Web API.
        "ibkr-client-portal",
        &[
            "/v1/api/portfolio/accounts",
            "/v1/api/portfolio/{account}/positions/{page}",
            "/v1/api/portfolio/{account}/summary",
            "/v1/api/portfolio/{account}/ledger",
            "/v1/api/iserver/marketdata/snapshot",
            "/v1/api/iserver/marketdata/history",
        ],
    ),
];

/// Where a broker listens: a host (name or address) and maybe a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Lower case; an IPv6 address without brackets.
    pub host: String,
    /// `None`: every port.
    pub port: Option<u16>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        match self.port {
            Some(port) => write!(f, "{host}:{port}"),
            None => f.write_str(&host),
        }
    }
}

impl Endpoint {
    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let text = text.trim().to_ascii_lowercase();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or("unclosed [")?;
            match after.strip_prefix(':') {
                Some(port) => (host.to_owned(), Some(port.to_owned())),
                None if after.is_empty() => (host.to_owned(), None),
                None => return Err(format!("unexpected {after:?} after the address")),
            }
        } else if text.matches(':').count() > 1 {
            (text.clone(), None)
        } else {
            match text.split_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port.to_owned())),
                None => (text.clone(), None),
            }
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_');
        if host.is_empty() || !host.chars().all(valid) {
            return Err(format!("{text:?} is not a host name or an address"));
        }
        let port = match port {
            Some(port) => Some(
                port.parse::<u16>()
                    .map_err(|_| format!("bad port {port:?}"))?,
            ),
            None => None,
        };
        Ok(Endpoint { host, port })
    }

    /// The endpoint named by a base URL (`http://127.0.0.1:8787/api`).
    pub fn of_url(url: &str) -> Result<Endpoint, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
        let canonical =
            CanonicalUrl::parse(&uri).map_err(|e| format!("{url:?} is not a plain URL: {e}"))?;
        Ok(Endpoint {
            host: canonical.host,
            port: Some(canonical.port),
        })
    }
}

/// One segment of a read route.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// This text exactly.
    Literal(String),
    /// `{name}`: any one segment.
    Any,
}

/// A route plugins may read on a broker: GET and HEAD only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRoute {
    segments: Vec<Segment>,
    /// Ends in `/*`: any further segments (at least one) may follow.
    prefix: bool,
    /// Only HEAD (`HEAD /status`); otherwise GET and HEAD.
    head_only: bool,
    text: String,
}

impl ReadRoute {
    /// Parses `[GET|HEAD|GET,HEAD] /path/{any}/*`.
    pub fn parse(text: &str) -> Result<ReadRoute, String> {
        let bad = |why: &str| format!("read route {text:?}: {why}");
        let trimmed = text.trim();
        let (methods, path) = match trimmed.split_once(char::is_whitespace) {
            Some((methods, path)) => (methods.to_ascii_uppercase(), path.trim()),
            None => ("GET,HEAD".to_owned(), trimmed),
        };
        let head_only = match methods.as_str() {
            "GET" | "GET,HEAD" | "HEAD,GET" => false,
            "HEAD" => true,
            _ => return Err(bad("a broker's read routes allow GET and HEAD only")),
        };
        let rest = path
            .strip_prefix('/')
            .ok_or_else(|| bad("the path must start with /"))?;
        let (rest, prefix) = match rest.strip_suffix("/*") {
            Some(rest) => (rest, true),
            None if rest == "*" => ("", true),
            None => (rest, false),
        };
        let mut segments = Vec::new();
        for piece in rest.split('/').filter(|_| !rest.is_empty()) {
            let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
            if piece.starts_with('{') && piece.ends_with('}') && piece.len() > 2 {
                segments.push(Segment::Any);
            } else if !piece.is_empty() && piece != "." && piece != ".." && piece.chars().all(plain)
            {
                segments.push(Segment::Literal(piece.to_owned()));
            } else {
                return Err(bad(&format!(
                    "{piece:?} is not a plain segment, a {{name}} or a final /*"
                )));
            }
        }
        Ok(ReadRoute {
            segments,
            prefix,
            head_only,
            text: trimmed.to_owned(),
        })
    }

    /// Whether `method` on the canonical `path` is this route.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        let method_ok = match method {
            "HEAD" => true,
            "GET" => !self.head_only,
            _ => false,
        };
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let pieces: Vec<&str> = match rest {
            "" => Vec::new(),
            rest => rest.split('/').collect(),
        };
        let length_ok = match self.prefix {
            true => pieces.len() > self.segments.len(),
            false => pieces.len() == self.segments.len(),
        };
        method_ok
            && length_ok
            && pieces.iter().all(|piece| !piece.is_empty())
            && self
                .segments
                .iter()
                .zip(&pieces)
                .all(|(segment, piece)| match segment {
                    Segment::Literal(text) => text == piece,
                    Segment::Any => true,
                })
    }

    /// The route as written.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A declared broker, resolved.
#[derive(Clone, Debug)]
pub struct Broker {
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    pub routes: Vec<ReadRoute>,
}

impl Broker {
    /// Resolves `spec`, reading `from_env` through `lookup`.
    pub fn resolve(
        spec: &BrokerSpec,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Broker, String> {
        let table = match spec {
            BrokerSpec::Host(host) => {
                let endpoint =
                    Endpoint::parse(host).map_err(|e| format!("broker {host:?}: {e}"))?;
                return Ok(Broker {
                    name: endpoint.to_string(),
                    endpoints: vec![endpoint],
                    routes: Vec::new(),
                });
            }
            BrokerSpec::Table(table) => table,
        };
        let bad = |why: String| format!("broker {:?}: {why}", table.name);
        let valid_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
        if table.name.is_empty() || !table.name.chars().all(valid_name) {
            return Err(bad("the name may hold only letters, digits, - and _".into()));
        }
        let mut endpoints = table
            .hosts
            .iter()
            .map(|host| Endpoint::parse(host).map_err(&bad))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(variable) = &table.from_env
            && let Some(url) = lookup(variable)
        {
            endpoints.push(Endpoint::of_url(&url).map_err(|e| bad(format!("${variable}: {e}")))?);
        }
        if endpoints.is_empty() {
            return Err(bad(
                "give `hosts`, or `from_env` naming a variable that is set".into(),
            ));
        }
        let mut routes = Vec::new();
        if let Some(preset) = &table.preset {
            let (_, paths) = PRESETS
                .iter()
                .find(|(name, _)| name == preset)
                .ok_or_else(|| {
                    let known: Vec<&str> = PRESETS.iter().map(|(name, _)| *name).collect();
                    bad(format!(
                        "unknown preset {preset:?}; the presets are {}",
                        known.join(", ")
                    ))
                })?;
            for path in *paths {
                routes.push(ReadRoute::parse(path).map_err(&bad)?);
            }
        }
        for route in &table.read {
            routes.push(ReadRoute::parse(route).map_err(&bad)?);
        }
        Ok(Broker {
            name: table.name.clone(),
            endpoints,
            routes,
        })
    }

    /// Whether `method` on `path` is one of this broker's read routes.
    pub fn allows(&self, method: &str, path: &str) -> bool {
        self.routes.iter().any(|route| route.matches(method, path))
    }
}

/// Where an address leads, for comparing destinations: every address of
/// this machine is one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Loopback, unspecified, or one of this machine's interface addresses.
    ThisMachine,
    /// Another machine's address (IPv4-mapped IPv6 as IPv4).
    Remote(IpAddr),
}

impl Place {
    /// Where `ip` leads.
    pub fn of(ip: IpAddr) -> Place {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if ip.is_loopback() || ip.is_unspecified() || is_local_interface(ip) {
            Place::ThisMachine
        } else {
            Place::Remote(ip)
        }
    }
}

/// Whether `ip` is an address of one of this machine's interfaces: only
/// those can be bound.
fn is_local_interface(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The places a broker endpoint's host leads to, with its port.
pub type ResolvedEndpoint = (Vec<Place>, Option<u16>);

/// The first broker in `brokers` that a destination reaching `places` on
/// `port` is, given each broker's endpoints already resolved (in the same
/// order as its `endpoints`).
pub fn broker_at<'a>(
    brokers: &'a [Broker],
    resolved: &[Vec<ResolvedEndpoint>],
    places: &[Place],
    port: u16,
) -> Option<&'a Broker> {
    brokers
        .iter()
        .zip(resolved)
        .find_map(|(broker, endpoints)| {
            endpoints
                .iter()
                .any(|(broker_places, broker_port)| {
                    broker_port.is_none_or(|p| p == port)
                        && places.iter().any(|place| broker_places.contains(place))
                })
                .then_some(broker)
        })
}

/// Resolves `host` (a name or an address literal) to the places it leads,
/// the way a connection to it would.
pub async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<(SocketAddr, Place)>> {
    let target = match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target).await?.collect();
    Ok(addrs
        .into_iter()
        .map(|addr| (addr, Place::of(addr.ip())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(hosts: &[&str], preset: Option<&str>, read: &[&str]) -> Broker {
        let spec = BrokerSpec::Table(BrokerTable {
            name: "paper".into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            from_env: None,
            preset: preset.map(str::to_owned),
            read: read.iter().map(|r| r.to_string()).collect(),
        });
        Broker::resolve(&spec, &|_| None).unwrap()
    }

    #[test]
    fn read_routes_allow_only_get_and_head_on_listed_paths() {
        let broker = broker(&["localhost"], Some("alpaca"), &["HEAD /status"]);
        for (method, path) in [
            ("GET", "/v2/positions"),
            ("HEAD", "/v2/positions"),
            ("GET", "/v2/positions/AAPL"),
            ("GET", "/v2/account"),
            ("GET", "/v2/stocks/AAPL/bars"),
            ("HEAD", "/status"),
        ] {
            assert!(broker.allows(method, path), "{method} {path}");
        }
        for (method, path) in [
            ("DELETE", "/v2/positions"),
            ("DELETE", "/v2/positions/AAPL"),
            ("POST", "/v2/orders"),
            ("GET", "/v2/orders"),
            ("OPTIONS", "/v2/positions"),
            ("GET", "/v2/positions/AAPL/close"),
            ("GET", "/v2/positions/"),
            ("GET", "/v2/stocks"),
            ("GET", "/v2/positionsX"),
            ("GET", "/V2/POSITIONS"),
            ("GET", "/status"),
            ("GET", "/api/v2/private/buy"),
            ("POST", "/batch"),
            ("POST", "/graphql"),
            ("GET", "/"),
        ] {
            assert!(!broker.allows(method, path), "{method} {path}");
        }
    }

    #[test]
    fn bad_routes_and_specs_are_explained() {
        for bad in [
            "POST /v2/orders",
            "* /v2/positions",
            "v2/positions",
            "/v2/*/x",
            "/v2/../orders",
            "/v2//x",
            "/v2/%6Frders",
        ] {
            assert!(ReadRoute::parse(bad).is_err(), "{bad:?} accepted");
        }
        let unknown = BrokerSpec::Table(BrokerTable {
            name: "x".into(),
            hosts: vec!["a".into()],
            from_env: None,
            preset: Some("robinhood".into()),
            read: vec![],
        });
        let error = Broker::resolve(&unknown, &|_| None).unwrap_err();
        assert!(error.contains("alpaca"), "{error}");
        let nowhere = BrokerSpec::Table(BrokerTable {
            name: "x".into(),
            hosts: vec![],
            from_env: Some("UNSET".into()),
            preset: None,
            read: vec![],
        });
        assert!(Broker::resolve(&nowhere, &|_| None).is_err());
    }

    #[test]
    fn every_preset_parses() {
        for (name, _) in PRESETS {
            broker(&["a"], Some(name), &[]);
        }
    }

    #[test]
    fn endpoints_come_from_hosts_and_the_environment() {
        let spec = BrokerSpec::Table(BrokerTable {
            name: "paper".into(),
            hosts: vec!["[::1]:8787".into(), "Broker.Example".into()],
            from_env: Some("BROKER_URL".into()),
            preset: None,
            read: vec![],
        });
        let lookup = |name: &str| (name == "BROKER_URL").then(|| "http://LOCALHOST:9/x".to_owned());
        let broker = Broker::resolve(&spec, &lookup).unwrap();
        assert_eq!(
            broker.endpoints,
            [
                Endpoint {
                    host: "::1".into(),
                    port: Some(8787)
                },
                Endpoint {
                    host: "broker.example".into(),
                    port: None
                },
                Endpoint {
                    host: "localhost".into(),
                    port: Some(9)
                },
            ]
        );
    }

    #[test]
    fn every_address_of_this_machine_is_one_place() {
        for ip in [
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "::",
        ] {
            assert_eq!(Place::of(ip.parse().unwrap()), Place::ThisMachine, "{ip}");
        }
        assert_eq!(
            Place::of("::ffff:192.0.2.7".parse().unwrap()),
            Place::Remote("192.0.2.7".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn every_spelling_of_a_local_broker_is_that_broker() {
        let brokers = [broker(&["localhost:8787"], None, &[])];
        let mut resolved = Vec::new();
        for endpoint in &brokers[0].endpoints {
            let places = resolve(&endpoint.host, 1).await.unwrap();
            resolved.push((places.into_iter().map(|(_, p)| p).collect(), endpoint.port));
        }
        let resolved = vec![resolved];
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "localhost",
            "2130706433",
        ] {
            let places: Vec<Place> = resolve(host, 8787)
                .await
                .unwrap()
                .into_iter()
                .map(|(_, p)| p)
                .collect();
            assert!(
                broker_at(&brokers, &resolved, &places, 8787).is_some(),
                "{host}"
            );
            assert!(
                broker_at(&brokers, &resolved, &places, 8788).is_none(),
                "{host}"
            );
        }
    }
}
