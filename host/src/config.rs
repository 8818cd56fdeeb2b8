//! The host's configuration: a TOML file, overridden by flags.

use crate::capability::filesystem::Protected;
use crate::cli::Locations;
use crate::mcp::budget::ClientLimits;
use crate::mcp::client_address::TrustedProxies;
use crate::mcp::listener::ConnectionLimits;
use crate::policy::PolicyDir;
use crate::shared_state::{SessionLimits, SharedState};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A host config file as written. Relative paths are relative to the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub plugins: Option<PathBuf>,
    pub policies: Option<PathBuf>,
    pub root: Option<PathBuf>,
    /// Where compiled components are cached.
    pub cache_dir: Option<PathBuf>,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub engine: EngineTable,
    #[serde(default)]
    pub state: StateConfig,
    /// Who may call over HTTP.
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    /// Seconds a shutdown (SIGTERM, SIGINT) waits for calls in flight
    /// [default: 30].
    pub shutdown_deadline_s: Option<u64>,
}

/// The `[engine]` table: sizing of the sandbox pool.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineTable {
    /// Sandboxes alive at once, across all plugins [default: 128].
    pub max_sandboxes: Option<u32>,
    /// Memory kept resident per sandbox slot between calls, in KiB
    /// [default: 1024].
    pub keep_resident_kib: Option<u32>,
}

/// The `[state]` table: where plugins' key-value buckets keep their data.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `embedded` (the default: one file, this host's alone) or `redis`
    /// (shared by several hosts).
    #[serde(default)]
    pub backend: StateBackend,
    /// The folder of the embedded store [default: state/ in the root
    /// folder].
    pub dir: Option<PathBuf>,
    /// Redis: its URL, `redis://[user:password@]host[:port][/db]` or
    /// `rediss://` for TLS.
    pub url: Option<String>,
    /// Redis: the environment variable holding its URL (so the password
    /// stays out of the file).
    pub url_env: Option<String>,
    /// Redis over TLS: a PEM file of the certificate authorities to trust
    /// for the server's certificate, instead of the public web's (relative
    /// to this file).
    pub ca_file: Option<PathBuf>,
}

/// Where buckets keep their data.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackend {
    #[default]
    Embedded,
    Redis,
}

impl StateConfig {
    /// The store this table chooses; the embedded one in `default_dir`
    /// unless it says otherwise.
    fn store(
        &self,
        base: &Path,
        default_dir: &Path,
    ) -> anyhow::Result<(
        std::sync::Arc<dyn crate::capability::keyvalue::store::KeyValueStore>,
        Option<PathBuf>,
    )> {
        use crate::capability::keyvalue::{embedded::EmbeddedStore, redis::RedisStore};
        match self.backend {
            StateBackend::Embedded => {
                if self.url.is_some() || self.url_env.is_some() || self.ca_file.is_some() {
                    anyhow::bail!(
                        "config: [state] url, url_env and ca_file are for backend = \"redis\""
                    );
                }
                let dir = match &self.dir {
                    Some(dir) => base.join(dir),
                    None => default_dir.to_owned(),
                };
                Ok((
                    std::sync::Arc::new(EmbeddedStore::in_folder(&dir)),
                    Some(dir),
                ))
            }
            StateBackend::Redis => {
                let url = match (&self.url, &self.url_env) {
                    (Some(url), None) => url.clone(),
                    (None, Some(name)) => std::env::var(name).map_err(|_| {
                        anyhow::anyhow!("config: [state] url_env names {name}, which is not set")
                    })?,
                    _ => anyhow::bail!(
                        "config: [state] backend = \"redis\" needs one of url and url_env"
                    ),
                };
                if self.dir.is_some() {
                    anyhow::bail!("config: [state] dir is for the embedded backend");
                }
                let trusted = match &self.ca_file {
                    Some(file) => Some(trusted_authorities(&base.join(file))?),
                    None => None,
                };
                let store =
                    RedisStore::new(&url, trusted).map_err(|e| anyhow::anyhow!("config: {e}"))?;
                Ok((std::sync::Arc::new(store), None))
            }
        }
    }
}

