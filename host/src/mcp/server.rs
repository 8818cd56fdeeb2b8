//! The MCP server: every request answered from the current registry, every
//! plugin call run in a fresh sandbox.

use super::convert;
use super::drain::InFlight;
use super::observer::ClientObserver;
use super::protocol::SERVED_METHODS;
use super::subscriptions::Watched;
use super::tasks::{Outcome, TaskObserver, Tasks};
use crate::audit::{AuditLog, Client, Event};
use crate::auth::rate::Limiter;
use crate::capability::denials::Refusals;
use crate::client_text::{self, shown};
use crate::metrics::Metrics;
use crate::plugin::manifest::{self, ToolEntry};
use crate::plugin::{Change, LoadedPlugin, Registry, Resources};
use crate::policy::Grants;
use crate::policy::access;
use crate::principal::Principal;
use crate::runtime::{CallContext, CallError, Diagnostics, Entry, Runtime, types};
use arc_swap::ArcSwap;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    CompletionInfo, ContentBlock, GetPromptRequestParams, GetPromptResponse, GetPromptResult,
    Implementation, InitializeRequestParams, InitializeResult, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Reference, ServerCapabilities, ServerConfig,
};
use rmcp::model::{
    CancelTaskParams, ClientCapabilities, CreateTaskResult, CustomRequest, CustomResult,
    GetTaskParams, GetTaskResult, ResourceUpdatedNotificationParam, SubscribeRequestParams,
    SubscriptionFilter, UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

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
    /// Calls running (or run) as tasks.
    pub tasks: Arc<Tasks>,
    /// Tool calls per principal and tool (not for the local user).
    pub tool_calls: Limiter,
    /// What `/metrics` reports.
    pub metrics: Arc<Metrics>,
    /// Plugin calls running now, which shutdown waits for.
    pub in_flight: InFlight,
}

