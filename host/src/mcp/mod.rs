//! The MCP front: the server handler, the transports, and the conversions
//! between the plugin interface and MCP.

pub mod authenticate;
pub mod budget;
pub mod client_address;
mod convert;
pub mod drain;
mod envelope;
pub mod http_errors;
pub mod listener;
mod observer;
pub mod protocol;
mod result;
pub mod server;
pub mod sessions;
pub mod stateless;
pub mod stdio;
mod subscriptions;
mod tasks;
pub mod transport;

pub use server::{McpServer, Shared};
