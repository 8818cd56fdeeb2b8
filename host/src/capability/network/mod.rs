//! Outgoing HTTP: a plugin may send only the requests its rules allow.
//!
//! A rule names methods, a scheme, a host, a port and a path pattern:
//!
//! ```text
//! GET https://api.broker.example/v2/bars/*
//! GET,HEAD http://127.0.0.1:*/positions
//! * https://*.example.com/*
//! ```
//!
//! Every request is checked in [`NetworkHooks::send_request`], the one place
//! wasi-http hands a request over before any I/O: it is brought into
//! [`canonical`] form, refused if anything else in it could change what a
//! server acts on ([`meaning`]), judged on that form by the [`orders`]
//! guardrail and then the plugin's rules, and — once its destination is
//! resolved — by the declared [`brokers`]; then it is sent in exactly the
//! checked form, to the address that was checked.

pub mod brokers;
pub mod canonical;
pub mod meaning;
pub mod orders;

use super::denials::{Denial, Denials, Rule};
use super::{Capability, Need, Reach, Resolving};
use crate::runtime::types::Effects;
use canonical::CanonicalUrl;
use meaning::SecondMeaning;
use orders::{OrderGuard, OrderRoute};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// One allowed kind of request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRule {
    /// Allowed methods, upper case; empty means any.
    methods: Vec<String>,
    scheme: String,
    host: HostPattern,
    /// `None` means any port.
    port: Option<u16>,
    /// Path pattern where `*` stands for any run of characters.
    path: String,
    /// The rule as written, for messages.
    text: String,
}

/// A host as rules name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// A name or IP address, lower case, IPv6 without brackets.
    Exact(String),
    /// `*.example.com`: any subdomain of `example.com`, not itself.
    Subdomain(String),
}

impl HostPattern {
    /// Parses `example.com`, `*.example.com`, `127.0.0.1` or `[::1]`.
    pub fn parse(host: &str) -> Result<HostPattern, String> {
        let host = host.to_ascii_lowercase();
        match host.strip_prefix("*.") {
            Some(domain) if !domain.is_empty() && !domain.contains('*') => {
                Ok(HostPattern::Subdomain(domain.to_owned()))
            }
            _ if host.is_empty() || host.contains('*') || host.contains('/') => {
                Err("the host must be a name, an IP address or *.domain".into())
            }
            _ => Ok(HostPattern::Exact(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            )),
        }
    }

    /// Whether `host` (lower case, IPv6 without brackets) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => exact == host,
            HostPattern::Subdomain(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(host) => f.write_str(host),
            HostPattern::Subdomain(domain) => write!(f, "*.{domain}"),
        }
    }
}

/// What rules look at: the method (upper case) and the canonical URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFacts {
    pub method: String,
    pub url: CanonicalUrl,
}

impl fmt::Display for RequestFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.url)
    }
}

/// The outcome of checking a request before its destination is resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by the plugin's rule with this text (a declared broker's
    /// read routes still bind it once the destination is resolved).
    Allow(String),
    /// No rule allows it by name: allowed only if its destination turns out
    /// to be a broker the plugin was granted, on one of its read routes.
    IfGrantedBroker,
    /// Denied by this rule (a guardrail, or the plugin's policy).
    Deny(Rule),
}

