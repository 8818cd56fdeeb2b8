//! Turning a plugin's tool result into what the client receives, checking it
//! on the way: size within the limit, structured output valid JSON that
//! conforms to the declared output schema.

use super::convert;
use crate::plugin::manifest::{self, ToolEntry};
use crate::runtime::{Diagnostics, types};
use rmcp::model::{CallToolResult, ContentBlock};

/// Counts serialized bytes, failing as soon as they pass the cap so an
/// oversized answer is never built whole.
struct Counter {
    bytes: usize,
    cap: usize,
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len();
        if self.bytes > self.cap {
            return Err(std::io::Error::other("over the cap"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks that `answer`, serialized as the client receives it, is at most
/// `max_bytes`; the error says so in words.
pub fn within_cap(answer: &impl serde::Serialize, max_bytes: usize) -> Result<(), String> {
    let mut counter = Counter {
        bytes: 0,
        cap: max_bytes,
    };
    match serde_json::to_writer(&mut counter, answer) {
        Ok(()) => Ok(()),
        Err(_) if counter.bytes > max_bytes => Err(format!(
            "the plugin's answer is over its limit of {} KiB ([limits] max_output_kib)",
            max_bytes / 1024
        )),
        Err(e) => Err(format!("the plugin's answer cannot be sent: {e}")),
    }
}

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
        .lines()
        .into_iter()
        .map(|line| ContentBlock::text(format!("host: {line}")))
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
    content.extend(denials.iter().cloned());
    let mut converted = if result.is_error {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    };
    converted.structured_content = structured;
    // What the client receives, host-added text included, is what counts.
    match within_cap(&converted, max_bytes) {
        Ok(()) => converted,
        Err(why) => fail(why),
    }
}
