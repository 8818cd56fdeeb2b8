//! The benchmark harness: whole-process figures, plugin calls side by side
//! with the host's native built-in tool and a bare JSON-RPC responder.
//!
//! `cargo run --release -p host --bin bench` prints every figure in
//! BENCHMARKS.md; `--quick` runs a short smoke of each (CI keeps it
//! working, and asserts nothing about speed). In-process figures are the
//! criterion bench `cargo bench -p host --bench sandbox`.

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio as Piped;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Benchmark the host against its own native tool and a bare responder.
#[derive(Parser)]
struct Args {
    /// A short smoke of every figure instead of the full run.
    #[arg(long)]
    quick: bool,
    /// Only these figures (all but `instructions`, which needs valgrind,
    /// when none is named).
    #[arg(long, value_enum)]
    only: Vec<Figure>,
    /// The repository, for the example plugins and test fixtures.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The host binary to measure [default: `host` beside this one]; only
    /// the `idle` and `instructions` figures run against builds older than
    /// its own.
    #[arg(long)]
    host: Option<PathBuf>,
    /// The host config every measured host is started with, instead of
    /// the harness's own (which raises the per-user and per-client limits
    /// for its many clients from one address). Builds older than those
    /// limits refuse its keys: give them a config without them.
    #[arg(long)]
    host_config: Option<PathBuf>,
    /// Serve a bare JSON-RPC responder on stdio (used by the harness itself).
    #[arg(long, hide = true)]
    bare_responder: bool,
    /// Serve a bare JSON-RPC responder over HTTP on this address (ditto).
    #[arg(long, hide = true)]
    bare_http: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.bare_responder {
        return bare_stdio();
    }
    if let Some(addr) = args.bare_http {
        return bare_http(addr).await;
    }
    let bench = Bench::new(&args)?;
    println!("machine: {}", machine());
    println!(
        "mode: {}\n",
        if args.quick { "quick smoke" } else { "full" }
    );
    let wanted = |figure| args.only.is_empty() || args.only.contains(&figure);
    if wanted(Figure::Latency) {
        bench.latency().await?;
    }
    if wanted(Figure::Throughput) {
        bench.throughput().await?;
    }
    if wanted(Figure::Startup) {
        bench.startup().await?;
    }
    if wanted(Figure::Reload) {
        bench.reload().await?;
    }
    if wanted(Figure::Memory) {
        bench.memory().await?;
    }
    if wanted(Figure::Idle) {
        bench.idle().await?;
    }
    // It needs valgrind, which CI's smoke run need not have: only on demand.
    if args.only.contains(&Figure::Instructions) {
        bench.instructions().await?;
    }
    Ok(())
}

/// The whole-process figures, in the order BENCHMARKS.md numbers them.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Figure {
    Latency,
    Throughput,
    Startup,
    Reload,
    Memory,
    Idle,
    Instructions,
}

/// All the harness's clients are one user at one loopback address: it
/// may hold as many sessions, connections and requests as the throughput
/// runs open (128 clients, each a connection and a stream).
const HARNESS_HOST_CONFIG: &str = "[http]\nmax_sessions_per_user = 1000\n\
    max_connections_per_address = 1024\nmax_streams_per_client = 100000\n\
    max_requests_per_client = 100000\n";

struct Bench {
    host: PathBuf,
    host_config: String,
    bench: PathBuf,
    repo: PathBuf,
    quick: bool,
    work: tempfile::TempDir,
}

