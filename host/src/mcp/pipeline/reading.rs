//! The reading requests: a resource read, a prompt, a completion. Each
//! runs its plugin with the plugin's reading grants (see [`Pipeline::read`])
//! and shapes what the plugin answered into the protocol's result, within
//! the plugin's output cap.

use super::super::convert;
use super::super::request::Origin;
use super::Pipeline;
use crate::client_text::{self, shown};
use crate::interface::types;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CompleteRequestParams, CompleteResult, CompletionInfo, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Reference,
};

impl Pipeline<'_> {
    /// `resources/read`, for `origin`.
    pub async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        origin: Origin<'_>,
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
        let result = self
            .read(
                plugin,
                "resources/read",
                &uri,
                origin,
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
        super::super::result::items_within("resource contents", contents.len(), bytes, max_bytes)
            .map_err(|why| {
            McpError::internal_error(format!("reading {} failed: {why}", shown(&uri)), None)
        })?;
        let result = ReadResourceResult::new(contents.into_iter().map(convert::contents).collect());
        super::super::result::within_cap(&result, max_bytes).map_err(|why| {
            McpError::internal_error(format!("reading {uri} failed: {why}"), None)
        })?;
        Ok(result.into())
    }

    /// `prompts/get`, for `origin`.
    pub async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        origin: Origin<'_>,
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
        let result = self
            .read(
                plugin,
                "prompts/get",
                &request.name,
                origin,
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
        super::super::result::items_within(
            "prompt messages",
            prompt.messages.len(),
            bytes,
            max_bytes,
        )
        .map_err(|why| McpError::internal_error(format!("{} failed: {why}", request.name), None))?;
        let messages = prompt.messages.into_iter().map(convert::message).collect();
        let mut result = GetPromptResult::new(messages);
        if let Some(description) = prompt.description {
            result = result.with_description(description);
        }
        super::super::result::within_cap(&result, plugin.grants.sandbox.limits.max_output_bytes())
            .map_err(|why| {
                McpError::internal_error(format!("{} failed: {why}", request.name), None)
            })?;
        Ok(result.into())
    }

    /// `completion/complete`, for `origin`.
    pub async fn complete(
        &self,
        request: CompleteRequestParams,
        origin: Origin<'_>,
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
        let result = self
            .read(
                plugin,
                "completion/complete",
                &target_name,
                origin,
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
        super::super::result::within_cap(&result, plugin.grants.sandbox.limits.max_output_bytes())
            .map_err(|why| McpError::internal_error(format!("completion failed: {why}"), None))?;
        Ok(result)
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