impl HttpRule {
    /// Parses `METHODS URL`, where METHODS is `*` or a comma-separated list
    /// and URL is `scheme://host[:port]/path-pattern`.
    pub fn parse(text: &str) -> Result<HttpRule, String> {
        let bad = |why: &str| format!("network rule {text:?}: {why}");
        let (methods, url) = text.trim().split_once(char::is_whitespace).ok_or_else(|| {
            bad("expected `METHODS URL`, e.g. `GET https://api.example.com/v1/*`")
        })?;
        let methods = if methods == "*" {
            Vec::new()
        } else {
            methods
                .split(',')
                .map(|m| {
                    let m = m.trim().to_ascii_uppercase();
                    const KNOWN: [&str; 9] = [
                        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT",
                        "TRACE",
                    ];
                    if KNOWN.contains(&m.as_str()) {
                        Ok(m)
                    } else {
                        Err(bad(&format!("unknown method {m:?}")))
                    }
                })
                .collect::<Result<_, _>>()?
        };
        let (scheme, rest) = url
            .trim()
            .split_once("://")
            .ok_or_else(|| bad("the URL needs a scheme, http:// or https://"))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/*"),
        };
        let (host, port) = split_port(authority).map_err(|why| bad(&why))?;
        let port = match port {
            Some("*") => None,
            Some(p) => Some(p.parse().map_err(|_| bad(&format!("bad port {p:?}")))?),
            None => Some(if scheme == "https" { 443 } else { 80 }),
        };
        let host = HostPattern::parse(host).map_err(|why| bad(&why))?;
        if path.contains('?') || path.contains('#') {
            return Err(bad("the path pattern cannot hold a query or fragment"));
        }
        Ok(HttpRule {
            methods,
            scheme: scheme.to_owned(),
            host,
            port,
            path: path.to_owned(),
            text: text.trim().to_owned(),
        })
    }

    /// The rule as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether this rule allows only methods that read (GET, HEAD).
    pub fn is_read_only(&self) -> bool {
        !self.methods.is_empty() && self.methods.iter().all(|m| m == "GET" || m == "HEAD")
    }

    /// The part of this rule that only reads (GET and HEAD), if any.
    fn read_only_part(&self) -> Option<HttpRule> {
        let methods: Vec<String> = if self.methods.is_empty() {
            vec!["GET".into(), "HEAD".into()]
        } else {
            let reading = self.methods.iter().filter(|m| *m == "GET" || *m == "HEAD");
            reading.cloned().collect()
        };
        if methods.is_empty() {
            return None;
        }
        let text = if methods.len() == self.methods.len() {
            self.text.clone()
        } else {
            format!("{} (reads only)", self.text)
        };
        Some(HttpRule {
            methods,
            text,
            ..self.clone()
        })
    }

    /// Whether the request matches this rule.
    pub fn matches(&self, request: &RequestFacts) -> bool {
        let url = &request.url;
        (self.methods.is_empty() || self.methods.contains(&request.method))
            && self.scheme == url.scheme
            && self.port.is_none_or(|p| p == url.port)
            && self.host.matches(&url.host)
            && glob_match(&self.path, &url.path)
    }
}

/// Splits `host[:port]`, keeping bracketed IPv6 literals whole.
fn split_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if authority.contains('@') {
        return Err("user info is not allowed in rules".into());
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("unclosed [ in an IPv6 address")?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected {after:?} after the address")),
        };
    }
    Ok(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// Matches `text` against `pattern`, where `*` stands for any run of
/// characters (including `/`) and everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The `[network]` section of a policy.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Rules such as `GET https://api.example.com/v1/*`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Declared brokers (in `host.toml`) whose read routes the plugin may
    /// use, by name.
    #[serde(default)]
    pub brokers: Vec<String>,
    /// The largest response body a request may receive, in KiB.
    #[serde(default = "default_max_response_kib")]
    pub max_response_kib: u64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            allow: Vec::new(),
            brokers: Vec::new(),
            max_response_kib: default_max_response_kib(),
        }
    }
}

fn default_max_response_kib() -> u64 {
    DEFAULT_MAX_RESPONSE_KIB
}

/// What a plugin's policy grants of outgoing HTTP, with the host-wide
/// order guardrail every request is checked against.
#[derive(Clone, Debug)]
pub struct HttpGrant {
    /// Its rules.
    pub rules: Arc<[HttpRule]>,
    /// The declared brokers whose read routes it may use, by name.
    pub brokers: Arc<[String]>,
    /// The largest response body one request may receive, in bytes.
    pub max_response_bytes: u64,
    /// The order guardrail; `None` when the operator turned it off.
    pub orders: Option<Arc<OrderGuard>>,
}

impl Default for HttpGrant {
    /// No rule, no broker, the default response cap, the guardrail on.
    fn default() -> Self {
        HttpGrant {
            rules: Arc::new([]),
            brokers: Arc::new([]),
            max_response_bytes: DEFAULT_MAX_RESPONSE_KIB * 1024,
            orders: Some(Arc::default()),
        }
    }
}

impl HttpGrant {
    /// Whether it grants nothing.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.brokers.is_empty()
    }
}

/// `grant` narrowed to a call that needs `need` of the network: none, the
/// part of each rule that reads (GET and HEAD), or every rule as granted.
/// Broker grants are reads: they go only with the whole network.
fn narrow(grant: &HttpGrant, need: Need) -> HttpGrant {
    match need {
        Need::Nothing => HttpGrant {
            rules: Arc::new([]),
            brokers: Arc::new([]),
            ..grant.clone()
        },
        Need::Read => HttpGrant {
            rules: grant
                .rules
                .iter()
                .filter_map(HttpRule::read_only_part)
                .collect(),
            ..grant.clone()
        },
        Need::Write => grant.clone(),
    }
}

/// The broker grants `names` ask for, each checked against the brokers
/// `host.toml` declares. With the order guardrail off no broker is declared
/// and they grant nothing.
fn resolve_brokers(
    names: &[String],
    orders: Option<&Arc<OrderGuard>>,
) -> Result<Vec<String>, String> {
    let Some(guard) = orders else {
        return Ok(Vec::new());
    };
    names
        .iter()
        .map(|name| match guard.broker(name) {
            Some(_) => Ok(name.clone()),
            None => {
                let declared: Vec<&str> = guard.brokers.iter().map(|b| b.name.as_str()).collect();
                Err(format!(
                    "[network] brokers: {name:?} is not a broker declared in host.toml \
                     (declared: {})",
                    match declared.is_empty() {
                        true => "none".to_owned(),
                        false => declared.join(", "),
                    }
                ))
            }
        })
        .collect()
}

/// Outgoing HTTP: the `[network]` rules a policy grants and the declared
/// brokers' read routes, under the order guardrail. A tool that declares
/// no network effect gets none; one that does not declare `network-write`
/// keeps only what reads (GET and HEAD).
pub struct Http;

impl Capability for Http {
    const SECTION: &'static str = "network";
    type Spec = NetworkSpec;
    type Grant = HttpGrant;

    fn resolve(spec: &NetworkSpec, host: &Resolving) -> Result<HttpGrant, String> {
        let rules = spec
            .allow
            .iter()
            .map(|rule| HttpRule::parse(rule))
            .collect::<Result<Vec<_>, _>>()?;
        let brokers = resolve_brokers(&spec.brokers, host.orders)?;
        Ok(HttpGrant {
            rules: rules.into(),
            brokers: brokers.into(),
            max_response_bytes: spec.max_response_kib.saturating_mul(1024),
            orders: host.orders.cloned(),
        })
    }

    fn narrow(grant: &HttpGrant, effects: Effects) -> HttpGrant {
        narrow(
            grant,
            Need::of(effects, Effects::NETWORK_READ, Effects::NETWORK_WRITE),
        )
    }

    fn reach(grant: &HttpGrant) -> Reach {
        Reach {
            writes: grant.rules.iter().any(|rule| !rule.is_read_only()),
            open_world: !grant.is_empty(),
        }
    }

    fn describe(grant: &HttpGrant) -> super::Description {
        describe(grant)
    }

    fn narrowed(grant: &HttpGrant, effects: Effects) -> Option<&'static str> {
        match Need::of(effects, Effects::NETWORK_READ, Effects::NETWORK_WRITE) {
            Need::Nothing if !grant.is_empty() => {
                Some("it has no network (it declares no network effect)")
            }
            Need::Read if grant.rules.iter().any(|r| !r.is_read_only()) => {
                Some("it may only GET and HEAD (it does not declare network-write)")
            }
            _ => None,
        }
    }
}

/// What `grant` allows, for `check` and `explain`.
fn describe(grant: &HttpGrant) -> super::Description {
    let mut explained = vec![
        "1. the URL is made canonical (unreserved escapes decoded, `.` and `..` resolved); \
         `//`, `;` parameters, `\\`, encoded `/` and `%`, and bytes outside ASCII are \
         refused; the canonical form is what is matched and what is sent"
            .to_owned(),
        "2. a request that could mean something else is refused: method-override, rewrite \
         and forwarding headers, `_method` parameters, a body on GET, HEAD, OPTIONS or DELETE"
            .to_owned(),
        "3. the guardrails above".to_owned(),
    ];
    let mut step = 4;
    for rule in grant.rules.iter() {
        explained.push(format!("{step}. allowed: {}", rule.text()));
        step += 1;
    }
    for broker in grant.brokers.iter() {
        explained.push(format!(
            "{step}. allowed: the read routes of the broker {broker:?} (host.toml)"
        ));
        step += 1;
    }
    explained.push("then: everything else is refused".to_owned());
    let mut summary: Vec<String> = grant
        .rules
        .iter()
        .map(|r| format!("network {}", r.text()))
        .collect();
    summary.extend(
        grant
            .brokers
            .iter()
            .map(|b| format!("network: reads of the broker {b:?}")),
    );
    super::Description {
        title: "Outgoing HTTP, checked in this order",
        summary,
        explained,
    }
}

/// Checks `request` (already canonical) before its destination is known:
/// denied when the order guardrail's words or patterns forbid it (no plugin
/// rule can widen a guardrail), else allowed by the first of the plugin's
/// rules that matches, else left to the broker check if the plugin was
/// granted a broker, else denied.
pub fn decide(orders: Option<&OrderGuard>, grant: &HttpGrant, request: &RequestFacts) -> Decision {
    if let Some(route) = orders.and_then(|guard| guard.route(&request.method, &request.url)) {
        return Decision::Deny(Rule::OrderGuardrail(route));
    }
    match grant.rules.iter().find(|rule| rule.matches(request)) {
        Some(rule) => Decision::Allow(rule.text.clone()),
        None if !grant.brokers.is_empty() && orders.is_some() => Decision::IfGrantedBroker,
        None if grant.is_empty() => Decision::Deny(Rule::NoNetworkGrant),
        None => Decision::Deny(Rule::NoHttpRule),
    }
}

/// Checks `request` once its destination is known to be `broker` (or no
/// broker): a broker takes only its read routes, and a request no rule
/// allowed needs the broker granted.
pub fn decide_destination(
    broker: Option<&brokers::Broker>,
    decision: &Decision,
    grant: &HttpGrant,
    request: &RequestFacts,
) -> Result<(), Rule> {
    match broker {
        Some(broker) if !broker.allows(&request.method, &request.url.path) => Err(
            Rule::OrderGuardrail(OrderRoute::Broker(broker.name.clone())),
        ),
        Some(broker)
            if matches!(decision, Decision::Allow(_)) || grant.brokers.contains(&broker.name) =>
        {
            Ok(())
        }
        _ if matches!(decision, Decision::Allow(_)) => Ok(()),
        _ => Err(Rule::NoHttpRule),
    }
}

/// The facts rules judge an outgoing request by, or why the request has no
/// canonical form (such requests are denied).
pub fn facts_of<B>(request: &http::Request<B>) -> Result<RequestFacts, canonical::Ambiguity> {
    Ok(RequestFacts {
        method: request.method().as_str().to_ascii_uppercase(),
        url: CanonicalUrl::parse(request.uri())?,
    })
}

/// Rewrites `request` into the form that was checked: the upper-case
/// method, the canonical URI, and a `Host` header that names its authority.
fn send_as_checked<B>(request: &mut http::Request<B>, facts: &RequestFacts) -> Result<(), String> {
    let uri = facts.url.to_uri().map_err(|e| e.to_string())?;
    let method = http::Method::from_bytes(facts.method.as_bytes()).map_err(|e| e.to_string())?;
    let host = http::HeaderValue::from_str(&facts.url.authority()).map_err(|e| e.to_string())?;
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    request.headers_mut().insert(http::header::HOST, host);
    Ok(())
}

/// Timeouts every outgoing request gets; a plugin may ask for shorter ones.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

/// The default cap on one response body.
pub const DEFAULT_MAX_RESPONSE_KIB: u64 = 10 * 1024;

/// The per-call enforcement point for outgoing HTTP.
pub struct NetworkHooks {
    orders: Option<Arc<OrderGuard>>,
    grant: HttpGrant,
    max_response_bytes: u64,
    denials: Denials,
}

impl NetworkHooks {
    /// Hooks enforcing `grant` and its order guardrail, cutting responses
    /// off past its response cap, recording refusals in `denials`.
    pub fn new(grant: HttpGrant, denials: Denials) -> Self {
        NetworkHooks {
            orders: grant.orders.clone(),
            max_response_bytes: grant.max_response_bytes,
            grant,
            denials,
        }
    }

    /// The checks that need nothing but the request: its canonical form,
    /// one meaning, the guardrail's words and the plugin's rules. Rewrites
    /// `request` into the checked form.
    fn check_request(
        &self,
        request: &mut http::Request<WasiBody>,
    ) -> Result<(RequestFacts, Decision), Denial> {
        let facts = facts_of(request).map_err(|ambiguity| {
            Denial::new(
                Rule::AmbiguousUrl(ambiguity.to_string()),
                format!("{} {}", request.method(), request.uri()),
            )
        })?;
        let deny = |rule| Denial::new(rule, facts.to_string());
        let query = facts.url.query.as_deref();
        if let Some(second) = meaning::second_meaning(&facts.method, request.headers(), query) {
            return Err(deny(Rule::SecondMeaning(second.to_string())));
        }
        let decision = decide(self.orders.as_deref(), &self.grant, &facts);
        if let Decision::Deny(rule) = decision {
            return Err(deny(rule));
        }
        send_as_checked(request, &facts).map_err(|why| deny(Rule::CannotSendAsChecked(why)))?;
        Ok((facts, decision))
    }
}

/// Takes the body of a request whose method has none, and gives it back
/// empty, or says why not: the guest wrote bytes or trailers into it.
/// Waits for the guest to finish the body (the call's deadline bounds it).
async fn without_body(
    request: http::Request<WasiBody>,
) -> Result<http::Request<WasiBody>, SecondMeaning> {
    use http_body_util::BodyExt;
    let (parts, mut body) = request.into_parts();
    let method = parts.method.as_str().to_owned();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) if frame.data_ref().is_some_and(|data| data.is_empty()) => {}
            _ => return Err(SecondMeaning::Body(method)),
        }
    }
    let empty = http_body_util::Empty::new()
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync();
    Ok(http::Request::from_parts(parts, empty))
}

/// Resolves the request's destination and each of `guard`'s broker
/// endpoints, and judges the request by where it really goes. Returns the
/// address checked, to connect to.
async fn check_destination(
    guard: &OrderGuard,
    grant: &HttpGrant,
    decision: &Decision,
    facts: &RequestFacts,
) -> Result<std::net::SocketAddr, Result<Rule, wasmtime_wasi_http::Error>> {
    let dns_error = |e: std::io::Error| {
        Err(wasmtime_wasi_http::Error::DnsError {
            rcode: Some(e.to_string()),
            info_code: None,
        })
    };
    let lookup = brokers::resolve(&facts.url.host, facts.url.port);
    let destination = match tokio::time::timeout(CONNECT_TIMEOUT, lookup).await {
        Ok(Ok(found)) if !found.is_empty() => found,
        Ok(Ok(_)) => return Err(Err(wasmtime_wasi_http::Error::DestinationNotFound)),
        Ok(Err(e)) => return Err(dns_error(e)),
        Err(_) => return Err(Err(wasmtime_wasi_http::Error::DnsTimeout)),
    };
    let places: Vec<brokers::Place> = destination.iter().map(|(_, place)| *place).collect();
    let mut resolved = Vec::with_capacity(guard.brokers.len());
    for broker in &guard.brokers {
        let mut endpoints = Vec::with_capacity(broker.endpoints.len());
        for endpoint in &broker.endpoints {
            // A broker name that does not resolve now matches nothing now.
            let lookup = brokers::resolve(&endpoint.host, endpoint.port.unwrap_or(1));
            let found = match tokio::time::timeout(CONNECT_TIMEOUT, lookup).await {
                Ok(Ok(found)) => found.into_iter().map(|(_, place)| place).collect(),
                _ => Vec::new(),
            };
            endpoints.push((found, endpoint.port));
        }
        resolved.push(endpoints);
    }
    let broker = brokers::broker_at(&guard.brokers, &resolved, &places, facts.url.port);
    decide_destination(broker, decision, grant, facts).map_err(Ok)?;
    Ok(destination[0].0)
}

/// A response body that fails once it grows past its cap, recording why.
struct CappedBody {
    inner: WasiBody,
    remaining: u64,
    cap: u64,
    attempt: String,
    denials: Denials,
}

impl http_body::Body for CappedBody {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let size = data.len() as u64;
            if size > self.remaining {
                self.denials.record(Denial::new(
                    Rule::ResponseTooLarge {
                        max_kib: self.cap / 1024,
                    },
                    format!("receive a larger response to {}", self.attempt),
                ));
                return std::task::Poll::Ready(Some(Err(
                    wasmtime_wasi_http::Error::HttpResponseBodySize(Some(self.cap)),
                )));
            }
            self.remaining -= size;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl WasiHttpHooks for NetworkHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let mut request = request;
        let (facts, decision) = match self.check_request(&mut request) {
            Ok(checked) => checked,
            Err(denial) => {
                self.denials.record(denial);
                return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
            }
        };
        let attempt = facts.to_string();
        let asked = options.unwrap_or_default();
        let clamp =
            |asked: Option<Duration>, max| Some(asked.map_or(max, |a: Duration| a.min(max)));
        let options = RequestOptions {
            connect_timeout: clamp(asked.connect_timeout, CONNECT_TIMEOUT),
            first_byte_timeout: clamp(asked.first_byte_timeout, FIRST_BYTE_TIMEOUT),
            between_bytes_timeout: clamp(asked.between_bytes_timeout, BETWEEN_BYTES_TIMEOUT),
        };
        let cap = self.max_response_bytes;
        let denials = self.denials.clone();
        // Without declared brokers no decision depends on the destination:
        // nothing is resolved here, and the connection resolves the name.
        let guard = self
            .orders
            .clone()
            .filter(|guard| !guard.brokers.is_empty());
        let grant = self.grant.clone();
        Box::new(async move {
            let deny = |rule: Rule| {
                denials.record(Denial::new(rule, attempt.clone()));
                Err(wasmtime_wasi_http::Error::HttpRequestDenied)
            };
            let mut request = request;
            if meaning::takes_no_body(&facts.method) {
                request = match without_body(request).await {
                    Ok(request) => request,
                    Err(second) => return deny(Rule::SecondMeaning(second.to_string())),
                };
            }
            if let Some(guard) = guard {
                match check_destination(&guard, &grant, &decision, &facts).await {
                    Ok(address) => pin_address(&mut request, &facts, address),
                    Err(Ok(rule)) => return deny(rule),
                    Err(Err(error)) => return Err(error),
                }
            } else if matches!(decision, Decision::IfGrantedBroker) {
                return deny(Rule::NoHttpRule);
            }
            let sent =
                wasmtime_wasi_http::default_hooks().send_request(request, Some(options), fut);
            let (response, io) = Box::into_pin(sent).await?;
            let response = response.map(|inner| {
                let capped = CappedBody {
                    inner,
                    remaining: cap,
                    cap,
                    attempt,
                    denials,
                };
                http_body_util::BodyExt::boxed_unsync(capped)
            });
            Ok((response, io))
        })
    }
}

/// Sends a plain-HTTP `request` to the `address` its destination was
/// checked at, so no second name lookup can send it elsewhere; the `Host`
/// header keeps the checked name. (HTTPS keeps the name: the certificate
/// is checked against it, so a different address cannot answer for it.)
fn pin_address(
    request: &mut http::Request<WasiBody>,
    facts: &RequestFacts,
    address: std::net::SocketAddr,
) {
    if facts.url.scheme != "http" {
        return;
    }
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Ok(uri) = http::Uri::builder()
        .scheme("http")
        .authority(address.to_string())
        .path_and_query(path_and_query)
        .build()
    {
        *request.uri_mut() = uri;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts(method: &str, url: &str) -> RequestFacts {
        let request = http::Request::builder()
            .method(method)
            .uri(url)
            .body(())
            .unwrap();
        facts_of(&request).unwrap()
    }

    /// Guardrail off: these tests are about the plugin's own rules.
    const OPEN: Option<&OrderGuard> = None;

    fn rules(texts: &[&str]) -> HttpGrant {
        HttpGrant {
            rules: texts.iter().map(|t| HttpRule::parse(t).unwrap()).collect(),
            ..HttpGrant::default()
        }
    }

    #[test]
    fn method_host_port_and_path_must_all_match() {
        let rules = rules(&["GET http://127.0.0.1:*/positions"]);
        let allow = |m, u| matches!(decide(OPEN, &rules, &facts(m, u)), Decision::Allow(_));
        assert!(allow("GET", "http://127.0.0.1:8080/positions"));
        assert!(allow("GET", "http://127.0.0.1:8080/positions?account=1"));
        assert!(!allow("POST", "http://127.0.0.1:8080/positions"));
        assert!(!allow("GET", "http://127.0.0.1:8080/orders"));
        assert!(!allow("GET", "http://127.0.0.2:8080/positions"));
        assert!(!allow("GET", "https://127.0.0.1:8080/positions"));
        assert!(!allow("GET", "http://127.0.0.1:8080/positions/x"));
    }