impl Bench {
    fn new(args: &Args) -> Result<Bench> {
        let bench = std::env::current_exe()?;
        let host = args
            .host
            .clone()
            .unwrap_or_else(|| bench.with_file_name("host"));
        if !host.exists() {
            bail!(
                "{} is missing: build it first (cargo build --release -p host)",
                host.display()
            );
        }
        let repo = args.repo.canonicalize().context("the --repo folder")?;
        for needed in [
            "plugins/indicators.wasm",
            "tests/fixtures/target/wasm32-wasip2/release/hello.wasm",
            "tests/fixtures/target/wasm32-wasip2/release/hostile.wasm",
        ] {
            if !repo.join(needed).exists() {
                bail!("{needed} is missing: run bash plugins/build and build tests/fixtures first");
            }
        }
        let host_config = match &args.host_config {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("the --host-config file {}", path.display()))?,
            None => HARNESS_HOST_CONFIG.to_owned(),
        };
        Ok(Bench {
            host,
            host_config,
            bench,
            repo,
            quick: args.quick,
            work: tempfile::tempdir()?,
        })
    }

    fn fixture(&self, name: &str) -> PathBuf {
        self.repo
            .join("tests/fixtures/target/wasm32-wasip2/release")
            .join(format!("{name}.wasm"))
    }

    /// A root with `plugins` (name → wasm file) and `policies` (name → text).
    fn root(
        &self,
        label: &str,
        plugins: &[(&str, PathBuf)],
        policies: &[(&str, &str)],
    ) -> Result<PathBuf> {
        let root = self.work.path().join(label);
        std::fs::create_dir_all(root.join("plugins"))?;
        std::fs::create_dir_all(root.join("policies"))?;
        std::fs::write(root.join("host-config.toml"), &self.host_config)?;
        for (name, wasm) in plugins {
            std::fs::copy(wasm, root.join("plugins").join(format!("{name}.wasm")))?;
        }
        for (name, text) in policies {
            std::fs::write(root.join("policies").join(format!("{name}.toml")), text)?;
        }
        Ok(root)
    }

    /// A root with the hello fixture, whose policy lets every client of a
    /// figure call it at once.
    fn busy_hello_root(&self, label: &str) -> Result<PathBuf> {
        let policy = "version = 1\n[limits]\nmax_concurrency = 256\n";
        self.root(
            label,
            &[("hello", self.fixture("hello"))],
            &[("hello", policy)],
        )
    }

    fn serve_args(&self, root: &Path, cache: &Path) -> Vec<String> {
        let arg = |p: PathBuf| p.display().to_string();
        vec![
            "serve".into(),
            "--plugins".into(),
            arg(root.join("plugins")),
            "--policies".into(),
            arg(root.join("policies")),
            "--cache-dir".into(),
            arg(cache.to_owned()),
            "--no-audit-log".into(),
            "--native-noop".into(),
            "--config".into(),
            arg(root.join("host-config.toml")),
        ]
    }

    fn calls(&self) -> usize {
        if self.quick { 200 } else { 5000 }
    }

    /// Figure 1: Per-call latency over stdio and HTTP: plugin tool, native tool and
    /// the bare responder, one client, sequential calls.
    async fn latency(&self) -> Result<()> {
        println!("## 1. per-call latency, one client (µs)\n");
        println!("| transport | target | p50 | p99 | p50 vs native | p50 vs bare |");
        println!("| --- | --- | --- | --- | --- | --- |");
        let root = self.root("latency", &[("hello", self.fixture("hello"))], &[])?;
        let cache = self.work.path().join("cache");
        let serve = self.serve_args(&root, &cache);
        let greet = (
            "tools/call",
            json!({"name": "hello__greet", "arguments": {"name": "Ada"}}),
        );
        let noop = ("tools/call", json!({"name": "host__noop", "arguments": {}}));

        let mut host = StdioClient::spawn(&self.host, &serve).await?;
        host.initialize().await?;
        let mut bare = StdioClient::spawn(&self.bench, &["--bare-responder".into()]).await?;
        bare.initialize().await?;
        let [plugin, native, floor] =
            in_turn(&mut host, &mut bare, &greet, &noop, self.calls()).await?;
        report("stdio", &plugin, &native, &floor);

        let (mut server, url) = HttpServer::start(&self.host, &serve).await?;
        let mut host = HttpClient::connect(&url).await?;
        let (mut bare_server, bare_url) = HttpServer::start_bare(&self.bench).await?;
        let mut bare = HttpClient::connect(&bare_url).await?;
        let [plugin, native, floor] =
            in_turn(&mut host, &mut bare, &greet, &noop, self.calls()).await?;
        server.stop().await;
        bare_server.stop().await;
        report("http", &plugin, &native, &floor);
        println!();
        Ok(())
    }

    /// Figure 2: Throughput over HTTP with many clients, each on its own connection
    /// and session.
    async fn throughput(&self) -> Result<()> {
        println!("## 2. throughput over HTTP (calls/s; the host's CPU time per call)\n");
        println!(
            "| clients | plugin tool | native tool | plugin / native | plugin CPU µs | native CPU µs |"
        );
        println!("| --- | --- | --- | --- | --- | --- |");
        let root = self.busy_hello_root("throughput")?;
        let cache = self.work.path().join("cache");
        let (mut server, url) =
            HttpServer::start(&self.host, &self.serve_args(&root, &cache)).await?;
        let seconds = if self.quick { 0.5 } else { 5.0 };
        for clients in [1, 8, 32, 128] {
            let cpu = cpu_time(server.pid)?;
            let (plugin, plugin_calls) = rate(
                &url,
                clients,
                "hello__greet",
                json!({"name": "Ada"}),
                seconds,
            )
            .await?;
            let plugin_cpu = (cpu_time(server.pid)? - cpu) / plugin_calls as u32;
            let cpu = cpu_time(server.pid)?;
            let (native, native_calls) =
                rate(&url, clients, "host__noop", json!({}), seconds).await?;
            let native_cpu = (cpu_time(server.pid)? - cpu) / native_calls as u32;
            println!(
                "| {clients} | {plugin:.0} | {native:.0} | {:.0} % | {:.0} | {:.0} |",
                plugin / native * 100.0,
                us(plugin_cpu),
                us(native_cpu)
            );
        }
        server.stop().await;
        println!();
        Ok(())
    }

    /// Figure 3: Start-up to the first tools/list answer, 1 and 20 plugins, with a
    /// cold and a warm compiled-component cache.
    async fn startup(&self) -> Result<()> {
        println!("## 3. start-up to the first tools/list answer (ms)\n");
        println!("| plugins | cold cache | warm cache |");
        println!("| --- | --- | --- |");
        for count in [1, 20] {
            let plugins = self.distinct_plugins(count)?;
            let list: Vec<(&str, PathBuf)> = plugins
                .iter()
                .map(|(n, p)| (n.as_str(), p.clone()))
                .collect();
            let root = self.root(&format!("startup-{count}"), &list, &[])?;
            let cache = self.work.path().join(format!("startup-cache-{count}"));
            let cold = self.time_to_list(&root, &cache, count).await?;
            let warm = self.time_to_list(&root, &cache, count).await?;
            println!("| {count} | {:.1} | {:.1} |", ms(cold), ms(warm));
        }
        println!();
        Ok(())
    }

    /// Time from start to the `tools/list` answer, which must list tools
    /// from `plugins` plugins.
    async fn time_to_list(&self, root: &Path, cache: &Path, plugins: usize) -> Result<Duration> {
        let started = Instant::now();
        let mut host = StdioClient::spawn(&self.host, &self.serve_args(root, cache)).await?;
        host.initialize().await?;
        let list = host.request("tools/list", json!({})).await?;
        let elapsed = started.elapsed();
        expect_plugins(&list, plugins)?;
        Ok(elapsed)
    }

    /// `count` copies of the README's hello plugin, each made distinct (a
    /// custom section appended) so that each must be compiled on a cold
    /// start. (Copies of a plugin with resources would collide: only the
    /// first would load.)
    fn distinct_plugins(&self, count: usize) -> Result<Vec<(String, PathBuf)>> {
        let original = std::fs::read(self.fixture("hello"))?;
        (0..count)
            .map(|i| {
                let name = format!("plugin-{i:02}");
                let path = self.work.path().join(format!("{name}.wasm"));
                std::fs::write(&path, with_custom_section(&original, &name))?;
                Ok((name, path))
            })
            .collect()
    }

    /// Figure 4: Hot reload: file rename → list_changed at the client.
    async fn reload(&self) -> Result<()> {
        println!("## 4. hot reload: rename → notification at the client (ms)\n");
        println!("| change | median | max |");
        println!("| --- | --- | --- |");
        let root = self.root("reload", &[("hello", self.fixture("hello"))], &[])?;
        let cache = self.work.path().join("reload-cache");
        let mut host = StdioClient::spawn(&self.host, &self.serve_args(&root, &cache)).await?;
        host.initialize().await?;
        let rounds = if self.quick { 3 } else { 20 };
        let mut policy = Vec::new();
        let mut component = Vec::new();
        let hello = std::fs::read(self.fixture("hello"))?;
        for round in 0..rounds {
            let text = format!("version = 1\n[limits]\ntimeout_ms = {}\n", 5000 + round);
            policy.push(
                host.time_change(&root.join("policies/hello.toml"), text.as_bytes())
                    .await?,
            );
            let fresh = with_custom_section(&hello, &format!("round-{round}"));
            component.push(
                host.time_change(&root.join("plugins/hello.wasm"), &fresh)
                    .await?,
            );
        }
        for (label, mut times) in [("policy only", policy), ("new component", component)] {
            times.sort();
            println!(
                "| {label} | {:.1} | {:.1} |",
                ms(times[times.len() / 2]),
                ms(times[times.len() - 1])
            );
        }
        println!();
        Ok(())
    }

    /// Figure 5: Resident memory: idle with 20 plugins, and the peak with 64 calls
    /// in flight.
    async fn memory(&self) -> Result<()> {
        println!("## 5. resident memory (MB)\n");
        let mut plugins = self.distinct_plugins(19)?;
        plugins.push(("hostile".into(), self.fixture("hostile")));
        let list: Vec<(&str, PathBuf)> = plugins
            .iter()
            .map(|(n, p)| (n.as_str(), p.clone()))
            .collect();
        let policy = "version = 1\n[limits]\ntimeout_ms = 500\nmax_concurrency = 64\n";
        let root = self.root("memory", &list, &[("hostile", policy)])?;
        let cache = self.work.path().join("memory-cache");
        let (mut server, url) =
            HttpServer::start(&self.host, &self.serve_args(&root, &cache)).await?;
        let mut client = HttpClient::connect(&url).await?;
        expect_plugins(&client.request("tools/list", json!({})).await?, 19 + 1)?;
        drop(client);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = rss_mb(server.pid)?;
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let url = url.clone();
            calls.spawn(async move {
                let mut client = HttpClient::connect(&url).await?;
                // The call ends at its time limit: what matters is that it was in flight.
                let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "hostile__sleep", "arguments": {}}});
                client.post(&call).await
            });
        }
        // VmHWM would include the compiler's peak at start-up: sample the
        // resident size while the calls are in flight instead.
        let mut peak = idle;
        while !calls.is_empty() {
            tokio::select! {
                done = calls.join_next() => { done.expect("calls are not empty")??; }
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    peak = peak.max(rss_mb(server.pid)?);
                }
            }
        }
        server.stop().await;
        println!("| 20 plugins, idle | peak, 64 calls in flight |");
        println!("| --- | --- |");
        println!("| {idle:.1} | {peak:.1} |\n");
        Ok(())
    }

    /// Figure 8: Instructions per call, counted by callgrind: the figure that
    /// does not drift with the machine. The host runs under valgrind (one
    /// thread at a time, so this counts work, not contention); after
    /// warm-up, its instructions over a fixed number of calls are divided
    /// by the calls. Only config keys every build knows are used, so
    /// `--host` may name an older build.
    async fn instructions(&self) -> Result<()> {
        println!("## 8. instructions per call (callgrind)\n");
        println!("| transport | tool | instructions per call |");
        println!("| --- | --- | --- |");
        let root = self.busy_hello_root("instructions")?;
        // One sandbox slot: the pool's address-space reservation must fit
        // valgrind's; 8 clients stay within the default per-user sessions.
        std::fs::write(
            root.join("host-config.toml"),
            "[engine]\nmax_sandboxes = 1\n",
        )?;
        let cache = self.work.path().join("cache");
        let calls = if self.quick { 16 } else { 400 };
        let clients = 8;
        let valgrind = |out: &Path| {
            let mut args = vec![
                "--tool=callgrind".to_owned(),
                "--smc-check=all-non-file".to_owned(),
                "--instr-atstart=no".to_owned(),
                format!("--callgrind-out-file={}", out.display()),
                self.host.display().to_string(),
            ];
            args.extend(self.serve_args(&root, &cache));
            args
        };
        let arguments = json!({"name": "Ada"});
        for tool in ["hello__greet", "host__noop"] {
            let out = self.work.path().join(format!("stdio-{tool}.out"));
            let mut client = StdioClient::spawn(Path::new("valgrind"), &valgrind(&out)).await?;
            client.initialize().await?;
            let call = ("tools/call", json!({"name": tool, "arguments": arguments}));
            for _ in 0..10 {
                client.time(&call).await?;
            }
            let pid = client.child.id().ok_or_else(|| anyhow!("no pid"))?;
            callgrind_control(pid, &["-i", "on"])?;
            for _ in 0..calls {
                client.time(&call).await?;
            }
            callgrind_control(pid, &["-i", "off"])?;
            callgrind_control(pid, &["-d"])?;
            let count = instructions_per_call(&out.with_extension("out.1"), calls)?;
            println!("| stdio | {tool} | {count:.0} |");
        }
        for tool in ["hello__greet", "host__noop"] {
            let out = self.work.path().join(format!("http-{tool}.out"));
            let (mut server, url) =
                HttpServer::start(Path::new("valgrind"), &valgrind(&out)).await?;
            let mut pool = Vec::new();
            for _ in 0..clients {
                pool.push(HttpClient::connect(&url).await?);
            }
            let call = ("tools/call", json!({"name": tool, "arguments": arguments}));
            let in_parallel = |pool: Vec<HttpClient>, count: usize| {
                let call = call.clone();
                async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    for mut client in pool {
                        let call = call.clone();
                        tasks.spawn(async move {
                            for _ in 0..count {
                                client.time(&call).await?;
                            }
                            anyhow::Ok(client)
                        });
                    }
                    let mut pool = Vec::new();
                    while let Some(client) = tasks.join_next().await {
                        pool.push(client??);
                    }
                    anyhow::Ok(pool)
                }
            };
            let pool = in_parallel(pool, 5).await?;
            callgrind_control(server.pid, &["-i", "on"])?;
            in_parallel(pool, calls / clients).await?;
            callgrind_control(server.pid, &["-i", "off"])?;
            callgrind_control(server.pid, &["-d"])?;
            let made = calls / clients * clients;
            let count = instructions_per_call(&out.with_extension("out.1"), made)?;
            println!("| http ({clients} clients) | {tool} | {count:.0} |");
            server.stop().await;
        }
        println!();
        Ok(())
    }

    /// Figure 7: Resident memory with many idle sessions, then many idle
    /// connections on top, as careless or hostile clients leave them. Public
    /// mode, so each client address is a user of its own, with the request
    /// budget lifted; 30 sessions per address, from 127.0.x.y.
    async fn idle(&self) -> Result<()> {
        println!("## 7. idle sessions and connections (resident MB)\n");
        let (sessions, connections) = if self.quick {
            (300, 100)
        } else {
            (10_000, 2_000)
        };
        let root = self.root("idle", &[("hello", self.fixture("hello"))], &[])?;
        // Keys every host build knows, so older builds can be measured too.
        std::fs::write(
            root.join("host-config.toml"),
            "[auth]\nmode = \"public\"\n[auth.rate_limit]\nrequests_per_minute = 0\n",
        )?;
        let cache = self.work.path().join("idle-cache");
        let (mut server, url) =
            HttpServer::start(&self.host, &self.serve_args(&root, &cache)).await?;
        let addr: std::net::SocketAddr = url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
            .parse()?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = rss_mb(server.pid)?;
        let opened = Arc::new(AtomicU64::new(0));
        let mut openers = tokio::task::JoinSet::new();
        for worker in 0..16 {
            let opened = opened.clone();
            openers.spawn(async move {
                for n in (worker..sessions).step_by(16) {
                    let user = n / 30;
                    let source = std::net::Ipv4Addr::new(
                        127,
                        0,
                        1 + (user / 250) as u8,
                        2 + (user % 250) as u8,
                    );
                    if initialize_from(addr, source.into()).await? {
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = openers.join_next().await {
            done??;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let with_sessions = rss_mb(server.pid)?;
        let mut held = Vec::with_capacity(connections);
        for _ in 0..connections {
            held.push(tokio::net::TcpStream::connect(addr).await?);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let with_connections = rss_mb(server.pid)?;
        drop(held);
        server.stop().await;
        println!(
            "| sessions asked for | opened | idle | with the sessions | and {connections} idle connections |"
        );
        println!("| --- | --- | --- | --- | --- |");
        println!(
            "| {sessions} | {} | {idle:.1} | {with_sessions:.1} | {with_connections:.1} |\n",
            opened.load(Ordering::Relaxed)
        );
        Ok(())
    }
}

fn report(transport: &str, plugin: &[Duration], native: &[Duration], floor: &[Duration]) {
    let (p50, p99) = (percentile(plugin, 50.0), percentile(plugin, 99.0));
    let (n50, n99) = (percentile(native, 50.0), percentile(native, 99.0));
    let (f50, f99) = (percentile(floor, 50.0), percentile(floor, 99.0));
    println!(
        "| {transport} | plugin tool | {:.0} | {:.0} | {:.2}× | {:.2}× |",
        us(p50),
        us(p99),
        ratio(p50, n50),
        ratio(p50, f50)
    );
    println!(
        "| {transport} | native tool | {:.0} | {:.0} | 1.00× | {:.2}× |",
        us(n50),
        us(n99),
        ratio(n50, f50)
    );
    println!(
        "| {transport} | bare responder | {:.0} | {:.0} | | 1.00× |",
        us(f50),
        us(f99)
    );
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[index]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Fails unless `list` (a `tools/list` answer) lists `count` plugin tools:
/// a figure for fewer plugins than claimed would mislead.
/// Checks that tools from `count` plugins are listed (the host's own tools
/// aside): counting plugins rather than tools keeps the check true when a
/// fixture gains a tool.
fn expect_plugins(list: &Value, count: usize) -> Result<()> {
    let plugins: std::collections::BTreeSet<&str> = list["result"]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|tool| tool["name"].as_str()?.split_once("__"))
        .map(|(plugin, _)| plugin)
        .filter(|plugin| *plugin != "host")
        .collect();
    if plugins.len() != count {
        bail!(
            "expected tools from {count} plugins, the host lists {}: did a plugin fail to load?",
            plugins.len()
        );
    }
    Ok(())
}

/// `wasm` with a custom section named `name` appended: the same component,
/// with a different digest.
fn with_custom_section(wasm: &[u8], name: &str) -> Vec<u8> {
    let mut section = Vec::new();
    leb128(&mut section, name.len() as u64);
    section.extend_from_slice(name.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    leb128(&mut out, section.len() as u64);
    out.extend(section);
    out
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The resident size of process `pid`.
fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|line| {
            line.strip_prefix("VmRSS")?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kb / 1024.0)
}

/// The CPU time (user and system) process `pid` has used so far. It is
/// steadier than calls/s on a shared machine: it does not count the time
/// the host waited for a CPU.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may
    // hold spaces: utime and stime are the 12th and 13th of them.
    let after_name = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow!("no command name in /proc/{pid}/stat"))?
        .1;
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| field.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// An MCP client on a child's stdin/stdout, speaking JSON-RPC lines.
struct StdioClient {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl StdioClient {
    async fn spawn(program: &Path, args: &[String]) -> Result<StdioClient> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Piped::piped())
            .stdout(Piped::piped())
            .stderr(Piped::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        Ok(StdioClient {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            next_id: 0,
        })
    }

    async fn initialize(&mut self) -> Result<()> {
        self.request("initialize", initialize_params()).await?;
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
    }

    async fn send(&mut self, message: &Value) -> Result<()> {
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        Ok(())
    }

    async fn next(&mut self) -> Result<Value> {
        let line = self
            .lines
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("the server closed stdout"))?;
        Ok(serde_json::from_str(&line)?)
    }

    async fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        loop {
            let message = self.next().await?;
            if message.get("id") == Some(&json!(id)) {
                return answer(message);
            }
        }
    }

    /// Writes `content` beside `path` and renames it over, then waits for
    /// the list_changed notification: the time between.
    async fn time_change(&mut self, path: &Path, content: &[u8]) -> Result<Duration> {
        let temporary = path.with_extension("partial");
        std::fs::write(&temporary, content)?;
        let started = Instant::now();
        std::fs::rename(&temporary, path)?;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.next())
                .await
                .map_err(|_| anyhow!("no notification after changing {}", path.display()))??;
            if message["method"] == "notifications/tools/list_changed" {
                return Ok(started.elapsed());
            }
        }
    }
}

/// A client that can make one request at a time.
trait Caller {
    async fn request(&mut self, method: &str, params: Value) -> Result<Value>;

    /// How long one call takes.
    async fn time(&mut self, (method, params): &(&str, Value)) -> Result<Duration> {
        let started = Instant::now();
        self.request(method, params.clone()).await?;
        Ok(started.elapsed())
    }
}

/// The latencies of `calls` sequential calls each of the plugin tool and the
/// native tool on `host` and of the bare responder, taken in turn (after a
/// tenth as many unmeasured rounds to warm up): on a shared machine whose
/// speed drifts, all three are measured under the same conditions.
async fn in_turn(
    host: &mut impl Caller,
    bare: &mut impl Caller,
    plugin: &(&str, Value),
    native: &(&str, Value),
    calls: usize,
) -> Result<[Vec<Duration>; 3]> {
    let mut samples = [(); 3].map(|()| Vec::with_capacity(calls));
    for round in 0..calls + calls / 10 {
        let taken = [
            host.time(plugin).await?,
            host.time(native).await?,
            bare.time(native).await?,
        ];
        if round >= calls / 10 {
            for (series, sample) in samples.iter_mut().zip(taken) {
                series.push(sample);
            }
        }
    }
    Ok(samples)
}

impl Caller for StdioClient {
    async fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        StdioClient::request(self, method, params).await
    }
}

impl Caller for HttpClient {
    async fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        HttpClient::request(self, method, params).await
    }
}

