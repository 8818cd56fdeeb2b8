//! Capabilities a policy can grant a plugin. Each module owns one kind of
//! grant: its policy section, its resolution, how it narrows to a tool's
//! declared effects, what it contributes to the computed annotations, its
//! description, and its enforcement point; the [`Capability`] trait is the
//! shape they share. [`SandboxGrants`] gathers one call's grants: it is all
//! the runtime sees.
//!
//! The capabilities are listed once, in the [`capabilities!`] invocation
//! below: the policy sections, the grants, narrowing, annotations, `check`
//! and `explain` all loop over that list.

pub mod denials;
pub mod env;
pub mod filesystem;
pub mod keyvalue;
pub mod limits;
pub mod network;
pub mod services;
pub mod sockets;

use crate::interface::types::Effects;
use filesystem::market_data::MarketDataGuard;
use filesystem::{Protected, Root};
use network::orders::OrderGuard;
use serde::de::{DeserializeOwned, MapAccess};
use services::HostServices;
use std::sync::Arc;
use wasmtime::component::Linker;
use wasmtime_wasi::WasiView;

/// One kind of grant, after Spin's `Factor`: a policy section turned into
/// a grant once per policy (`resolve`, pure but for what [`Resolving`]
/// hands it), narrowed per tool and described, then made into each call's
/// state (`prepare`), each by the capability's own rules.
pub trait Capability {
    /// The policy file's key for its section (`mounts`, `[network]`, ...).
    const SECTION: &'static str;
    /// The section as written: strict (unknown keys are errors with line
    /// and column); absent means [`Default`].
    type Spec: DeserializeOwned + Default + std::fmt::Debug;
    /// What a plugin's calls hold: resolved, validated, ready to enforce.
    /// The default grants nothing.
    type Grant: Clone + std::fmt::Debug + Default + Send + Sync + 'static;
    /// What one call holds of the capability (wasmtime-wasi's `XCtx`):
    /// the state its guest functions reach through its view; `()` for none.
    type Call: Send + 'static;

    /// The grant a section gives, or why it cannot be given.
    fn resolve(spec: &Self::Spec, host: &Resolving) -> Result<Self::Grant, String>;

    /// Makes what a grant needs exist (a read-write folder not there yet),
    /// once every capability's section has resolved and only when the host
    /// serves: `check` and `explain` create nothing.
    fn create(_grant: &mut Self::Grant, _host: &Resolving) -> Result<(), String> {
        Ok(())
    }

    /// The grant for a tool that declares `effects`: never wider than
    /// `grant`.
    fn narrow(grant: &Self::Grant, effects: Effects) -> Self::Grant;

    /// What the grant lets a call do, for the computed annotations.
    fn reach(grant: &Self::Grant) -> Reach;

    /// What the grant allows and refuses, for `check` and `explain`.
    fn describe(grant: &Self::Grant) -> Description;

    /// What narrowing to `effects` took from `grant`, for `explain`.
    fn narrowed(_grant: &Self::Grant, _effects: Effects) -> Option<&'static str> {
        None
    }

    /// Builds one call's state from the (narrowed) grant, and gives the
    /// call's WASI context what the grant allows (Spin's `prepare`).
    fn prepare(grant: &Self::Grant, call: &mut Preparing) -> anyhow::Result<Self::Call>;

    /// Adds its guest functions to the component linker, which already
    /// holds WASI: once, when the runtime starts (Spin's `init`).
    fn add_to_linker<T: CallData>(_linker: &mut Linker<T>) -> wasmtime::Result<()> {
        Ok(())
    }
}

/// The store data of one call, as every capability's guest functions see
/// it: WASI's context and resource table, each capability's call state,
/// the call's grants and its refusal log. The runtime's call state is the
/// one implementation; each capability's view is made from it.
pub trait CallData: WasiView + 'static {
    fn capabilities(&self) -> &CallStates;
    fn capabilities_mut(&mut self) -> &mut CallStates;
    fn grants(&self) -> &SandboxGrants;
    fn denials(&self) -> &denials::Denials;
}

/// What preparing one call's sandbox hands each capability.
pub struct Preparing<'a> {
    /// The call's WASI context, which inherits nothing from the host.
    pub wasi: &'a mut wasmtime_wasi::WasiCtxBuilder,
    /// Where the call's refusals are recorded.
    pub denials: &'a denials::Denials,
    /// The user the call runs for (per-user folders are theirs); `None`
    /// for none.
    pub user: Option<&'a str>,
}

