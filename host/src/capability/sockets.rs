//! Raw sockets: closed unless a policy names the exact addresses.
//!
//! TCP and UDP are switched on in every sandbox so that each attempt reaches
//! [`SocketGrants::apply`]'s check, where anything not granted is refused
//! and recorded; listening is never allowed. Name lookup is refused (and
//! recorded) by the runtime unless `name_lookup = true`.

use super::denials::{Denial, Denials, Rule};
use super::{Capability, Need, Preparing, Reach, Resolving};
use crate::interface::types::Effects;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{self, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{self, Network};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsView};

/// The `[sockets]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketsSpec {
    /// Addresses the plugin may open TCP connections to: `ip:port` or `ip:*`.
    #[serde(default)]
    pub tcp_connect: Vec<String>,
    /// Addresses the plugin may send UDP datagrams to: `ip:port` or `ip:*`.
    #[serde(default)]
    pub udp: Vec<String>,
    /// Whether the plugin may resolve host names.
    #[serde(default)]
    pub name_lookup: bool,
}

/// An address a grant names; `None` for the port means any port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrPattern {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl AddrPattern {
    /// Parses `127.0.0.1:5432`, `10.0.0.1:*` or `[::1]:53`.
    pub fn parse(text: &str) -> Result<AddrPattern, String> {
        let bad = || format!("socket address {text:?} must be ip:port or ip:* (no host names)");
        let (ip, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let port = match port {
            "*" => None,
            p => Some(p.parse().map_err(|_| bad())?),
        };
        Ok(AddrPattern { ip, port })
    }

    fn matches(&self, addr: SocketAddr) -> bool {
        self.ip == addr.ip() && self.port.is_none_or(|p| p == addr.port())
    }
}

/// A plugin's socket grants, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketGrants {
    pub tcp_connect: Vec<AddrPattern>,
    pub udp: Vec<AddrPattern>,
    pub name_lookup: bool,
}

impl SocketGrants {
    /// The grants for a call needing `need` of the network. Raw sockets
    /// and name lookups carry anything both ways, so only a call that may
    /// write keeps them.
    fn narrow(self: &Arc<Self>, need: Need) -> Arc<SocketGrants> {
        match need {
            Need::Write => self.clone(),
            Need::Read | Need::Nothing => Arc::default(),
        }
    }

    /// Whether it grants any TCP or UDP address.
    fn any_socket(&self) -> bool {
        !self.tcp_connect.is_empty() || !self.udp.is_empty()
    }

    /// What the grants allow, for `check` and `explain`.
    fn describe(&self) -> super::Description {
        let show = |a: &AddrPattern| {
            let port = a
                .port
                .map_or("any port".to_owned(), |p| format!("port {p}"));
            format!("{}, {port}", a.ip)
        };
        let mut explained = Vec::new();
        if self.tcp_connect.is_empty() && self.udp.is_empty() {
            explained.push("none: TCP and UDP are refused".to_owned());
        }
        explained.extend(
            self.tcp_connect
                .iter()
                .map(|a| format!("TCP connect to {}", show(a))),
        );
        explained.extend(self.udp.iter().map(|a| format!("UDP to {}", show(a))));
        let lookup = if self.name_lookup {
            "allowed"
        } else {
            "refused"
        };
        explained.push(format!("name lookup: {lookup}"));
        let mut summary: Vec<String> = self
            .tcp_connect
            .iter()
            .map(|a| format!("socket TCP connect to {}", show(a)))
            .chain(
                self.udp
                    .iter()
                    .map(|a| format!("socket UDP to {}", show(a))),
            )
            .collect();
        if self.name_lookup {
            summary.push("socket name lookup".to_owned());
        }
        super::Description {
            title: "Raw sockets",
            summary,
            explained,
        }
    }

