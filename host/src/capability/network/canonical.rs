//! The one form of an outgoing request that rules are matched on and that
//! is sent.
//!
//! Servers differ in how they read a path: some decode `%6F` to `o`, some
//! resolve `..`, some strip `;parameters`, some treat `\` as `/`. A rule
//! matched on the raw text can therefore allow a request the server routes
//! somewhere else. So the request is brought into one canonical form first —
//! unreserved characters decoded, dot segments resolved, everything a
//! server could read two ways refused — rules and guardrails are matched on
//! that form, and exactly that form is sent.

use std::fmt;

/// Why a request URL has no canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ambiguity {
    /// No scheme, or one other than http and https.
    Scheme,
    /// No host.
    Host,
    /// `user@host`: credentials in the URL.
    UserInfo,
    /// The path does not start with `/`.
    Relative,
    /// An encoded slash (`%2F`) inside a segment.
    EncodedSlash,
    /// A backslash, raw or encoded.
    Backslash,
    /// A `;` (path parameters), raw or encoded.
    Parameter,
    /// An encoded `%` (`%25`): a server that decodes twice sees another path.
    DoubleEncoding,
    /// A control character or a malformed escape.
    BadByte,
    /// An empty segment (`//`) before the last.
    EmptySegment,
    /// `..` above the root.
    AboveRoot,
    /// A byte outside ASCII once decoded (`%EF%BD%8F`, overlong `%C0%AE`):
    /// servers normalise and decode such bytes in too many ways.
    NonAscii,
}

impl fmt::Display for Ambiguity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ambiguity::Scheme => "the scheme is not http or https",
            Ambiguity::Host => "the request has no host",
            Ambiguity::UserInfo => "the URL carries user info",
            Ambiguity::Relative => "the path is not absolute",
            Ambiguity::EncodedSlash => "the path has an encoded slash (%2F)",
            Ambiguity::Backslash => "the path has a backslash",
            Ambiguity::Parameter => "the path has a ; parameter",
            Ambiguity::DoubleEncoding => "the path has an encoded % (%25)",
            Ambiguity::BadByte => "the path has a control character or a malformed escape",
            Ambiguity::EmptySegment => "the path has an empty segment (//)",
            Ambiguity::AboveRoot => "the path climbs above / with ..",
            Ambiguity::NonAscii => "the path decodes to bytes outside ASCII",
        })
    }
}

/// A request URL in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// Lower case; an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    /// The canonical path: dot segments resolved, unreserved characters
    /// decoded, other escapes in upper-case hex.
    pub path: String,
    /// Each path segment fully decoded (ASCII, case kept): what a server
    /// that decodes would route on.
    pub segments: Vec<String>,
    /// The query, as written (rules never match it).
    pub query: Option<String>,
}

impl CanonicalUrl {
    /// Brings `uri` into canonical form, or says why it has none.
    pub fn parse(uri: &http::Uri) -> Result<CanonicalUrl, Ambiguity> {
        let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
        let scheme = match scheme.as_deref() {
            Some("http" | "https") => scheme.unwrap_or_default(),
            _ => return Err(Ambiguity::Scheme),
        };
        let authority = uri.authority().ok_or(Ambiguity::Host)?;
        if authority.as_str().contains('@') {
            return Err(Ambiguity::UserInfo);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(Ambiguity::Host);
        }
        let port = authority
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let (path, segments) = canonical_path(uri.path())?;
        Ok(CanonicalUrl {
            scheme,
            host,
            port,
            path,
            segments,
            query: uri.query().map(str::to_owned),
        })
    }

    /// `host[:port]`, the port left out when it is the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.scheme == "https" { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The URI that is sent.
    pub fn to_uri(&self) -> Result<http::Uri, http::Error> {
        let path_and_query = match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        };
        http::Uri::builder()
            .scheme(self.scheme.as_str())
            .authority(self.authority())
            .path_and_query(path_and_query)
            .build()
    }
}

impl fmt::Display for CanonicalUrl {
    /// `scheme://host:port/path`, the port always shown (the query is not:
    /// it may hold secrets and no rule reads it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{}://{host}:{}{}", self.scheme, self.port, self.path)
    }
}

