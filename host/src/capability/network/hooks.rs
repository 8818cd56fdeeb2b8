//! The per-call enforcement point for outgoing HTTP: every request
//! wasi-http hands over is made canonical, checked against the order
//! guardrail, the plugin's rules and the declared brokers, and sent in
//! exactly the checked form to the checked address; responses are capped.

use super::canonical::{self, CanonicalUrl};
use super::meaning::{self, SecondMeaning};
use super::orders::{OrderGuard, OrderRoute};
use super::rules::{Decision, RequestFacts};
use super::{HttpGrant, brokers};
use crate::capability::denials::{Denial, Denials, Rule};
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

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
        Some(_) => Decision::Allow,
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
            if matches!(decision, Decision::Allow) || grant.brokers.contains(&broker.name) =>
        {
            Ok(())
        }
        _ if matches!(decision, Decision::Allow) => Ok(()),
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
