//! Command-line arguments.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Serve MCP tools, resources and prompts from sandboxed WebAssembly plugins.
///
/// Drop plugin components (`*.wasm`) into the plugins folder, describe what
/// each may touch in `policies/<plugin>.toml`, and run `host serve`. Every
/// call runs in a fresh sandbox holding exactly its policy's grants.
#[derive(Debug, Parser)]
#[command(name = "host", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// What to log (to stderr): error, warn, info, debug, trace or off, or
    /// a list of target=level such as `info,host=debug`. By default the
    /// host logs in its own words at info, the libraries it uses only their
    /// errors, and the MCP library nothing (name one to hear more, such as
    /// `rmcp=warn`).
    #[arg(
        long,
        global = true,
        env = "HOST_LOG",
        default_value = DEFAULT_LOG_FILTER,
        value_parser = parse_log_filter
    )]
    pub log_level: String,

    /// How to log: human-readable text or JSON lines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// What the host logs unless told otherwise: its own lines at info; its
/// libraries' errors only (their warnings are debug dumps, such as a
/// plugin's refused connection, which the plugin reports in words); rmcp's
/// none (it logs a client's cancellation as an error).
pub const DEFAULT_LOG_FILTER: &str = "error,host=info,rmcp=off";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MCP over stdio (the default, for desktop clients) or
    /// Streamable HTTP (`--http`).
    ///
    /// Plugins that fail to load are reported and skipped; the rest are
    /// served.
    Serve(ServeArgs),
    /// Load plugins and policies without serving: print each plugin's tools
    /// and effective grants, and exit non-zero if anything is wrong.
    Check(CheckArgs),
    /// Inspect policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Bearer tokens for `[auth] mode = "direct"`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Make an Ed25519 key pair for signing tokens: the private key goes to
    /// a file only you can read, the public key (for
    /// `[auth] ed25519_public_keys`) is printed.
    Keygen(KeygenArgs),
    /// Start a plugin: a working one-tool plugin in the language asked for,
    /// in a new folder, and the commands that build and serve it.
    New(NewArgs),
    /// See and move plugins' key-value data: list buckets, export and
    /// import JSON Lines, forget a user. The embedded store is one host's
    /// at a time: stop the host first.
    #[command(subcommand)]
    State(StateCommand),
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Every bucket holding data: plugin, bucket, user, keys and bytes.
    List(StateArgs),
    /// Writes buckets' data as JSON Lines (one key a line: plugin, bucket,
    /// user, key, and value as text or base64).
    Export(StateExportArgs),
    /// Reads what `export` wrote back into the store, replacing keys that
    /// exist.
    Import(StateImportArgs),
    /// Deletes everything one user keeps, in every plugin's per-user buckets
    /// (a user's right to be forgotten).
    Forget(StateForgetArgs),
}

#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(flatten)]
    pub locations: Locations,
}

#[derive(Debug, Args)]
pub struct StateExportArgs {
    #[command(flatten)]
    pub locations: Locations,
    /// Only this plugin's buckets.
    #[arg(long)]
    pub plugin: Option<String>,
    /// Only this user's data.
    #[arg(long)]
    pub user: Option<String>,
    /// Where to write [default: standard output].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StateImportArgs {
    #[command(flatten)]
    pub locations: Locations,
    /// A file `host state export` wrote.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct StateForgetArgs {
    #[command(flatten)]
    pub locations: Locations,
    /// The user whose data goes.
    #[arg(long)]
    pub user: String,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name (lower-case letters, digits and single dashes,
    /// starting with a letter): its folder, and its tools' prefix once its
    /// component is `plugins/<name>.wasm`.
    pub name: String,
    /// What it is written in.
    #[arg(long, value_enum)]
    pub language: Language,
    /// Where its folder is made.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// The host's repository, which holds the SDKs [default: the current
    /// folder or the nearest one above it that holds them].
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
}

/// A language plugins are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Language {
    Rust,
    Python,
    /// TypeScript (plain JavaScript works too: name the file index.js).
    Typescript,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token for local use and tests, signed with the Ed25519 key of
    /// `--key` or else the HS256 secret the config names. Prints the token.
    Issue(TokenArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The host config whose `[auth]` gives the issuer, audience and key.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Who the token is for (`sub`).
    #[arg(long)]
    pub sub: String,
    /// A scope it grants; repeat for more [default: mcp:read mcp:write].
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// How long it is valid, e.g. `1h`, `30m`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: std::time::Duration,
    /// Sign with this Ed25519 private key (from `host keygen`) instead of
    /// the HS256 secret.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#8, base64).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Explain, in plain words, what a plugin may do once the host-wide
    /// guardrails are applied, and what was refused and why. Exits non-zero
    /// if the plugin or its policy is refused.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub locations: Locations,

    /// The plugin (its name, or the path of its .wasm file).
    #[arg(value_name = "PLUGIN")]
    pub plugin: String,
}

/// Where plugins and policies are.
#[derive(Debug, Args, Clone, Default)]
pub struct Locations {
    /// A host config file (TOML); command-line flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The folder of plugin components (`*.wasm`) [default: ./plugins].
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,