/// What resolving a policy may reach beyond its own text: the host's root
/// folder and protected files, the guardrails in force, and the host's
/// services (where granted secrets come from).
pub struct Resolving<'a> {
    /// The plugin whose policy this is.
    pub plugin: &'a str,
    pub root: &'a Root,
    /// The host's own files, which no mount may cover.
    pub protected: &'a [Protected],
    /// The market-data guardrail; `None` when it is off.
    pub market_data: Option<&'a MarketDataGuard>,
    /// The order guardrail; `None` when it is off.
    pub orders: Option<&'a Arc<OrderGuard>>,
    pub services: &'a HostServices,
}

/// What a grant lets a call do, as the annotations need to know it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// It can change something outside the sandbox.
    pub writes: bool,
    /// It can reach something outside the host.
    pub open_world: bool,
}

impl Reach {
    fn and(self, other: Reach) -> Reach {
        Reach {
            writes: self.writes || other.writes,
            open_world: self.open_world || other.open_world,
        }
    }
}

/// How much of a capability a call needs, from what its tool declares:
/// `read` and `write` are the effects that ask for reading and for all of
/// it. Each capability narrows its grant to the need; nothing is ever
/// widened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// The capability is taken away.
    Nothing,
    /// Only what reads is kept.
    Read,
    /// The grant is kept whole.
    Write,
}

impl Need {
    /// The need of a tool declaring `effects`.
    pub fn of(effects: Effects, read: Effects, write: Effects) -> Need {
        if effects.contains(write) {
            Need::Write
        } else if effects.contains(read) {
            Need::Read
        } else {
            Need::Nothing
        }
    }
}

/// What one capability's grant allows, for people: `host check` prints the
/// summary (a line per grant), `host policy explain` the titled section,
/// which also says what is refused.
pub struct Description {
    pub title: &'static str,
    pub summary: Vec<String>,
    pub explained: Vec<String>,
}

/// Declares the capabilities, each by the field its grant and section go
/// in: the one list every loop over capabilities reads.
macro_rules! capabilities {
    ($($field:ident: $capability:ty),* $(,)?) => {
        /// Each capability's section of a policy file, as written.
        #[derive(Debug, Default)]
        pub struct Sections {
            $(pub $field: <$capability as Capability>::Spec,)*
        }

        impl Sections {
            /// The policy file keys the capabilities own.
            pub const KEYS: &[&str] = &[$(<$capability as Capability>::SECTION),*];

            /// Reads the value of `key` from `map` into its capability's
            /// section; `false` when no capability owns `key`.
            pub fn read<'de, A: MapAccess<'de>>(
                &mut self,
                key: &str,
                map: &mut A,
            ) -> Result<bool, A::Error> {
                $(
                    if key == <$capability as Capability>::SECTION {
                        self.$field = map.next_value()?;
                        return Ok(true);
                    }
                )*
                Ok(false)
            }
        }

        /// Adds every capability's guest functions to `linker`, which
        /// already holds WASI.
        pub fn add_to_linker<T: CallData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
            $(<$capability as Capability>::add_to_linker(linker)?;)*
            Ok(())
        }

        /// What one call holds of each capability.
        pub struct CallStates {
            $(pub $field: <$capability as Capability>::Call,)*
        }

        /// What one call's sandbox is built from: each capability's grant,
        /// already narrowed to what the tool declares.
        #[derive(Clone, Debug, Default)]
        pub struct SandboxGrants {
            $(pub $field: <$capability as Capability>::Grant,)*
        }

        impl SandboxGrants {
            /// Every capability's grant from its section; then, when
            /// `create`, what the grants need made.
            pub fn resolve(
                sections: &Sections,
                host: &Resolving,
                create: bool,
            ) -> Result<SandboxGrants, String> {
                let mut grants = SandboxGrants {
                    $($field: <$capability as Capability>::resolve(&sections.$field, host)?,)*
                };
                if create {
                    $(<$capability as Capability>::create(&mut grants.$field, host)?;)*
                }
                Ok(grants)
            }

            /// Each capability's state for one call, its WASI context given
            /// what the grants allow.
            pub fn prepare(&self, call: &mut Preparing) -> anyhow::Result<CallStates> {
                Ok(CallStates {
                    $($field: <$capability as Capability>::prepare(&self.$field, call)?,)*
                })
            }

            /// These grants narrowed to a tool that declares `effects`.
            pub fn narrow(&self, effects: Effects) -> SandboxGrants {
                SandboxGrants {
                    $($field: <$capability as Capability>::narrow(&self.$field, effects),)*
                }
            }

            /// What the grants together let a call do.
            pub fn reach(&self) -> Reach {
                Reach::default()$(.and(<$capability as Capability>::reach(&self.$field)))*
            }

            /// Each capability's description, in the order `check` and
            /// `explain` show them.
            pub fn describe(&self) -> Vec<Description> {
                vec![$(<$capability as Capability>::describe(&self.$field)),*]
            }

            /// What narrowing to `effects` took away, capability by
            /// capability.
            pub fn narrowed(&self, effects: Effects) -> Vec<&'static str> {
                let notes = [$(<$capability as Capability>::narrowed(&self.$field, effects)),*];
                notes.into_iter().flatten().collect()
            }
        }
    };
}