    pub fn resolve(spec: &SocketsSpec) -> Result<SocketGrants, String> {
        let parse = |list: &[String]| -> Result<Vec<_>, String> {
            list.iter().map(|a| AddrPattern::parse(a)).collect()
        };
        Ok(SocketGrants {
            tcp_connect: parse(&spec.tcp_connect)?,
            udp: parse(&spec.udp)?,
            name_lookup: spec.name_lookup,
        })
    }

    /// Whether the sandbox may use `addr` for `purpose`. Binding is allowed
    /// only to an ephemeral port (the implicit bind before a connect or
    /// send, which is then checked with its real target); listening and
    /// accepting never. UDP datagrams are received only from granted
    /// addresses.
    pub fn allows(&self, addr: SocketAddr, purpose: SocketAddrUse) -> bool {
        match purpose {
            SocketAddrUse::TcpConnect => self.tcp_connect.iter().any(|p| p.matches(addr)),
            SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
                self.udp.iter().any(|p| p.matches(addr))
            }
            SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => addr.port() == 0,
            SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
        }
    }

    /// Switches TCP and UDP on in `wasi`, with every address checked here and
    /// each refusal recorded in `denials`.
    fn apply(self: &Arc<Self>, wasi: &mut WasiCtxBuilder, denials: &Denials) {
        let grants = self.clone();
        let denials = denials.clone();
        wasi.allow_tcp(true)
            .allow_udp(true)
            .socket_addr_check(move |addr, purpose| {
                let allowed = grants.allows(addr, purpose);
                if !allowed {
                    let attempt = format!("{} {addr}", describe(purpose));
                    denials.record(Denial::new(Rule::NoSocketGrant, attempt));
                }
                Box::pin(std::future::ready(allowed))
            });
        wasi.allow_ip_name_lookup(self.name_lookup);
    }
}

fn describe(purpose: SocketAddrUse) -> &'static str {
    match purpose {
        SocketAddrUse::TcpBind => "TCP bind",
        SocketAddrUse::TcpListen => "TCP listen",
        SocketAddrUse::TcpAccept => "TCP accept",
        SocketAddrUse::TcpConnect => "TCP connect",
        SocketAddrUse::UdpBind => "UDP bind",
        SocketAddrUse::UdpSend => "UDP send",
        SocketAddrUse::UdpReceive => "UDP receive",
    }
}

/// Raw sockets: TCP connections and UDP to the addresses a policy lists,
/// and name lookups. They carry anything both ways, so only a tool that
/// declares `network-write` keeps them, and they count as writes.
pub struct Sockets;

impl Capability for Sockets {
    const SECTION: &'static str = "sockets";
    type Spec = SocketsSpec;
    type Grant = Arc<SocketGrants>;

    fn resolve(spec: &SocketsSpec, _host: &Resolving) -> Result<Arc<SocketGrants>, String> {
        SocketGrants::resolve(spec)
            .map(Arc::new)
            .map_err(|e| format!("[sockets] {e}"))
    }

    fn narrow(grant: &Arc<SocketGrants>, effects: Effects) -> Arc<SocketGrants> {
        grant.narrow(Need::of(
            effects,
            Effects::NETWORK_READ,
            Effects::NETWORK_WRITE,
        ))
    }

    fn reach(grant: &Arc<SocketGrants>) -> Reach {
        Reach {
            writes: grant.any_socket(),
            open_world: grant.any_socket() || grant.name_lookup,
        }
    }

    fn describe(grant: &Arc<SocketGrants>) -> super::Description {
        grant.describe()
    }

    type Call = ();

    fn prepare(grant: &Arc<SocketGrants>, call: &mut Preparing) -> anyhow::Result<()> {
        grant.apply(call.wasi, call.denials);
        Ok(())
    }

    fn add_to_linker<T: super::CallData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        add_to_linker(linker)
    }

    fn narrowed(grant: &Arc<SocketGrants>, effects: Effects) -> Option<&'static str> {
        let granted = grant.any_socket() || grant.name_lookup;
        (granted && !effects.contains(Effects::NETWORK_WRITE))
            .then_some("it has no raw socket or name lookup (it does not declare network-write)")
    }
}

