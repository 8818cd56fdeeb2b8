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

use crate::capability::filesystem::{Protected, Root};
use crate::capability::services::HostServices;
use crate::capability::{Resolving, SandboxGrants, Sections};
use guardrails::{Guardrails, HostPolicyFile};
use serde::Deserialize;
use serde::de::{Error as _, MapAccess, Visitor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The policy format version this host reads.
pub const VERSION: u32 = 1;

/// The host-wide policy file in the policies folder.
pub const HOST_POLICY: &str = "host.toml";

/// A policy file as written: the version, each capability's section
/// (their keys are the capabilities', see [`Sections`]), and the plugin's
/// own tables. Strict: an unknown or repeated key is an error with its
/// line and column.
#[derive(Debug, Default)]
pub struct PolicyFile {
    /// Format version; must be [`VERSION`].
    pub version: u32,
    /// What each capability is granted, as written.
    pub capabilities: Sections,
    /// Which of its own tools it may serve.
    pub tools: ToolsSpec,
    /// What its tools and prompts are called on the wire.
    pub names: NamesSpec,
    /// Which principals may use it (over authenticated HTTP).
    pub access: access::AccessSpec,
    /// The URI schemes its resources may use.
    pub resources: ResourcesSpec,
}

/// The keys of a policy file that are the plugin's own, not a capability's.
const OWN_KEYS: [&str; 5] = ["version", "tools", "names", "access", "resources"];

/// Every key a policy file may have, for the error naming an unknown one.
fn known_keys() -> &'static [&'static str] {
    static KEYS: std::sync::LazyLock<Vec<&'static str>> =
        std::sync::LazyLock::new(|| OWN_KEYS.iter().chain(Sections::KEYS).copied().collect());
    &KEYS
}

impl<'de> Deserialize<'de> for PolicyFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct File;
        impl<'de> Visitor<'de> for File {
            type Value = PolicyFile;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a policy: version = 1, then its tables")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PolicyFile, A::Error> {
                let mut file = PolicyFile::default();
                let mut version = None;
                // TOML itself refuses a key given twice.
                while let Some(key) = map.next_key_seed(KnownKey)? {
                    match key.as_str() {
                        "version" => version = Some(map.next_value()?),
                        "tools" => file.tools = map.next_value()?,
                        "names" => file.names = map.next_value()?,
                        "access" => file.access = map.next_value()?,
                        "resources" => file.resources = map.next_value()?,
                        capability => {
                            file.capabilities.read(capability, &mut map)?;
                        }
                    }
                }
                file.version = version.ok_or_else(|| A::Error::missing_field("version"))?;
                Ok(file)
            }
        }
        /// A key of the file, refused as it is read when nothing reads it
        /// (so the error points at the key).
        struct KnownKey;
        impl<'de> serde::de::DeserializeSeed<'de> for KnownKey {
            type Value = String;

            fn deserialize<D: serde::Deserializer<'de>>(self, key: D) -> Result<String, D::Error> {
                let key = String::deserialize(key)?;
                match known_keys().contains(&key.as_str()) {
                    true => Ok(key),
                    false => Err(D::Error::unknown_field(&key, known_keys())),
                }
            }
        }
        deserializer.deserialize_map(File)
    }
}

/// The `[resources]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSpec {
    /// URI schemes the plugin may serve resources under, besides its own
    /// name (`market-data://…` is always the `market-data` plugin's).
    #[serde(default)]
    pub schemes: Vec<String>,
}

