//! The benchmark harness: whole-process figures, plugin calls side by side
//! with the host's native built-in tool and a bare JSON-RPC responder.
//!
//! `cargo run --release -p host --bin bench` prints every figure in
//! BENCHMARKS.md; `--quick` runs a short smoke of each (CI keeps it
//! working, and asserts nothing about speed). In-process figures are the
//! criterion bench `cargo bench -p host --bench sandbox`.

mod bare;
mod clients;
mod figures;
mod keyvalue;
mod languages;
mod measure;

use anyhow::{Context, Result, anyhow, bail};
use bare::{bare_http, bare_stdio};
use bytes::Bytes;
use clap::Parser;
use clients::*;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use measure::*;
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
    /// Keep figure 8's callgrind profiles in this folder, to read where
    /// the instructions go (`callgrind_annotate --inclusive=yes FILE`).
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// The numbers of concurrent clients figure 2 measures, in order.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 32, 128],
          value_parser = clap::value_parser!(u32).range(1..))]
    clients: Vec<u32>,
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
    if wanted(Figure::Languages) {
        bench.languages().await?;
    }
    if wanted(Figure::Keyvalue) {
        bench.keyvalue().await?;
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
    Languages,
    Keyvalue,
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
    profiles: Option<PathBuf>,
    clients: Vec<u32>,
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
            profiles: args.profiles.clone(),
            clients: args.clients.clone(),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_default_to_every_row_and_refuse_zero() {
        let parse = |args: &[&str]| Args::try_parse_from(["bench"].iter().chain(args));
        assert_eq!(parse(&[]).unwrap().clients, [1, 8, 32, 128]);
        assert_eq!(parse(&["--clients", "1,32"]).unwrap().clients, [1, 32]);
        let refused = parse(&["--clients", "8,0"])
            .err()
            .expect("zero clients refused");
        assert!(refused.to_string().contains("--clients"), "{refused}");
        assert!(parse(&["--clients", "x"]).is_err());
    }
}
