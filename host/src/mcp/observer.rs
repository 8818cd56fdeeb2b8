//! Forwarding what a plugin reports during a call to the client that made it.
#![allow(deprecated)] // MCP logging is deprecated for 2026-07-28 but still served to older clients.

use crate::runtime::{CallObserver, LogLevel, Notify};
use rmcp::RoleServer;
use rmcp::model::{
    LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken,
};
use rmcp::service::{Peer, RequestContext};
use std::sync::{Arc, Mutex};

/// Logs go to clients with a session (2025-11-25) at this level and above
/// until they ask otherwise.
const DEFAULT_LEVEL: LoggingLevel = LoggingLevel::Info;

/// The level a connection asked for with `logging/setLevel`.
#[derive(Clone, Default)]
pub struct LogLevelSetting(Arc<Mutex<Option<LoggingLevel>>>);

impl LogLevelSetting {
    pub fn set(&self, level: LoggingLevel) {
        if let Ok(mut current) = self.0.lock() {
            *current = Some(level);
        }
    }

    /// The level for one request, `None` for no logs: its own `_meta`
    /// level; none for a 2026-07-28 request without one (that revision
    /// logs only when asked per request); else the connection's, else the
    /// default.
    pub fn effective(&self, context: &RequestContext<RoleServer>) -> Option<LoggingLevel> {
        if let Some(level) = context.meta.log_level() {
            return Some(level);
        }
        if context.meta.protocol_version().is_some() {
            return None;
        }
        let set = self.0.lock().ok().and_then(|level| *level);
        Some(set.unwrap_or(DEFAULT_LEVEL))
    }
}

/// Sends a plugin's log lines and progress to one client.
pub struct ClientObserver {
    peer: Peer<RoleServer>,
    logger: String,
    /// The lowest level sent; `None` sends nothing.
    level: Option<LoggingLevel>,
    progress_token: Option<ProgressToken>,
}

impl ClientObserver {
    pub fn new(
        peer: Peer<RoleServer>,
        plugin: &str,
        level: Option<LoggingLevel>,
        progress_token: Option<ProgressToken>,
    ) -> Self {
        ClientObserver {
            peer,
            logger: plugin.to_owned(),
            level,
            progress_token,
        }
    }
}

impl CallObserver for ClientObserver {
    fn log(&self, level: LogLevel, message: String) -> Notify<'_> {
        Box::pin(async move {
            tracing::debug!(plugin = %self.logger, ?level, text = ?message, "plugin log");
            let level = logging_level(level);
            // Levels rank in declaration order, debug lowest.
            match self.level {
                Some(lowest) if level as u8 >= lowest as u8 => {}
                _ => return,
            }
            let param = LoggingMessageNotificationParam::new(level, message.into())
                .with_logger(self.logger.clone());
            // A client that went away misses the line; the call goes on.
            let _ = self.peer.notify_logging_message(param).await;
        })
    }

    fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>) -> Notify<'_> {
        Box::pin(async move {
            let Some(token) = &self.progress_token else {
                return;
            };
            let mut param = ProgressNotificationParam::new(token.clone(), progress);
            if let Some(total) = total {
                param = param.with_total(total);
            }
            if let Some(message) = message {
                param = param.with_message(message);
            }
            let _ = self.peer.notify_progress(param).await;
        })
    }
}

/// The MCP logging level of a plugin log level.
fn logging_level(level: LogLevel) -> LoggingLevel {
    match level {
        LogLevel::Debug => LoggingLevel::Debug,
        LogLevel::Info => LoggingLevel::Info,
        LogLevel::Notice => LoggingLevel::Notice,
        LogLevel::Warning => LoggingLevel::Warning,
        LogLevel::Error => LoggingLevel::Error,
        LogLevel::Critical => LoggingLevel::Critical,
        LogLevel::Alert => LoggingLevel::Alert,
        LogLevel::Emergency => LoggingLevel::Emergency,
    }
}
