//! What the host offers every plugin: logging, progress and cancellation.

use crate::bindings::mcp_host::plugin::host;
use crate::bindings::mcp_host::plugin::types::LogLevel;

/// Logs `message` at debug level.
pub fn debug(message: &str) {
    host::log(LogLevel::Debug, message);
}

/// Logs `message` at info level.
pub fn info(message: &str) {
    host::log(LogLevel::Info, message);
}

/// Logs `message` at warning level.
pub fn warn(message: &str) {
    host::log(LogLevel::Warning, message);
}

/// Logs `message` at error level.
pub fn error(message: &str) {
    host::log(LogLevel::Error, message);
}

/// Reports progress of the current tool call: `done` out of `total` (if
/// known), with an optional message. Forwarded to clients that asked.
pub fn progress(done: f64, total: Option<f64>, message: Option<&str>) {
    host::progress(done, total, message);
}

/// The environment variable `name`, if this plugin's policy grants it. The
/// host records and reports a request for one it does not grant.
pub fn env(name: &str) -> Option<String> {
    host::env(name)
}

/// Whether the client cancelled the current call: check it between steps of
/// long-running work and return early.
pub fn is_cancelled() -> bool {
    host::is_cancelled()
}
