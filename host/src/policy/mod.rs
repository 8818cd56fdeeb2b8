//! Policies: what each plugin is granted.
//!
//! One TOML file per plugin, `<policies>/<plugin>.toml`, matched by the
//! plugin's name (its file name, chosen by the operator). A plugin without a
//! policy gets nothing: no folders, no network, no environment, and the
//! default limits. Parsing is strict: unknown keys and wrong types are
//! errors that name the file, line and column.

pub mod narrow;

use crate::capability::env::{self, EnvGrant, EnvSource};
use crate::capability::filesystem::{self, Mount, MountSpec};
use crate::capability::limits::Limits;
use crate::capability::network::HttpRule;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The policy format version this host reads.
pub const VERSION: u32 = 1;

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
}

/// The `[network]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Rules such as `GET https://api.example.com/v1/*`.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// A plugin's effective grants: resolved, validated, ready to build sandboxes
/// from.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    /// The policy file they came from; `None` for the deny-all default.
    pub source: Option<PathBuf>,
    pub mounts: Vec<Mount>,
    pub http: Arc<[HttpRule]>,
    pub env: Vec<EnvGrant>,
    pub limits: Limits,
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

/// Resolves a parsed policy against the host's `root` folder, reading
/// granted variables from the host environment through `lookup`.
pub fn resolve(
    file: &PolicyFile,
    root: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Grants, String> {
    let mounts = file
        .mounts
        .iter()
        .map(|spec| filesystem::resolve(spec, root))
        .collect::<Result<Vec<_>, _>>()?;
    filesystem::check_overlaps(&mounts)?;
    let http = file
        .network
        .allow
        .iter()
        .map(|rule| HttpRule::parse(rule))
        .collect::<Result<Vec<_>, _>>()?;
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
        env,
        limits: file.limits.clone(),
    })
}

/// Where policies live and what their relative paths are relative to.
#[derive(Clone, Debug)]
pub struct PolicyDir {
    pub dir: PathBuf,
    pub root: PathBuf,
}

impl PolicyDir {
    /// The policy file for `plugin`.
    pub fn path_for(&self, plugin: &str) -> PathBuf {
        self.dir.join(format!("{plugin}.toml"))
    }

    /// The effective grants of `plugin`: its policy file's, or nothing at all
    /// when it has none.
    pub fn grants_for(&self, plugin: &str) -> Result<Grants, PolicyError> {
        let path = self.path_for(plugin);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Grants::default()),
            Err(e) => {
                return Err(PolicyError {
                    path,
                    message: format!("cannot read it: {e}"),
                });
            }
        };
        let error = |message| PolicyError {
            path: path.clone(),
            message,
        };
        let file = parse(&text).map_err(error)?;
        let mut grants =
            resolve(&file, &self.root, |name| std::env::var(name).ok()).map_err(error)?;
        grants.source = Some(path);
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
                p.file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|stem| !plugins.contains(&stem))
            })
            .collect();
        orphans.sort();
        orphans
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
        let bad_rule = parse("version = 1\n[network]\nallow = [\"GET nowhere\"]\n").unwrap();
        assert!(resolve(&bad_rule, root.path(), |_| None).is_err());
        let bad_limit = parse("version = 1\n[limits]\nmemory_mib = 0\n").unwrap();
        assert!(
            resolve(&bad_limit, root.path(), |_| None)
                .unwrap_err()
                .contains("memory_mib")
        );
    }

    #[test]
    fn no_policy_means_no_grants() {
        let dir = tempfile::tempdir().unwrap();
        let policies = PolicyDir {
            dir: dir.path().into(),
            root: dir.path().into(),
        };
        let grants = policies.grants_for("anything").unwrap();
        assert!(grants.mounts.is_empty() && grants.http.is_empty() && grants.env.is_empty());
        assert_eq!(grants.limits, Limits::default());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
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
