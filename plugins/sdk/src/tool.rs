//! Tool descriptions, outputs and errors.

use crate::__private::wit;
use crate::{Content, Effects, TaskSupport, ToolResult};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a tool presents itself: name, description, hints and declared effects.
///
/// The input schema is not set here: it is derived from the handler's
/// argument type when the tool is added to a [`crate::Plugin`].
#[derive(Clone, Debug)]
pub struct Tool {
    pub(crate) name: String,
    pub(crate) title: Option<String>,
    pub(crate) description: String,
    pub(crate) hints: wit::ToolHints,
    pub(crate) effects: Effects,
    pub(crate) input_schema: Option<String>,
    pub(crate) task_support: TaskSupport,
}

impl Tool {
    /// A tool named `name` (1 to 64 characters of `[A-Za-z0-9_-]`).
    /// Write `description` as a prompt: what the tool does, when to use it,
    /// what its arguments mean.
    pub fn new(name: &str, description: &str) -> Self {
        Tool {
            name: name.to_owned(),
            title: None,
            description: description.to_owned(),
            hints: wit::ToolHints {
                read_only: None,
                destructive: None,
                idempotent: None,
                open_world: None,
            },
            effects: Effects::empty(),
            input_schema: None,
            task_support: TaskSupport::Forbidden,
        }
    }

    /// Marks the tool as long-running: when the client supports the MCP
    /// tasks extension, a call answers at once with a task the client polls,
    /// and the work goes on in its sandbox (progress and cancellation still
    /// apply). Other clients get the result directly, as for any tool.
    pub fn long_running(mut self) -> Self {
        self.task_support = TaskSupport::Optional;
        self
    }

    /// How the tool's calls relate to tasks (see [`Tool::long_running`]);
    /// `TaskSupport::Required` refuses clients without task support.
    pub fn task_support(mut self, task_support: TaskSupport) -> Self {
        self.task_support = task_support;
        self
    }

    /// Declares the input schema as written (a JSON Schema object, any
    /// draft-2020-12 keywords kept as they are) instead of deriving it from
    /// the handler's argument type; pair it with `serde_json::Value`
    /// arguments. The host still validates every call against it.
    pub fn input_schema(mut self, schema: &str) -> Self {
        self.input_schema = Some(schema.to_owned());
        self
    }

    /// A short human-readable name.
    pub fn title(mut self, title: &str) -> Self {
        self.title = Some(title.to_owned());
        self
    }

    /// Says the tool changes nothing (the host advertises it read-only only
    /// if the plugin's grants agree).
    pub fn read_only(mut self) -> Self {
        self.hints.read_only = Some(true);
        self.hints.destructive = Some(false);
        self
    }

    /// Says whether the tool may destroy or overwrite data.
    pub fn destructive(mut self, destructive: bool) -> Self {
        self.hints.destructive = Some(destructive);
        self
    }

    /// Says that repeating a call has no further effect.
    pub fn idempotent(mut self) -> Self {
        self.hints.idempotent = Some(true);
        self
    }

    /// Says whether the tool reaches the outside world.
    pub fn open_world(mut self, open_world: bool) -> Self {
        self.hints.open_world = Some(open_world);
        self
    }

    /// Declares what the tool does. The host enforces the plugin's policy
    /// whatever is declared, and refuses tools declaring forbidden effects.
    pub fn effects(mut self, effects: Effects) -> Self {
        self.effects = effects;
        self
    }
}

/// Arguments of a tool that takes none.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// A tool failure the model should read: becomes a result with `isError`.
#[derive(Debug)]
pub struct ToolError(pub String);

impl ToolError {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        ToolError(without_errno(message.into()))
    }
}

impl<E: std::fmt::Display> From<E> for ToolError {
    fn from(error: E) -> Self {
        ToolError::new(error.to_string())
    }
}

/// `message` without the ` (os error N)` that Rust appends to I/O errors:
/// inside the sandbox N is a WASI errno (44 is "not found", 2 on Linux),
/// which tells a user nothing the words before it do not.
fn without_errno(mut message: String) -> String {
    while let Some(start) = message.find(" (os error ") {
        let rest = &message[start + " (os error ".len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || !rest[digits..].starts_with(')') {
            break;
        }
        message.replace_range(start..start + " (os error ".len() + digits + 1, "");
    }
    message
}

/// What a tool handler may return.
pub trait ToolOutput {
    /// JSON Schema of the structured output, if the output is structured.
    fn output_schema() -> Option<String> {
        None
    }
    /// The MCP result for this output.
    fn into_result(self) -> ToolResult;
}

impl ToolOutput for String {
    fn into_result(self) -> ToolResult {
        success(vec![Content::Text(self)], None)
    }
}

impl ToolOutput for Vec<Content> {
    fn into_result(self) -> ToolResult {
        success(self, None)
    }
}

impl ToolOutput for ToolResult {
    fn into_result(self) -> ToolResult {
        self
    }
}

/// Structured output: sent as `structuredContent` (conforming to the output
/// schema derived from `T`) and as a JSON text block for older clients.
pub struct Structured<T>(pub T);

impl<T: Serialize + JsonSchema> ToolOutput for Structured<T> {
    fn output_schema() -> Option<String> {
        Some(crate::schema::schema_for::<T>())
    }

    fn into_result(self) -> ToolResult {
        match serde_json::to_string(&self.0) {
            Ok(json) => success(vec![Content::Text(json.clone())], Some(json)),
            Err(e) => failure(format!("the tool's output could not be serialised: {e}")),
        }
    }
}

fn success(content: Vec<Content>, structured: Option<String>) -> ToolResult {
    ToolResult {
        content,
        structured,
        is_error: false,
    }
}

pub(crate) fn failure(message: String) -> ToolResult {
    ToolResult {
        content: vec![Content::Text(message)],
        structured: None,
        is_error: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_numbers_are_left_out_of_messages() {
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let raw = std::io::Error::from_raw_os_error(2);
        assert!(!ToolError::from(raw).0.contains("os error"));
        assert_eq!(ToolError::from(missing).0, "entity not found");
        assert_eq!(
            ToolError::new("cannot read a.csv: No such file (os error 44); then x (os error 9)").0,
            "cannot read a.csv: No such file; then x"
        );
        assert_eq!(ToolError::new("odd (os error x)").0, "odd (os error x)");
    }
}
