//! The plugin's rules for outgoing HTTP: each names methods, a scheme, a
//! host, a port and a path pattern, and is matched against a request's
//! canonical form.

use super::canonical::CanonicalUrl;
use crate::capability::denials::Rule;
use std::fmt;

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
    /// Allowed by one of the plugin's rules (a declared broker's read
    /// routes still bind it once the destination is resolved).
    Allow,
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
    pub(super) fn read_only_part(&self) -> Option<HttpRule> {
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
