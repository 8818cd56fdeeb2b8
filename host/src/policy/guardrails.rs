//! Host-wide guardrails: rules in `policies/host.toml` that no plugin policy
//! can widen.
//!
//! - `market-data-read-only`: the market-data folders may only ever be
//!   mounted read-only; a plugin policy asking for more fails to load.
//! - `no-order-execution`: order requests (see
//!   [`crate::capability::network::orders`]) are denied to every plugin,
//!   whatever its rules say and whatever it declares; tools declaring the
//!   `trade` effect are not registered.
//!
//! Each guardrail is on unless the operator turns it off with `enabled =
//! false`, and everything here is a pure function of its inputs.

use crate::capability::filesystem::Mount;
use crate::capability::filesystem::market_data::{self, MarketDataGuard, MarketDataSpec};
use crate::capability::network::orders::{self, OrderGuard, OrdersSpec};
use crate::interface::types::Effects;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

pub const MARKET_DATA_READ_ONLY: &str = market_data::NAME;
pub const NO_ORDER_EXECUTION: &str = orders::NAME;

/// `policies/host.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPolicyFile {
    /// Format version; must be [`super::VERSION`].
    pub version: u32,
    #[serde(default)]
    pub guardrails: GuardrailsSpec,
}

/// The `[guardrails.*]` tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GuardrailsSpec {
    #[serde(default)]
    pub market_data_read_only: MarketDataSpec,
    #[serde(default)]
    pub no_order_execution: OrdersSpec,
}

/// The guardrails in force, resolved.
#[derive(Clone, Debug)]
pub struct Guardrails {
    /// The market-data guardrail; `None` when it is off.
    pub market_data: Option<MarketDataGuard>,
    /// The order guardrail; `None` when it is off.
    pub orders: Option<Arc<OrderGuard>>,
    /// The digest of the `host.toml` they came from (of nothing when absent).
    pub digest: crate::digest::Digest,
}

impl Default for Guardrails {
    /// Both guardrails on: no market-data folders named yet, and order
    /// requests refused on every host.
    fn default() -> Self {
        Guardrails {
            market_data: Some(MarketDataGuard::default()),
            orders: Some(Arc::default()),
            digest: crate::digest::sha256(b""),
        }
    }
}

impl Guardrails {
    /// Resolves the guardrails, market-data folders against `root`, the
    /// variables brokers name through `lookup`.
    pub fn resolve(
        spec: &GuardrailsSpec,
        root: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Guardrails, String> {
        let market_data = MarketDataGuard::resolve(&spec.market_data_read_only, root)?;
        let orders = OrderGuard::resolve(&spec.no_order_execution, lookup)?.map(Arc::new);
        Ok(Guardrails {
            market_data,
            orders,
            ..Guardrails::default()
        })
    }

    /// Refuses a mount set that would let a plugin write market data.
    pub fn check_mounts(&self, mounts: &[Mount]) -> Result<(), String> {
        match &self.market_data {
            Some(guard) => guard.check_mounts(mounts),
            None => Ok(()),
        }
    }

    /// Whether a tool declaring `effects` may be registered; the reason
    /// when not.
    pub fn check_tool(&self, effects: Effects) -> Option<String> {
        (self.orders.is_some() && effects.contains(Effects::TRADE)).then(|| {
            format!("denied by guardrail {NO_ORDER_EXECUTION}: the tool declares the trade effect")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turned_off_guardrails_deny_nothing() {
        let spec = GuardrailsSpec {
            market_data_read_only: MarketDataSpec {
                enabled: false,
                folders: vec![],
            },
            no_order_execution: OrdersSpec {
                enabled: false,
                ..OrdersSpec::default()
            },
        };
        let guard = Guardrails::resolve(&spec, Path::new("/"), &|_| None).unwrap();
        assert!(guard.orders.is_none() && guard.market_data.is_none());
        assert!(guard.check_tool(Effects::TRADE).is_none());
    }

    #[test]
    fn trading_tools_are_withheld() {
        let guard = Guardrails::default();
        let reason = guard
            .check_tool(Effects::TRADE | Effects::NETWORK_WRITE)
            .unwrap();
        assert!(reason.contains("no-order-execution"));
        assert!(guard.check_tool(Effects::NETWORK_WRITE).is_none());
    }
}
