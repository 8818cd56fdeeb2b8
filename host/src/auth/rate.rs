//! Rate limits as the host config sets them. The buckets they fill are
//! shared state (`crate::shared_state`): one per key (a principal, a
//! client address, a principal and tool), holding a minute's budget.

use serde::Deserialize;

/// The `[auth.rate_limit]` table. 0 turns a limit off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// HTTP requests per minute per principal (per client address in
    /// public mode).
    #[serde(default = "default_requests")]
    pub requests_per_minute: u32,
    /// Calls per minute per principal and tool.
    #[serde(default = "default_tool_calls")]
    pub tool_calls_per_minute: u32,
    /// Failed authentications per minute per client address; past it, the
    /// address is refused (429) even with good credentials until its
    /// budget refills, so credentials cannot be guessed at speed.
    #[serde(default = "default_failed_auth")]
    pub failed_auth_per_minute: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            requests_per_minute: default_requests(),
            tool_calls_per_minute: default_tool_calls(),
            failed_auth_per_minute: default_failed_auth(),
        }
    }
}

fn default_requests() -> u32 {
    600
}
fn default_tool_calls() -> u32 {
    120
}
fn default_failed_auth() -> u32 {
    30
}
