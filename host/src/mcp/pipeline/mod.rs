//! The call pipeline, one for every way a plugin is called (a tool over
//! stdio or HTTP, now or as a task; a resource read, a prompt, a
//! completion): find what serves the request, admit the caller (access,
//! the audit log writable), hold it to its rate, validate the arguments,
//! run the call in a fresh sandbox (or start it as a task), shape the
//! result, and record it. The MCP handlers only map methods onto it.

mod reading;
mod record;

use super::Shared;
use super::request::{Caller, Origin};
use super::tasks::TaskObserver;
use crate::audit::{Client, Event};
use crate::client_text::shown;
use crate::interface::types;
use crate::plugin::manifest::{self, ToolEntry};
use crate::plugin::{LoadedPlugin, Registry};
use crate::policy::Grants;
use crate::runtime::{CallContext, CallError, Diagnostics, Entry};
use crate::shared_state::Outcome;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock, CreateTaskResult,
    JsonObject,
};
use std::sync::Arc;
use std::time::Instant;

/// The pipeline, over what every connection shares.
pub(super) struct Pipeline<'a> {
    pub shared: &'a Arc<Shared>,
}

/// A request as the audit log describes it.
#[derive(Clone, Copy)]
pub(super) struct Audited<'a> {
    pub method: &'static str,
    pub target: &'a str,
    pub arguments: Option<&'a serde_json::Value>,
    pub started: Instant,
}