fn initialize_params() -> Value {
    json!({
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    })
}

/// Opens a session from `source` (a loopback address) and leaves it idle;
/// whether the host admitted it.
async fn initialize_from(addr: std::net::SocketAddr, source: std::net::IpAddr) -> Result<bool> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((source, 0).into())?;
    let stream = socket.connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize_params()});
    let request = http::Request::post("/mcp")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
    let response = sender.send_request(request).await?;
    let admitted = response.status().is_success();
    response.into_body().collect().await?;
    Ok(admitted)
}

fn answer(message: Value) -> Result<Value> {
    if let Some(error) = message.get("error") {
        bail!("error answer: {error}");
    }
    if message["result"]["isError"] == json!(true) {
        bail!("tool error: {}", message["result"]);
    }
    Ok(message)
}

/// A server process started with `--http 127.0.0.1:0`.
struct HttpServer {
    child: Child,
    pid: u32,
}

impl HttpServer {
    async fn start(host: &Path, serve: &[String]) -> Result<(HttpServer, String)> {
        let mut args = serve.to_vec();
        args.extend([
            "--http".into(),
            "127.0.0.1:0".into(),
            "--log-level".into(),
            "info,rmcp=warn".into(),
        ]);
        Self::spawn(host, &args, "serving MCP over Streamable HTTP at http://").await
    }

