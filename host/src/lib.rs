//! An MCP host that runs every tool as a sandboxed WebAssembly component.
//!
//! - [`mcp`]: the MCP front (server handler, stdio and HTTP transports).
//! - [`plugin`]: finding, loading and checking plugins; the registry.
//! - [`runtime`]: the wasmtime engine and the fresh sandbox per call.
//! - [`capability`]: each grant a policy can make, and where it is enforced.
//! - [`policy`]: reading policies and deciding what a plugin may do.

pub mod audit;
pub mod auth;
pub mod capability;
pub mod check;
pub mod cli;
pub mod client_text;
pub mod config;
pub mod digest;
pub mod explain;
pub mod interface;
pub mod mcp;
pub mod metrics;
pub mod new;
pub mod plugin;
pub mod policy;
pub mod principal;
pub mod printable;
pub mod reload;
pub mod runtime;
pub mod shared_state;
pub mod shutdown;
pub mod state;
pub mod tokens;

use audit::{AuditLog, Event};
use capability::filesystem::Protected;
use cli::{Cli, Command, LogFormat, PolicyCommand, ServeArgs, TokenCommand};
use config::Settings;
use mcp::transport::{self, HttpOptions};
use plugin::{Registry, loader};
use runtime::Runtime;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Runs the command line; the exit code says whether it succeeded.
pub fn main(cli: Cli) -> ExitCode {
    init_logging(&cli);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await.map(|()| true),
            Command::Check(args) => {
                let settings = Settings::resolve(&args.locations)?;
                let wasm = Arc::new(Runtime::new(&settings.engine())?);
                check::run(&wasm, &settings, &args.only).await
            }
            Command::Token(TokenCommand::Issue(args)) => tokens::issue(&args).map(|()| true),
            Command::Keygen(args) => tokens::keygen(&args).map(|()| true),
            Command::New(args) => new::create(&args).map(|()| true),
            Command::State(command) => state::run(command).await,
            Command::Policy(PolicyCommand::Explain(args)) => {
                let settings = Settings::resolve(&args.locations)?;
                let wasm = Arc::new(Runtime::new(&settings.engine())?);
                explain::run(&wasm, &settings, &args.plugin).await
            }
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, never stdout: on stdio, stdout is the protocol.
fn init_logging(cli: &Cli) {
    let verbose = matches!(&cli.command, Command::Serve(args) if args.verbose);
    // --verbose adds the host's own debug lines (each plugin's load time).
    let level = if verbose {
        format!("{},host=debug", cli.log_level)
    } else {
        cli.log_level.clone()
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(printable::stderr_one_line)
        .with_ansi(false);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut settings = Settings::resolve(&args.locations)?;
    // Serving creates missing read-write folders; check and explain do not.
    settings.policies.create_folders = true;
    let http = args.http.or(settings.http);
    if let Some(addr) = http {
        transport::check_listen_address(addr, settings.auth.mode)?;
    }
    let audit_path = match (&args.audit_log, args.no_audit_log) {
        (_, true) => None,
        (Some(path), false) => Some(path.clone()),
        (None, false) => settings.audit_log.clone(),
    };
    if let Some(path) = &audit_path {
        let protected = Protected::new(path, "the audit log", true);
        settings.policies.protected.push(protected);
    }
    let wasm = Arc::new(Runtime::new(&settings.engine())?);
    let engine_ready = started.elapsed();
    let files = loader::plugin_files(&settings.plugins)?;
    let empty = Registry::default();
    // With reloads, a plugin slow to describe itself joins when it is done;
    // without them it is waited for.
    let (late_send, late) = tokio::sync::mpsc::unbounded_channel();
    let patience = match args.no_watch {
        true => loader::Patience::All,
        false => loader::Patience::Until(reload::PATIENCE, late_send.clone()),
    };
    let (registry, outcome) = loader::build(
        &wasm,
        files,
        &settings.policies,
        &empty,
        &loader::Known::default(),
        &patience,
    )
    .await?;
    for name in &outcome.pending {
        tracing::warn!(plugin = %name, "still compiling or describing itself: it is served once it is done");
    }
    if args.verbose {
        tracing::info!(
            engine_ms = ms(engine_ready),
            plugins_ms = ms(started.elapsed() - engine_ready),
            cache = %wasm.cache_dir().map_or("none".into(), |d| d.display().to_string()),
            "start-up stages"
        );
    }
    for failure in registry.failures() {
        tracing::error!("skipped {failure}");
    }
    let (audit, audit_writer) = match &audit_path {
        Some(path) => {
            let arguments = args.audit_arguments || settings.audit_arguments;
            let (log, writer) = AuditLog::open(path, arguments).await?;
            tracing::info!("audit log: {}", path.display());
            (log, Some(writer))
        }
        None => (AuditLog::disabled(), None),
    };
    record_load(&audit, &registry).await;
    let names: Vec<&str> = registry.plugins().iter().map(|p| p.name.as_str()).collect();
    tracing::info!(
        plugins = %names.join(", "),
        tools = registry.tools().count(),
        failed = registry.failures().len(),
        ms = started.elapsed().as_millis() as u64,
        "plugins loaded from {}",
        settings.plugins.display()
    );
    let shared_state = settings.shared_state.clone();
    let mut shared = mcp::Shared::new(
        registry,
        wasm.clone(),
        audit.clone(),
        &shared_state,
        settings.auth.rate_limit.tool_calls_per_minute,
    );
    shared.native_noop = args.native_noop;
    if http.is_none() {
        // The stdio client is served on a thread of its own (see
        // `serve_stdio`); calls that overlap come back to this runtime.
        shared.placement = runtime::Placement::thread_first(tokio::runtime::Handle::current());
    }
    shared.keyvalue = Some(settings.policies.services.keyvalue.clone());
    let shared = Arc::new(shared);
    let watch = if args.no_watch {
        None
    } else {
        let mut reloader = reload::Reloader::new(
            wasm,
            settings.plugins.clone(),
            settings.policies.clone(),
            shared.clone(),
            (late_send, late),
        );
        reloader.describing(&outcome.started);
        Some(reload::watch(reloader)?)
    };

    let shutdown = shutdown::on_signals(settings.shutdown_deadline)?;
    let served = match http {
        Some(addr) => {
            let mut origins = settings.allowed_origins.clone();
            origins.extend(args.allowed_origins);
            let auth = auth::Authenticator::new(
                &settings.auth,
                |name| std::env::var(name).ok(),
                &shared_state,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            tracing::info!(mode = ?auth.mode, "HTTP clients are authenticated");
            let options = HttpOptions {
                addr,
                allowed_origins: origins,
                auth,
                rate: settings.auth.rate_limit.clone(),
                sessions: settings.sessions,
                connections: settings.connections,
                clients: settings.clients,
                trusted_proxies: settings.trusted_proxies.clone(),
                shutdown_deadline: settings.shutdown_deadline,
                shared_state,
            };
            transport::serve_http(shared, options, shutdown, |bound| {
                tracing::info!("serving MCP over Streamable HTTP at http://{bound}/mcp");
            })
            .await
        }
        None => {
            tracing::info!("serving MCP over stdio");
            mcp::stdio::serve_stdio(shared, shutdown, settings.shutdown_deadline).await
        }
    };
    if let Some(watch) = watch {
        watch.stop().await;
    }
    // Every record queued so far reaches the disk before the host exits.
    drop(audit);
    if let Some(writer) = audit_writer {
        let lost = writer.finish().await;
        if lost > 0 {
            tracing::error!(lost, "audit records were lost");
        }
    }
    served
}

fn ms(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Records what was loaded, withheld and refused at start-up.
async fn record_load(audit: &AuditLog, registry: &Registry) {
    for (plugin, served) in registry.served() {
        reload::record_served(audit, plugin, served).await;
    }
    for failure in registry.failures() {
        audit
            .record(Event::LoadFailed {
                file: failure.path.display().to_string(),
                reason: failure.reason.clone(),
            })
            .await;
    }
}
