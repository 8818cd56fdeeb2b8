//! Technical analysis shared by the plugins: indicators, and the entry and
//! exit rules strategies are written in. Pure computation, no plugin
//! interface, so it is unit-tested natively.

pub mod indicators;
pub mod rules;

pub use indicators::{Three, bollinger, ema, macd, rsi, sma};