/// The sockets' view of a call's store data: the call's grant and refusal
/// log, with WASI's own sockets view beside them.
pub trait SocketsView: WasiSocketsView + 'static {
    fn socket_grants(&self) -> &SocketGrants;
    fn sockets_denials(&self) -> &Denials;
}

impl<T: super::CallData> SocketsView for T {
    fn socket_grants(&self) -> &SocketGrants {
        &self.grants().sockets
    }

    fn sockets_denials(&self) -> &Denials {
        self.denials()
    }
}

const NAME_LOOKUP: &str = "wasi:sockets/ip-name-lookup@0.2.12";

/// Adds the sockets' guest function in front of WASI's (which `linker`
/// must already hold): name lookup is refused, and recorded, unless the
/// policy grants it, instead of failing silently inside wasmtime-wasi.
fn add_to_linker<T: SocketsView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut lookup = linker.instance(NAME_LOOKUP)?;
    lookup.func_wrap(
        "resolve-addresses",
        |mut store: StoreContextMut<'_, T>, (net, name): (Resource<Network>, String)| {
            if !store.data().socket_grants().name_lookup {
                let attempt = format!("resolve the host name {name}");
                store
                    .data()
                    .sockets_denials()
                    .refuse(Rule::NoNameLookupGrant, attempt)?;
                return Ok((Err::<Resource<ResolveAddressStream>, _>(
                    network::ErrorCode::PermanentResolverFailure,
                ),));
            }
            let mut view = store.data_mut().sockets();
            let result = match ip_name_lookup::Host::resolve_addresses(&mut view, net, name) {
                Ok(stream) => Ok(stream),
                Err(error) => Err(network::Host::convert_error_code(&mut view, error)?),
            };
            Ok((result,))
        },
    )?;

    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(tcp: &[&str], udp: &[&str]) -> SocketGrants {
        SocketGrants::resolve(&SocketsSpec {
            tcp_connect: tcp.iter().map(|s| s.to_string()).collect(),
            udp: udp.iter().map(|s| s.to_string()).collect(),
            name_lookup: false,
        })
        .unwrap()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn nothing_is_allowed_without_grants() {
        let none = SocketGrants::default();
        for purpose in [
            SocketAddrUse::TcpConnect,
            SocketAddrUse::TcpListen,
            SocketAddrUse::UdpSend,
            SocketAddrUse::UdpReceive,
        ] {
            assert!(!none.allows(addr("127.0.0.1:0"), purpose));
            assert!(!none.allows(addr("127.0.0.1:80"), purpose));
        }
        // Only ephemeral binds, which every connect or send makes first.
        assert!(none.allows(addr("0.0.0.0:0"), SocketAddrUse::TcpBind));
        assert!(!none.allows(addr("0.0.0.0:8080"), SocketAddrUse::TcpBind));
        assert!(!none.allows(addr("0.0.0.0:53"), SocketAddrUse::UdpBind));
    }

    #[test]
    fn grants_name_exact_addresses() {
        let g = grants(&["127.0.0.1:5432", "[::1]:*"], &["10.0.0.53:53"]);
        assert!(g.allows(addr("127.0.0.1:5432"), SocketAddrUse::TcpConnect));
        assert!(!g.allows(addr("127.0.0.1:5433"), SocketAddrUse::TcpConnect));
        assert!(g.allows(addr("[::1]:9"), SocketAddrUse::TcpConnect));
        assert!(g.allows(addr("0.0.0.0:0"), SocketAddrUse::TcpBind));
        assert!(!g.allows(addr("0.0.0.0:8080"), SocketAddrUse::TcpBind));
        assert!(g.allows(addr("10.0.0.53:53"), SocketAddrUse::UdpSend));
        assert!(!g.allows(addr("10.0.0.53:53"), SocketAddrUse::TcpConnect));
    }

    #[test]
    fn addresses_must_be_ips() {
        for bad in ["localhost:80", "127.0.0.1", "1.2.3.4:port", ":80"] {
            assert!(AddrPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