/// RFC 3986 unreserved characters: the same decoded or not, to every server.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// The canonical path and its decoded segments.
fn canonical_path(raw: &str) -> Result<(String, Vec<String>), Ambiguity> {
    let raw = if raw.is_empty() { "/" } else { raw };
    let rest = raw.strip_prefix('/').ok_or(Ambiguity::Relative)?;
    let pieces: Vec<&str> = rest.split('/').collect();
    let mut canonical: Vec<String> = Vec::new();
    let mut decoded: Vec<String> = Vec::new();
    // Whether the path ends in a folder (`/a/`, `/a/.`, `/a/b/..`).
    let mut trailing_slash = false;
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let (text, plain) = canonical_segment(piece)?;
        trailing_slash = false;
        match plain.as_str() {
            "" if last => trailing_slash = i > 0,
            "" => return Err(Ambiguity::EmptySegment),
            "." => trailing_slash = true,
            ".." => {
                canonical.pop().ok_or(Ambiguity::AboveRoot)?;
                decoded.pop();
                trailing_slash = true;
            }
            _ => {
                canonical.push(text);
                decoded.push(plain);
            }
        }
    }
    let mut path = format!("/{}", canonical.join("/"));
    if trailing_slash && !canonical.is_empty() {
        path.push('/');
    }
    Ok((path, decoded))
}

