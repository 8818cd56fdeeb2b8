//! Policies: what each plugin is granted.
//!
//! One TOML file per plugin, `<policies>/<plugin>.toml`, matched by the
//! plugin's name (its file name, chosen by the operator). A plugin without a
//! policy gets nothing: no folders, no network, no environment, and the
//! default limits. Parsing is strict: unknown keys and wrong types are
//! errors that name the file, line and column.

pub mod access;
pub mod guardrails;
pub mod narrow;

use crate::capability::env::{self, EnvGrant, EnvSource};
use crate::capability::filesystem::{self, Mount, MountSpec, Protected};
use crate::capability::limits::Limits;
use crate::capability::network::HttpRule;
use crate::capability::sockets::{SocketGrants, SocketsSpec};
use guardrails::{Guardrails, HostPolicyFile};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The policy format version this host reads.
pub const VERSION: u32 = 1;

/// The host-wide policy file in the policies folder.
pub const HOST_POLICY: &str = "host.toml";

/// A policy file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Format version; must be [`VERSION`].
    pub version: u32,
    /// Folders the plugin sees.
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// Outgoing HTTP requests it may make.
    #[serde(default)]
    pub network: NetworkSpec,
    /// Environment variables it sees, by name.
    #[serde(default)]
    pub env: BTreeMap<String, EnvSource>,
    /// Its resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Raw sockets it may use.
    #[serde(default)]
    pub sockets: SocketsSpec,
    /// Which of its own tools it may serve.
    #[serde(default)]
    pub tools: ToolsSpec,
    /// What its tools and prompts are called on the wire.
    #[serde(default)]
    pub names: NamesSpec,
    /// Which principals may use it (over authenticated HTTP).
    #[serde(default)]
    pub access: access::AccessSpec,
}

/// The `[names]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamesSpec {
    /// Whether tool and prompt names carry the plugin's name
    /// (`market-data__get_quote`). Without it they are served as the plugin
    /// names them, for clients that expect fixed names; two such plugins
    /// offering the same name cannot both be served.
    #[serde(default = "default_prefix")]
    pub prefix: bool,
}

impl Default for NamesSpec {
    fn default() -> Self {
        NamesSpec {
            prefix: default_prefix(),
        }
    }
}

fn default_prefix() -> bool {
    true
}

/// The `[tools]` table: narrow which of the plugin's tools are served.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsSpec {
    /// Serve only these tools (all when absent).
    pub allow: Option<Vec<String>>,
    /// Never serve these tools.
    #[serde(default)]
    pub deny: Vec<String>,
}

impl ToolsSpec {
    /// Why the policy withholds the tool `name`, if it does.
    pub fn withholds(&self, name: &str) -> Option<String> {
        if self.deny.iter().any(|d| d == name) {
            Some("denied by policy: [tools] deny lists it".into())
        } else if self
            .allow
            .as_ref()
            .is_some_and(|allow| !allow.iter().any(|a| a == name))
        {
            Some("denied by policy: [tools] allow does not list it".into())
        } else {
            None
        }
    }

    /// Names in the lists that are not tools of the plugin: most likely typos.
    pub fn unknown<'a>(&'a self, tools: &[&str]) -> Vec<&'a str> {
        let listed = self.allow.iter().flatten().chain(&self.deny);
        listed
            .map(String::as_str)
            .filter(|name| !tools.contains(name))
            .collect()
    }
}

/// The `[network]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Rules such as `GET https://api.example.com/v1/*`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// The largest response body a request may receive, in KiB.
    #[serde(default = "default_max_response_kib")]
    pub max_response_kib: u64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            allow: Vec::new(),
            max_response_kib: default_max_response_kib(),
        }
    }
}

fn default_max_response_kib() -> u64 {
    crate::capability::network::DEFAULT_MAX_RESPONSE_KIB
}

/// A plugin's effective grants, guardrails applied: resolved, validated,
/// ready to build sandboxes from.
#[derive(Clone, Debug)]
pub struct Grants {
    /// The policy file they came from; `None` for the deny-all default.
    pub source: Option<PathBuf>,
    pub mounts: Vec<Mount>,
    pub http: Arc<[HttpRule]>,
    /// The largest response body one request may receive, in bytes.
    pub max_response_bytes: u64,
    pub sockets: Arc<SocketGrants>,
    pub env: Vec<EnvGrant>,
    pub limits: Limits,
    /// The host-wide guardrails, enforced on every call.
    pub guardrails: Arc<Guardrails>,
    /// Which of its tools the plugin may serve.
    pub tools: Arc<ToolsSpec>,
    /// Whether its tool and prompt names carry its own name.
    pub prefix_names: bool,
    /// Which principals may use it.
    pub access: Arc<access::AccessSpec>,
}

