//! The MCP server: every request answered from the current registry, every
//! plugin call run in a fresh sandbox.

use super::convert;
use super::observer::ClientObserver;
use super::subscriptions::Watched;
use crate::audit::{AuditLog, Client, Event};
use crate::plugin::manifest;
use crate::plugin::{LoadedPlugin, Registry};
use crate::policy::Grants;
use crate::reload::Change;
use crate::runtime::{CallContext, CallError, Diagnostics, Entry, Runtime, types};
use arc_swap::ArcSwap;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    CompletionInfo, ContentBlock, GetPromptRequestParams, GetPromptResponse, GetPromptResult,
    Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Reference, ServerCapabilities, ServerConfig,
};
use rmcp::model::{
    ResourceUpdatedNotificationParam, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::broadcast;

/// What every connection shares: the registry being served, the runtime,
/// and the audit log.
pub struct Shared {
    pub registry: ArcSwap<Registry>,
    pub runtime: Arc<Runtime>,
    pub audit: AuditLog,
    /// Reloads announce here which lists changed.
    pub changes: broadcast::Sender<Change>,
    /// Whether `host__noop` is served (for benchmarks).
    pub native_noop: bool,
}

impl Shared {
    pub fn new(registry: Registry, runtime: Arc<Runtime>, audit: AuditLog) -> Shared {
        Shared {
            registry: ArcSwap::from_pointee(registry),
            runtime,
            audit,
            changes: broadcast::channel(16).0,
            native_noop: false,
        }
    }
}

/// The name of the native baseline tool.
const NATIVE_NOOP: &str = "host__noop";

/// The native baseline tool: what serving a tool costs without a sandbox.
fn native_noop() -> rmcp::model::Tool {
    let mut schema = serde_json::Map::new();
    schema.insert("type".into(), "object".into());
    rmcp::model::Tool::new(
        NATIVE_NOOP,
        "Answers at once, without running any plugin. A baseline for benchmarks.",
        Arc::new(schema),
    )
}

/// Every list, when a client fell behind and cannot know what changed.
const EVERYTHING: Change = Change {
    tools: true,
    resources: true,
    prompts: true,
};

/// The next change, or `None` once no more can come.
async fn next_change(changes: &mut broadcast::Receiver<Change>) -> Option<Change> {
    match changes.recv().await {
        Ok(change) => Some(change),
        Err(broadcast::error::RecvError::Lagged(_)) => Some(EVERYTHING),
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

/// Tells a client with a session (stdio, or 2025-11-25 HTTP) which lists
/// changed, and which of the resources it watches were updated.
async fn notify_peer(
    peer: &Peer<RoleServer>,
    change: Change,
    updated: Vec<String>,
) -> Result<(), rmcp::service::ServiceError> {
    for uri in updated {
        peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
            .await?;
    }
    if change.tools {
        peer.notify_tool_list_changed().await?;
    }
    if change.resources {
        peer.notify_resource_list_changed().await?;
    }
    if change.prompts {
        peer.notify_prompt_list_changed().await?;
    }
    Ok(())
}

/// A request as the audit log describes it.
#[derive(Clone, Copy)]
struct Audited<'a> {
    method: &'static str,
    target: &'a str,
    arguments: Option<&'a serde_json::Value>,
    started: Instant,
}

/// Who made a request, for the audit log.
fn client_of(context: &RequestContext<RoleServer>) -> Client {
    let http = context.extensions.get::<http::request::Parts>();
    Client {
        transport: if http.is_some() { "http" } else { "stdio" },
        session: http
            .and_then(|parts| parts.headers.get("mcp-session-id"))
            .and_then(|id| id.to_str().ok())
            .map(str::to_owned),
        name: context
            .peer
            .peer_info()
            .map(|info| info.client_info.name.clone()),
    }
}

/// One client connection's server.
#[derive(Clone)]
pub struct McpServer {
    shared: Arc<Shared>,
    log_level: super::observer::LogLevelSetting,
    /// Resources the client subscribed to (2025-11-25 `resources/subscribe`).
    watched: Arc<Mutex<Watched>>,
}

impl McpServer {
    pub fn new(shared: Arc<Shared>) -> Self {
        McpServer {
            shared,
            log_level: Default::default(),
            watched: Default::default(),
        }
    }

    /// The watched resources the current registry serves differently.
    fn updated_resources(&self, watched: &Mutex<Watched>) -> Vec<String> {
        let registry = self.shared.registry.load();
        watched
            .lock()
            .map(|mut watched| watched.updated(&registry))
            .unwrap_or_default()
    }

    /// The call context for a request: its cancellation, and a channel back
    /// to the client for the plugin's logs and progress.
    fn call_context(&self, plugin: &str, context: &RequestContext<RoleServer>) -> CallContext {
        CallContext {
            observer: Arc::new(ClientObserver::new(
                context.peer.clone(),
                plugin,
                self.log_level.effective(context),
                context.meta.get_progress_token(),
            )),
            cancel: context.ct.clone(),
        }
    }

    /// Runs `entry` for `plugin` under `grants`, forwarding what the plugin
    /// wrote to stdout and stderr to the client's log, and auditing what the
    /// sandbox refused and, when the call fails, the call. A call that
    /// succeeds is for the caller to record: only it knows the outcome.
    async fn run<R: Send + 'static>(
        &self,
        plugin: &LoadedPlugin,
        request: Audited<'_>,
        grants: &Arc<Grants>,
        context: &RequestContext<RoleServer>,
        entry: Entry<R>,
    ) -> Result<(R, Diagnostics), CallError> {
        let call = self.call_context(&plugin.name, context);
        let observer = call.observer.clone();
        let outcome = self
            .shared
            .runtime
            .run(&plugin.prepared, grants, call, entry)
            .await;
        let diagnostics = match &outcome {
            Ok((_, diagnostics)) => diagnostics,
            Err(error) => &error.diagnostics,
        };
        for denial in diagnostics
            .denials
            .iter()
            .filter(|_| self.shared.audit.enabled())
        {
            self.shared.audit.record(Event::Denied {
                plugin: plugin.name.clone(),
                target: request.target.to_owned(),
                rule: denial.rule.clone(),
                attempt: denial.attempt.clone(),
                client: client_of(context),
            });
        }
        for (stream, text, level) in [
            ("stdout", &diagnostics.stdout, types::LogLevel::Info),
            ("stderr", &diagnostics.stderr, types::LogLevel::Warning),
        ] {
            let text = text.trim_end();
            if !text.is_empty() {
                tracing::info!(plugin = %plugin.name, stream, "{text}");
                observer.log(level, format!("[{stream}] {text}")).await;
            }
        }
        if let Err(error) = &outcome {
            self.record_call(&plugin.name, request, error.kind.as_str(), context);
        }
        outcome
    }
}

/// A tool error result with one text block.
fn tool_error(message: String) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(message)]).into()
}

