//! The sandbox runtime: one engine, a fresh instance per call.

mod bindings;
pub mod cache;
mod capture;
pub mod engine;
mod handler;
mod metering;
mod sandbox;
mod shadow;
mod state;

pub use bindings::types;
pub use engine::EngineConfig;
pub use sandbox::{CallError, Diagnostics, Entry, FailureKind, Prepared, Runtime};
pub use state::{CallContext, CallObserver, LogLevel, Notify, Unobserved};
