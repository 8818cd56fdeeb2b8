//! Turning a plugin's tool result into what the client receives, checking it
//! on the way: size within the limit, structured output valid JSON that
//! conforms to the declared output schema.

use super::convert;
use crate::plugin::manifest::{self, ToolEntry};
use crate::runtime::{Diagnostics, types};
use rmcp::model::{CallToolResult, ContentBlock};

/// The client's result for `result`, or an error result explaining what the
/// plugin got wrong. Requests the sandbox refused are always reported.
pub fn tool_result(
    entry: &ToolEntry,
    result: types::ToolResult,
    diagnostics: &Diagnostics,
    max_bytes: usize,
) -> CallToolResult {
    let denials: Vec<ContentBlock> = diagnostics
        .denials
        .iter()
        .map(|denial| ContentBlock::text(format!("host: {denial}")))
        .collect();
    let fail = |message: String| {
        let mut content = vec![ContentBlock::text(format!(
            "{}: {message}",
            entry.qualified
        ))];
        content.extend(denials.iter().cloned());
        CallToolResult::error(content)
    };

    let size = result
        .content
        .iter()
        .map(convert::content_size)
        .sum::<usize>()
        + result.structured.as_ref().map_or(0, String::len);
    if size > max_bytes {
        return fail(format!(
            "the result is {} KiB, over the plugin's limit of {} KiB",
            size.div_ceil(1024),
            max_bytes / 1024
        ));
    }

    let structured = match (&result.structured, result.is_error) {
        (Some(text), _) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => Some(value),
            Err(e) => return fail(format!("the plugin's structured output is not JSON: {e}")),
        },
        (None, _) => None,
    };
    if !result.is_error
        && let Some((validator, _)) = &entry.output
    {
        let Some(value) = &structured else {
            return fail(
                "the tool declares an output schema but returned no structured output".into(),
            );
        };
        if let Err(problems) = manifest::validate(validator, value) {
            return fail(format!(
                "the plugin's structured output does not match its output schema: {problems}"
            ));
        }
    }

    let mut content: Vec<ContentBlock> = result.content.into_iter().map(convert::content).collect();
    content.extend(denials);
    let mut converted = if result.is_error {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    };
    converted.structured_content = structured;
    converted
}
