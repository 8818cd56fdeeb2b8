//! Who a request runs as: the principal every layer below the front door
//! sees (policies, the sandbox's `{user}` mounts, the audit log), with no
//! knowledge of how it was authenticated.

use std::collections::BTreeSet;

/// Who a request runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user id (`local` on stdio and without auth, `anonymous` in
    /// public mode; no authenticated user can have either).
    pub id: String,
    /// The scopes it holds.
    pub scopes: BTreeSet<String>,
    /// Whether it may use tools that are not read-only.
    pub may_write: bool,
    /// Whether it is the local user, the operator.
    pub local: bool,
}

/// The local user's id.
pub const LOCAL_ID: &str = "local";
pub const LOCAL: &str = LOCAL_ID;
/// The anonymous principal's id.
pub const ANONYMOUS: &str = "anonymous";

impl Principal {
    /// The local user: stdio, or HTTP without auth (loopback only).
    pub fn local() -> Principal {
        Principal {
            id: LOCAL.into(),
            scopes: BTreeSet::new(),
            may_write: true,
            local: true,
        }
    }

    /// Whether this is the anonymous principal of public mode, which every
    /// anonymous client shares.
    pub fn is_anonymous(&self) -> bool {
        !self.local && self.id == ANONYMOUS
    }

    /// The one principal every anonymous client of public mode runs as.
    pub fn anonymous() -> Principal {
        Principal {
            id: ANONYMOUS.into(),
            scopes: BTreeSet::new(),
            may_write: false,
            local: false,
        }
    }
}

/// Whether `id` can name a principal: it names folders (`{user}` mounts)
/// and audit records, so 1 to 128 characters of letters, digits and
/// `.`, `_`, `-`, `@`, starting with a letter or digit.
pub fn valid_principal(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}
