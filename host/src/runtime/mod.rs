//! The sandbox runtime: one engine, a fresh instance per call.

pub mod cache;
mod capture;
pub mod engine;
mod handler;
mod observer;
mod placement;
mod sandbox;
mod state;

pub use engine::EngineConfig;
pub use observer::{Answer, CallObserver, Notify, Question, Unanswered, Unobserved};
pub use placement::Placement;
pub use sandbox::{CallError, Diagnostics, Entry, FailureKind, Prepared, Runtime};
pub use state::{CallContext, LogLevel};
