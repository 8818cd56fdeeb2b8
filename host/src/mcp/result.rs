//! Turning a plugin's tool result into what the client receives, checking it
//! on the way: size within the limit, structured output valid JSON that
//! conforms to the declared output schema.

use super::convert;
use crate::interface::types;
use crate::plugin::manifest::{self, ToolEntry};
use crate::runtime::Diagnostics;
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

/// The most items one answer may hold: content blocks of a tool result,
/// contents of a resource read, messages of a prompt. Each costs the host
/// far more than its bytes once converted, so they are counted before any
/// is converted.
pub const MAX_ITEMS: usize = 10_000;

/// What one item costs on the wire at least (`{"type":"text","text":""}`),
/// counted against the output limit with the item's own bytes.
const ITEM_BYTES: usize = 24;

/// Checks, before anything is converted, that `count` items of `what`
/// holding `bytes` of text and data fit `max_bytes`; the error says why not.
pub fn items_within(
    what: &str,
    count: usize,
    bytes: usize,
    max_bytes: usize,
) -> Result<(), String> {
    if count > MAX_ITEMS {
        return Err(format!(
            "the plugin's answer holds {count} {what}; at most {MAX_ITEMS} are accepted"
        ));
    }
    let size = bytes.saturating_add(count.saturating_mul(ITEM_BYTES));
    if size > max_bytes {
        return Err(format!(
            "the plugin's answer is {} KiB, over its limit of {} KiB ([limits] max_output_kib)",
            size.div_ceil(1024),
            max_bytes / 1024
        ));
    }
    Ok(())
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

    let bytes = result
        .content
        .iter()
        .map(convert::content_size)
        .sum::<usize>()
        + result.structured.as_ref().map_or(0, String::len);
    if let Err(why) = items_within("content blocks", result.content.len(), bytes, max_bytes) {
        return fail(why);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_counted_before_bytes() {
        let refused = items_within("content blocks", MAX_ITEMS + 1, 0, usize::MAX).unwrap_err();
        assert!(refused.contains("10001 content blocks"), "{refused}");
        assert!(items_within("content blocks", MAX_ITEMS, 0, usize::MAX).is_ok());
    }

    #[test]
    fn every_item_costs_its_wire_overhead() {
        // 1000 empty blocks hold no text yet cost the client 24 KB.
        let refused = items_within("content blocks", 1000, 0, 16 * 1024).unwrap_err();
        assert!(refused.contains("over its limit of 16 KiB"), "{refused}");
        assert!(items_within("content blocks", 100, 0, 16 * 1024).is_ok());
    }

    #[test]
    fn sizes_near_usize_max_do_not_wrap() {
        assert!(items_within("messages", MAX_ITEMS, usize::MAX, 1024).is_err());
    }
}