impl McpServer {
    /// Records a finished request in the audit log.
    fn record_call(
        &self,
        plugin: &str,
        request: Audited<'_>,
        outcome: &str,
        context: &RequestContext<RoleServer>,
    ) {
        if !self.shared.audit.enabled() {
            return;
        }
        let (arguments, arguments_sha256) = match request.arguments {
            Some(arguments) => self.shared.audit.arguments(arguments),
            None => (None, None),
        };
        self.shared.audit.record(Event::Call {
            plugin: plugin.to_owned(),
            method: request.method,
            target: request.target.to_owned(),
            outcome: outcome.to_owned(),
            duration_ms: request.started.elapsed().as_secs_f64() * 1000.0,
            arguments,
            arguments_sha256,
            client: client_of(context),
        });
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        #[allow(deprecated)]
        // Logging is deprecated for 2026-07-28 but still served to older clients.
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_logging()
            .enable_completions()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("host", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Tools, resources and prompts from sandboxed WebAssembly plugins. Tool names are \
                 `<plugin>__<tool>`; each tool's annotations are computed from what its plugin \
                 is granted, not from what it claims.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let registry = self.shared.registry.load();
        let mut tools: Vec<_> = registry.tools().map(convert::tool).collect();
        if self.shared.native_noop {
            tools.push(native_noop());
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if self.shared.native_noop && request.name == NATIVE_NOOP {
            return Ok(CallToolResult::success(vec![ContentBlock::text("ok")]).into());
        }
        let started = Instant::now();
        let registry = self.shared.registry.load_full();
        let arguments = serde_json::Value::Object(request.arguments.unwrap_or_default());
        let audited = Audited {
            method: "tools/call",
            target: &request.name,
            arguments: Some(&arguments),
            started,
        };
        let Some((plugin, entry)) = registry.tool(&request.name) else {
            let message = match registry.withheld(&request.name) {
                Some((owner, reason)) => {
                    self.shared.audit.record(Event::Denied {
                        plugin: owner.to_owned(),
                        target: request.name.to_string(),
                        rule: reason.to_owned(),
                        attempt: format!("call {}", request.name),
                        client: client_of(&context),
                    });
                    format!("tool {} is not served: {reason}", request.name)
                }
                None => {
                    // No plugin offers it; the prefix names the one it seems meant for.
                    let owner = match request.name.split_once(manifest::SEPARATOR) {
                        Some((owner, _)) => owner,
                        None => "",
                    };
                    self.record_call(owner, audited, "unknown-tool", &context);
                    format!(
                        "unknown tool {:?}; tools/list gives the tools served",
                        request.name
                    )
                }
            };
            return Err(McpError::invalid_params(message, None));
        };
        if let Err(problems) = manifest::validate(&entry.input, &arguments) {
            self.record_call(&plugin.name, audited, "invalid-arguments", &context);
            return Ok(tool_error(format!(
                "invalid arguments for {}: {problems}",
                entry.qualified
            )));
        }

        let name = entry.tool.name.clone();
        let json = arguments.to_string();
        let outcome = self
            .run(
                plugin,
                audited,
                &entry.grants,
                &context,
                Box::new(move |handler, store| {
                    Box::pin(async move { handler.call_call_tool(store, &name, &json).await })
                }),
            )
            .await;
        let limit = entry.grants.limits.max_output_bytes();
        let (result, diagnostics) = match outcome {
            Ok(done) => done,
            Err(error) => {
                tracing::warn!(plugin = %plugin.name, tool = %entry.tool.name, %error, "call failed");
                return Ok(tool_error(format!("{} failed: {error}", entry.qualified)));
            }
        };
        let result = super::result::tool_result(entry, result, &diagnostics, limit);
        let outcome = if result.is_error == Some(true) {
            "tool-error"
        } else {
            "ok"
        };
        self.record_call(&plugin.name, audited, outcome, &context);
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let registry = self.shared.registry.load();
        Ok(ListResourcesResult::with_all_items(
            registry.resources().map(convert::resource).collect(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let registry = self.shared.registry.load();
        Ok(ListResourceTemplatesResult::with_all_items(
            registry.templates().map(convert::template).collect(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let registry = self.shared.registry.load_full();
        let uri = request.uri;
        // The URI goes in the error's data too, for clients to match on.
        let not_found = |message: String| {
            McpError::resource_not_found(message, Some(serde_json::json!({ "uri": uri })))
        };
        let plugin = registry
            .resource_owner(&uri)
            .ok_or_else(|| not_found(format!("no resource at {uri}")))?;
        let requested = uri.clone();
        let audited = Audited {
            method: "resources/read",
            target: &uri,
            arguments: None,
            started: Instant::now(),
        };
        let (result, _) = self
            .run(
                plugin,
                audited,
                &plugin.offer.reading,
                &context,
                Box::new(move |handler, store| {
                    Box::pin(async move { handler.call_read_resource(store, &requested).await })
                }),
            )
            .await
            .map_err(|e| McpError::internal_error(format!("reading {uri} failed: {e}"), None))?;
        self.record_call(&plugin.name, audited, "ok", &context);
        let contents = result.map_err(|e| match e {
            types::Error::NotFound(why) => not_found(format!("{uri}: {why}")),
            other => plugin_error(other, &uri),
        })?;
        Ok(ReadResourceResult::new(contents.into_iter().map(convert::contents).collect()).into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let registry = self.shared.registry.load();
        Ok(ListPromptsResult::with_all_items(
            registry.prompts().map(convert::prompt).collect(),
        ))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let registry = self.shared.registry.load_full();
        let (plugin, entry) = registry.prompt(&request.name).ok_or_else(|| {
            McpError::invalid_params(format!("unknown prompt {:?}", request.name), None)
        })?;
        let name = entry.prompt.name.clone();
        // Prompt arguments are strings; anything else is passed as its JSON text.
        let arguments: Vec<(String, String)> = request
            .arguments
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| match value {
                serde_json::Value::String(text) => (name, text),
                other => (name, other.to_string()),
            })
            .collect();
        let audited = Audited {
            method: "prompts/get",
            target: &request.name,
            arguments: None,
            started: Instant::now(),
        };
        let (result, _) = self
            .run(
                plugin,
                audited,
                &plugin.offer.reading,
                &context,
                Box::new(move |handler, store| {
                    Box::pin(async move { handler.call_get_prompt(store, &name, &arguments).await })
                }),
            )
            .await
            .map_err(|e| McpError::internal_error(format!("{} failed: {e}", request.name), None))?;
        self.record_call(&plugin.name, audited, "ok", &context);
        let prompt = result.map_err(|e| plugin_error(e, &request.name))?;
        let messages = prompt.messages.into_iter().map(convert::message).collect();
        let mut result = GetPromptResult::new(messages);
        if let Some(description) = prompt.description {
            result = result.with_description(description);
        }
        Ok(result.into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let registry = self.shared.registry.load_full();
        let target_name = match &request.r#ref {
            Reference::Prompt(prompt) => prompt.name.clone(),
            Reference::Resource(template) => template.uri.clone(),
            _ => String::new(),
        };
        let (plugin, target) = match &request.r#ref {
            Reference::Prompt(prompt) => {
                let (plugin, entry) = registry.prompt(&prompt.name).ok_or_else(|| {
                    McpError::invalid_params(format!("unknown prompt {:?}", prompt.name), None)
                })?;
                (
                    plugin,
                    types::CompletionTarget::Prompt(entry.prompt.name.clone()),
                )
            }
            Reference::Resource(template) => {
                let plugin = registry.template_owner(&template.uri).ok_or_else(|| {
                    McpError::invalid_params(
                        format!("unknown resource template {}", template.uri),
                        None,
                    )
                })?;
                (
                    plugin,
                    types::CompletionTarget::ResourceTemplate(template.uri.clone()),
                )
            }
            _ => {
                return Err(McpError::invalid_params(
                    "unsupported completion reference",
                    None,
                ));
            }
        };
        let argument = request.argument.name.clone();
        let value = request.argument.value.clone();
        let others: Vec<(String, String)> = request
            .context
            .and_then(|c| c.arguments)
            .map(|a| a.into_iter().collect())
            .unwrap_or_default();
        let audited = Audited {
            method: "completion/complete",
            target: &target_name,
            arguments: None,
            started: Instant::now(),
        };
        let (result, _) = self
            .run(
                plugin,
                audited,
                &plugin.offer.reading,
                &context,
                Box::new(move |handler, store| {
                    Box::pin(async move {
                        handler
                            .call_complete(store, &target, &argument, &value, &others)
                            .await
                    })
                }),
            )
            .await
            .map_err(|e| McpError::internal_error(format!("completion failed: {e}"), None))?;
        self.record_call(&plugin.name, audited, "ok", &context);
        let completion = result.map_err(|e| plugin_error(e, "completion"))?;
        let mut values = completion.values;
        let truncated = values.len() > CompletionInfo::MAX_VALUES;
        values.truncate(CompletionInfo::MAX_VALUES);
        let info = CompletionInfo::with_pagination(
            values,
            completion.total,
            completion.has_more || truncated,
        )
        .map_err(|e| McpError::internal_error(e, None))?;
        Ok(CompleteResult::new(info))
    }

    /// Clients with a session learn of reloads through their peer.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let mut changes = self.shared.changes.subscribe();
        let peer = context.peer;
        let server = self.clone();
        tokio::spawn(async move {
            while let Some(change) = next_change(&mut changes).await {
                let updated = server.updated_resources(&server.watched);
                if peer.is_transport_closed() || notify_peer(&peer, change, updated).await.is_err()
                {
                    break;
                }
            }
        });
    }

    #[allow(deprecated)] // Legacy-only, and what 2025-11-25 clients use.
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let registry = self.shared.registry.load();
        if registry.resource_owner(&request.uri).is_none() {
            let message = format!("no resource at {}", request.uri);
            return Err(McpError::resource_not_found(message, None));
        }
        if let Ok(mut watched) = self.watched.lock() {
            watched.add(request.uri, &registry);
        }
        Ok(())
    }

    #[allow(deprecated)] // Legacy-only, and what 2025-11-25 clients use.
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Ok(mut watched) = self.watched.lock() {
            watched.remove(&request.uri);
        }
        Ok(())
    }

    /// 2026-07-28 clients learn of reloads, and of updates to the resources
    /// they name that are served, through `subscriptions/listen`.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let registry = self.shared.registry.load();
        let served = requested
            .resource_subscriptions
            .iter()
            .flatten()
            .filter(|uri| registry.resource_owner(uri).is_some());
        Some(
            SubscriptionFilter::builder()
                .tools_list_changed()
                .prompts_list_changed()
                .resources_list_changed()
                .resource_subscriptions(served)
                .build(),
        )
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let mut changes = self.shared.changes.subscribe();
        let watched = Mutex::new(Watched::default());
        if let (Ok(mut watched), Some(uris)) =
            (watched.lock(), &context.accepted().resource_subscriptions)
        {
            let registry = self.shared.registry.load();
            for uri in uris {
                watched.add(uri.clone(), &registry);
            }
        }
        loop {
            let change = tokio::select! {
                () = context.cancelled() => return Ok(()),
                change = next_change(&mut changes) => match change {
                    Some(change) => change,
                    None => return Ok(()),
                },
            };
            let sink = context.sink();
            // A listener that went away is the SDK's to clean up; keep going
            // until the subscription is cancelled.
            for uri in self.updated_resources(&watched) {
                let _ = sink.notify_resource_updated(uri).await;
            }
            if change.tools {
                let _ = sink.notify_tool_list_changed().await;
            }
            if change.resources {
                let _ = sink.notify_resource_list_changed().await;
            }
            if change.prompts {
                let _ = sink.notify_prompt_list_changed().await;
            }
        }
    }

    #[allow(deprecated)] // Logging is deprecated for 2026-07-28 but still served to older clients.
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.log_level.set(request.level);
        Ok(())
    }
}

/// A plugin's refusal as a protocol error.
fn plugin_error(error: types::Error, subject: &str) -> McpError {
    match error {
        types::Error::NotFound(why) => {
            McpError::resource_not_found(format!("{subject}: {why}"), None)
        }
        types::Error::InvalidArguments(why) => {
            McpError::invalid_params(format!("{subject}: {why}"), None)
        }
        types::Error::Failed(why) => McpError::internal_error(format!("{subject}: {why}"), None),
    }
}
