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
mod hooks;
pub mod meaning;
pub mod orders;
mod rules;

pub use hooks::{NetworkHooks, decide, decide_destination, facts_of};
pub use rules::{Decision, HostPattern, HttpRule, RequestFacts, glob_match};

use super::{Capability, Need, Preparing, Reach, Resolving};
use crate::interface::types::Effects;
use orders::OrderGuard;
use std::sync::Arc;

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

    /// The send hook every request of the call passes.
    type Call = NetworkHooks;

    fn prepare(grant: &HttpGrant, call: &mut Preparing) -> anyhow::Result<NetworkHooks> {
        Ok(NetworkHooks::new(grant.clone(), call.denials.clone()))
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

/// The default cap on one response body.
pub const DEFAULT_MAX_RESPONSE_KIB: u64 = 10 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::denials::Rule;
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
        let allow = |m, u| matches!(decide(OPEN, &rules, &facts(m, u)), Decision::Allow);
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
        let allow = |u| matches!(decide(OPEN, &rules, &facts("GET", u)), Decision::Allow);
        assert!(allow("https://api.example.com/v2/bars/AAPL"));
        assert!(allow("https://api.example.com:443/v2/bars/AAPL"));
        assert!(!allow("https://api.example.com:8443/v2/bars/AAPL"));
        assert!(!allow("https://api.example.com/v2/orders"));
    }

    #[test]
    fn subdomain_patterns_exclude_the_domain_itself_and_lookalikes() {
        let rules = rules(&["* https://*.example.com/*"]);
        let allow = |u| matches!(decide(OPEN, &rules, &facts("DELETE", u)), Decision::Allow);
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
            matches!(decide(OPEN, &rules, &request), Decision::Allow)
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
        assert!(matches!(decide(OPEN, &rules, &order), Decision::Allow));
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
                && let Decision::Allow = decide(OPEN, &rules, &request)
            {
                prop_assert!(request.url.path.starts_with("/v2/"), "{} allowed", request.url.path);
            }
        }
    }
}
