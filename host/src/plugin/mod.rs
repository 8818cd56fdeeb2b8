//! Plugins: finding, loading and checking components, and the registry of
//! what they serve.

pub mod loader;
pub mod manifest;
pub mod registry;

pub use loader::{LoadFailure, LoadedPlugin};
pub use registry::{Registry, Resources};
