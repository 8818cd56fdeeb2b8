//! Host-side bindings of `wasi:keyvalue@0.2.0-draft2` (`wit/deps/keyvalue.wit`).
//! The plugin world's bindings use these (`with`), so the capability owns
//! its interface.

wasmtime::component::bindgen!({
    world: "wasi:keyvalue/imports",
    path: "../wit/deps/keyvalue.wit",
    imports: { default: async | trappable },
    with: {
        "wasi:keyvalue/store.bucket": super::guest::Bucket,
        "wasi:keyvalue/atomics.cas": super::guest::Cas,
    },
});

pub use wasi::keyvalue::{atomics, batch, store};
