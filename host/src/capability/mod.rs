//! Capabilities a policy can grant a plugin. Each module owns one kind of
//! grant: its configuration, its resolution, and its enforcement point.

pub mod env;
pub mod filesystem;
pub mod limits;
pub mod network;
pub mod sockets;