    #[test]
    fn default_ports_follow_the_scheme() {
        let rules = rules(&["GET https://api.example.com/v2/bars/*"]);
        let allow = |u| matches!(decide(OPEN, &rules, &facts("GET", u)), Decision::Allow(_));
        assert!(allow("https://api.example.com/v2/bars/AAPL"));
        assert!(allow("https://api.example.com:443/v2/bars/AAPL"));
        assert!(!allow("https://api.example.com:8443/v2/bars/AAPL"));
        assert!(!allow("https://api.example.com/v2/orders"));
    }

    #[test]
    fn subdomain_patterns_exclude_the_domain_itself_and_lookalikes() {
        let rules = rules(&["* https://*.example.com/*"]);
        let allow = |u| {
            matches!(
                decide(OPEN, &rules, &facts("DELETE", u)),
                Decision::Allow(_)
            )
        };
        assert!(allow("https://a.example.com/x"));
        assert!(allow("https://a.b.example.com/x"));
        assert!(!allow("https://example.com/x"));
        assert!(!allow("https://badexample.com/x"));
        assert!(!allow("https://example.com.evil.net/x"));
    }

    #[test]
    fn rules_match_the_path_as_the_server_reads_it() {
        let rules = rules(&["GET https://api.example.com/v2/bars/*"]);
        let allow = |path: &str| {
            let request = facts("GET", &format!("https://api.example.com{path}"));
            matches!(decide(OPEN, &rules, &request), Decision::Allow(_))
        };
        for path in [
            "/v2/bars/../orders",
            "/v2/bars/%2e%2e/orders",
            "/v2/bars/%2E./x",
        ] {
            assert!(!allow(path), "{path} allowed");
        }
        for path in ["/v2/bars/./AAPL", "/%76%32/bars/AAPL", "/v2/x/../bars/AAPL"] {
            assert!(allow(path), "{path} refused");
        }
        assert!(allow("/v2/bars/AAPL.US?from=.."));
    }

