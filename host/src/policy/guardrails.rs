//! Host-wide guardrails: rules in `policies/host.toml` that no plugin policy
//! can widen.
//!
//! - `market-data-read-only`: the market-data folders may only ever be
//!   mounted read-only; a plugin policy asking for more fails to load.
//! - `no-order-execution`: requests on order routes (by default POST, PUT,
//!   PATCH and DELETE on `/orders*` and `/v2/orders*`, on the configured
//!   broker hosts or on any host) are denied to every plugin, whatever its
//!   rules say and whatever it declares; tools declaring the `trade` effect
//!   are not registered.
//!
//! Each guardrail is on unless the operator turns it off with `enabled =
//! false`, and everything here is a pure function of its inputs.

use crate::capability::filesystem::{Access, Mount};
use crate::capability::network::{HostPattern, RequestFacts, glob_match};
use crate::runtime::types::Effects;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const MARKET_DATA_READ_ONLY: &str = "market-data-read-only";
pub const NO_ORDER_EXECUTION: &str = "no-order-execution";

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

/// `[guardrails.market-data-read-only]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketDataSpec {
    /// The operator's switch; on unless set to false.
    #[serde(default = "on")]
    pub enabled: bool,
    /// The market-data folders, relative to the root.
    #[serde(default)]
    pub folders: Vec<PathBuf>,
}

/// `[guardrails.no-order-execution]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersSpec {
    /// The operator's switch; on unless set to false.
    #[serde(default = "on")]
    pub enabled: bool,
    /// Methods that execute orders.
    #[serde(default = "order_methods")]
    pub methods: Vec<String>,
    /// Path patterns of order routes (`*` matches anything).
    #[serde(default = "order_paths")]
    pub paths: Vec<String>,
    /// Broker hosts (`api.broker.example`, `*.broker.example`); empty means
    /// every host.
    #[serde(default)]
    pub brokers: Vec<String>,
}

fn on() -> bool {
    true
}

fn order_methods() -> Vec<String> {
    ["POST", "PUT", "PATCH", "DELETE"].map(String::from).into()
}

fn order_paths() -> Vec<String> {
    ["/orders*", "/v2/orders*"].map(String::from).into()
}

impl Default for MarketDataSpec {
    fn default() -> Self {
        MarketDataSpec {
            enabled: true,
            folders: Vec::new(),
        }
    }
}

impl Default for OrdersSpec {
    fn default() -> Self {
        OrdersSpec {
            enabled: true,
            methods: order_methods(),
            paths: order_paths(),
            brokers: Vec::new(),
        }
    }
}

/// The guardrails in force, resolved.
#[derive(Clone, Debug)]
pub struct Guardrails {
    /// Canonical market-data folders; `None` when the guardrail is off.
    pub market_data: Option<Vec<PathBuf>>,
    /// Order routes; `None` when the guardrail is off.
    pub orders: Option<OrderRoutes>,
}

/// What counts as an order route.
#[derive(Clone, Debug)]
pub struct OrderRoutes {
    methods: Vec<String>,
    paths: Vec<String>,
    brokers: Vec<HostPattern>,
}

impl std::fmt::Display for OrderRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refuses {} on {}",
            self.methods.join(", "),
            self.paths.join(", ")
        )?;
        if self.brokers.is_empty() {
            return f.write_str(" on any host");
        }
        let hosts: Vec<String> = self
            .brokers
            .iter()
            .map(|b| match b {
                HostPattern::Exact(host) => host.clone(),
                HostPattern::Subdomain(domain) => format!("*.{domain}"),
            })
            .collect();
        write!(f, " on {}", hosts.join(", "))
    }
}

impl Default for Guardrails {
    /// Both guardrails on: no market-data folders named yet, and the default
    /// order routes on every host.
    fn default() -> Self {
        Guardrails {
            market_data: Some(Vec::new()),
            orders: Some(OrderRoutes {
                methods: order_methods(),
                paths: order_paths(),
                brokers: Vec::new(),
            }),
        }
    }
}

