//! The `market-data-read-only` guardrail: the market-data folders may only
//! ever be mounted read-only. A policy asking for more — a read-write mount
//! inside, or holding, one of them — fails to load, whatever else it says.

use super::{Access, Mount};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The guardrail's name in `policies/host.toml`, errors and the audit log.
pub const NAME: &str = "market-data-read-only";

/// `[guardrails.market-data-read-only]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketDataSpec {
    /// The operator's switch; on unless set to false.
    #[serde(default = "on")]
    pub enabled: bool,
    /// The market-data folders, relative to the root.
    #[serde(default)]
    pub folders: Vec<PathBuf>,
}

fn on() -> bool {
    true
}

impl Default for MarketDataSpec {
    fn default() -> Self {
        MarketDataSpec {
            enabled: true,
            folders: Vec::new(),
        }
    }
}

/// The guardrail in force: the market-data folders, canonical.
#[derive(Clone, Debug, Default)]
pub struct MarketDataGuard {
    folders: Vec<PathBuf>,
}

impl MarketDataGuard {
    /// The guardrail `spec` describes, its folders resolved against `root`;
    /// `None` when the operator turned it off.
    pub fn resolve(spec: &MarketDataSpec, root: &Path) -> Result<Option<MarketDataGuard>, String> {
        if !spec.enabled {
            return Ok(None);
        }
        let folders = spec.folders.iter().map(|folder| {
            let path = root.join(folder);
            path.canonicalize()
                .map_err(|e| format!("[guardrails.{NAME}] folder {}: {e}", path.display()))
        });
        let folders = folders.collect::<Result<Vec<_>, _>>()?;
        Ok(Some(MarketDataGuard { folders }))
    }

    /// The market-data folders.
    pub fn folders(&self) -> &[PathBuf] {
        &self.folders
    }

    /// What the guardrail does, for `host policy explain`.
    pub fn describe(&self) -> String {
        if self.folders.is_empty() {
            return "on, but no market-data folder is named".to_owned();
        }
        let folders: Vec<String> = self
            .folders
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        format!("on; only read-only mounts of {}", folders.join(", "))
    }

    /// Refuses a mount set that would let a plugin write market data: a
    /// read-write mount inside, or holding, a market-data folder.
    pub fn check_mounts(&self, mounts: &[Mount]) -> Result<(), String> {
        for mount in mounts.iter().filter(|m| m.access == Access::ReadWrite) {
            if let Some(folder) = self
                .folders
                .iter()
                .find(|f| mount.host.starts_with(f) || f.starts_with(&mount.host))
            {
                return Err(format!(
                    "denied by guardrail {NAME}: {} would make the market data in {} writable; \
                     mount it read-only",
                    mount.host.display(),
                    folder.display()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn market_data_cannot_be_mounted_writable() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data/market");
        std::fs::create_dir_all(&data).unwrap();
        let spec = MarketDataSpec {
            enabled: true,
            folders: vec!["data/market".into()],
        };
        let guard = MarketDataGuard::resolve(&spec, root.path())
            .unwrap()
            .unwrap();
        let data = data.canonicalize().unwrap();
        let mount = |host: PathBuf, access| Mount::unheld(host.to_str().unwrap(), "/m", access);
        assert!(
            guard
                .check_mounts(&[mount(data.clone(), Access::ReadOnly)])
                .is_ok()
        );
        let error = guard
            .check_mounts(&[mount(data.clone(), Access::ReadWrite)])
            .unwrap_err();
        assert!(
            error.starts_with("denied by guardrail market-data-read-only"),
            "{error}"
        );
        let parent = data.parent().unwrap().to_owned();
        assert!(
            guard
                .check_mounts(&[mount(parent, Access::ReadWrite)])
                .is_err()
        );
        let inside = data.join("AAPL");
        assert!(
            guard
                .check_mounts(&[mount(inside, Access::ReadWrite)])
                .is_err()
        );
    }

    #[test]
    fn turned_off_it_checks_nothing() {
        let spec = MarketDataSpec {
            enabled: false,
            folders: vec!["does/not/exist".into()],
        };
        assert!(
            MarketDataGuard::resolve(&spec, Path::new("/"))
                .unwrap()
                .is_none()
        );
    }
}