    /// The folder of policies, `<plugin>.toml` [default: ./policies].
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,

    /// The folder that policy paths are relative to, and that no mount may
    /// leave [default: the policies folder's parent].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Where compiled components are cached, so restarts do not compile
    /// again [default: $XDG_CACHE_HOME/mcp-host or ~/.cache/mcp-host].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Keep no cache of compiled components.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub locations: Locations,

    /// Serve Streamable HTTP at http://ADDR/mcp instead of stdio. Loopback
    /// only (e.g. 127.0.0.1:8080; port 0 picks a free port).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen_address)]
    pub http: Option<SocketAddr>,

    /// Also accept browser requests from this Origin (e.g.
    /// https://app.example.com); loopback origins are always accepted and
    /// all others refused. Repeatable.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,

    /// Append the audit log (JSON lines: every call and every refusal) to
    /// this file [default: audit.jsonl in the root folder].
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// Keep no audit log.
    #[arg(long, conflicts_with = "audit_log")]
    pub no_audit_log: bool,

    /// Record tool arguments whole in the audit log; by default only their
    /// SHA-256 digest is kept.
    #[arg(long)]
    pub audit_arguments: bool,

    /// Do not watch the plugins and policies folders: changes then take
    /// effect at the next start.
    #[arg(long)]
    pub no_watch: bool,

    /// Log how long each start-up stage took, and each plugin's load.
    #[arg(long, short)]
    pub verbose: bool,

    /// Also serve `host__noop`, a tool the host answers itself without any
    /// plugin: the baseline the benchmark harness compares plugin calls to.
    #[arg(long)]
    pub native_noop: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub locations: Locations,

    /// Check only these plugins (names, or paths of .wasm files).
    #[arg(value_name = "PLUGIN")]
    pub only: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}

/// The levels a log filter may name.
const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Checks a `--log-level` filter: levels, and target=level pairs. Anything
/// else (a misspelt level reads to tracing as a target, silently turning
/// logging off) is refused with the choices.
pub fn parse_log_filter(filter: &str) -> Result<String, String> {
    let is_level = |word: &str| LOG_LEVELS.contains(&word.to_ascii_lowercase().as_str());
    let is_target = |word: &str| {
        !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
    };
    for directive in filter.split(',') {
        let fine = match directive.split_once('=') {
            Some((target, level)) => is_target(target) && is_level(level),
            None => is_level(directive),
        };
        if !fine {
            return Err(format!(
                "{directive:?} is not a log level: use one of {} or target=level (e.g. \
                 info,host=debug)",
                LOG_LEVELS.join(", ")
            ));
        }
    }
    Ok(filter.to_owned())
}

/// Reads `--http`: an address and port (`127.0.0.1:8080`, `[::1]:8080`),
/// `localhost:PORT`, or a bare port, which means loopback.
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let port = text
        .strip_prefix("localhost:")
        .unwrap_or(text)
        .parse::<u16>();
    port.map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        .map_err(|_| {
            format!(
                "{text:?} is not an address to listen on: give an address and port such as \
                 127.0.0.1:8080 or [::1]:8080, or just a port (8080) for loopback"
            )
        })
}

#[cfg(test)]
mod address_and_filter_tests {
    use super::*;

    #[test]
    fn misspelt_log_levels_are_refused_not_read_as_targets() {
        for fine in [
            "info",
            "DEBUG",
            "info,rmcp=off",
            DEFAULT_LOG_FILTER,
            "host=debug",
            "warn,host::reload=trace",
        ] {
            assert!(parse_log_filter(fine).is_ok(), "{fine}");
        }
        for bad in ["chatty", "", "info,", "host=loud", "=info", "info host"] {
            assert!(parse_log_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bare_port_listens_on_loopback() {
        assert_eq!(
            parse_listen_address("8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            parse_listen_address("localhost:9").unwrap().to_string(),
            "127.0.0.1:9"
        );
        assert_eq!(
            parse_listen_address("[::1]:80").unwrap().to_string(),
            "[::1]:80"
        );
        let refused = parse_listen_address("example.com:80").unwrap_err();
        assert!(refused.contains("127.0.0.1:8080"), "{refused}");
    }
}