/// The certificates in the PEM file `path`: at least one, each whole.
fn trusted_authorities(path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("config: [state] ca_file {}: {e}", path.display()))?;
    let mut certificates = 0;
    use rustls_pki_types::pem::PemObject;
    for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        certificate.map_err(|e| {
            anyhow::anyhow!(
                "config: [state] ca_file {}: not a PEM certificate file: {e}",
                path.display()
            )
        })?;
        certificates += 1;
    }
    if certificates == 0 {
        anyhow::bail!(
            "config: [state] ca_file {}: no certificate in it (expected PEM, \
             -----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(pem)
}

/// The `[audit]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Keep an audit log at all (on by default).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Where [default: audit.jsonl in the root folder].
    pub path: Option<PathBuf>,
    /// Record tool arguments whole instead of as a digest.
    #[serde(default)]
    pub arguments: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            path: None,
            arguments: false,
        }
    }
}

fn yes() -> bool {
    true
}

/// The `[http]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve Streamable HTTP on this address.
    pub listen: Option<SocketAddr>,
    /// Extra browser origins to accept.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Sessions open at once, across all users [default: 1000].
    pub max_sessions: Option<usize>,
    /// Sessions open at once per user (per address for anonymous
    /// clients) [default: 32]; a user past it loses its least recently
    /// used idle session, or is refused when all are in use.
    pub max_sessions_per_user: Option<usize>,
    /// Seconds after which a session its client has not used is closed
    /// [default: 600].
    pub session_idle_s: Option<u64>,
    /// Connections served at once [default: 1024]; past it, a few more
    /// serve health checks only, and the rest wait to be accepted.
    pub max_connections: Option<usize>,
    /// Connections served at once from one client address [default: 128,
    /// or max_connections if less]; more are answered 429 and closed.
    pub max_connections_per_address: Option<usize>,
    /// Seconds a client may take to read each part of an answer (an event
    /// stream it stops reading) before its connection is closed
    /// [default: 30].
    pub write_timeout_s: Option<u64>,
    /// Long-lived event streams open at once per user (per address for
    /// clients nobody authenticated) [default: 32]; four times that per
    /// address.
    pub max_streams_per_client: Option<usize>,
    /// Requests open at once per user (per address for anonymous clients)
    /// [default: 128]; four times that per address.
    pub max_requests_per_client: Option<usize>,
    /// Proxies whose `X-Forwarded-For` names the client's address for
    /// every per-address limit (addresses or networks such as
    /// `10.0.0.0/8`) [default: none].
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Seconds a client may take to send a request's headers, and again
    /// its body; a connection idle this long between requests is closed
    /// [default: 20].
    pub read_timeout_s: Option<u64>,
}

impl HttpConfig {
    /// The session limits this table asks for.
    fn sessions(&self) -> anyhow::Result<SessionLimits> {
        let defaults = SessionLimits::default();
        let limits = SessionLimits {
            max: self.max_sessions.unwrap_or(defaults.max),
            per_owner: self.max_sessions_per_user.unwrap_or(defaults.per_owner),
            idle: self
                .session_idle_s
                .map_or(defaults.idle, std::time::Duration::from_secs),
        };
        if !(1..=1_000_000).contains(&limits.max) {
            anyhow::bail!("config: [http] max_sessions must be 1 to 1000000");
        }
        if !(1..=limits.max).contains(&limits.per_owner) {
            anyhow::bail!("config: [http] max_sessions_per_user must be 1 to max_sessions");
        }
        if !(1..=86_400).contains(&limits.idle.as_secs()) {
            anyhow::bail!("config: [http] session_idle_s must be 1 to 86400");
        }
        Ok(limits)
    }

