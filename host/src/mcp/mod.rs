//! The MCP front: the server handler, the transports, and the conversions
//! between the plugin interface and MCP.

mod convert;
mod observer;
mod result;
pub mod server;
mod subscriptions;
mod tasks;
pub mod transport;

pub use server::{McpServer, Shared};
