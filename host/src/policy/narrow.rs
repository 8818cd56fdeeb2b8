//! Per-tool grants and the annotations they justify.
//!
//! A tool runs with its plugin's grants narrowed by what it declares: a tool
//! that does not declare `write-files` sees every mount read-only; one that
//! declares no network effect gets no network, and one that does not
//! declare `network-write` may only GET and HEAD. The sandbox enforces the
//! narrowed grants, so the annotations computed from them are facts, not a
//! plugin's claims.

use super::Grants;
use crate::capability::filesystem::Access;
use crate::runtime::types::{Effects, ToolHints};

/// The grants a tool declaring `effects` runs with.
pub fn for_tool(grants: &Grants, effects: Effects) -> Grants {
    let mut narrowed = grants.clone();
    if !effects.contains(Effects::WRITE_FILES) {
        for mount in &mut narrowed.mounts {
            mount.access = Access::ReadOnly;
        }
    }
    if !effects.intersects(Effects::NETWORK_READ | Effects::NETWORK_WRITE) {
        narrowed.http = Vec::new().into();
        narrowed.sockets = Default::default();
    } else if !effects.contains(Effects::NETWORK_WRITE) {
        narrowed.http = grants
            .http
            .iter()
            .filter_map(|rule| rule.read_only_part())
            .collect();
    }
    narrowed
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
    // Raw sockets carry anything in both directions: they count as writes.
    let sockets = !grants.sockets.tcp_connect.is_empty() || !grants.sockets.udp.is_empty();
    let can_write = grants.mounts.iter().any(|m| m.access == Access::ReadWrite)
        || grants.http.iter().any(|rule| !rule.is_read_only())
        || sockets;
    let read_only = !can_write;
    Annotations {
        read_only,
        // MCP's default for a tool that writes is destructive; a plugin may
        // say its writes only add.
        destructive: can_write && hints.destructive.unwrap_or(true),
        idempotent: read_only || hints.idempotent.unwrap_or(false),
        open_world: (!grants.http.is_empty() || sockets || grants.sockets.name_lookup)
            && hints.open_world.unwrap_or(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::filesystem::Mount;
    use crate::capability::network::HttpRule;

    fn grants(access: Access, rules: &[&str]) -> Grants {
        Grants {
            mounts: vec![Mount {
                host: "/r/data".into(),
                guest: "/data".into(),
                access,
                per_user: false,
            }],
            http: rules.iter().map(|r| HttpRule::parse(r).unwrap()).collect(),
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
        assert_eq!(reader.mounts[0].access, Access::ReadOnly);
        assert!(reader.http.iter().all(HttpRule::is_read_only));
        assert!(!reader.http.is_empty());
        let writer = for_tool(&g, Effects::WRITE_FILES | Effects::NETWORK_WRITE);
        assert_eq!(writer.mounts[0].access, Access::ReadWrite);
        assert!(!writer.http[0].is_read_only());
    }

    #[test]
    fn no_network_effect_means_no_network() {
        let g = grants(Access::ReadOnly, &["GET https://api.example.com/*"]);
        assert!(for_tool(&g, Effects::READ_FILES).http.is_empty());
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
