//! Per-tool grants and the annotations they justify.
//!
//! A tool runs with its plugin's grants narrowed by what it declares: a tool
//! that declares no file effect sees no mount, one that does not declare
//! `write-files` sees every mount read-only; one that declares no network
//! effect gets no network, and one that does not declare `network-write` may
//! only GET and HEAD, and gets no raw socket or name lookup. The sandbox enforces the
//! narrowed grants, so the annotations computed from them are facts, not a
//! plugin's claims.

use super::Grants;
use crate::interface::types::{Effects, ToolHints};
use std::sync::Arc;

/// The grants a tool declaring `effects` runs with: each capability
/// narrowed to what the effects need of it, by its own rules.
pub fn for_tool(grants: &Grants, effects: Effects) -> Grants {
    Grants {
        sandbox: Arc::new(grants.sandbox.narrow(effects)),
        ..grants.clone()
    }
}

/// The grants resource reads, prompts and completions run with: reading
/// never needs to write.
pub fn for_reading(grants: &Grants) -> Grants {
    for_tool(grants, Effects::READ_FILES | Effects::NETWORK_READ)
}

/// MCP tool annotations, computed from the grants a tool runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Annotations {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

/// Annotations for a tool running with `grants` (already narrowed by
/// [`for_tool`]) whose plugin gave `hints`. What the grants rule out is
/// never advertised, whatever the hints say: a tool that cannot write is
/// read-only and not destructive; one without network is a closed world.
/// Hints only matter where the grants leave room.
pub fn annotations(grants: &Grants, hints: &ToolHints) -> Annotations {
    let reach = grants.sandbox.reach();
    let read_only = !reach.writes;
    Annotations {
        read_only,
        // MCP's default for a tool that writes is destructive; a plugin may
        // say its writes only add.
        destructive: reach.writes && hints.destructive.unwrap_or(true),
        idempotent: read_only || hints.idempotent.unwrap_or(false),
        open_world: reach.open_world && hints.open_world.unwrap_or(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::SandboxGrants;
    use crate::capability::filesystem::{Access, Mount};
    use crate::capability::network::HttpRule;

    fn grants(access: Access, rules: &[&str]) -> Grants {
        let sandbox = SandboxGrants {
            mounts: vec![Mount::unheld("/r/data", "/data", access)],
            http: crate::capability::network::HttpGrant {
                rules: rules.iter().map(|r| HttpRule::parse(r).unwrap()).collect(),
                ..Default::default()
            },
            ..SandboxGrants::default()
        };
        Grants {
            sandbox: Arc::new(sandbox),
            ..Grants::default()
        }
    }

    const NO_HINTS: ToolHints = ToolHints {
        read_only: None,
        destructive: None,
        idempotent: None,
        open_world: None,
    };

    #[test]
    fn undeclared_writes_become_read_only() {
        let g = grants(Access::ReadWrite, &["* https://api.example.com/*"]);
        let reader = for_tool(&g, Effects::READ_FILES | Effects::NETWORK_READ);
        assert_eq!(reader.sandbox.mounts[0].access, Access::ReadOnly);
        assert!(reader.sandbox.http.rules.iter().all(HttpRule::is_read_only));
        assert!(!reader.sandbox.http.is_empty());
        let writer = for_tool(&g, Effects::WRITE_FILES | Effects::NETWORK_WRITE);
        assert_eq!(writer.sandbox.mounts[0].access, Access::ReadWrite);
        assert!(!writer.sandbox.http.rules[0].is_read_only());
    }

    #[test]
    fn no_network_effect_means_no_network() {
        let g = grants(Access::ReadOnly, &["GET https://api.example.com/*"]);
        assert!(for_tool(&g, Effects::READ_FILES).sandbox.http.is_empty());
    }

    #[test]
    fn no_file_effect_means_no_mounts() {
        let g = grants(Access::ReadWrite, &[]);
        assert!(
            for_tool(&g, Effects::NETWORK_READ)
                .sandbox
                .mounts
                .is_empty()
        );
        assert!(for_tool(&g, Effects::empty()).sandbox.mounts.is_empty());
        assert_eq!(for_tool(&g, Effects::READ_FILES).sandbox.mounts.len(), 1);
    }

    #[test]
    fn raw_sockets_need_network_write() {
        let mut g = grants(Access::ReadOnly, &[]);
        let spec: crate::capability::sockets::SocketsSpec =
            toml::from_str("tcp_connect = [\"127.0.0.1:9\"]\nname_lookup = true\n").unwrap();
        let sockets = crate::capability::sockets::SocketGrants::resolve(&spec).unwrap();
        Arc::make_mut(&mut g.sandbox).sockets = Arc::new(sockets);
        let reader = for_tool(&g, Effects::NETWORK_READ);
        assert!(
            reader.sandbox.sockets.tcp_connect.is_empty() && !reader.sandbox.sockets.name_lookup
        );
        let writer = for_tool(&g, Effects::NETWORK_WRITE);
        assert!(
            !writer.sandbox.sockets.tcp_connect.is_empty() && writer.sandbox.sockets.name_lookup
        );
    }

    #[test]
    fn hints_cannot_claim_what_grants_deny() {
        let liar = ToolHints {
            read_only: Some(true),
            destructive: Some(false),
            ..NO_HINTS
        };
        let g = grants(Access::ReadWrite, &[]);
        let a = annotations(&g, &liar);
        assert!(!a.read_only);
        let a = annotations(&g, &NO_HINTS);
        assert!(!a.read_only && a.destructive);
        let humble = ToolHints {
            read_only: Some(false),
            destructive: Some(true),
            open_world: Some(true),
            ..NO_HINTS
        };
        let a = annotations(&grants(Access::ReadOnly, &[]), &humble);
        assert!(a.read_only && !a.destructive && !a.open_world && a.idempotent);
    }

    #[test]
    fn network_writes_are_not_read_only() {
        let g = grants(Access::ReadOnly, &["POST https://api.example.com/*"]);
        let a = annotations(&g, &NO_HINTS);
        assert!(!a.read_only && a.open_world);
    }
}
