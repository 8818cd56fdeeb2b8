//! Write MCP tools, resources and prompts as WebAssembly components.
//!
//! A plugin is a function that builds a [`Plugin`] and one call to
//! [`export_plugin!`]:
//!
//! ```ignore
//! use plugin_sdk::prelude::*;
//!
//! /// Arguments of `greet`.
//! #[derive(Deserialize, JsonSchema)]
//! struct Greet {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! fn plugin() -> Plugin {
//!     Plugin::new("hello", env!("CARGO_PKG_VERSION")).tool(
//!         Tool::new("greet", "Greets someone by name.").read_only(),
//!         |args: Greet| Ok(format!("Hello, {}!", args.name)),
//!     )
//! }
//!
//! plugin_sdk::export_plugin!(plugin);
//! ```
//!
//! Input schemas come from the argument type (schemars), and the host
//! validates every call against them before the plugin runs. Each call runs
//! in a fresh instance: keep no state between calls.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "mcp-host:plugin/plugin",
        pub_export_macro: true,
        default_bindings_module: "plugin_sdk::bindings",
        generate_all,
    });
}

pub mod host;
pub mod http;
mod plugin;
mod schema;
pub mod state;
mod tool;

#[doc(hidden)]
pub use bindings::export as __export;
#[doc(hidden)]
pub use bindings::exports::mcp_host::plugin::handler::Guest as __Guest;
pub use bindings::mcp_host::plugin::types::{
    Completion, CompletionTarget, Content, Effects, Error, Media, PromptMessage, PromptResult,
    ResourceBody, ResourceContents, Role, TaskSupport, ToolResult,
};
pub use plugin::{Plugin, Prompt, Resource, ResourceTemplate, Vars};
pub use state::{Bucket, StateError};
pub use tool::{NoArgs, Structured, Tool, ToolError, ToolOutput};

/// Everything a plugin usually needs, including the derive macros for its
/// argument and output types.
pub mod prelude {
    pub use crate::{
        Bucket, Content, Effects, Error, NoArgs, Plugin, Prompt, PromptMessage, PromptResult,
        Resource, ResourceContents, ResourceTemplate, Role, StateError, Structured, TaskSupport,
        Tool, ToolError, ToolResult, Vars, host,
    };
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::mcp_host::plugin::types as wit;
}

/// Exports the plugin built by `$build` (a `fn() -> Plugin`) as the
/// component's `mcp-host:plugin/plugin` interface.
#[macro_export]
macro_rules! export_plugin {
    ($build:path) => {
        struct __PluginExport;

        impl $crate::__Guest for __PluginExport {
            fn describe() -> $crate::__private::wit::Manifest {
                $build().manifest()
            }
            fn call_tool(name: String, arguments: String) -> $crate::ToolResult {
                $build().call_tool(&name, &arguments)
            }
            fn read_resource(
                uri: String,
            ) -> Result<Vec<$crate::ResourceContents>, $crate::Error> {
                $build().read_resource(&uri)
            }
            fn get_prompt(
                name: String,
                arguments: Vec<(String, String)>,
            ) -> Result<$crate::PromptResult, $crate::Error> {
                $build().get_prompt(&name, arguments)
            }
            fn complete(
                target: $crate::CompletionTarget,
                argument: String,
                value: String,
                context: Vec<(String, String)>,
            ) -> Result<$crate::Completion, $crate::Error> {
                $build().complete(target, &argument, &value, context)
            }
        }

        $crate::__export!(__PluginExport with_types_in $crate::bindings);
    };
}

impl Content {
    /// A text block.
    pub fn text(text: impl Into<String>) -> Self {
        Content::Text(text.into())
    }
}

impl Completion {
    /// The `candidates` that start with `value`, ignoring case, in their
    /// order: the usual answer to a completion request.
    pub fn matching<S: AsRef<str>>(candidates: impl IntoIterator<Item = S>, value: &str) -> Self {
        let prefix = value.to_lowercase();
        let values: Vec<String> = candidates
            .into_iter()
            .map(|c| c.as_ref().to_owned())
            .filter(|c| c.to_lowercase().starts_with(&prefix))
            .collect();
        Completion {
            total: Some(values.len() as u32),
            values,
            has_more: false,
        }
    }
}

impl ResourceContents {
    /// Text contents for `uri`.
    pub fn text(uri: impl Into<String>, mime_type: &str, text: impl Into<String>) -> Self {
        ResourceContents {
            uri: uri.into(),
            mime_type: Some(mime_type.to_owned()),
            body: ResourceBody::Text(text.into()),
        }
    }

    /// `value` as pretty-printed JSON contents for `uri`.
    pub fn json(uri: impl Into<String>, value: &impl serde::Serialize) -> Result<Self, Error> {
        let text = serde_json::to_string_pretty(value).map_err(|e| Error::Failed(e.to_string()))?;
        Ok(Self::text(uri, "application/json", text))
    }

    /// Binary contents for `uri`.
    pub fn blob(uri: impl Into<String>, mime_type: &str, data: Vec<u8>) -> Self {
        ResourceContents {
            uri: uri.into(),
            mime_type: Some(mime_type.to_owned()),
            body: ResourceBody::Blob(data),
        }
    }
}

impl PromptMessage {
    /// A text message from the user.
    pub fn user(text: impl Into<String>) -> Self {
        PromptMessage {
            role: Role::User,
            content: Content::text(text),
        }
    }

    /// A text message from the assistant.
    pub fn assistant(text: impl Into<String>) -> Self {
        PromptMessage {
            role: Role::Assistant,
            content: Content::text(text),
        }
    }
}
