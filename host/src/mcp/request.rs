//! What the call pipeline needs to know of a request, read once from
//! rmcp's context, whichever the transport: who runs it, the client as the
//! audit log names it, and where the plugin's logs and progress go.

use super::observer::{ClientObserver, LogLevelSetting};
use crate::audit::Client;
use crate::client_text;
use crate::principal::Principal;
use crate::runtime::CallContext;
use rmcp::RoleServer;
use rmcp::model::ProtocolVersion;
use rmcp::service::RequestContext;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A request, as the pipeline sees it.
pub(super) struct Origin<'a> {
    pub context: &'a RequestContext<RoleServer>,
    pub principal: Principal,
    pub client: Client,
    log_level: &'a LogLevelSetting,
}

impl<'a> Origin<'a> {
    pub fn of(context: &'a RequestContext<RoleServer>, log_level: &'a LogLevelSetting) -> Self {
        let principal = principal_of(context);
        let client = client_of(context, &principal);
        Origin {
            context,
            principal,
            client,
            log_level,
        }
    }

    /// Who a call of `plugin` for this request runs for: its
    /// cancellation, a channel back to the client for the plugin's logs
    /// and progress, whose folders per-user mounts show, and what ends it
    /// with the HTTP session.
    pub fn into_caller(self, plugin: &str) -> Caller {
        let context = self.context;
        Caller {
            call: CallContext {
                observer: Arc::new(ClientObserver::new(
                    context.peer.clone(),
                    plugin,
                    self.log_level.effective(context),
                    context.meta.get_progress_token(),
                    !is_modern(context),
                )),
                cancel: context.ct.clone(),
                user: Some(self.principal.id),
            },
            client: self.client,
            session_ended: session_ended_of(context),
        }
    }

    /// The client address an HTTP request is counted under.
    pub fn address(&self) -> Option<std::net::IpAddr> {
        let parts = self.context.extensions.get::<http::request::Parts>()?;
        let address = parts
            .extensions
            .get::<super::client_address::ClientAddress>()?;
        Some(address.0)
    }

    /// Whether the client takes a task's handle for a long call: it
    /// declared the tasks extension (SEP-2663), on 2026-07-28. On older
    /// sessions the declaration is ignored, as clients that make it anyway
    /// (the Inspector) expect: they cannot take a handle there.
    pub fn takes_tasks(&self) -> bool {
        let context = self.context;
        is_modern(context)
            && context
                .client_capabilities()
                .is_some_and(|capabilities| capabilities.supports_tasks())
    }
}

/// Who a request runs as: the principal the HTTP auth layer found, or the
/// local user (stdio, and HTTP without auth).
pub(super) fn principal_of(context: &RequestContext<RoleServer>) -> Principal {
    super::authenticate::principal_of(context.extensions.get::<http::request::Parts>())
}

/// Who made a request, running as `principal`, for the audit log.
fn client_of(context: &RequestContext<RoleServer>, principal: &Principal) -> Client {
    let http = context.extensions.get::<http::request::Parts>();
    Client {
        principal: principal.id.clone(),
        transport: if http.is_some() { "http" } else { "stdio" },
        session: http
            .and_then(|parts| parts.headers.get(super::protocol::SESSION_HEADER))
            .and_then(|id| id.to_str().ok())
            .map(str::to_owned),
        // A 2026-07-28 request names its client in its own `_meta`; the
        // peer info of a sessionless request is rmcp's placeholder.
        name: context
            .client_info()
            .map(|info| client_text::kept(&info.name, client_text::MAX_CLIENT_NAME_BYTES)),
    }
}

/// Who a plugin call runs for.
#[derive(Clone)]
pub(super) struct Caller {
    /// Where its logs and progress go, and what cancels it.
    pub call: CallContext,
    /// The client, as the audit log names it.
    pub client: Client,
    /// Cancelled when the HTTP session the request came on ends.
    pub session_ended: Option<CancellationToken>,
}

/// What ends the calls of the HTTP session a request came on.
fn session_ended_of(context: &RequestContext<RoleServer>) -> Option<CancellationToken> {
    let parts = context.extensions.get::<http::request::Parts>()?;
    let ended = parts.extensions.get::<super::stateless::CancelCalls>()?;
    Some(ended.0.clone())
}

/// Whether the request speaks 2026-07-28 or later.
fn is_modern(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|version| version >= ProtocolVersion::V_2026_07_28)
}
