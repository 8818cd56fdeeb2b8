//! The sandbox runtime: one engine, a fresh instance per call.

pub mod cache;
mod capture;
pub mod engine;
mod handler;
mod sandbox;
mod state;

pub use engine::EngineConfig;
pub use sandbox::{CallError, Diagnostics, Entry, FailureKind, Prepared, Runtime};
pub use state::{CallContext, CallObserver, LogLevel, Notify, Unobserved};
