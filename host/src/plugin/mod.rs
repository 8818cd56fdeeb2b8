//! Plugins: finding, loading and checking components, and the registry of
//! what they serve.

mod change;
pub mod loader;
pub mod manifest;
pub mod registry;

pub use change::Change;
pub use loader::{LoadFailure, LoadedPlugin};
pub use registry::{Registry, Resources};