impl Default for Grants {
    /// Nothing granted, the default limits, all guardrails on.
    fn default() -> Self {
        Grants {
            source: None,
            mounts: Vec::new(),
            http: Vec::new().into(),
            max_response_bytes: default_max_response_kib() * 1024,
            sockets: Arc::default(),
            env: Vec::new(),
            limits: Limits::default(),
            guardrails: Arc::default(),
            tools: Arc::default(),
            prefix_names: true,
            access: Arc::default(),
        }
    }
}

/// A policy that could not be used, with the file it came from.
#[derive(Debug, thiserror::Error)]
#[error("policy {}: {message}", path.display())]
pub struct PolicyError {
    pub path: PathBuf,
    pub message: String,
}

/// Parses a policy file's text. Errors carry line and column.
pub fn parse(text: &str) -> Result<PolicyFile, String> {
    let file: PolicyFile = toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
    if file.version != VERSION {
        return Err(format!(
            "version {} is not supported; this host reads version {VERSION}",
            file.version
        ));
    }
    Ok(file)
}

/// Resolves a parsed policy against the host's `root` folder under
/// `guardrails`, reading granted variables from the host environment
/// through `lookup`.
pub fn resolve(
    file: PolicyFile,
    root: &Path,
    protected: &[Protected],
    guardrails: &Arc<Guardrails>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Grants, String> {
    let mounts = file
        .mounts
        .iter()
        .map(|spec| filesystem::resolve(spec, root))
        .collect::<Result<Vec<_>, _>>()?;
    filesystem::check_overlaps(&mounts)?;
    filesystem::check_protected(&mounts, protected)?;
    guardrails.check_mounts(&mounts)?;
    let http = file
        .network
        .allow
        .iter()
        .map(|rule| HttpRule::parse(rule))
        .collect::<Result<Vec<_>, _>>()?;
    let sockets = SocketGrants::resolve(&file.sockets).map_err(|e| format!("[sockets] {e}"))?;
    let mut env = Vec::new();
    for (name, source) in &file.env {
        env.extend(env::resolve(name, source, &lookup)?);
    }
    file.limits
        .validate()
        .map_err(|e| format!("[limits] {e}"))?;
    Ok(Grants {
        source: None,
        mounts,
        http: http.into(),
        max_response_bytes: file.network.max_response_kib.saturating_mul(1024),
        sockets: Arc::new(sockets),
        env,
        limits: file.limits,
        guardrails: guardrails.clone(),
        tools: Arc::new(file.tools),
        prefix_names: file.names.prefix,
        access: Arc::new(file.access),
    })
}

/// Where policies live, what their relative paths are relative to, and
/// what no mount may reach.
#[derive(Clone, Debug)]
pub struct PolicyDir {
    pub dir: PathBuf,
    pub root: PathBuf,
    /// The host's own files (the policies folder itself among them).
    pub protected: Vec<Protected>,
}

impl PolicyDir {
    /// The policy file for `plugin`.
    pub fn path_for(&self, plugin: &str) -> PathBuf {
        self.dir.join(format!("{plugin}.toml"))
    }

    /// The host-wide guardrails from `host.toml`; all on when it is absent.
    pub fn guardrails(&self) -> Result<Guardrails, PolicyError> {
        let path = self.dir.join(HOST_POLICY);
        let error = |message| PolicyError {
            path: path.clone(),
            message,
        };
        let Some(text) = read_if_present(&path).map_err(error)? else {
            return Ok(Guardrails::default());
        };
        let file: HostPolicyFile =
            toml::from_str(&text).map_err(|e| error(e.to_string().trim().to_owned()))?;
        if file.version != VERSION {
            return Err(error(format!(
                "version {} is not supported; this host reads version {VERSION}",
                file.version
            )));
        }
        Guardrails::resolve(&file.guardrails, &self.root).map_err(error)
    }

    /// The effective grants of `plugin` under `guardrails`: its policy
    /// file's, or nothing at all when it has none.
    pub fn grants_for(
        &self,
        plugin: &str,
        guardrails: &Arc<Guardrails>,
    ) -> Result<Grants, PolicyError> {
        let path = self.path_for(plugin);
        let error = |message| PolicyError {
            path: path.clone(),
            message,
        };
        let Some(text) = read_if_present(&path).map_err(error)? else {
            return Ok(Grants {
                guardrails: guardrails.clone(),
                ..Grants::default()
            });
        };
        let file = parse(&text).map_err(error)?;
        let lookup = |name: &str| std::env::var(name).ok();
        let mut grants =
            resolve(file, &self.root, &self.protected, guardrails, lookup).map_err(error)?;
        grants.source = Some(path);
        Ok(grants)
    }

    /// The digest of everything `plugin`'s grants come from: `host.toml` and
    /// its own policy (an absent file counts as empty). Equal digests mean
    /// equal grants, so a reload can keep a plugin as it is.
    pub fn digest_for(&self, plugin: &str) -> crate::digest::Digest {
        let read = |path: PathBuf| std::fs::read(path).unwrap_or_default();
        let mut text = read(self.dir.join(HOST_POLICY));
        text.push(0);
        text.extend(read(self.path_for(plugin)));
        crate::digest::sha256(&text)
    }

    /// Policy files whose name matches none of `plugins`: most likely typos.
    pub fn orphans(&self, plugins: &[&str]) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut orphans: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .filter(|p| {
                p.file_name().is_some_and(|name| name != HOST_POLICY)
                    && p.file_stem()
                        .and_then(|s| s.to_str())
                        .is_some_and(|stem| !plugins.contains(&stem))
            })
            .collect();
        orphans.sort();
        orphans
    }
}