    #[test]
    fn no_rules_means_no_network() {
        let decision = decide(
            OPEN,
            &HttpGrant::default(),
            &facts("GET", "https://example.com/"),
        );
        assert!(matches!(decision, Decision::Deny(Rule::NoNetworkGrant)));
    }

    #[test]
    fn guardrails_win_over_the_plugins_rules() {
        let rules = rules(&["* http://127.0.0.1:*/*"]);
        let order = facts("POST", "http://127.0.0.1:8787/orders");
        let guard = OrderGuard::default();
        let decision = decide(Some(&guard), &rules, &order);
        assert!(
            matches!(&decision, Decision::Deny(Rule::OrderGuardrail(_))),
            "{decision:?}"
        );
        assert!(matches!(decide(OPEN, &rules, &order), Decision::Allow(_)));
    }

    #[test]
    fn bad_rules_are_explained() {
        for bad in [
            "https://example.com/",
            "FETCH https://example.com/",
            "GET ftp://example.com/",
            "GET https://ex*ample.com/",
            "GET https://user@example.com/",
            "GET https://example.com:port/",
            "GET https://example.com/a?b",
        ] {
            assert!(HttpRule::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn read_only_rules_allow_only_get_and_head() {
        assert!(
            HttpRule::parse("GET,HEAD http://a/")
                .unwrap()
                .is_read_only()
        );
        assert!(
            !HttpRule::parse("GET,POST http://a/")
                .unwrap()
                .is_read_only()
        );
        assert!(!HttpRule::parse("* http://a/").unwrap().is_read_only());
    }

    #[test]
    fn glob_examples() {
        assert!(glob_match("/orders*", "/orders"));
        assert!(glob_match("/orders*", "/orders/1"));
        assert!(!glob_match("/orders*", "/v2/orders"));
        assert!(glob_match("/*/orders*", "/v2/orders/1"));
        assert!(glob_match("/a*b*c", "/aXbYc"));
        assert!(!glob_match("/a*b*c", "/aXbY"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("/ab*ba", "/aba"));
    }

    proptest! {
        #[test]
        fn a_pattern_without_stars_matches_only_itself(a in "[ -~]{0,20}", b in "[ -~]{0,20}") {
            let a = a.replace('*', "");
            prop_assert_eq!(glob_match(&a, &b), a == b);
        }

        #[test]
        fn a_star_suffix_matches_every_extension(prefix in "/[a-z/]{0,10}", rest in "[ -~]{0,20}") {
            let pattern = format!("{prefix}*");
            let text = format!("{prefix}{rest}");
            prop_assert!(glob_match(&pattern, &text));
        }

        #[test]
        fn parsing_never_panics(text in "\\PC{0,60}") {
            let _ = HttpRule::parse(&text);
        }

        #[test]
        fn subdomain_patterns_match_exactly_the_subdomains(
            label in "[a-z0-9-]{1,12}",
            domain in "[a-z0-9-]{1,12}\\.[a-z]{2,6}",
        ) {
            let pattern = HostPattern::parse(&format!("*.{domain}")).unwrap();
            let subdomain = format!("{label}.{domain}");
            let glued = format!("{label}{domain}");
            let suffixed = format!("{domain}.{label}");
            prop_assert!(pattern.matches(&subdomain));
            prop_assert!(!pattern.matches(&domain));
            prop_assert!(!pattern.matches(&glued));
            prop_assert!(!pattern.matches(&suffixed));
        }

        #[test]
        fn nothing_allowed_is_outside_the_rule_once_canonical(
            prefix in "[a-z]{1,6}",
            rest in "[a-z./%2eE]{0,12}",
        ) {
            let rules = rules(&["* https://api.example.com/v2/*"]);
            let url = format!("https://api.example.com/v2/{prefix}/{rest}");
            let Ok(uri) = url.parse::<http::Uri>() else { return Ok(()) };
            let request = http::Request::builder().uri(uri).body(()).unwrap();
            if let Ok(request) = facts_of(&request)
                && let Decision::Allow(_) = decide(OPEN, &rules, &request)
            {
                prop_assert!(request.url.path.starts_with("/v2/"), "{} allowed", request.url.path);
            }
        }
    }
}
