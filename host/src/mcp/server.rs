//! The MCP server: each method mapped onto the registry being served (the
//! lists) or the call pipeline (everything that runs a plugin).

use super::pipeline::Pipeline;
use super::protocol::SERVED_METHODS;
use super::request::{Origin, principal_of};
use super::subscriptions::Watched;
use super::{Shared, convert, noop, notify};
use crate::client_text::{self, shown};
use crate::plugin::{LoadedPlugin, Registry, Resources};
use crate::policy::access;
use crate::principal::Principal;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult,
    GetPromptRequestParams, GetPromptResponse, Implementation, InitializeRequestParams,
    InitializeResult, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig,
};
use rmcp::model::{
    CancelTaskParams, CustomRequest, CustomResult, GetTaskParams, GetTaskResult,
    SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

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
}

impl McpServer {
    fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            shared: &self.shared,
        }
    }

    fn origin<'a>(&'a self, context: &'a RequestContext<RoleServer>) -> Origin<'a> {
        Origin::of(context, &self.log_level)
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
            tools.push(noop::tool());
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if self.shared.native_noop && request.name == noop::NAME {
            return Ok(noop::answer().into());
        }
        let origin = self.origin(&context);
        self.pipeline()
            .call_tool(&request.name, request.arguments, origin)
            .await
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
        let origin = self.origin(&context);
        self.pipeline().read_resource(request, origin).await
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
        let origin = self.origin(&context);
        self.pipeline().get_prompt(request, origin).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let origin = self.origin(&context);
        self.pipeline().complete(request, origin).await
    }

    /// Clients with a session learn of reloads through their peer.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        notify::watch_changes(
            &self.shared,
            context.peer,
            self.watched.clone(),
            self.session_ended(),
        );
    }

    #[allow(deprecated)] // Legacy-only, and what 2025-11-25 clients use.
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let registry = self.shared.registry.load();
        client_text::uri_within_limit(&request.uri)
            .map_err(|why| McpError::invalid_params(why, None))?;
        if registry.resource_owner(&request.uri).is_none() {
            let message = format!("no resource at {}", shown(&request.uri));
            return Err(McpError::resource_not_found(message, None));
        }
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        // A session is its user's alone: its updates follow that user's
        // state.
        watched.set_user(principal_of(&context).id);
        watched
            .add(request.uri, &registry, &self.shared.state)
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
        notify::listen(&self.shared, context).await;
        Ok(())
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

fn unknown_task(id: &str) -> McpError {
    McpError::invalid_params(format!("no task {id} (tasks are kept for an hour)"), None)
}