impl Shared {
    pub fn new(registry: Registry, runtime: Arc<Runtime>, audit: AuditLog) -> Shared {
        Shared {
            registry: ArcSwap::from_pointee(registry),
            runtime,
            audit,
            changes: broadcast::channel(16).0,
            native_noop: false,
            tasks: Arc::default(),
            tool_calls: Limiter::new(0),
            metrics: Arc::default(),
            in_flight: InFlight::default(),
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

/// The resources in `watched` that `shared` now serves differently.
fn updated_resources(shared: &Shared, watched: &Mutex<Watched>) -> Vec<String> {
    let registry = shared.registry.load();
    watched
        .lock()
        .map(|mut watched| watched.updated(&registry))
        .unwrap_or_default()
}

/// A request as the audit log describes it.
#[derive(Clone, Copy)]
struct Audited<'a> {
    method: &'static str,
    target: &'a str,
    arguments: Option<&'a serde_json::Value>,
    started: Instant,
}

/// Who a request runs as: the principal the HTTP auth layer found, or the
/// local user (stdio, and HTTP without auth).
fn principal_of(context: &RequestContext<RoleServer>) -> Principal {
    super::authenticate::principal_of(context.extensions.get::<http::request::Parts>())
}

/// Whether `principal` may use `plugin` at all.
fn may_use(plugin: &LoadedPlugin, principal: &Principal) -> bool {
    access::decide(&plugin.grants.access, principal, false).is_ok()
}

/// The resources served by the plugins `principal` may use.
fn usable_resources<'a>(
    registry: &'a Registry,
    principal: &'a Principal,
) -> impl Iterator<Item = &'a Resources> + 'a {
    registry
        .served()
        .filter(move |(plugin, _)| may_use(plugin, principal))
        .map(|(_, served)| served)
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
struct Caller {
    /// Where its logs and progress go, and what cancels it.
    call: CallContext,
    /// The client, as the audit log names it.
    client: Client,
    /// Cancelled when the HTTP session the request came on ends.
    session_ended: Option<CancellationToken>,
}

/// The client address an HTTP request is counted under.
fn client_address_of(context: &RequestContext<RoleServer>) -> Option<std::net::IpAddr> {
    let parts = context.extensions.get::<http::request::Parts>()?;
    let address = parts
        .extensions
        .get::<super::client_address::ClientAddress>()?;
    Some(address.0)
}

/// What ends the calls of the HTTP session a request came on.
fn session_ended_of(context: &RequestContext<RoleServer>) -> Option<CancellationToken> {
    let parts = context.extensions.get::<http::request::Parts>()?;
    let ended = parts.extensions.get::<super::stateless::CancelCalls>()?;
    Some(ended.0.clone())
}

/// One client connection's server.
#[derive(Clone)]
pub struct McpServer {
    shared: Arc<Shared>,
    log_level: super::observer::LogLevelSetting,
    /// Resources the client subscribed to (2025-11-25 `resources/subscribe`).
    watched: Arc<Mutex<Watched>>,
    /// Cancelled when the last clone of this session's server is dropped
    /// (rmcp drops it when the session ends), ending its tasks.
    ended: Arc<tokio_util::sync::DropGuard>,
}

impl McpServer {
    pub fn new(shared: Arc<Shared>) -> Self {
        McpServer {
            shared,
            log_level: Default::default(),
            watched: Default::default(),
            ended: Arc::new(CancellationToken::new().drop_guard()),
        }
    }

    /// Cancelled once the session this server answers has ended.
    fn session_ended(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.ended.token().clone().cancelled_owned()
    }

    /// The call context for a request running as `principal`: its
    /// cancellation, a channel back to the client for the plugin's logs and
    /// progress, and whose folders per-user mounts show.
    fn call_context(
        &self,
        plugin: &str,
        context: &RequestContext<RoleServer>,
        principal: &Principal,
    ) -> CallContext {
        CallContext {
            observer: Arc::new(ClientObserver::new(
                context.peer.clone(),
                plugin,
                self.log_level.effective(context),
                context.meta.get_progress_token(),
            )),
            cancel: context.ct.clone(),
            user: Some(principal.id.clone()),
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
        caller: &Caller,
        entry: Entry<R>,
    ) -> Result<(R, Diagnostics), CallError> {
        let _in_flight = self.shared.in_flight.enter();
        let observer = caller.call.observer.clone();
        // Boxed: the sandbox's future is large, and held inline in both arms
        // below it would be copied (twice its size) into every spawned
        // request handler.
        let mut running = Box::pin(self.shared.runtime.run(
            &plugin.prepared,
            &grants.sandbox,
            caller.call.clone(),
            entry,
        ));
        let outcome = match &caller.session_ended {
            None => running.await,
            Some(ended) => {
                tokio::select! {
                    biased;
                    outcome = &mut running => outcome,
                    () = ended.cancelled() => {
                        // Stopped as a cancellation, so it is recorded as one.
                        caller.call.cancel.cancel();
                        running.await
                    }
                }
            }
        };
        let diagnostics = match &outcome {
            Ok((_, diagnostics)) => diagnostics,
            Err(error) => &error.diagnostics,
        };
        self.record_denials(plugin, request.target, &diagnostics.denials, &caller.client)
            .await;
        for (stream, text, level) in [
            ("stdout", &diagnostics.stdout, types::LogLevel::Info),
            ("stderr", &diagnostics.stderr, types::LogLevel::Warning),
        ] {
            let text = text.trim_end();
            if !text.is_empty() {
                // A field, not the message: escaped, so a newline in the
                // plugin's output cannot start a line of the host's log.
                tracing::info!(plugin = %plugin.name, stream, output = ?text, "plugin output");
                observer.log(level, format!("[{stream}] {text}")).await;
            }
        }
        if let Err(error) = &outcome {
            self.record_call(&plugin.name, request, error.kind.as_str(), &caller.client)
                .await;
        }
        outcome
    }

    /// Counts and records what the sandbox refused during one call.
    async fn record_denials(
        &self,
        plugin: &LoadedPlugin,
        target: &str,
        refusals: &Refusals,
        client: &Client,
    ) {
        let metrics = &self.shared.metrics;
        for refused in &refusals.distinct {
            metrics.denials(refused.denial.rule.label(), refused.times);
        }
        if let Some(beyond) = &refusals.beyond {
            metrics.denials(beyond.latest.rule.label(), beyond.count);
        }
        let audit = &self.shared.audit;
        for refused in &refusals.distinct {
            audit
                .record(Event::Denied {
                    plugin: plugin.name.clone(),
                    target: target.to_owned(),
                    rule: refused.denial.rule.to_string(),
                    attempt: refused.denial.attempt.clone(),
                    times: refused.times,
                    client: client.clone(),
                })
                .await;
        }
        if let Some(beyond) = &refusals.beyond {
            audit
                .record(Event::DeniedMore {
                    plugin: plugin.name.clone(),
                    target: target.to_owned(),
                    count: beyond.count,
                    latest_rule: beyond.latest.rule.to_string(),
                    latest_attempt: beyond.latest.attempt.clone(),
                    client: client.clone(),
                })
                .await;
        }
    }
}

/// `value` as a JSON object (a result or an error, for a task to keep).
fn json_object(value: &impl serde::Serialize) -> rmcp::model::JsonObject {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(object)) => object,
        _ => rmcp::model::JsonObject::new(),
    }
}

/// A tool error result with one text block.
fn tool_error(message: String) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(message)]).into()
}