    async fn start_bare(bench: &Path) -> Result<(HttpServer, String)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let args = ["--bare-http".to_owned(), format!("127.0.0.1:{port}")];
        Self::spawn(bench, &args, "bare responder at http://").await
    }

    async fn spawn(program: &Path, args: &[String], ready: &str) -> Result<(HttpServer, String)> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Piped::null())
            .stdout(Piped::null())
            .stderr(Piped::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or_else(|| anyhow!("no pid"))?;
        let mut lines =
            BufReader::new(child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?).lines();
        let url = loop {
            let line = lines
                .next_line()
                .await?
                .ok_or_else(|| anyhow!("{} exited before serving", program.display()))?;
            if let Some(at) = line.find(ready) {
                break line[at + ready.len() - "http://".len()..].trim().to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((HttpServer { child, pid }, url))
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// An MCP client on one HTTP/1.1 connection, with its own session.
struct HttpClient {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
    session: Option<String>,
    next_id: u64,
}

impl HttpClient {
    async fn connect(url: &str) -> Result<HttpClient> {
        let uri: http::Uri = url.parse()?;
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("no authority in {url}"))?
            .to_string();
        let stream = tokio::net::TcpStream::connect(&authority).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut client = HttpClient {
            sender,
            authority,
            session: None,
            next_id: 0,
        };
        client.request("initialize", initialize_params()).await?;
        client
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(client)
    }

    async fn post(&mut self, message: &Value) -> Result<Vec<Value>> {
        let mut request = http::Request::post("/mcp")
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        let request = request.body(Full::new(Bytes::from(serde_json::to_vec(message)?)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        if let Some(session) = response.headers().get("mcp-session-id") {
            self.session = Some(session.to_str()?.to_owned());
        }
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
        let text = std::str::from_utf8(&body)?;
        if text.trim_start().starts_with('{') {
            return Ok(vec![serde_json::from_str(text)?]);
        }
        Ok(text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter(|data| !data.trim().is_empty())
            .filter_map(|data| serde_json::from_str(data).ok())
            .collect())
    }

    /// Ends the session, as a well-behaved client does when it is done.
    async fn close(mut self) -> Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let request = http::Request::delete("/mcp")
            .header("host", &self.authority)
            .header("mcp-session-id", session)
            .body(Full::new(Bytes::new()))?;
        self.sender.ready().await?;
        let status = self.sender.send_request(request).await?.status();
        if !status.is_success() {
            bail!("HTTP {status} ending a session");
        }
        Ok(())
    }

    async fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let messages = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        let message = messages
            .into_iter()
            .find(|m| m.get("id") == Some(&json!(id)))
            .ok_or_else(|| anyhow!("no answer to {method}"))?;
        answer(message)
    }
}

/// Instructions per call: the program totals of callgrind's dump `out`
/// over `calls`.
fn instructions_per_call(out: &Path, calls: usize) -> Result<f64> {
    let annotated = std::process::Command::new("callgrind_annotate")
        .arg(out)
        .output()
        .context("running callgrind_annotate")?;
    let text = String::from_utf8_lossy(&annotated.stdout);
    let total: u64 = text
        .lines()
        .find(|line| line.contains("PROGRAM TOTALS"))
        .and_then(|line| line.split_whitespace().next())
        .map(|count| count.replace(',', ""))
        .and_then(|count| count.parse().ok())
        .ok_or_else(|| anyhow!("no program totals in {}", out.display()))?;
    Ok(total as f64 / calls as f64)
}

/// Tells callgrind in process `pid` to `command` (`-i on`, `-i off`, `-d`).
fn callgrind_control(pid: u32, command: &[&str]) -> Result<()> {
    let status = std::process::Command::new("callgrind_control")
        .args(command)
        .arg(pid.to_string())
        .stdout(Piped::null())
        .stderr(Piped::null())
        .status()
        .context("running callgrind_control")?;
    if !status.success() {
        bail!("callgrind_control {command:?} failed");
    }
    Ok(())
}

/// Calls per second with `clients` concurrent clients calling `tool`, and
/// how many calls were made.
async fn rate(
    url: &str,
    clients: usize,
    tool: &str,
    arguments: Value,
    seconds: f64,
) -> Result<(f64, u64)> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (url, tool, arguments, done) = (
            url.to_owned(),
            tool.to_owned(),
            arguments.clone(),
            done.clone(),
        );
        tasks.spawn(async move {
            let mut client = HttpClient::connect(&url).await?;
            while Instant::now() < deadline {
                client
                    .request("tools/call", json!({"name": tool, "arguments": arguments}))
                    .await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            client.close().await
        });
    }
    let started = Instant::now();
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let calls = done.load(Ordering::Relaxed);
    Ok((calls as f64 / started.elapsed().as_secs_f64(), calls.max(1)))
}

/// The floor on stdio: read a line, answer it, nothing else — a plain
/// blocking loop, no async runtime in the way.
fn bare_stdio() -> Result<()> {
    use std::io::{BufRead, Write};
    let mut stdout = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let message: Value = serde_json::from_str(&line?)?;
        if let Some(id) = message.get("id") {
            serde_json::to_writer(&mut stdout, &bare_answer(id))?;
            stdout.write_all(b"\n")?;
            stdout.flush()?;
        }
    }
    Ok(())
}

fn bare_answer(id: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": "ok"}], "isError": false}})
}

/// The floor over HTTP: answer every POST with JSON, nothing else.
async fn bare_http(addr: std::net::SocketAddr) -> Result<()> {
    async fn answer(body: Bytes) -> axum::response::Response {
        use axum::response::IntoResponse;
        let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match message.get("id") {
            Some(id) => axum::Json(bare_answer(id)).into_response(),
            None => http::StatusCode::ACCEPTED.into_response(),
        }
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("bare responder at http://{addr}/mcp");
    let router = axum::Router::new().route("/mcp", axum::routing::post(answer));
    axum::serve(listener, router).await?;
    Ok(())
}