impl Guardrails {
    /// Resolves the guardrails, market-data folders against `root`.
    pub fn resolve(spec: &GuardrailsSpec, root: &Path) -> Result<Guardrails, String> {
        let market = &spec.market_data_read_only;
        let market_data = if market.enabled {
            let folders = market.folders.iter().map(|folder| {
                let path = root.join(folder);
                path.canonicalize().map_err(|e| {
                    format!(
                        "[guardrails.{MARKET_DATA_READ_ONLY}] folder {}: {e}",
                        path.display()
                    )
                })
            });
            Some(folders.collect::<Result<Vec<_>, _>>()?)
        } else {
            None
        };
        let orders = &spec.no_order_execution;
        let orders = if orders.enabled {
            let bad = |why: String| format!("[guardrails.{NO_ORDER_EXECUTION}] {why}");
            let brokers = orders
                .brokers
                .iter()
                .map(|host| {
                    HostPattern::parse(host).map_err(|e| bad(format!("broker {host:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if orders.methods.is_empty() || orders.paths.is_empty() {
                return Err(bad("methods and paths cannot be empty; set enabled = false to turn the guardrail off".into()));
            }
            Some(OrderRoutes {
                methods: orders
                    .methods
                    .iter()
                    .map(|m| m.to_ascii_uppercase())
                    .collect(),
                // Servers may treat paths case-insensitively: match that way.
                paths: orders
                    .paths
                    .iter()
                    .map(|p| p.to_ascii_lowercase())
                    .collect(),
                brokers,
            })
        } else {
            None
        };
        Ok(Guardrails {
            market_data,
            orders,
        })
    }

    /// Refuses a mount set that would let a plugin write market data: a
    /// read-write mount inside, or holding, a market-data folder.
    pub fn check_mounts(&self, mounts: &[Mount]) -> Result<(), String> {
        let Some(folders) = &self.market_data else {
            return Ok(());
        };
        for mount in mounts.iter().filter(|m| m.access == Access::ReadWrite) {
            if let Some(folder) = folders
                .iter()
                .find(|f| mount.host.starts_with(f) || f.starts_with(&mount.host))
            {
                return Err(format!(
                    "denied by guardrail {MARKET_DATA_READ_ONLY}: {} would make the market data \
                     in {} writable; mount it read-only",
                    mount.host.display(),
                    folder.display()
                ));
            }
        }
        Ok(())
    }

    /// Whether `request` is an order route; the reason when it is.
    pub fn check_request(&self, request: &RequestFacts) -> Option<String> {
        let routes = self.orders.as_ref()?;
        let path = request.path.to_ascii_lowercase();
        let is_order = routes.methods.contains(&request.method)
            && routes.paths.iter().any(|p| glob_match(p, &path))
            && (routes.brokers.is_empty()
                || routes.brokers.iter().any(|b| b.matches(&request.host)));
        is_order.then(|| format!("guardrail {NO_ORDER_EXECUTION}"))
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

    fn facts(method: &str, host: &str, path: &str) -> RequestFacts {
        RequestFacts {
            method: method.into(),
            scheme: "https".into(),
            host: host.into(),
            port: 443,
            path: path.into(),
        }
    }

    #[test]
    fn order_routes_are_denied_on_any_host_by_default() {
        let guard = Guardrails::default();
        for (method, path) in [
            ("POST", "/orders"),
            ("DELETE", "/v2/orders/42"),
            ("PUT", "/ORDERS"),
        ] {
            let reason = guard.check_request(&facts(method, "api.example.com", path));
            assert_eq!(
                reason.as_deref(),
                Some("guardrail no-order-execution"),
                "{method} {path}"
            );
        }
        for (method, path) in [
            ("GET", "/orders"),
            ("POST", "/positions"),
            ("POST", "/v1/orders"),
        ] {
            assert!(
                guard.check_request(&facts(method, "x", path)).is_none(),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn a_broker_list_limits_the_hosts() {
        let spec = GuardrailsSpec {
            no_order_execution: OrdersSpec {
                brokers: vec!["*.broker.example".into()],
                ..OrdersSpec::default()
            },
            ..GuardrailsSpec::default()
        };
        let guard = Guardrails::resolve(&spec, Path::new("/")).unwrap();
        assert!(
            guard
                .check_request(&facts("POST", "api.broker.example", "/orders"))
                .is_some()
        );
        assert!(
            guard
                .check_request(&facts("POST", "api.other.example", "/orders"))
                .is_none()
        );
    }

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
        let guard = Guardrails::resolve(&spec, Path::new("/")).unwrap();
        assert!(
            guard
                .check_request(&facts("POST", "x", "/orders"))
                .is_none()
        );
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

    #[test]
    fn market_data_cannot_be_mounted_writable() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data/market");
        std::fs::create_dir_all(&data).unwrap();
        let spec = GuardrailsSpec {
            market_data_read_only: MarketDataSpec {
                enabled: true,
                folders: vec!["data/market".into()],
            },
            ..GuardrailsSpec::default()
        };
        let guard = Guardrails::resolve(&spec, root.path()).unwrap();
        let data = data.canonicalize().unwrap();
        let mount = |host: PathBuf, access| Mount {
            host,
            guest: "/m".into(),
            access,
            per_user: false,
        };
        assert!(
            guard
                .check_mounts(&[mount(data.clone(), Access::ReadOnly)])
                .is_ok()
        );
        let error = guard
            .check_mounts(&[mount(data.clone(), Access::ReadWrite)])
            .unwrap_err();
        assert!(
            error.starts_with("denied by guardrail market-data-read-only"),
            "{error}"
        );
        let parent = data.parent().unwrap().to_owned();
        assert!(
            guard
                .check_mounts(&[mount(parent, Access::ReadWrite)])
                .is_err()
        );
        assert!(
            guard
                .check_mounts(&[mount(data.join("AAPL"), Access::ReadWrite)])
                .is_err()
        );
    }
}