capabilities! {
    mounts: filesystem::Files,
    http: network::Http,
    sockets: sockets::Sockets,
    env: env::Environment,
    keyvalue: keyvalue::KeyValue,
    limits: limits::ResourceLimits,
}

#[cfg(test)]
mod tests {
    use super::*;
    use filesystem::Mount;
    use network::{HttpGrant, HttpRule};
    use sockets::SocketGrants;

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
                ..HttpGrant::default()
            },
            sockets: Arc::new(SocketGrants::resolve(&spec).unwrap()),
            env: vec![env::EnvGrant {
                name: "KEY".into(),
                value: "v".into(),
            }],
            ..SandboxGrants::default()
        };
        let none = granted.narrow(Effects::empty());
        assert!(none.mounts.is_empty() && none.http.is_empty() && !none.sockets.name_lookup);
        assert_eq!(
            (none.env, none.limits),
            (granted.env.clone(), granted.limits.clone())
        );
        let reading = granted.narrow(Effects::READ_FILES | Effects::NETWORK_READ);
        assert_eq!(reading.mounts[0].access, filesystem::Access::ReadOnly);
        assert!(reading.http.rules.iter().all(HttpRule::is_read_only) && !reading.http.is_empty());
        assert!(!reading.sockets.name_lookup, "sockets carry writes");
        let whole = granted.narrow(Effects::WRITE_FILES | Effects::NETWORK_WRITE);
        assert_eq!(whole.mounts[0].access, filesystem::Access::ReadWrite);
        assert!(whole.sockets.name_lookup && !whole.http.rules[0].is_read_only());
    }

    #[test]
    fn explain_names_what_narrowing_took_from_each_capability() {
        let spec: sockets::SocketsSpec = toml::from_str("name_lookup = true\n").unwrap();
        let granted = SandboxGrants {
            mounts: vec![Mount::unheld("/r/d", "/d", filesystem::Access::ReadWrite)],
            http: HttpGrant {
                rules: vec![HttpRule::parse("* https://api.example.com/*").unwrap()].into(),
                ..HttpGrant::default()
            },
            sockets: Arc::new(SocketGrants::resolve(&spec).unwrap()),
            ..SandboxGrants::default()
        };
        let notes = granted.narrowed(Effects::READ_FILES | Effects::NETWORK_READ);
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes[0].contains("read-only") && notes[1].contains("GET and HEAD"));
        assert!(notes[2].contains("raw socket"), "{notes:?}");
        let none = granted.narrowed(Effects::empty());
        assert!(none[0].contains("no folder") && none[1].contains("no network"));
        assert!(
            granted
                .narrowed(Effects::WRITE_FILES | Effects::NETWORK_WRITE)
                .is_empty()
        );
        // The reach is each capability's, together.
        assert_eq!(
            granted.reach(),
            Reach {
                writes: true,
                open_world: true
            }
        );
        let reading = granted.narrow(Effects::READ_FILES | Effects::NETWORK_READ);
        assert_eq!(
            reading.reach(),
            Reach {
                writes: false,
                open_world: true
            }
        );
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
                "Key-value buckets",
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
            "none: every bucket is refused",
        ] {
            assert!(explained.iter().any(|line| *line == refusal), "{refusal}");
        }
        // `check` names only what is granted, and the limits always.
        let summary: Vec<&String> = described.iter().flat_map(|d| &d.summary).collect();
        assert_eq!(summary.len(), 1);
        assert!(summary[0].starts_with("limits: 64 MiB memory"));
    }
}
