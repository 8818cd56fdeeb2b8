//! `host__noop`, served only with `--native-noop`: a tool the host answers
//! itself, with no plugin and no sandbox, so that benchmarks can tell what
//! serving a tool costs from what running one costs.

use rmcp::model::{CallToolResult, ContentBlock, Tool};
use std::sync::Arc;

/// The name of the native baseline tool.
pub const NAME: &str = "host__noop";

/// The native baseline tool, as `tools/list` shows it.
pub fn tool() -> Tool {
    let mut schema = serde_json::Map::new();
    schema.insert("type".into(), "object".into());
    Tool::new(
        NAME,
        "Answers at once, without running any plugin. A baseline for benchmarks.",
        Arc::new(schema),
    )
}

/// Its answer, whatever the arguments.
pub fn answer() -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text("ok")])
}
