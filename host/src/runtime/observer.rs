//! The channel between a running call and the client waiting on it: what
//! the plugin reports (logs, progress) goes out through it, and a request
//! to the client (a question for the user, a completion from its model)
//! goes out and its answer comes back. Kept abstract so the runtime knows
//! nothing of MCP; the MCP front implements it per request.

use crate::interface::mcp_host::plugin::types::LogLevel;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;

/// A boxed future the observer returns for a report.
pub type Notify<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A boxed future of the client's answer to a [`Question`].
pub type Answer<'a> = Pin<Box<dyn Future<Output = Result<Value, Unanswered>> + Send + 'a>>;

/// A request to the client waiting on a call: an MCP server-to-client
/// method (`elicitation/create`, `sampling/createMessage`, `roots/list`)
/// and its params.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub method: String,
    pub params: Map<String, Value>,
}

/// Why a [`Question`] got no answer. Each says what the plugin can do
/// about it, so a plugin can fall back (ask for an argument instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unanswered {
    /// Nobody is waiting on this call (a task, or a call with no client).
    #[error("no client is waiting on this call to answer")]
    NoClient,
    /// The client did not declare the capability the method needs.
    #[error("the client did not declare the `{0}` capability")]
    NotDeclared(&'static str),
    /// The method is not one a server may send a client.
    #[error("`{0}` is not a request a server may send a client")]
    UnknownMethod(String),
    /// The protocol revision the client speaks has no server-to-client
    /// requests (2026-07-28 and later ask through the result instead).
    #[error("the client's protocol revision has no server-to-client requests")]
    NotOnThisRevision,
    /// The client answered with an error.
    #[error("the client refused: {0}")]
    Refused(String),
    /// The connection closed, or the question was malformed for its method.
    #[error("{0}")]
    Failed(String),
}

/// Receives what a plugin reports while it runs, and carries its requests
/// to the client.
pub trait CallObserver: Send + Sync {
    /// A log line from the plugin.
    fn log(&self, level: LogLevel, message: String) -> Notify<'_>;
    /// A progress report from the plugin.
    fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>) -> Notify<'_>;
    /// Sends `question` to the client waiting on the call and waits for
    /// its answer (the result object). Calls nobody waits on answer
    /// [`Unanswered::NoClient`]. Dropping the future stops waiting.
    fn ask(&self, question: Question) -> Answer<'_> {
        let _ = question;
        Box::pin(std::future::ready(Err(Unanswered::NoClient)))
    }
}

/// An observer that drops everything (for calls no client waits on).
pub struct Unobserved;

impl CallObserver for Unobserved {
    fn log(&self, _: LogLevel, _: String) -> Notify<'_> {
        Box::pin(std::future::ready(()))
    }
    fn progress(&self, _: f64, _: Option<f64>, _: Option<String>) -> Notify<'_> {
        Box::pin(std::future::ready(()))
    }
}
