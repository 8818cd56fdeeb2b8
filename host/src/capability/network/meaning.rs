//! A request means one thing: the method and the canonical URL that were
//! checked are the whole of what the server acts on.
//!
//! Servers, frameworks and the proxies in front of them take a method or a
//! target from other places than the request line: override headers
//! (`X-HTTP-Method-Override: POST`), rewrite headers (`X-Original-URL`),
//! forwarding headers, `_method` parameters, or a body on a GET that a
//! server which ignores GET bodies reads as a second, pipelined request. A
//! request carrying any of them is refused, on every host, before anything
//! is sent.

use std::fmt;

/// Why a request could mean something other than its method and URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecondMeaning {
    /// A header that names a method, a target or a route.
    Header(String),
    /// A query parameter that names a method.
    Parameter(String),
    /// A body (or a declared body) on a method that has none.
    Body(String),
    /// `Content-Length` given twice, or unreadable.
    Length,
}

impl fmt::Display for SecondMeaning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecondMeaning::Header(name) => write!(
                f,
                "the header {name} can change the method or target a server acts on"
            ),
            SecondMeaning::Parameter(name) => write!(
                f,
                "the query parameter {name:?} can change the method a server acts on"
            ),
            SecondMeaning::Body(method) => write!(
                f,
                "a {method} request carries a body, which a server may read as another request"
            ),
            SecondMeaning::Length => {
                f.write_str("the Content-Length header is repeated or invalid")
            }
        }
    }
}

/// Methods that carry no body: a body on them is refused.
pub fn takes_no_body(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "DELETE" | "TRACE")
}

/// Fragments of a header name (lower case, `-` and `_` removed) that mark
/// it as naming a method, a target, a route or a hop: no plugin needs to
/// send one, and some server or proxy acts on each.
const REROUTING: &[&str] = &[
    "method",
    "override",
    "rewrite",
    "original",
    "forward",
    "url",
    "uri",
    "path",
    "route",
    "host",
    "destination",
    "location",
    "via",
];

/// Whether the header called `name` could change what a server acts on.
/// `Host` is not: the host sets it to the checked authority.
pub fn is_rerouting(name: &str) -> bool {
    let plain: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    plain != "host" && REROUTING.iter().any(|fragment| plain.contains(fragment))
}

/// `query` with `+` read as a space and its escapes decoded (bytes that do
/// not decode are kept as written).
pub fn decode_query(query: &str) -> String {
    let bytes = query.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (byte, None) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first second meaning `method`, `headers` and `query` give a request,
/// if any. The body itself is checked as it is sent.
pub fn second_meaning(
    method: &str,
    headers: &http::HeaderMap,
    query: Option<&str>,
) -> Option<SecondMeaning> {
    if let Some(name) = headers.keys().find(|name| is_rerouting(name.as_str())) {
        return Some(SecondMeaning::Header(name.as_str().to_owned()));
    }
    for pair in query.unwrap_or_default().split(['&', ';']) {
        let name = decode_query(pair.split('=').next().unwrap_or_default());
        let plain: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if plain.contains("method") || plain.contains("override") {
            return Some(SecondMeaning::Parameter(name));
        }
    }
    let lengths: Vec<&http::HeaderValue> = headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .collect();
    let length = match lengths.as_slice() {
        [] => None,
        [one] => match one.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) {
            Some(length) => Some(length),
            None => return Some(SecondMeaning::Length),
        },
        _ => return Some(SecondMeaning::Length),
    };
    let declares_body =
        length.is_some_and(|n| n > 0) || headers.contains_key(http::header::TRANSFER_ENCODING);
    if takes_no_body(method) && declares_body {
        return Some(SecondMeaning::Body(method.to_owned()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn rerouting_headers_are_refused_in_every_spelling() {
        for name in [
            "X-HTTP-Method-Override",
            "x-http-method",
            "X-Method-Override",
            "x_http_method_override",
            "X-Original-URL",
            "X-Rewrite-URL",
            "X-Original-Method",
            "X-Original-URI",
            "X-Envoy-Original-Path",
            "X-Forwarded-Host",
            "X-Forwarded-Prefix",
            "X-Forwarded-For",
            "Forwarded",
            "X-Host",
            "X-Override-URL",
            "Destination",
            "Content-Location",
            "Via",
            "X-Route",
        ] {
            let found = second_meaning("GET", &headers(&[(name, "x")]), None);
            assert!(
                matches!(found, Some(SecondMeaning::Header(_))),
                "{name}: {found:?}"
            );
        }
        for name in [
            "Host",
            "Accept",
            "Authorization",
            "User-Agent",
            "APCA-API-KEY-ID",
            "X-Request-Id",
            "Idempotency-Key",
        ] {
            assert_eq!(
                second_meaning("GET", &headers(&[(name, "x")]), None),
                None,
                "{name}"
            );
        }
    }

    #[test]
    fn method_parameters_are_refused() {
        for query in [
            "_method=POST",
            "a=1&_method=DELETE",
            "%5Fmethod=POST",
            "X-HTTP-Method-Override=POST",
            "httpMethod=PUT",
            "a=1;_method=POST",
        ] {
            assert!(
                matches!(
                    second_meaning("GET", &headers(&[]), Some(query)),
                    Some(SecondMeaning::Parameter(_))
                ),
                "{query}"
            );
        }
        assert_eq!(
            second_meaning("GET", &headers(&[]), Some("symbols=AAPL&limit=5")),
            None
        );
    }

    #[test]
    fn declared_bodies_on_bodiless_methods_are_refused() {
        for (method, pairs) in [
            ("GET", vec![("content-length", "37")]),
            ("HEAD", vec![("content-length", "1")]),
            ("OPTIONS", vec![("content-length", "2")]),
            ("DELETE", vec![("transfer-encoding", "chunked")]),
        ] {
            assert!(
                matches!(
                    second_meaning(method, &headers(&pairs), None),
                    Some(SecondMeaning::Body(_))
                ),
                "{method} {pairs:?}"
            );
        }
        assert_eq!(
            second_meaning("GET", &headers(&[("content-length", "0")]), None),
            None
        );
        assert_eq!(
            second_meaning("POST", &headers(&[("content-length", "12")]), None),
            None
        );
        assert_eq!(
            second_meaning(
                "POST",
                &headers(&[("content-length", "1"), ("content-length", "2")]),
                None
            ),
            Some(SecondMeaning::Length)
        );
    }

    #[test]
    fn queries_decode_escapes_and_plus() {
        assert_eq!(decode_query("a=b+c&%5Fmethod=%50OST"), "a=b c&_method=POST");
        assert_eq!(decode_query("%zz%4"), "%zz%4");
    }
}
