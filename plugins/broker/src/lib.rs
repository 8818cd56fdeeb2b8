//! A broker client: account, positions and orders through an Alpaca-style
//! HTTP API (`/v2/account`, `/v2/positions`, `/v2/orders`), whose base URL
//! comes from the `BROKER_URL` variable the policy grants.
//!
//! Placing an order is a real effect. The shipped `host.toml` declares the
//! broker at `BROKER_URL` with Alpaca's read routes, and the shipped policy
//! grants this plugin those reads only, so the host refuses the order before
//! it leaves the sandbox, whatever this code does.

use plugin_sdk::http;
use plugin_sdk::prelude::*;

/// Arguments of `place_order`.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct OrderArgs {
    /// Ticker symbol, upper case.
    #[schemars(regex(pattern = r"^[A-Z0-9][A-Z0-9._-]{0,9}$"))]
    symbol: String,
    /// buy or sell.
    side: Side,
    /// Number of units, greater than zero.
    #[schemars(range(min = 0.000001, max = 1000000.0))]
    quantity: f64,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Side {
    Buy,
    Sell,
}

fn plugin() -> Plugin {
    Plugin::new("broker", env!("CARGO_PKG_VERSION"))
        .description("Account positions and order entry through the broker's HTTP API.")
        .tool(
            Tool::new(
                "get_positions",
                "List the account's open positions as the broker reports them (symbol, \
                 quantity, average price, market value). Read-only: use it to check exposure \
                 before proposing changes.",
            )
            .title("Get positions")
            .read_only()
            .open_world(true)
            .effects(Effects::NETWORK_READ),
            |_: NoArgs| {
                let response = http::get(&url("/v2/positions")?).send()?;
                body_of(response)
            },
        )
        .tool(
            Tool::new(
                "get_account",
                "The account's cash, buying power and equity as the broker reports them. \
                 Read-only: use it to size positions within what the account holds.",
            )
            .title("Get account")
            .read_only()
            .open_world(true)
            .effects(Effects::NETWORK_READ),
            |_: NoArgs| {
                let response = http::get(&url("/v2/account")?).send()?;
                body_of(response)
            },
        )
        .tool(
            Tool::new(
                "place_order",
                "Send a market order to the broker. This executes a real trade: only available \
                 when the operator has explicitly allowed order execution for this plugin.",
            )
            .title("Place order")
            .destructive(true)
            .open_world(true)
            .effects(Effects::NETWORK_WRITE | Effects::TRADE),
            |args: OrderArgs| {
                let response = http::post(&url("/v2/orders")?).json(&args)?.send()?;
                body_of(response)
            },
        )
}

plugin_sdk::export_plugin!(plugin);

fn url(path: &str) -> Result<String, ToolError> {
    let base = host::env("BROKER_URL").ok_or_else(|| {
        ToolError::new("BROKER_URL is not set: grant it in the broker plugin's policy")
    })?;
    Ok(format!("{}{path}", base.trim_end_matches('/')))
}

fn body_of(response: http::Response) -> Result<String, ToolError> {
    if response.is_success() {
        Ok(response.text())
    } else {
        Err(ToolError::new(format!(
            "the broker answered {}: {}",
            response.status,
            response.text()
        )))
    }
}
