//! In-process cost of a fresh sandbox per call: instantiate, call a trivial
//! tool, drop — with no grants, and with two mounts and an env variable; and
//! of checking one outgoing HTTP request on its canonical form.
//!
//! Needs the test fixtures: `cargo build --release --target wasm32-wasip2
//! --manifest-path tests/fixtures/Cargo.toml`, then `cargo bench -p host`.

use criterion::{Criterion, criterion_group, criterion_main};
use host::capability::env::EnvGrant;
use host::capability::filesystem::{self, Access, MountSpec, Root};
use host::capability::network::orders::OrderGuard;
use host::capability::network::{self, HttpRule};
use host::capability::services::HostServices;
use host::capability::{Capability, Resolving, SandboxGrants};
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

    let folder = tempfile::tempdir().unwrap();
    let root = Root::open(folder.path()).unwrap();
    let granted = SandboxGrants {
        mounts: {
            let specs: Vec<MountSpec> = (0..2)
                .map(|i| {
                    std::fs::create_dir(folder.path().join(i.to_string())).unwrap();
                    // One read-only, one read-write with its disk quota.
                    MountSpec {
                        host: i.to_string().into(),
                        guest: format!("/data/{i}"),
                        access: [Access::ReadOnly, Access::ReadWrite][i],
                        max_mib: None,
                        max_entries: None,
                    }
                })
                .collect();
            let host = Resolving {
                plugin: "bench",
                root: &root,
                protected: &[],
                market_data: None,
                orders: None,
                services: &HostServices::default(),
            };
            <filesystem::Files as Capability>::resolve(&specs, &host).unwrap()
        },
        env: vec![EnvGrant {
            name: "BROKER_URL".into(),
            value: "http://127.0.0.1:8787".into(),
        }],
        ..SandboxGrants::default()
    };

    let mut group = c.benchmark_group("instantiate + call + drop");
    for (label, grants) in [
        ("no grants", Arc::new(SandboxGrants::default())),
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
    let grants = Arc::new(SandboxGrants::default());
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
async fn greet(runtime: &Runtime, plugin: &Prepared, grants: &Arc<SandboxGrants>) {
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

/// What checking one outgoing request costs: bringing its URL into the
/// canonical form, matching the order guardrail and the plugin's rules on
/// it, and rebuilding the URI that is sent.
fn check_request(c: &mut Criterion) {
    let rules: Arc<[HttpRule]> = [
        "GET http://127.0.0.1:*/positions",
        "GET,HEAD https://*.example.com/v2/bars/*",
    ]
    .iter()
    .map(|rule| HttpRule::parse(rule).unwrap())
    .collect();
    let rules = network::HttpGrant {
        rules,
        ..network::HttpGrant::default()
    };
    let orders = OrderGuard::default();
    let mut group = c.benchmark_group("check one outgoing request");
    for (label, url) in [
        (
            "plain",
            "https://data.example.com/v2/bars/AAPL?timeframe=1d",
        ),
        (
            "escaped and dotted",
            "https://data.example.com/v2/x/../b%61rs/AAPL?timeframe=1d",
        ),
    ] {
        let request = http::Request::get(url).body(()).unwrap();
        group.bench_function(label, |b| {
            b.iter(|| {
                let facts = network::facts_of(&request).unwrap();
                let decision = network::decide(Some(&orders), &rules, &facts);
                assert!(matches!(decision, network::Decision::Allow));
                facts.url.to_uri().unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sandbox, check_request);
criterion_main!(benches);
