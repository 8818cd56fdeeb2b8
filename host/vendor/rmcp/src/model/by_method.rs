//! Reading a client's JSON-RPC message by its method.
//!
//! Added by mcp-host's copy of rmcp (host/vendor/README.md in that
//! repository). `ClientJsonRpcMessage` is an untagged union: its parse
//! buffers the whole message, then tries each request type in turn until
//! one fits, and every type whose method does not match builds and drops a
//! `serde_json::Error`. A `tools/call` is the fourteenth type tried.
//!
//! [`client_message_from_slice`] reads the envelope first and, for a method
//! this crate defines, parses the message as that method's type alone. The
//! result is the one the untagged parse gives: for a given method exactly
//! one of the union's types can fit (each checks its method name), and a
//! message with that method that the type does not fit, or whose envelope
//! has anything unusual, is handed to the untagged parse unchanged, so it
//! decides (and words its errors) as ever.
#![allow(deprecated)] // Logging and `resources/subscribe` are still served to older clients.

use std::borrow::Cow;

use serde::{
    Deserialize,
    de::{DeserializeOwned, IgnoredAny},
};
use serde_json::value::RawValue;

use super::*;

/// A client message, as `serde_json::from_slice::<ClientJsonRpcMessage>`
/// gives it, read by its method.
pub fn client_message_from_slice(bytes: &[u8]) -> serde_json::Result<ClientJsonRpcMessage> {
    match client_message_by_method(bytes) {
        Some(message) => Ok(message),
        None => serde_json::from_slice(bytes),
    }
}

/// The members a plain request or notification has, and no other: a
/// `result` or `error` beside a method (which the untagged parse refuses),
/// a duplicate or a member it ignores all leave the message to it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[allow(dead_code)] // Checked by the typed parse.
    jsonrpc: IgnoredAny,
    /// Whether an id is present at all, `null` included: that is what
    /// makes a message a request.
    #[serde(default, deserialize_with = "present")]
    id: bool,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[allow(dead_code)]
    #[serde(default)]
    params: Option<IgnoredAny>,
}

fn present<'de, D: serde::Deserializer<'de>>(value: D) -> Result<bool, D::Error> {
    <&RawValue>::deserialize(value).map(|_| true)
}

/// The method name a request or notification type accepts.
trait Method {
    const NAME: &'static str;
}

impl<M: ConstString, P> Method for Request<M, P> {
    const NAME: &'static str = M::VALUE;
}

impl<M: ConstString, P> Method for RequestOptionalParam<M, P> {
    const NAME: &'static str = M::VALUE;
}

impl<M: ConstString> Method for RequestNoParam<M> {
    const NAME: &'static str = M::VALUE;
}

impl<M: ConstString, P> Method for Notification<M, P> {
    const NAME: &'static str = M::VALUE;
}

impl<M: ConstString> Method for NotificationNoParam<M> {
    const NAME: &'static str = M::VALUE;
}

/// Parses `bytes` as the request type `$request` or the notification type
/// `$notification` whose method the envelope names; `None` for any other
/// method (custom requests and notifications) or when the type does not fit.
macro_rules! dispatch {
    ($envelope:expr, $bytes:expr;
     requests: $($request:ty),* ;
     notifications: $($notification:ty),* $(,)?) => {{
        let envelope: &Envelope = $envelope;
        let method = envelope.method.as_ref();
        if envelope.id {
            $(if method == <$request as Method>::NAME {
                return request::<$request>($bytes);
            })*
        } else {
            $(if method == <$notification as Method>::NAME {
                return notification::<$notification>($bytes);
            })*
        }
        None
    }};
}

/// The message in `bytes` parsed as the one type its method names; `None`
/// when it is left to the untagged parse (a custom method, an unusual
/// envelope, or params the method's type does not take).
pub fn client_message_by_method(bytes: &[u8]) -> Option<ClientJsonRpcMessage> {
    let envelope = serde_json::from_slice::<Envelope>(bytes).ok()?;
    dispatch!(&envelope, bytes;
        requests: CallToolRequest, ListToolsRequest, PingRequest, ReadResourceRequest,
            ListResourcesRequest, ListResourceTemplatesRequest, GetPromptRequest,
            ListPromptsRequest, CompleteRequest, InitializeRequest, DiscoverRequest,
            SetLevelRequest, SubscriptionsListenRequest, SubscribeRequest, UnsubscribeRequest,
            GetTaskRequest, UpdateTaskRequest, CancelTaskRequest, ListSkillsRequest,
            GetSkillRequest, ReadResourceDirectoryRequest;
        notifications: CancelledNotification, ProgressNotification, InitializedNotification,
            RootsListChangedNotification,
    )
}

fn request<R>(bytes: &[u8]) -> Option<ClientJsonRpcMessage>
where
    R: DeserializeOwned,
    ClientRequest: From<R>,
{
    let typed = serde_json::from_slice::<JsonRpcRequest<R>>(bytes).ok()?;
    Some(ClientJsonRpcMessage::Request(JsonRpcRequest {
        jsonrpc: typed.jsonrpc,
        id: typed.id,
        request: typed.request.into(),
    }))
}

fn notification<N>(bytes: &[u8]) -> Option<ClientJsonRpcMessage>
where
    N: DeserializeOwned,
    ClientNotification: From<N>,
{
    let typed = serde_json::from_slice::<JsonRpcNotification<N>>(bytes).ok()?;
    Some(ClientJsonRpcMessage::Notification(JsonRpcNotification {
        jsonrpc: typed.jsonrpc,
        notification: typed.notification.into(),
    }))
}