    /// The connection limits this table asks for.
    fn connections(&self) -> anyhow::Result<ConnectionLimits> {
        let defaults = ConnectionLimits::default();
        let max = self.max_connections.unwrap_or(defaults.max);
        let limits = ConnectionLimits {
            max,
            per_address: self
                .max_connections_per_address
                .unwrap_or(defaults.per_address.min(max)),
            read_timeout: self
                .read_timeout_s
                .map_or(defaults.read_timeout, std::time::Duration::from_secs),
            write_timeout: self
                .write_timeout_s
                .map_or(defaults.write_timeout, std::time::Duration::from_secs),
        };
        if !(1..=1_000_000).contains(&limits.max) {
            anyhow::bail!("config: [http] max_connections must be 1 to 1000000");
        }
        if !(1..=limits.max).contains(&limits.per_address) {
            anyhow::bail!(
                "config: [http] max_connections_per_address must be 1 to max_connections"
            );
        }
        if !(1..=3600).contains(&limits.write_timeout.as_secs()) {
            anyhow::bail!("config: [http] write_timeout_s must be 1 to 3600");
        }
        if !(1..=3600).contains(&limits.read_timeout.as_secs()) {
            anyhow::bail!("config: [http] read_timeout_s must be 1 to 3600");
        }
        Ok(limits)
    }

    /// What one client may hold open.
    fn clients(&self) -> anyhow::Result<ClientLimits> {
        let defaults = ClientLimits::default();
        let limits = ClientLimits {
            streams: self.max_streams_per_client.unwrap_or(defaults.streams),
            requests: self.max_requests_per_client.unwrap_or(defaults.requests),
        };
        if !(1..=100_000).contains(&limits.streams) {
            anyhow::bail!("config: [http] max_streams_per_client must be 1 to 100000");
        }
        if !(limits.streams..=100_000).contains(&limits.requests) {
            anyhow::bail!(
                "config: [http] max_requests_per_client must be max_streams_per_client to 100000"
            );
        }
        Ok(limits)
    }
}

/// Where everything is, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub plugins: PathBuf,
    pub policies: PolicyDir,
    /// Where state replicas would share is kept.
    pub shared_state: SharedState,
    pub http: Option<SocketAddr>,
    pub allowed_origins: Vec<String>,
    /// How many HTTP sessions, and for how long.
    pub sessions: SessionLimits,
    /// How many HTTP connections, and how patient with slow clients.
    pub connections: ConnectionLimits,
    /// What one HTTP client may hold open.
    pub clients: ClientLimits,
    /// Proxies whose forwarded client addresses the host believes.
    pub trusted_proxies: TrustedProxies,
    /// How long a shutdown waits for calls in flight.
    pub shutdown_deadline: std::time::Duration,
    /// The audit log's file; `None` keeps none.
    pub audit_log: Option<PathBuf>,
    pub audit_arguments: bool,
    /// Where compiled components are cached; `None` keeps no cache.
    pub cache_dir: Option<PathBuf>,
    /// Sizing of the sandbox pool.
    pub max_sandboxes: u32,
    pub keep_resident_kib: u32,
    /// How HTTP clients are authenticated.
    pub auth: crate::auth::AuthConfig,
}

impl Settings {
    /// The engine configuration these settings ask for.
    pub fn engine(&self) -> crate::runtime::EngineConfig {
        crate::runtime::EngineConfig {
            cache_dir: self.cache_dir.clone(),
            max_sandboxes: self.max_sandboxes,
            keep_resident_kib: self.keep_resident_kib,
        }
    }

