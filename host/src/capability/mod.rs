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
use network::HttpGrant;
use network::orders::OrderGuard;
use sockets::SocketGrants;
use std::sync::Arc;

/// What one call's sandbox is built from: each capability's resolved grant
/// (already narrowed to what the tool declares) and the guardrail that
/// constrains them at run time.
#[derive(Clone, Debug)]
pub struct SandboxGrants {
    pub mounts: Vec<Mount>,
    pub http: HttpGrant,
    /// The largest response body one request may receive, in bytes.
    pub max_response_bytes: u64,
    pub sockets: Arc<SocketGrants>,
    pub env: Vec<env::EnvGrant>,
    pub limits: limits::Limits,
    /// The host-wide order guardrail; `None` when the operator turned it off.
    pub orders: Option<Arc<OrderGuard>>,
}

/// How much of a capability a call needs, from what its tool declares.
/// Each capability narrows its grant to the need (see `policy::narrow` for
/// how declared effects become needs); nothing is ever widened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// The capability is taken away.
    Nothing,
    /// Only what reads is kept.
    Read,
    /// The grant is kept whole.
    Write,
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
    /// These grants narrowed to a call needing `files` of the mounts and
    /// `network` of HTTP and sockets.
    pub fn narrow(&self, files: Need, network: Need) -> SandboxGrants {
        // Every field named: a new capability must say how it narrows.
        SandboxGrants {
            mounts: filesystem::narrow(&self.mounts, files),
            http: network::narrow(&self.http, network),
            max_response_bytes: self.max_response_bytes,
            sockets: self.sockets.narrow(network),
            env: self.env.clone(),
            limits: self.limits.clone(),
            orders: self.orders.clone(),
        }
    }

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
            http: HttpGrant::default(),
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
    use network::HttpRule;

    #[test]
    fn needing_nothing_keeps_only_the_environment_and_limits() {
        let spec: sockets::SocketsSpec = toml::from_str("name_lookup = true\n").unwrap();
        let granted = SandboxGrants {
            mounts: vec![Mount::unheld(
                "/r/data",
                "/data",
                filesystem::Access::ReadWrite,
            )],
            http: HttpGrant {
                rules: vec![HttpRule::parse("* https://api.example.com/*").unwrap()].into(),
                brokers: Arc::new([]),
            },
            sockets: Arc::new(SocketGrants::resolve(&spec).unwrap()),
            env: vec![env::EnvGrant {
                name: "KEY".into(),
                value: "v".into(),
            }],
            ..SandboxGrants::default()
        };
        let none = granted.narrow(Need::Nothing, Need::Nothing);
        assert!(none.mounts.is_empty() && none.http.is_empty() && !none.sockets.name_lookup);
        assert_eq!(
            (none.env, none.limits),
            (granted.env.clone(), granted.limits.clone())
        );
        let reading = granted.narrow(Need::Read, Need::Read);
        assert_eq!(reading.mounts[0].access, filesystem::Access::ReadOnly);
        assert!(reading.http.rules.iter().all(HttpRule::is_read_only) && !reading.http.is_empty());
        assert!(!reading.sockets.name_lookup, "sockets carry writes");
        let whole = granted.narrow(Need::Write, Need::Write);
        assert_eq!(whole.mounts[0].access, filesystem::Access::ReadWrite);
        assert!(whole.sockets.name_lookup && !whole.http.rules[0].is_read_only());
    }

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