impl Pipeline<'_> {
    /// `tools/call` of the tool `name` with `arguments`, for `origin`: each
    /// step may answer in the call's place.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
        origin: Origin<'_>,
    ) -> Result<CallToolResponse, McpError> {
        let registry = self.shared.registry.load_full();
        let arguments = serde_json::Value::Object(arguments.unwrap_or_default());
        let audited = Audited {
            method: "tools/call",
            target: name,
            arguments: Some(&arguments),
            started: Instant::now(),
        };
        let Some((plugin, entry)) = registry.tool(name) else {
            return Err(self.not_served(&registry, audited, &origin.client).await);
        };
        let writes = !entry.annotations.read_only;
        let access = &entry.grants.access;
        self.admit(
            plugin,
            access,
            &origin.principal,
            writes,
            name,
            &origin.client,
        )
        .await?;
        if let Err(refusal) = self.within_rate(plugin, entry, audited, &origin).await {
            return Ok(refusal);
        }
        if let Err(problems) = manifest::validate(&entry.input, &arguments) {
            self.record_call(&plugin.name, audited, "invalid-arguments", &origin.client)
                .await;
            return Ok(tool_error(format!(
                "invalid arguments for {}: {problems}",
                entry.qualified
            )));
        }
        if let Some(task) = self.as_task(&registry, entry, &arguments, &origin)? {
            return Ok(CallToolResponse::Task(task));
        }
        let caller = origin.into_caller(&plugin.name);
        match self.run_tool(plugin, entry, audited, &caller).await {
            Ok(result) => Ok(result.into()),
            Err(error) => Ok(tool_error(format!("{} failed: {error}", entry.qualified))),
        }
    }

    /// Why the tool `request` names is not served (withheld for its name,
    /// or offered by no plugin), recorded.
    async fn not_served(
        &self,
        registry: &Registry,
        request: Audited<'_>,
        client: &Client,
    ) -> McpError {
        let name = request.target;
        let message = match registry.withheld(name) {
            Some((owner, reason)) => {
                self.shared.metrics.denials(reason, 1);
                self.shared
                    .audit
                    .record(Event::Denied {
                        plugin: owner.to_owned(),
                        target: name.to_owned(),
                        rule: reason.to_owned(),
                        attempt: format!("call {name}"),
                        times: 1,
                        client: client.clone(),
                    })
                    .await;
                format!("tool {name} is not served: {reason}")
            }
            None => {
                // No plugin offers it; the prefix names the one it seems meant for.
                let owner = match name.split_once(manifest::SEPARATOR) {
                    Some((owner, _)) => owner,
                    None => "",
                };
                self.record_call(owner, request, UNKNOWN_TOOL, client).await;
                format!(
                    "unknown tool {}; tools/list gives the tools served",
                    shown(name)
                )
            }
        };
        McpError::invalid_params(message, None)
    }

    /// Takes one call from the caller's budget for this tool (not the
    /// local user's: the operator is not rate limited); past it, the tool
    /// error the client sees, recorded.
    async fn within_rate(
        &self,
        plugin: &LoadedPlugin,
        entry: &ToolEntry,
        request: Audited<'_>,
        origin: &Origin<'_>,
    ) -> Result<(), CallToolResponse> {
        let principal = &origin.principal;
        if principal.local {
            return Ok(());
        }
        // Anonymous clients each have their own budget, by address.
        let caller = match origin.address() {
            Some(address) if principal.is_anonymous() => format!("{}@{address}", principal.id),
            _ => principal.id.clone(),
        };
        let budget = format!("{caller}\n{}", entry.qualified);
        let Err(wait) = self.shared.tool_calls.take(&budget, Instant::now()) else {
            return Ok(());
        };
        self.shared.metrics.denials("rate limit", 1);
        self.record_call(&plugin.name, request, "rate-limited", &origin.client)
            .await;
        Err(tool_error(format!(
            "rate limit: {} calls {} too often; retry after {} s",
            principal.id,
            entry.qualified,
            wait.as_secs() + 1
        )))
    }

    /// The task a long-running tool becomes for a client that takes tasks
    /// (`None`: run it now); an error when the tool requires a task and
    /// none can be made.
    fn as_task(
        &self,
        registry: &Arc<Registry>,
        entry: &ToolEntry,
        arguments: &serde_json::Value,
        origin: &Origin<'_>,
    ) -> Result<Option<CreateTaskResult>, McpError> {
        let takes_tasks = origin.takes_tasks();
        match (entry.tool.task_support, takes_tasks) {
            (types::TaskSupport::Forbidden, _) | (types::TaskSupport::Optional, false) => Ok(None),
            (types::TaskSupport::Required, false) => {
                let required = ClientCapabilities::builder().enable_tasks().build();
                Err(McpError::missing_required_client_capability(required))
            }
            (task_support, true) => {
                let task = self.start_task(
                    registry,
                    &entry.qualified,
                    arguments.clone(),
                    origin.client.clone(),
                );
                match (task, task_support) {
                    (None, types::TaskSupport::Required) => {
                        let message = "too many tasks are kept already (64 per user, 1,024 in \
                                       all, each for an hour); try again later";
                        Err(McpError::internal_error(message, None))
                    }
                    (task, _) => Ok(task),
                }
            }
        }
    }

    /// Runs `entry` for a request that reads from `plugin` (a resource, a
    /// prompt, a completion): refused unless the request's principal may
    /// use the plugin, run with the plugin's reading grants, and recorded.
    /// The outer error is the refusal, the inner one the failed call.
    pub async fn read<R: Send + 'static>(
        &self,
        plugin: &LoadedPlugin,
        method: &'static str,
        target: &str,
        origin: Origin<'_>,
        entry: Entry<R>,
    ) -> Result<Result<R, CallError>, McpError> {
        let request = Audited {
            method,
            target,
            arguments: None,
            started: Instant::now(),
        };
        let access = &plugin.grants.access;
        let principal = &origin.principal;
        self.admit(
            plugin,
            access,
            principal,
            false,
            request.target,
            &origin.client,
        )
        .await?;
        let caller = origin.into_caller(&plugin.name);
        let grants = &plugin.offer.reading;
        let outcome = self.run(plugin, request, grants, &caller, entry).await;
        if outcome.is_ok() {
            self.record_call(&plugin.name, request, "ok", &caller.client)
                .await;
        }
        Ok(outcome.map(|(result, _)| result))
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
        let mut running = Box::pin(self.shared.placement.run(
            &self.shared.runtime,
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
        self.record_state(plugin, request.target, &diagnostics.state, &caller.client)
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
        let (shared, registry, tool) = (self.shared.clone(), registry.clone(), tool.to_owned());
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
            let pipeline = Pipeline { shared: &shared };
            let outcome = match pipeline.run_tool(plugin, entry, request, &caller).await {
                Ok(result) => Outcome::Completed(json_object(&result)),
                Err(error) => {
                    let message = format!("{} failed: {error}", entry.qualified);
                    Outcome::Failed(json_object(&McpError::internal_error(message, None)))
                }
            };
            shared.tasks.finish(&id, outcome);
        });
        Some(CreateTaskResult::new(task))
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

/// The outcome of a call to a tool no plugin serves.
const UNKNOWN_TOOL: &str = "unknown-tool";