    /// Resolves `flags` over the config file they name, if any.
    pub fn resolve(flags: &Locations) -> anyhow::Result<Settings> {
        let (file, base) = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
                let file: ConfigFile = toml::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("config {}: {}", path.display(), e.to_string().trim())
                })?;
                let base = match path.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
                    _ => PathBuf::from("."),
                };
                (file, base)
            }
            None => (ConfigFile::default(), PathBuf::from(".")),
        };
        let pick = |flag: &Option<PathBuf>, file: &Option<PathBuf>, default: &str| {
            flag.clone()
                .or_else(|| file.as_ref().map(|p| base.join(p)))
                .unwrap_or_else(|| PathBuf::from(default))
        };
        let plugins = pick(&flags.plugins, &file.plugins, "plugins");
        let policies = pick(&flags.policies, &file.policies, "policies");
        let root = match flags
            .root
            .clone()
            .or_else(|| file.root.as_ref().map(|p| base.join(p)))
        {
            Some(root) => root,
            None => absolute(&policies)?
                .parent()
                .map(Path::to_owned)
                .unwrap_or_else(|| PathBuf::from("/")),
        };
        let audit_log = file.audit.enabled.then(|| match &file.audit.path {
            Some(path) => base.join(path),
            None => root.join("audit.jsonl"),
        });
        let cache_dir = if flags.no_cache {
            None
        } else {
            flags
                .cache_dir
                .clone()
                .or_else(|| file.cache_dir.as_ref().map(|p| base.join(p)))
                .or_else(crate::runtime::cache::default_dir)
        };
        let defaults = crate::runtime::EngineConfig::default();
        if file
            .engine
            .max_sandboxes
            .is_some_and(|n| !(1..=10_000).contains(&n))
        {
            anyhow::bail!("config: [engine] max_sandboxes must be 1 to 10000");
        }
        let mut protected = vec![
            Protected::new(&policies, "the policies folder", true),
            Protected::new(&plugins, "the plugins folder", false),
        ];
        if let Some(config) = &flags.config {
            protected.push(Protected::new(
                &base,
                "the folder of the host's config file",
                false,
            ));
            protected.push(Protected::new(config, "the host's config file", true));
        }
        protected.extend(
            audit_log
                .iter()
                .map(|log| Protected::new(log, "the audit log", true)),
        );
        protected.extend(
            cache_dir
                .iter()
                .map(|dir| Protected::new(dir, "the component cache", true)),
        );
        let (keyvalue, state_dir) = file.state.store(&base, &root.join("state"))?;
        if let Some(dir) = &state_dir {
            protected.push(Protected::new(dir, "the state folder", true));
        }
        // The one place the backend of state replicas would share is chosen.
        let shared_state = SharedState::in_memory();
        let mut services = shared_state.host_services();
        services.keyvalue = keyvalue;
        Ok(Settings {
            plugins,
            policies: PolicyDir {
                dir: policies,
                root,
                protected,
                create_folders: false,
                services,
            },
            shared_state,
            http: file.http.listen,
            sessions: file.http.sessions()?,
            connections: file.http.connections()?,
            clients: file.http.clients()?,
            trusted_proxies: TrustedProxies::new(file.http.trusted_proxies.clone()),
            shutdown_deadline: std::time::Duration::from_secs(
                file.shutdown_deadline_s.unwrap_or(30),
            ),
            allowed_origins: file.http.allowed_origins,
            audit_log,
            audit_arguments: file.audit.arguments,
            cache_dir,
            max_sandboxes: file.engine.max_sandboxes.unwrap_or(defaults.max_sandboxes),
            keep_resident_kib: file
                .engine
                .keep_resident_kib
                .unwrap_or(defaults.keep_resident_kib),
            auth: file.auth,
        })
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).map_err(|e| anyhow::anyhow!("cannot resolve {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(text: &str) -> anyhow::Result<String> {
        let config: StateConfig = toml::from_str(text)?;
        let (store, _) = config.store(Path::new("/base"), Path::new("/root/state"))?;
        Ok(store.describe())
    }

    const CERTIFICATE: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBhzCCAS2gAwIBAgIUDti07JRXIFS6EoJhk/wrwd0Rv9kwCgYIKoZIzj0EAwIw\n\
GDEWMBQGA1UEAwwNbWNwLWhvc3QgdGVzdDAgFw0yNjEyMDUxMjE5MjRaGA8yMTI2\n\
MTExMTEyMTkyNFowGDEWMBQGA1UEAwwNbWNwLWhvc3QgdGVzdDBZMBMGByqGSM49\n\
AgEGCCqGSM49AwEHA0IABCpVW4vKmQrQOqdVT7vA8EZdWRipkoZiY0BFnqR4JT4m\n\
gablymPlA3xQ/ckwM+gTClDuFJkDYTNT1KH2GcSqThyjUzBRMB0GA1UdDgQWBBRP\n\
tWfZauxws9spbqqgut41qdrD2TAfBgNVHSMEGDAWgBRPtWfZauxws9spbqqgut41\n\
qdrD2TAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIFtrFbOs7B3R\n\
ZczUsQErWvd+11TgeVHWYLHxNpM1uQgnAiEAxmKMZbNAAhC6cknOXsdHy2qi8zyh\n\
ozCcS1W4OrONn9o=\n\
-----END CERTIFICATE-----\n\
";

    #[test]
    fn a_ca_file_is_whole_pem_certificates_for_a_tls_url() {
        let folder = tempfile::tempdir().unwrap();
        let store = |url: &str, pem: &str| {
            let file = folder.path().join("ca.pem");
            std::fs::write(&file, pem).unwrap();
            let text = format!(
                "backend = \"redis\"\nurl = \"{url}\"\nca_file = \"{}\"\n",
                file.display()
            );
            state(&text)
        };
        // A real certificate (self-signed, any will do: it is only parsed).
        assert_eq!(
            store("rediss://u:secret@127.0.0.1:6400", CERTIFICATE).unwrap(),
            "Redis (rediss://127.0.0.1:6400)"
        );
        // TLS is what the URL parses to, however its scheme is spelt.
        assert_eq!(
            store("REDISS://127.0.0.1:6400", CERTIFICATE).unwrap(),
            "Redis (rediss://127.0.0.1:6400)"
        );
        for (url, pem, said) in [
            (
                "redis://127.0.0.1",
                CERTIFICATE,
                "is for a rediss:// (TLS) url",
            ),
            ("rediss://127.0.0.1", "", "no certificate in it"),
            (
                "rediss://127.0.0.1",
                "not pem at all\n",
                "no certificate in it",
            ),
            (
                "rediss://127.0.0.1",
                "-----BEGIN CERTIFICATE-----\nAAAA\n",
                "not a PEM certificate file",
            ),
        ] {
            let error = store(url, pem).unwrap_err().to_string();
            assert!(error.contains(said), "{url} {pem:?}: {error}");
        }
    }

    #[test]
    fn the_state_table_chooses_one_store_and_says_what_is_wrong() {
        assert_eq!(state("").unwrap(), "embedded (/root/state/keyvalue.redb)");
        assert_eq!(
            state("dir = \"kv\"\n").unwrap(),
            "embedded (/base/kv/keyvalue.redb)"
        );
        let redis = state("backend = \"redis\"\nurl = \"redis://u:secret@127.0.0.1:6400/2\"\n");
        assert_eq!(
            redis.unwrap(),
            "Redis (redis://127.0.0.1:6400)",
            "no password shown"
        );
        for (text, said) in [
            ("backend = \"redis\"\n", "needs one of url and url_env"),
            (
                "backend = \"redis\"\nurl = \"http://x\"\n",
                "is not a Redis URL",
            ),
            (
                "backend = \"redis\"\nurl_env = \"NO_SUCH_VARIABLE_HERE\"\n",
                "is not set",
            ),
            ("url = \"redis://x\"\n", "are for backend = \"redis\""),
            ("ca_file = \"ca.pem\"\n", "are for backend = \"redis\""),
            (
                "backend = \"redis\"\nurl = \"rediss://x\"\nca_file = \"no-such-ca.pem\"\n",
                "/base/no-such-ca.pem: No such file",
            ),
            ("backend = \"sqlite\"\n", "unknown variant"),
        ] {
            let error = state(text).unwrap_err().to_string();
            assert!(error.contains(said), "{text}: {error}");
        }
    }
}