/// A file's text, or `None` when it does not exist.
fn read_if_present(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read it: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_policy_parses() {
        let file = parse(
            r#"
            version = 1

            [[mounts]]
            host = "data"
            guest = "/data"
            access = "read-only"

            [network]
            allow = ["GET https://api.example.com/v1/*"]

            [env]
            BROKER_URL = { from_host = "BROKER_URL", value = "http://127.0.0.1:8787" }

            [limits]
            memory_mib = 32
            timeout_ms = 2000
            "#,
        )
        .unwrap();
        assert_eq!(file.mounts.len(), 1);
        assert_eq!(file.limits.memory_mib, 32);
        assert_eq!(
            file.limits.max_concurrency,
            Limits::default().max_concurrency
        );
    }

    #[test]
    fn unknown_keys_are_errors_with_a_position() {
        let error = parse("version = 1\n[network]\nalow = []\n").unwrap_err();
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("alow"), "{error}");
    }

    #[test]
    fn wrong_types_and_versions_are_errors() {
        assert!(parse("version = 1\n[limits]\nmemory_mib = \"lots\"\n").is_err());
        assert!(parse("version = 2\n").unwrap_err().contains("version 2"));
        assert!(parse("").is_err());
        let access = parse("version = 1\n[[mounts]]\nhost=\"a\"\nguest=\"/a\"\naccess=\"rw\"\n");
        assert!(access.unwrap_err().contains("rw"));
    }

    #[test]
    fn resolving_checks_rules_and_limits() {
        let root = tempfile::tempdir().unwrap();
        let guardrails = Arc::new(Guardrails::default());
        let bad_rule = parse("version = 1\n[network]\nallow = [\"GET nowhere\"]\n").unwrap();
        assert!(resolve(bad_rule, root.path(), &[], &guardrails, |_| None).is_err());
        let bad_limit = parse("version = 1\n[limits]\nmemory_mib = 0\n").unwrap();
        let error = resolve(bad_limit, root.path(), &[], &guardrails, |_| None).unwrap_err();
        assert!(error.contains("memory_mib"));
    }

    #[test]
    fn no_policy_means_no_grants() {
        let dir = tempfile::tempdir().unwrap();
        let policies = PolicyDir {
            dir: dir.path().into(),
            root: dir.path().into(),
            protected: Vec::new(),
        };
        let guardrails = Arc::new(policies.guardrails().unwrap());
        let grants = policies.grants_for("anything", &guardrails).unwrap();
        assert!(grants.mounts.is_empty() && grants.http.is_empty() && grants.env.is_empty());
        assert_eq!(grants.limits, Limits::default());
    }

    #[test]
    fn tool_lists_withhold_and_name_typos() {
        let file = parse("version = 1\n[tools]\nallow = [\"a\", \"b\"]\ndeny = [\"b\", \"zz\"]\n")
            .unwrap();
        assert!(file.tools.withholds("a").is_none());
        assert!(file.tools.withholds("b").unwrap().contains("deny"));
        assert!(file.tools.withholds("c").unwrap().contains("allow"));
        assert_eq!(file.tools.unknown(&["a", "b", "c"]), vec!["zz"]);
    }

    #[test]
    fn a_host_policy_sets_the_guardrails() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("market")).unwrap();
        let policies = PolicyDir {
            dir: dir.path().into(),
            root: dir.path().into(),
            protected: Vec::new(),
        };
        std::fs::write(
            dir.path().join(HOST_POLICY),
            "version = 1\n[guardrails.market-data-read-only]\nfolders = [\"market\"]\n\
             [guardrails.no-order-execution]\nenabled = false\n",
        )
        .unwrap();
        let guardrails = policies.guardrails().unwrap();
        assert_eq!(guardrails.market_data.unwrap().len(), 1);
        assert!(guardrails.orders.is_none());
        std::fs::write(
            dir.path().join(HOST_POLICY),
            "version = 1\n[guardrails.no-trading]\n",
        )
        .unwrap();
        assert!(
            policies
                .guardrails()
                .unwrap_err()
                .message
                .contains("no-trading")
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
            let _ = toml::from_str::<HostPolicyFile>(&text);
        }

        #[test]
        fn parsing_near_valid_policies_never_panics(
            key in "[a-z_]{1,12}",
            value in "[ -~]{0,30}",
        ) {
            let text = format!("version = 1\n[limits]\n{key} = {value}\n");
            let _ = parse(&text);
        }
    }
}
