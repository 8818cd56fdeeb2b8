//! The MCP front: the server handler, the transports, and the conversions
//! between the plugin interface and MCP.

pub mod authenticate;
pub mod budget;
pub mod client_address;
#[cfg(test)]
mod client_message;
mod convert;
pub mod drain;
mod envelope;
pub mod http_errors;
pub mod listener;
mod noop;
mod notify;
mod observer;
mod pipeline;
pub mod protocol;
mod request;
mod result;
pub mod server;
pub mod sessions;
mod shared;
pub mod stateless;
pub mod stdio;
mod subscriptions;
mod tasks;
pub mod transport;

pub use server::McpServer;
pub use shared::Shared;
