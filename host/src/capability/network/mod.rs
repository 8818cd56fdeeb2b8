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
//! [`canonical`] form, judged on that form by the [`orders`] guardrail and
//! then the plugin's rules, and sent in exactly that form.

pub mod canonical;
pub mod orders;

use super::denials::{Denial, Denials, Rule};
use canonical::CanonicalUrl;
use orders::OrderGuard;
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

/// The outcome of checking a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by the plugin's rule with this text.
    Allow(String),
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

/// `rules` narrowed to a call that needs `need` of the network: none, the
/// part of each rule that reads (GET and HEAD), or every rule as granted.
pub fn narrow(rules: &Arc<[HttpRule]>, need: super::Need) -> Arc<[HttpRule]> {
    match need {
        super::Need::Nothing => Vec::new().into(),
        super::Need::Read => rules.iter().filter_map(HttpRule::read_only_part).collect(),
        super::Need::Write => rules.clone(),
    }
}

/// What `rules` allow, for `check` and `explain`.
pub fn describe(rules: &[HttpRule]) -> super::Description {
    let mut explained = vec![
        "1. the URL is made canonical (unreserved escapes decoded, `.` and `..` resolved); \
         `//`, `;` parameters, `\\`, encoded `/` and `%` are refused; the canonical form is \
         what is matched and what is sent"
            .to_owned(),
        "2. the guardrails above".to_owned(),
    ];
    for (i, rule) in rules.iter().enumerate() {
        explained.push(format!("{}. allowed: {}", i + 3, rule.text()));
    }
    explained.push("then: everything else is refused".to_owned());
    super::Description {
        title: "Outgoing HTTP, checked in this order",
        summary: rules
            .iter()
            .map(|r| format!("network {}", r.text()))
            .collect(),
        explained,
    }
}

/// Checks `request` (already canonical): denied when the order guardrail
/// forbids it (no plugin rule can widen a guardrail), else allowed by the
/// first of the plugin's `rules` that matches, else denied.
pub fn decide(orders: Option<&OrderGuard>, rules: &[HttpRule], request: &RequestFacts) -> Decision {
    if let Some(route) = orders.and_then(|guard| guard.route(&request.method, &request.url)) {
        return Decision::Deny(Rule::OrderGuardrail(route));
    }
    match rules.iter().find(|rule| rule.matches(request)) {
        Some(rule) => Decision::Allow(rule.text.clone()),
        None if rules.is_empty() => Decision::Deny(Rule::NoNetworkGrant),
        None => Decision::Deny(Rule::NoHttpRule),
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
    rules: Arc<[HttpRule]>,
    max_response_bytes: u64,
    denials: Denials,
}

impl NetworkHooks {
    /// Hooks enforcing the `orders` guardrail and `rules`, cutting
    /// responses off past `max_response_bytes`, recording refusals in
    /// `denials`.
    pub fn new(
        orders: Option<Arc<OrderGuard>>,
        rules: Arc<[HttpRule]>,
        max_response_bytes: u64,
        denials: Denials,
    ) -> Self {
        NetworkHooks {
            orders,
            rules,
            max_response_bytes,
            denials,
        }
    }
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
        let checked = match facts_of(&request) {
            Ok(facts) => match decide(self.orders.as_deref(), &self.rules, &facts) {
                Decision::Allow(_) => match send_as_checked(&mut request, &facts) {
                    Ok(()) => Ok(facts.to_string()),
                    Err(why) => Err(Denial::new(
                        Rule::CannotSendAsChecked(why),
                        facts.to_string(),
                    )),
                },
                Decision::Deny(rule) => Err(Denial::new(rule, facts.to_string())),
            },
            Err(ambiguity) => Err(Denial::new(
                Rule::AmbiguousUrl(ambiguity.to_string()),
                format!("{} {}", request.method(), request.uri()),
            )),
        };
        let attempt = match checked {
            Ok(attempt) => attempt,
            Err(denial) => {
                self.denials.record(denial);
                return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
            }
        };
        let asked = options.unwrap_or_default();
        let clamp =
            |asked: Option<Duration>, max| Some(asked.map_or(max, |a: Duration| a.min(max)));
        let options = RequestOptions {
            connect_timeout: clamp(asked.connect_timeout, CONNECT_TIMEOUT),
            first_byte_timeout: clamp(asked.first_byte_timeout, FIRST_BYTE_TIMEOUT),
            between_bytes_timeout: clamp(asked.between_bytes_timeout, BETWEEN_BYTES_TIMEOUT),
        };
        let sent = wasmtime_wasi_http::default_hooks().send_request(request, Some(options), fut);
        let cap = self.max_response_bytes;
        let denials = self.denials.clone();
        Box::new(async move {
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

    fn rules(texts: &[&str]) -> Vec<HttpRule> {
        texts.iter().map(|t| HttpRule::parse(t).unwrap()).collect()
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
        let decision = decide(OPEN, &[], &facts("GET", "https://example.com/"));
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
