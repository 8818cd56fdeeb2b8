//! The plugin interface: host-side bindings of the `mcp-host:plugin/plugin`
//! world in `wit/`, and its types, which every layer shares.
//!
//! WASI and wasi:http come from their crates and wasi:keyvalue from
//! [`keyvalue`] (`with`), so the host links those implementations rather
//! than generating new ones.

pub mod keyvalue;

wasmtime::component::bindgen!({
    world: "mcp-host:plugin/plugin",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasi": wasmtime_wasi::p2::bindings,
        "wasi:keyvalue": crate::interface::keyvalue::wasi::keyvalue,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
    },
});

pub use mcp_host::plugin::types;

/// The version of the `mcp-host:plugin` WIT package this host speaks.
pub const INTERFACE_VERSION: &str = "0.3.0";