impl McpServer {
    /// Runs `entry` for a request that reads from `plugin` (a resource, a
    /// prompt, a completion): refused unless the request's principal may
    /// use the plugin, run with the plugin's reading grants, and recorded.
    /// The outer error is the refusal, the inner one the failed call.
    async fn run_reading<R: Send + 'static>(
        &self,
        plugin: &LoadedPlugin,
        request: Audited<'_>,
        context: &RequestContext<RoleServer>,
        entry: Entry<R>,
    ) -> Result<Result<R, CallError>, McpError> {
        let principal = principal_of(context);
        let caller = Caller {
            call: self.call_context(&plugin.name, context, &principal),
            client: client_of(context, &principal),
            session_ended: session_ended_of(context),
        };
        let access = &plugin.grants.access;
        self.admit(
            plugin,
            access,
            &principal,
            false,
            request.target,
            &caller.client,
        )
        .await?;
        let grants = &plugin.offer.reading;
        let outcome = self.run(plugin, request, grants, &caller, entry).await;
        if outcome.is_ok() {
            self.record_call(&plugin.name, request, "ok", &caller.client)
                .await;
        }
        Ok(outcome.map(|(result, _)| result))
    }

    /// Refuses `principal` the use of `target` of `plugin` (a tool that
    /// `writes`, or not) when `access` says so, recording the refusal; and
    /// refuses every call while the audit log cannot record it.
    async fn admit(
        &self,
        plugin: &LoadedPlugin,
        access: &access::AccessSpec,
        principal: &Principal,
        writes: bool,
        target: &str,
        client: &Client,
    ) -> Result<(), McpError> {
        if self.shared.audit.unwritable() {
            self.shared.metrics.denials("audit log unwritable", 1);
            // Recording the refusal is also how the writer learns that the
            // log can be written again: the next call after that is served.
            self.shared
                .audit
                .record(Event::Denied {
                    plugin: plugin.name.clone(),
                    target: target.to_owned(),
                    rule: "audit log unwritable".to_owned(),
                    attempt: format!("use {target}"),
                    times: 1,
                    client: client.clone(),
                })
                .await;
            let message = "the audit log cannot be written (see the host's log); calls are \
                           refused until it can";
            return Err(McpError::internal_error(message, None));
        }
        let Err(rule) = access::decide(access, principal, writes) else {
            return Ok(());
        };
        self.shared.metrics.denials(&rule, 1);
        let message = format!("{target} is not available to {}: {rule}", principal.id);
        self.shared
            .audit
            .record(Event::Denied {
                plugin: plugin.name.clone(),
                target: target.to_owned(),
                rule,
                attempt: format!("use {target}"),
                times: 1,
                client: client.clone(),
            })
            .await;
        Err(McpError::invalid_params(message, None))
    }

    /// Calls the tool `entry` of `plugin` with the request's arguments and
    /// records the call; the tool's result, or why there is none.
    async fn run_tool(
        &self,
        plugin: &LoadedPlugin,
        entry: &ToolEntry,
        request: Audited<'_>,
        caller: &Caller,
    ) -> Result<CallToolResult, CallError> {
        let name = entry.tool.name.clone();
        let json = request.arguments.map(|a| a.to_string()).unwrap_or_default();
        let (result, diagnostics) = self
            .run(
                plugin,
                request,
                &entry.grants,
                caller,
                Box::new(move |handler, store| {
                    Box::pin(async move { handler.call_call_tool(store, &name, &json).await })
                }),
            )
            .await
            .inspect_err(|error| {
                tracing::warn!(plugin = %plugin.name, tool = %entry.tool.name, %error, "call failed");
            })?;
        let limit = entry.grants.sandbox.limits.max_output_bytes();
        let result = super::result::tool_result(entry, result, &diagnostics, limit);
        let outcome = if result.is_error == Some(true) {
            "tool-error"
        } else {
            "ok"
        };
        self.record_call(&plugin.name, request, outcome, &caller.client)
            .await;
        Ok(result)
    }

    /// Starts the tool `tool` as a task running on its own; the task's
    /// handle, or `None` when no more tasks can be kept.
    fn start_task(
        &self,
        registry: &Arc<Registry>,
        tool: &str,
        arguments: serde_json::Value,
        client: Client,
    ) -> Option<CreateTaskResult> {
        let (task, cancel) = self.shared.tasks.create(&client.principal)?;
        let id = task.task_id.clone();
        let caller = Caller {
            call: CallContext {
                observer: Arc::new(TaskObserver::new(self.shared.tasks.clone(), id.clone())),
                cancel,
                user: Some(client.principal.clone()),
            },
            session_ended: None,
            client,
        };
        let (server, registry, tool) = (self.clone(), registry.clone(), tool.to_owned());
        tokio::spawn(async move {
            let Some((plugin, entry)) = registry.tool(&tool) else {
                return;
            };
            let request = Audited {
                method: "tools/call",
                target: &tool,
                arguments: Some(&arguments),
                started: Instant::now(),
            };
            let outcome = match server.run_tool(plugin, entry, request, &caller).await {
                Ok(result) => Outcome::Completed(json_object(&result)),
                Err(error) => {
                    let message = format!("{} failed: {error}", entry.qualified);
                    Outcome::Failed(json_object(&McpError::internal_error(message, None)))
                }
            };
            server.shared.tasks.finish(&id, outcome);
        });
        Some(CreateTaskResult::new(task))
    }

    /// Records a finished request in the audit log.
    async fn record_call(
        &self,
        plugin: &str,
        request: Audited<'_>,
        outcome: &str,
        client: &Client,
    ) {
        let seconds = request.started.elapsed().as_secs_f64();
        // Only served names label metrics: a name nothing serves would
        // otherwise become a label for good, one per typo or attack.
        // A resource is labelled by what serves it, never by the URI read.
        let registry = self.shared.registry.load();
        let (label_plugin, label_target) = match (outcome, request.method) {
            (UNKNOWN_TOOL, _) => ("unknown", "unknown"),
            (_, "resources/read") => (
                plugin,
                registry
                    .resource_served_as(request.target)
                    .unwrap_or("unknown"),
            ),
            _ => (plugin, request.target),
        };
        let metrics = &self.shared.metrics;
        metrics.call(label_plugin, request.method, label_target, outcome, seconds);
        if !self.shared.audit.enabled() {
            return;
        }
        let (arguments, arguments_sha256) = match request.arguments {
            Some(arguments) => self.shared.audit.arguments(arguments),
            None => (None, None),
        };
        self.shared
            .audit
            .record(Event::Call {
                plugin: plugin.to_owned(),
                method: request.method,
                target: request.target.to_owned(),
                outcome: outcome.to_owned(),
                duration_ms: seconds * 1000.0,
                arguments,
                arguments_sha256,
                client: client.clone(),
            })
            .await;
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
            .enable_tasks()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("host", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Tools, resources and prompts from sandboxed WebAssembly plugins. Tool names are \
                 `<plugin>__<tool>`; each tool's annotations are computed from what its plugin \
                 is granted, not from what it claims.",
            )
    }

    /// The handshake of versions before 2026-07-28, which have no tasks
    /// extension: the host never makes a task there, so it does not
    /// advertise one.
    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        context.peer.set_peer_info(request.clone());
        let mut result = self.negotiate_initialize(&request)?;
        if let Some(extensions) = &mut result.capabilities.extensions {
            extensions.remove(rmcp::model::TASKS_EXTENSION_ID);
            if extensions.is_empty() {
                result.capabilities.extensions = None;
            }
        }
        Ok(result)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let registry = self.shared.registry.load();
        let principal = principal_of(&context);
        let mut tools: Vec<_> = registry
            .served_tools()
            .filter(|(plugin, _)| may_use(plugin, &principal))
            .map(|(_, tool)| tool)
            .filter(|tool| {
                let writes = !tool.annotations.read_only;
                access::decide(&tool.grants.access, &principal, writes).is_ok()
            })
            .map(convert::tool)
            .collect();
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
        let principal = principal_of(&context);
        let client = client_of(&context, &principal);
        let Some((plugin, entry)) = registry.tool(&request.name) else {
            let message = match registry.withheld(&request.name) {
                Some((owner, reason)) => {
                    self.shared.metrics.denials(reason, 1);
                    self.shared
                        .audit
                        .record(Event::Denied {
                            plugin: owner.to_owned(),
                            target: request.name.to_string(),
                            rule: reason.to_owned(),
                            attempt: format!("call {}", request.name),
                            times: 1,
                            client,
                        })
                        .await;
                    format!("tool {} is not served: {reason}", request.name)
                }
                None => {
                    // No plugin offers it; the prefix names the one it seems meant for.
                    let owner = match request.name.split_once(manifest::SEPARATOR) {
                        Some((owner, _)) => owner,
                        None => "",
                    };
                    self.record_call(owner, audited, UNKNOWN_TOOL, &client)
                        .await;
                    format!(
                        "unknown tool {}; tools/list gives the tools served",
                        shown(&request.name)
                    )
                }
            };
            return Err(McpError::invalid_params(message, None));
        };
        let writes = !entry.annotations.read_only;
        self.admit(
            plugin,
            &entry.grants.access,
            &principal,
            writes,
            &request.name,
            &client,
        )
        .await?;
        if !principal.local {
            // Anonymous clients each have their own budget, by address.
            let caller = match client_address_of(&context) {
                Some(address) if principal.is_anonymous() => format!("{}@{address}", principal.id),
                _ => principal.id.clone(),
            };
            let budget = format!("{caller}\n{}", entry.qualified);
            if let Err(wait) = self.shared.tool_calls.take(&budget, Instant::now()) {
                self.shared.metrics.denials("rate limit", 1);
                self.record_call(&plugin.name, audited, "rate-limited", &client)
                    .await;
                return Ok(tool_error(format!(
                    "rate limit: {} calls {} too often; retry after {} s",
                    principal.id,
                    entry.qualified,
                    wait.as_secs() + 1
                )));
            }
        }

        if let Err(problems) = manifest::validate(&entry.input, &arguments) {
            self.record_call(&plugin.name, audited, "invalid-arguments", &client)
                .await;
            return Ok(tool_error(format!(
                "invalid arguments for {}: {problems}",
                entry.qualified
            )));
        }

        // Long-running tools become tasks for clients that take them. The
        // tasks extension (SEP-2663) is part of 2026-07-28; on older
        // sessions it is ignored, as clients that declare it anyway (the
        // Inspector) expect: they cannot take a handle there.
        let modern = context
            .protocol_version()
            .is_some_and(|version| version >= ProtocolVersion::V_2026_07_28);
        let takes_tasks = modern
            && context
                .client_capabilities()
                .is_some_and(|capabilities| capabilities.supports_tasks());
        let needs_tasks = || {
            let required = ClientCapabilities::builder().enable_tasks().build();
            McpError::missing_required_client_capability(required)
        };
        match (entry.tool.task_support, takes_tasks) {
            (types::TaskSupport::Forbidden, _) => {}
            (types::TaskSupport::Required, false) => return Err(needs_tasks()),
            (task_support, true) => {
                let task =
                    self.start_task(&registry, &request.name, arguments.clone(), client.clone());
                match (task, task_support) {
                    (Some(task), _) => return Ok(CallToolResponse::Task(task)),
                    (None, types::TaskSupport::Required) => {
                        let message = "too many tasks are kept already (64 per user, 1,024 in \
                                       all, each for an hour); try again later";
                        return Err(McpError::internal_error(message, None));
                    }
                    (None, _) => {}
                }
            }
            (types::TaskSupport::Optional, false) => {}
        }

        let caller = Caller {
            call: self.call_context(&plugin.name, &context, &principal),
            client,
            session_ended: session_ended_of(&context),
        };
        match self.run_tool(plugin, entry, audited, &caller).await {
            Ok(result) => Ok(result.into()),
            Err(error) => Ok(tool_error(format!("{} failed: {error}", entry.qualified))),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let registry = self.shared.registry.load();
        let principal = principal_of(&context);
        Ok(ListResourcesResult::with_all_items(
            usable_resources(&registry, &principal)
                .flat_map(|served| served.resources.iter())
                .map(convert::resource)
                .collect(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let registry = self.shared.registry.load();
        let principal = principal_of(&context);
        Ok(ListResourceTemplatesResult::with_all_items(
            usable_resources(&registry, &principal)
                .flat_map(|served| served.templates.iter())
                .map(convert::template)
                .collect(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let registry = self.shared.registry.load_full();
        let uri = request.uri;
        client_text::uri_within_limit(&uri).map_err(|why| McpError::invalid_params(why, None))?;
        // The URI goes in the error's data too, for clients to match on.
        let not_found = |message: String| {
            McpError::resource_not_found(message, Some(serde_json::json!({ "uri": uri })))
        };
        let plugin = registry
            .resource_owner(&uri)
            .ok_or_else(|| not_found(format!("no resource at {}", shown(&uri))))?;
        let requested = uri.clone();
        let audited = Audited {
            method: "resources/read",
            target: &uri,
            arguments: None,
            started: Instant::now(),
        };
        let result = self
            .run_reading(
                plugin,
                audited,
                &context,
                Box::new(move |handler, store| {
                    Box::pin(async move { handler.call_read_resource(store, &requested).await })
                }),
            )
            .await?
            .map_err(|e| {
                McpError::internal_error(format!("reading {} failed: {e}", shown(&uri)), None)
            })?;
        let contents = result.map_err(|e| match e {
            types::Error::NotFound(why) => not_found(format!("{}: {why}", shown(&uri))),
            other => plugin_error(other, &shown(&uri)),
        })?;
        let max_bytes = plugin.grants.sandbox.limits.max_output_bytes();
        let bytes = contents.iter().map(convert::contents_size).sum();
        super::result::items_within("resource contents", contents.len(), bytes, max_bytes)
            .map_err(|why| {
                McpError::internal_error(format!("reading {} failed: {why}", shown(&uri)), None)
            })?;
        let result = ReadResourceResult::new(contents.into_iter().map(convert::contents).collect());
        super::result::within_cap(&result, max_bytes).map_err(|why| {
            McpError::internal_error(format!("reading {uri} failed: {why}"), None)
        })?;
        Ok(result.into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let registry = self.shared.registry.load();
        let principal = principal_of(&context);
        Ok(ListPromptsResult::with_all_items(
            registry
                .served_prompts()
                .filter(|(plugin, _)| may_use(plugin, &principal))
                .map(|(_, prompt)| convert::prompt(prompt))
                .collect(),
        ))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let registry = self.shared.registry.load_full();
        let (plugin, entry) = registry.prompt(&request.name).ok_or_else(|| {
            McpError::invalid_params(format!("unknown prompt {}", shown(&request.name)), None)
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
        let result = self
            .run_reading(
                plugin,
                audited,
                &context,
                Box::new(move |handler, store| {
                    Box::pin(async move { handler.call_get_prompt(store, &name, &arguments).await })
                }),
            )
            .await?
            .map_err(|e| McpError::internal_error(format!("{} failed: {e}", request.name), None))?;
        let prompt = result.map_err(|e| plugin_error(e, &request.name))?;
        let max_bytes = plugin.grants.sandbox.limits.max_output_bytes();
        let bytes = prompt
            .messages
            .iter()
            .map(|m| convert::content_size(&m.content))
            .sum();
        super::result::items_within("prompt messages", prompt.messages.len(), bytes, max_bytes)
            .map_err(|why| {
                McpError::internal_error(format!("{} failed: {why}", request.name), None)
            })?;
        let messages = prompt.messages.into_iter().map(convert::message).collect();
        let mut result = GetPromptResult::new(messages);
        if let Some(description) = prompt.description {
            result = result.with_description(description);
        }
        super::result::within_cap(&result, plugin.grants.sandbox.limits.max_output_bytes())
            .map_err(|why| {
                McpError::internal_error(format!("{} failed: {why}", request.name), None)
            })?;
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
                    McpError::invalid_params(
                        format!("unknown prompt {}", shown(&prompt.name)),
                        None,
                    )
                })?;
                (
                    plugin,
                    types::CompletionTarget::Prompt(entry.prompt.name.clone()),
                )
            }
            Reference::Resource(template) => {
                let plugin = registry.template_owner(&template.uri).ok_or_else(|| {
                    McpError::invalid_params(
                        format!("unknown resource template {}", shown(&template.uri)),
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
        let result = self
            .run_reading(
                plugin,
                audited,
                &context,
                Box::new(move |handler, store| {
                    Box::pin(async move {
                        handler
                            .call_complete(store, &target, &argument, &value, &others)
                            .await
                    })
                }),
            )
            .await?
            .map_err(|e| McpError::internal_error(format!("completion failed: {e}"), None))?;
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
        let result = CompleteResult::new(info);
        super::result::within_cap(&result, plugin.grants.sandbox.limits.max_output_bytes())
            .map_err(|why| McpError::internal_error(format!("completion failed: {why}"), None))?;
        Ok(result)
    }

    /// Clients with a session learn of reloads through their peer.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let mut changes = self.shared.changes.subscribe();
        let peer = context.peer;
        // Weak: the task must not keep the host's state (and so the change
        // channel it waits on) alive once the host is shutting down.
        let shared = Arc::downgrade(&self.shared);
        let watched = self.watched.clone();
        let ended = self.session_ended();
        let watching = self.shared.metrics.session_watcher();
        tokio::spawn(async move {
            let _watching = watching;
            tokio::pin!(ended);
            loop {
                let change = tokio::select! {
                    () = &mut ended => break,
                    change = next_change(&mut changes) => change,
                };
                let Some(change) = change else { break };
                let Some(shared) = shared.upgrade() else {
                    break;
                };
                let updated = updated_resources(&shared, &watched);
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
        client_text::uri_within_limit(&request.uri)
            .map_err(|why| McpError::invalid_params(why, None))?;
        if registry.resource_owner(&request.uri).is_none() {
            let message = format!("no resource at {}", shown(&request.uri));
            return Err(McpError::resource_not_found(message, None));
        }
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched
            .add(request.uri, &registry)
            .map_err(|why| McpError::invalid_params(why, None))
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
            .filter(|uri| {
                client_text::uri_within_limit(uri).is_ok() && registry.resource_owner(uri).is_some()
            })
            .take(super::subscriptions::MAX_PER_SESSION);
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
                // Past the host's bound the rest go unwatched; the stream
                // still reports list changes.
                if watched.add(uri.clone(), &registry).is_err() {
                    break;
                }
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
            for uri in updated_resources(&self.shared, &watched) {
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

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        let owner = principal_of(&context).id;
        match self.shared.tasks.get(&request.task_id, &owner) {
            Some(task) => Ok(GetTaskResult::new(task)),
            None => Err(unknown_task(&request.task_id)),
        }
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if self
            .shared
            .tasks
            .cancel(&request.task_id, &principal_of(&context).id)
        {
            Ok(())
        } else {
            Err(unknown_task(&request.task_id))
        }
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let owner = principal_of(&context).id;
        if self.shared.tasks.get(&request.task_id, &owner).is_none() {
            return Err(unknown_task(&request.task_id));
        }
        let message = format!(
            "task {} is not waiting for input: plugins' tasks never ask for any",
            request.task_id
        );
        Err(McpError::invalid_params(message, None))
    }

    /// A method rmcp could not match: unknown (-32601), or a standard one
    /// whose params did not fit its schema (-32602, as JSON-RPC says).
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        let method = shown(&request.method);
        if SERVED_METHODS.contains(&request.method.as_str()) {
            let message = format!("invalid params for {method}: they do not fit its schema");
            return Err(McpError::invalid_params(message, None));
        }
        Err(McpError::new(
            rmcp::model::ErrorCode::METHOD_NOT_FOUND,
            format!("method {method} not found"),
            None,
        ))
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

/// The outcome of a call to a tool no plugin serves.
const UNKNOWN_TOOL: &str = "unknown-tool";

fn unknown_task(id: &str) -> McpError {
    McpError::invalid_params(format!("no task {id} (tasks are kept for an hour)"), None)
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
