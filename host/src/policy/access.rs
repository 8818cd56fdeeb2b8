//! Who may use a plugin: the `[access]` table of its policy, and the
//! principal's own rights. A pure decision, request in, decision out.
//!
//! Access only narrows: it decides whether a principal sees and calls a
//! plugin's tools, resources and prompts at all, never what a call may do
//! once running (that is the plugin's grants).

use crate::principal::Principal;
use serde::Deserialize;

/// The `[access]` table of a plugin policy.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSpec {
    /// The principals (user ids) that may use the plugin; absent: any.
    pub users: Option<Vec<String>>,
    /// Scopes any one of which lets a principal use the plugin; absent:
    /// none is needed.
    pub scopes: Option<Vec<String>>,
}

/// Whether `principal` may use a plugin with `access` — for a tool that is
/// not read-only when `writes` — and if not, the rule that says so.
///
/// The local user (stdio, or HTTP without auth on loopback) is the
/// operator: `[access]` lists do not apply to it.
pub fn decide(access: &AccessSpec, principal: &Principal, writes: bool) -> Result<(), String> {
    if writes && !principal.may_write {
        return Err(format!(
            "denied by access: the tool is not read-only and {} may only use read-only tools",
            principal.id
        ));
    }
    if principal.local {
        return Ok(());
    }
    if let Some(users) = &access.users
        && !users.contains(&principal.id)
    {
        return Err(format!(
            "denied by policy: [access] users does not list {}",
            principal.id
        ));
    }
    if let Some(scopes) = &access.scopes
        && !scopes.iter().any(|scope| principal.scopes.contains(scope))
    {
        return Err(format!(
            "denied by policy: [access] needs one of the scopes {}",
            scopes.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn principal(id: &str, scopes: &[&str], may_write: bool) -> Principal {
        Principal {
            id: id.into(),
            scopes: scopes
                .iter()
                .map(|s| s.to_string())
                .collect::<BTreeSet<_>>(),
            may_write,
            local: false,
        }
    }

    #[test]
    fn read_only_principals_never_reach_writing_tools() {
        let open = AccessSpec::default();
        let anonymous = principal("anonymous", &[], false);
        assert!(decide(&open, &anonymous, false).is_ok());
        let refused = decide(&open, &anonymous, true).unwrap_err();
        assert!(refused.contains("read-only"), "{refused}");
    }

    #[test]
    fn users_and_scopes_narrow_who_may_use_a_plugin() {
        let access = AccessSpec {
            users: Some(vec!["alice".into(), "bob".into()]),
            scopes: Some(vec!["research".into()]),
        };
        assert!(decide(&access, &principal("alice", &["research"], true), true).is_ok());
        let carol = decide(&access, &principal("carol", &["research"], true), false);
        assert!(carol.unwrap_err().contains("users does not list carol"));
        let unscoped = decide(&access, &principal("bob", &["mcp:read"], true), false);
        assert!(unscoped.unwrap_err().contains("scopes research"));
        assert!(
            decide(&access, &Principal::local(), true).is_ok(),
            "the operator"
        );
        let impostor = principal("local", &["research"], true);
        assert!(
            decide(&access, &impostor, false).is_err(),
            "only the operator is local"
        );
    }
}