/// `scheme` in its canonical (lower-case) form, if it is a URI scheme
/// (RFC 3986: a letter, then letters, digits, `+`, `-` and `.`).
pub fn uri_scheme(scheme: &str) -> Option<String> {
    let mut bytes = scheme.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    valid.then(|| scheme.to_ascii_lowercase())
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

/// A plugin's effective grants, guardrails applied: resolved, validated,
/// ready to build sandboxes from.
#[derive(Clone, Debug)]
pub struct Grants {
    /// The policy file they came from; `None` for the deny-all default.
    pub source: Option<PathBuf>,
    /// What its calls' sandboxes hold.
    pub sandbox: Arc<SandboxGrants>,
    /// The host-wide guardrails, enforced on every call.
    pub guardrails: Arc<Guardrails>,
    /// Which of its tools the plugin may serve.
    pub tools: Arc<ToolsSpec>,
    /// Whether its tool and prompt names carry its own name.
    pub prefix_names: bool,
    /// Which principals may use it.
    pub access: Arc<access::AccessSpec>,
    /// URI schemes its policy lets it serve resources under, besides its
    /// own name; canonical, without repeats.
    pub uri_schemes: Arc<[String]>,
}

impl Default for Grants {
    /// Nothing granted, the default limits, all guardrails on.
    fn default() -> Self {
        Grants {
            source: None,
            sandbox: Arc::default(),
            guardrails: Arc::default(),
            tools: Arc::default(),
            prefix_names: true,
            access: Arc::default(),
            uri_schemes: Arc::new([]),
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
/// `guardrails`, with granted secrets from `services`. Missing read-write
/// folders are created only when `create` is set, and only once every
/// check has passed.
pub fn resolve(
    file: PolicyFile,
    plugin: &str,
    root: &Root,
    protected: &[Protected],
    guardrails: &Arc<Guardrails>,
    services: &HostServices,
    create: bool,
) -> Result<Grants, String> {
    let host = Resolving {
        plugin,
        root,
        protected,
        market_data: guardrails.market_data.as_ref(),
        orders: guardrails.orders.as_ref(),
        services,
    };
    let mut uri_schemes = Vec::new();
    for scheme in &file.resources.schemes {
        let canonical = uri_scheme(scheme).ok_or_else(|| {
            format!("[resources] schemes: {scheme:?} is not a URI scheme (a letter, then letters, digits, +, - and .)")
        })?;
        if !uri_schemes.contains(&canonical) {
            uri_schemes.push(canonical);
        }
    }
    let sandbox = SandboxGrants::resolve(&file.capabilities, &host, create)?;
    Ok(Grants {
        source: None,
        sandbox: Arc::new(sandbox),
        guardrails: guardrails.clone(),
        tools: Arc::new(file.tools),
        prefix_names: file.names.prefix,
        access: Arc::new(file.access),
        uri_schemes: uri_schemes.into(),
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
    /// Whether loading creates missing read-write folders: serving does;
    /// `host check` and `host policy explain` create nothing.
    pub create_folders: bool,
    /// What capabilities reach beyond a policy's text.
    pub services: HostServices,
}

/// A plugin's policy as read, once: its text and the digest of everything
/// its grants come from.
pub struct PolicyText {
    path: PathBuf,
    /// The plugin it is for.
    plugin: String,
    /// `None` when the plugin has no policy file.
    text: Option<String>,
    /// Of `host.toml` and this text: equal digests mean equal grants.
    pub digest: crate::digest::Digest,
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
        let lookup = |name: &str| std::env::var(name).ok();
        let mut guardrails =
            Guardrails::resolve(&file.guardrails, &self.root, &lookup).map_err(error)?;
        guardrails.digest = crate::digest::sha256(text.as_bytes());
        Ok(guardrails)
    }

    /// Reads `plugin`'s policy file, once, with the digest of it and of the
    /// `host.toml` that `guardrails` came from.
    pub fn read(&self, plugin: &str, guardrails: &Guardrails) -> Result<PolicyText, PolicyError> {
        let path = self.path_for(plugin);
        let text = read_if_present(&path).map_err(|message| PolicyError {
            path: path.clone(),
            message,
        })?;
        let mut both = guardrails.digest.to_vec();
        both.push(0);
        both.extend(text.as_deref().unwrap_or_default().as_bytes());
        Ok(PolicyText {
            path,
            plugin: plugin.to_owned(),
            text,
            digest: crate::digest::sha256(&both),
        })
    }

    /// The effective grants `policy` gives under `guardrails`; nothing at
    /// all when the plugin has no policy.
    pub fn grants(
        &self,
        policy: &PolicyText,
        guardrails: &Arc<Guardrails>,
    ) -> Result<Grants, PolicyError> {
        let error = |message| PolicyError {
            path: policy.path.clone(),
            message,
        };
        let Some(text) = &policy.text else {
            return Ok(Grants {
                guardrails: guardrails.clone(),
                ..Grants::default()
            });
        };
        let file = parse(text).map_err(error)?;
        let root = Root::open(&self.root).map_err(error)?;
        let mut grants = resolve(
            file,
            &policy.plugin,
            &root,
            &self.protected,
            guardrails,
            &self.services,
            self.create_folders,
        )
        .map_err(error)?;
        grants.source = Some(policy.path.clone());
        Ok(grants)
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
    use crate::capability::limits::Limits;
    use proptest::prelude::*;

    fn no_secrets() -> HostServices {
        HostServices {
            secrets: Arc::new(|_: &str| None),
            ..HostServices::default()
        }
    }

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
        assert_eq!(file.capabilities.mounts.len(), 1);
        assert_eq!(file.capabilities.limits.memory_mib, 32);
        assert_eq!(
            file.capabilities.limits.max_concurrency,
            Limits::default().max_concurrency
        );
    }

    #[test]
    fn unknown_keys_are_errors_with_a_position() {
        let error = parse("version = 1\n[network]\nalow = []\n").unwrap_err();
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("alow"), "{error}");
        // A section no capability and no table of the plugin's reads.
        let error = parse("version = 1\n\n[netwrok]\nallow = []\n").unwrap_err();
        assert!(
            error.contains("line 3") && error.contains("netwrok"),
            "{error}"
        );
        assert!(
            error.contains("network") && error.contains("mounts"),
            "{error}"
        );
        let error = parse("version = 1\n[limits]\nmemory_mib = 1\n[limits]\n").unwrap_err();
        assert!(error.contains("line 4"), "{error}");
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
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let guardrails = Arc::new(Guardrails::default());
        let bad_rule = parse("version = 1\n[network]\nallow = [\"GET nowhere\"]\n").unwrap();
        assert!(
            resolve(
                bad_rule,
                "test",
                &root,
                &[],
                &guardrails,
                &no_secrets(),
                true
            )
            .is_err()
        );
        let bad_limit = parse("version = 1\n[limits]\nmemory_mib = 0\n").unwrap();
        let error = resolve(
            bad_limit,
            "test",
            &root,
            &[],
            &guardrails,
            &no_secrets(),
            true,
        )
        .unwrap_err();
        assert!(error.contains("memory_mib"));
    }

    #[test]
    fn resource_schemes_and_quotas_are_checked_and_explained() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let guardrails = Arc::new(Guardrails::default());
        let resolved = |text: &str| {
            resolve(
                parse(text).unwrap(),
                "test",
                &root,
                &[],
                &guardrails,
                &no_secrets(),
                false,
            )
        };
        let bad = resolved("version = 1\n[resources]\nschemes = [\"1x\"]\n").unwrap_err();
        assert!(bad.contains("\"1x\" is not a URI scheme"), "{bad}");
        let grants =
            resolved("version = 1\n[resources]\nschemes = [\"Market\", \"market\"]\n").unwrap();
        assert_eq!(&*grants.uri_schemes, ["market".to_owned()]);
        let read_only_quota = resolved(
            "version = 1\n[[mounts]]\nhost = \"data\"\nguest = \"/d\"\naccess = \"read-only\"\nmax_mib = 1\n",
        )
        .unwrap_err();
        assert!(
            read_only_quota.contains("a read-only mount holds what it holds"),
            "{read_only_quota}"
        );
    }

    #[test]
    fn no_policy_means_no_grants() {
        let dir = tempfile::tempdir().unwrap();
        let policies = PolicyDir {
            dir: dir.path().into(),
            root: dir.path().into(),
            protected: Vec::new(),
            create_folders: false,
            services: HostServices::default(),
        };
        let guardrails = Arc::new(policies.guardrails().unwrap());
        let policy = policies.read("anything", &guardrails).unwrap();
        let grants = policies.grants(&policy, &guardrails).unwrap();
        assert!(
            grants.sandbox.mounts.is_empty()
                && grants.sandbox.http.is_empty()
                && grants.sandbox.env.is_empty()
        );
        assert_eq!(grants.sandbox.limits, Limits::default());
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
            create_folders: false,
            services: HostServices::default(),
        };
        std::fs::write(
            dir.path().join(HOST_POLICY),
            "version = 1\n[guardrails.market-data-read-only]\nfolders = [\"market\"]\n\
             [guardrails.no-order-execution]\nenabled = false\n",
        )
        .unwrap();
        let guardrails = policies.guardrails().unwrap();
        assert_eq!(guardrails.market_data.unwrap().folders().len(), 1);
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
