//! Capabilities a policy can grant a plugin. Each module owns one kind of
//! grant: its configuration, its resolution, and its enforcement point.
//! [`SandboxGrants`] gathers them for one call: it is all the runtime sees.

pub mod denials;
pub mod env;
pub mod filesystem;
pub mod limits;
pub mod network;
pub mod sockets;

use filesystem::Mount;
use network::HttpRule;
use network::orders::OrderGuard;
use sockets::SocketGrants;
use std::sync::Arc;

/// What one call's sandbox is built from: each capability's resolved grant
/// (already narrowed to what the tool declares) and the guardrail that
/// constrains them at run time.
#[derive(Clone, Debug)]
pub struct SandboxGrants {
    pub mounts: Vec<Mount>,
    pub http: Arc<[HttpRule]>,
    /// The largest response body one request may receive, in bytes.
    pub max_response_bytes: u64,
    pub sockets: Arc<SocketGrants>,
    pub env: Vec<env::EnvGrant>,
    pub limits: limits::Limits,
    /// The host-wide order guardrail; `None` when the operator turned it off.
    pub orders: Option<Arc<OrderGuard>>,
}

/// What one capability's grant allows, for people: `host check` prints the
/// summary (a line per grant), `host policy explain` the titled section,
/// which also says what is refused.
pub struct Description {
    pub title: &'static str,
    pub summary: Vec<String>,
    pub explained: Vec<String>,
}

impl SandboxGrants {
    /// Each capability's description, in the order `check` and `explain`
    /// show them.
    pub fn describe(&self) -> [Description; 5] {
        [
            filesystem::describe(&self.mounts),
            network::describe(&self.http),
            self.sockets.describe(),
            env::describe(&self.env),
            self.limits.describe(),
        ]
    }
}

impl Default for SandboxGrants {
    /// Nothing granted, the default limits, the order guardrail on.
    fn default() -> Self {
        SandboxGrants {
            mounts: Vec::new(),
            http: Vec::new().into(),
            max_response_bytes: network::DEFAULT_MAX_RESPONSE_KIB * 1024,
            sockets: Arc::default(),
            env: Vec::new(),
            limits: limits::Limits::default(),
            orders: Some(Arc::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_granted_reads_as_everything_refused() {
        let described = SandboxGrants::default().describe();
        let titles: Vec<&str> = described.iter().map(|d| d.title).collect();
        assert_eq!(
            titles,
            [
                "Files",
                "Outgoing HTTP, checked in this order",
                "Raw sockets",
                "Environment",
                "Limits"
            ]
        );
        let explained: Vec<&String> = described.iter().flat_map(|d| &d.explained).collect();
        for refusal in [
            "none: every path is refused",
            "then: everything else is refused",
            "none: TCP and UDP are refused",
            "name lookup: refused",
            "none: every variable is refused",
        ] {
            assert!(explained.iter().any(|line| *line == refusal), "{refusal}");
        }
        // `check` names only what is granted, and the limits always.
        let summary: Vec<&String> = described.iter().flat_map(|d| &d.summary).collect();
        assert_eq!(summary.len(), 1);
        assert!(summary[0].starts_with("limits: 64 MiB memory"));
    }
}