/// One segment's canonical text and its full decoding.
fn canonical_segment(piece: &str) -> Result<(String, String), Ambiguity> {
    let bytes = piece.as_bytes();
    let mut text = String::with_capacity(piece.len());
    let mut plain = Vec::with_capacity(piece.len());
    let mut i = 0;
    while i < bytes.len() {
        let (byte, escaped) = if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(Ambiguity::BadByte)?;
            let hex = std::str::from_utf8(hex).map_err(|_| Ambiguity::BadByte)?;
            let byte = u8::from_str_radix(hex, 16).map_err(|_| Ambiguity::BadByte)?;
            i += 3;
            (byte, true)
        } else {
            i += 1;
            (bytes[i - 1], false)
        };
        match byte {
            b'/' if escaped => return Err(Ambiguity::EncodedSlash),
            b'\\' => return Err(Ambiguity::Backslash),
            b';' => return Err(Ambiguity::Parameter),
            b'%' => return Err(Ambiguity::DoubleEncoding),
            0..=0x1f | 0x7f => return Err(Ambiguity::BadByte),
            0x80.. => return Err(Ambiguity::NonAscii),
            _ => {}
        }
        if is_unreserved(byte) || !escaped {
            text.push(byte as char);
        } else {
            text.push_str(&format!("%{byte:02X}"));
        }
        plain.push(byte);
    }
    // Every byte is ASCII (checked above), so this never replaces anything.
    Ok((text, String::from_utf8_lossy(&plain).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(url: &str) -> Result<CanonicalUrl, Ambiguity> {
        CanonicalUrl::parse(&url.parse::<http::Uri>().unwrap())
    }

    fn path(url: &str) -> String {
        parse(url).unwrap().path
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept_in_upper_case() {
        assert_eq!(path("http://a/%6Frders"), "/orders");
        assert_eq!(path("http://a/v%32/%6f%72%64%65%72%73"), "/v2/orders");
        assert_eq!(path("http://a/x%2a%3a/%7E"), "/x%2A%3A/~");
        assert_eq!(path("http://a/%21%40"), "/%21%40");
        assert_eq!(parse("http://a/%21x").unwrap().segments, ["!x"]);
    }

    #[test]
    fn dot_segments_are_resolved() {
        assert_eq!(path("http://a/v2/bars/../orders"), "/v2/orders");
        assert_eq!(path("http://a/v2/bars/%2e%2E/orders"), "/v2/orders");
        assert_eq!(path("http://a/v2/./bars"), "/v2/bars");
        assert_eq!(path("http://a/v2/bars/.."), "/v2/");
        assert_eq!(path("http://a/v2/bars/"), "/v2/bars/");
        assert_eq!(path("http://a"), "/");
        assert_eq!(path("http://a/"), "/");
        assert_eq!(parse("http://a/.."), Err(Ambiguity::AboveRoot));
        assert_eq!(parse("http://a/x/../.."), Err(Ambiguity::AboveRoot));
    }

    #[test]
    fn forms_servers_read_two_ways_are_refused() {
        for (url, why) in [
            ("http://a/x/..;/orders", Ambiguity::Parameter),
            ("http://a/v2;x/orders", Ambiguity::Parameter),
            ("http://a/v2%3Bx/orders", Ambiguity::Parameter),
            ("http://a/v2/orders%2F1", Ambiguity::EncodedSlash),
            ("http://a/v2/..%2forders", Ambiguity::EncodedSlash),
            ("http://a/v2/..%5Corders", Ambiguity::Backslash),
            ("http://a/v2/%252e%252e/orders", Ambiguity::DoubleEncoding),
            ("http://a/v2//orders", Ambiguity::EmptySegment),
            ("http://a/v2/%00", Ambiguity::BadByte),
            ("http://a/v2/%zz", Ambiguity::BadByte),
            ("http://a/v2/%4", Ambiguity::BadByte),
            ("http://u:p@a/x", Ambiguity::UserInfo),
            ("ftp://a/x", Ambiguity::Scheme),
            ("http://a/caf%C3%A9", Ambiguity::NonAscii),
            ("http://a/%EF%BD%8Frders", Ambiguity::NonAscii),
            ("http://a/x/%C0%AE%C0%AE/orders", Ambiguity::NonAscii),
            ("http://a/x/%C0%2E/orders", Ambiguity::NonAscii),
            ("http://a/%E0%80%AE", Ambiguity::NonAscii),
            ("http://a/%FF", Ambiguity::NonAscii),
            ("http://a/%80", Ambiguity::NonAscii),
        ] {
            assert_eq!(parse(url), Err(why), "{url}");
        }
    }

    #[test]
    fn the_sent_uri_is_the_canonical_one() {
        let url = parse("HTTP://API.Example.COM:80/%76%32/./bars?from=..%2f").unwrap();
        assert_eq!(url.authority(), "api.example.com");
        assert_eq!(
            url.to_uri().unwrap().to_string(),
            "http://api.example.com/v2/bars?from=..%2f"
        );
        assert_eq!(url.to_string(), "http://api.example.com:80/v2/bars");
        let v6 = parse("https://[::1]:8443/x").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_uri().unwrap().to_string(), "https://[::1]:8443/x");
    }

    proptest! {
        /// Canonicalising is idempotent: the sent form, read again, is itself.
        #[test]
        fn the_canonical_form_is_a_fixed_point(raw in "(/([a-zA-Z0-9._~!$&'()*+,=:@-]|%[0-9a-fA-F]{2}){0,6}){1,6}") {
            if let Ok(once) = parse(&format!("http://a{raw}")) {
                let again = parse(&once.to_uri().unwrap().to_string()).unwrap();
                prop_assert_eq!(&again, &once);
            }
        }

        /// No canonical path has a dot segment, an empty inner segment or a
        /// character a server could read as a separator.
        #[test]
        fn canonical_paths_are_plain(raw in "(/([a-z.;\\\\]|%2[eEfF]|%5[cC]|%3[bB]){0,5}){1,6}") {
            if let Ok(url) = parse(&format!("http://a{raw}")) {
                let inner = url.path.trim_end_matches('/');
                prop_assert!(inner.is_empty() || inner.split('/').skip(1).all(|s| !matches!(s, "" | "." | "..")), "{}", url.path);
                prop_assert!(!url.path.contains(';') && !url.path.contains('\\'));
                prop_assert!(!url.path.to_ascii_lowercase().contains("%2f"));
                prop_assert!(!url.path.to_ascii_lowercase().contains("%2e"));
            }
        }

        #[test]
        fn parsing_never_panics(raw in "/\\PC{0,40}") {
            if let Ok(uri) = format!("http://a{raw}").parse::<http::Uri>() {
                let _ = CanonicalUrl::parse(&uri);
            }
        }
    }
}
