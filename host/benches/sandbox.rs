//! In-process cost of a fresh sandbox per call: instantiate, call a trivial
//! tool, drop — with no grants, and with two mounts and an env variable.
//!
//! Needs the test fixtures: `cargo build --release --target wasm32-wasip2
//! --manifest-path tests/fixtures/Cargo.toml`, then `cargo bench -p host`.

use criterion::{Criterion, criterion_group, criterion_main};
use host::capability::env::EnvGrant;
use host::capability::filesystem::{Access, Mount};
use host::digest::sha256;
use host::plugin::loader;
use host::policy::Grants;
use host::runtime::{CallContext, EngineConfig, Prepared, Runtime};
use std::path::Path;
use std::sync::Arc;

fn sandbox(c: &mut Criterion) {
    let tokio = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let runtime = Arc::new(Runtime::new(&EngineConfig::default()).expect("the wasm runtime"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/target/wasm32-wasip2/release/hello.wasm");
    let bytes = std::fs::read(&path).expect("the hello fixture (see this file's header)");
    let compiled = tokio
        .block_on(loader::compile(&runtime, bytes.clone()))
        .expect("hello compiles");
    let plugin = loader::assemble(
        "hello",
        &path,
        Arc::new(compiled),
        Grants::default(),
        sha256(&bytes),
    )
    .expect("hello assembles");

    let folders = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let granted = Grants {
        mounts: folders
            .iter()
            .enumerate()
            .map(|(i, dir)| Mount {
                host: dir.path().to_owned(),
                guest: format!("/data/{i}"),
                access: Access::ReadOnly,
                per_user: false,
            })
            .collect(),
        env: vec![EnvGrant {
            name: "BROKER_URL".into(),
            value: "http://127.0.0.1:8787".into(),
        }],
        ..Grants::default()
    };

    let mut group = c.benchmark_group("instantiate + call + drop");
    for (label, grants) in [
        ("no grants", Arc::new(Grants::default())),
        ("two mounts and env", Arc::new(granted)),
    ] {
        group.bench_function(label, |b| {
            b.to_async(&tokio)
                .iter(|| greet(&runtime, &plugin.prepared, &grants))
        });
    }
    // The same call after the caches were filled with other data, as they
    // are between requests in a server (pipe I/O, JSON, the scheduler).
    let mut other = vec![0u8; 8 << 20];
    let grants = Arc::new(Grants::default());
    group.bench_function("no grants, caches cold", |b| {
        b.to_async(&tokio).iter_batched(
            || {
                for (i, byte) in other.iter_mut().enumerate().step_by(64) {
                    *byte = byte.wrapping_add(i as u8);
                }
            },
            |()| greet(&runtime, &plugin.prepared, &grants),
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// One call of the hello plugin's `greet` in a fresh sandbox.
async fn greet(runtime: &Runtime, plugin: &Prepared, grants: &Arc<Grants>) {
    let arguments = r#"{"name":"Ada"}"#.to_owned();
    runtime
        .run(
            plugin,
            grants,
            CallContext::default(),
            Box::new(move |handler, store| {
                Box::pin(async move { handler.call_call_tool(store, "greet", &arguments).await })
            }),
        )
        .await
        .expect("greet answers");
}

criterion_group!(benches, sandbox);
criterion_main!(benches);
