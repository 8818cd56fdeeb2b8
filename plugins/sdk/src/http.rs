//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! Every request passes the host's policy before any byte leaves: a request
//! the plugin was not granted fails with [`HttpError::Denied`].

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;
use std::fmt;

/// Why a request failed.
#[derive(Debug)]
pub enum HttpError {
    /// The URL could not be parsed or used.
    InvalidUrl(String),
    /// The host's policy refused the request; it never left the sandbox.
    Denied,
    /// The request failed on the way (connection, timeout, protocol).
    Transport(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            HttpError::Denied => f.write_str("the request was denied by the host's policy"),
            HttpError::Transport(why) => write!(f, "HTTP request failed: {why}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<ErrorCode> for HttpError {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::HttpRequestDenied => HttpError::Denied,
            other => HttpError::Transport(describe(&other)),
        }
    }
}

impl HttpError {
    /// The same error, naming the URL it happened on.
    fn at(self, url: &str) -> Self {
        match self {
            HttpError::Transport(why) => HttpError::Transport(format!("{url}: {why}")),
            other => other,
        }
    }
}

/// What went wrong, in words, with what to check where there is a usual cause.
fn describe(code: &ErrorCode) -> String {
    let text = match code {
        ErrorCode::DnsTimeout => "looking up the host name timed out",
        ErrorCode::DnsError(_) => "cannot resolve the host name (is it spelled right?)",
        ErrorCode::DestinationNotFound => "the host was not found (is it spelled right?)",
        ErrorCode::DestinationUnavailable | ErrorCode::DestinationIpUnroutable => {
            "the host cannot be reached (is the network up?)"
        }
        ErrorCode::DestinationIpProhibited => "the host's address may not be used",
        ErrorCode::ConnectionRefused => {
            "cannot connect: connection refused (is the service running, on that port?)"
        }
        ErrorCode::ConnectionTimeout => "cannot connect: timed out (is the host reachable?)",
        ErrorCode::ConnectionTerminated | ErrorCode::ConnectionReadTimeout => {
            "the connection closed before the response was complete"
        }
        ErrorCode::ConnectionWriteTimeout => "sending the request timed out",
        ErrorCode::ConnectionLimitReached => "too many connections are open",
        ErrorCode::TlsProtocolError | ErrorCode::TlsAlertReceived(_) => {
            "the TLS handshake failed (is the port one that speaks TLS?)"
        }
        ErrorCode::TlsCertificateError => "the server's TLS certificate is not valid for this host",
        ErrorCode::HttpResponseTimeout => "no response arrived in time",
        ErrorCode::HttpResponseIncomplete => "the response was cut short",
        ErrorCode::HttpProtocolError => "the server's answer is not valid HTTP",
        ErrorCode::HttpRequestBodySize(_) | ErrorCode::HttpResponseBodySize(_) => {
            "the body is larger than allowed"
        }
        ErrorCode::InternalError(Some(why)) => return why.clone(),
        other => return format!("{other:?}"),
    };
    text.to_owned()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as UTF-8 text (invalid sequences replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// A request being built.
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

/// A GET request to `url`.
pub fn get(url: &str) -> Request {
    Request::new(Method::Get, url)
}

/// A POST request to `url`.
pub fn post(url: &str) -> Request {
    Request::new(Method::Post, url)
}

/// A request with any method (`PUT`, `DELETE`, ...) to `url`.
pub fn request(method: &str, url: &str) -> Request {
    let method = match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_owned()),
    };
    Request::new(method, url)
}

impl Request {
    fn new(method: Method, url: &str) -> Self {
        Request {
            method,
            url: url.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets a body as bytes (give its content type with [`Request::header`]).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json(self, value: &impl serde::Serialize) -> Result<Self, HttpError> {
        let body = serde_json::to_vec(value).map_err(|e| HttpError::InvalidUrl(e.to_string()))?;
        let mut request = self.header("content-type", "application/json");
        request.body = Some(body);
        Ok(request)
    }

    /// Sends the request and reads the whole response. A failure on the
    /// way names the URL.
    pub fn send(self) -> Result<Response, HttpError> {
        let url = self.url.clone();
        self.exchange().map_err(|e| e.at(&url))
    }

    fn exchange(self) -> Result<Response, HttpError> {
        let uri: http::Uri = self
            .url
            .parse()
            .map_err(|e: http::uri::InvalidUri| HttpError::InvalidUrl(e.to_string()))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            other => {
                return Err(HttpError::InvalidUrl(format!(
                    "unsupported scheme {other:?}"
                )));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| HttpError::InvalidUrl(format!("{} has no host", self.url)))?;

        let entries: Vec<(String, Vec<u8>)> = self
            .headers
            .into_iter()
            .map(|(name, value)| (name, value.into_bytes()))
            .collect();
        let headers = Fields::from_list(&entries)
            .map_err(|e| HttpError::InvalidUrl(format!("bad header: {e:?}")))?;
        let request = OutgoingRequest::new(headers);
        let invalid = |what: &str| HttpError::InvalidUrl(format!("invalid {what}"));
        request
            .set_method(&self.method)
            .map_err(|()| invalid("method"))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(authority.as_str()))
            .map_err(|()| invalid("authority"))?;
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        request
            .set_path_with_query(Some(path))
            .map_err(|()| invalid("path"))?;

        let outgoing_body = request.body().map_err(|()| invalid("body"))?;
        if let Some(body) = &self.body {
            let stream = outgoing_body.write().map_err(|()| invalid("body"))?;
            // `blocking-write-and-flush` takes at most 4096 bytes at a time.
            for chunk in body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| HttpError::Transport(format!("writing the body: {e:?}")))?;
            }
        }

        let pending = outgoing_handler::handle(request, None)?;
        OutgoingBody::finish(outgoing_body, None)?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(result)) => result?,
            Some(Err(())) | None => {
                return Err(HttpError::Transport("the response was lost".into()));
            }
        };

        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let incoming = response.consume().map_err(|()| invalid("response body"))?;
        let body = read_body(&incoming)?;
        IncomingBody::finish(incoming);
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn read_body(incoming: &IncomingBody) -> Result<Vec<u8>, HttpError> {
    let stream = incoming
        .stream()
        .map_err(|()| HttpError::Transport("the response body was already read".into()))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(body),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(HttpError::Transport(e.to_debug_string()));
            }
        }
    }
}
