//! Hot reload: plugins and policies change under a running host.
//!
//! The plugins and policies folders are watched (debounced). On a change the
//! whole set is rebuilt off the serving path and swapped in with one pointer
//! store, so a call sees either the old set or the new one, never a mix;
//! calls already running finish on the version they started with.
//!
//! Nothing is redone that need not be: a plugin whose file and policy are
//! unchanged (by SHA-256) is kept as it is; one whose policy alone changed is
//! re-granted without recompiling; compiled components are remembered by
//! content, so restoring an earlier file is instant. Whatever fails — a
//! half-written or broken `.wasm`, a policy that does not parse — leaves the
//! previous good version serving, and is reported.

use crate::audit::Event;
use crate::digest::{Digest, sha256};
use crate::mcp::Shared;
use crate::plugin::Registry;
use crate::plugin::loader::{self, Compiled, LoadFailure, LoadedPlugin};
use crate::policy::PolicyDir;
use crate::runtime::Runtime;
use notify::{RecursiveMode, Watcher};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the folders must be quiet before a change is acted on: long
/// enough to gather an editor's write-rename-delete into one reload.
const QUIET: Duration = Duration::from_millis(25);

/// How many compiled components are remembered beyond those being served.
const REMEMBERED: usize = 32;

/// Which lists a reload changed, for the clients to be told.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub tools: bool,
    pub resources: bool,
    pub prompts: bool,
}

impl Change {
    /// What differs between two registries, as clients see them.
    pub fn between(old: &Registry, new: &Registry) -> Change {
        Change {
            tools: fingerprint(old, |p| {
                p.offer.tools.iter().map(|t| t.qualified.clone()).collect()
            }) != fingerprint(new, |p| {
                p.offer.tools.iter().map(|t| t.qualified.clone()).collect()
            }),
            resources: fingerprint(old, resources_of) != fingerprint(new, resources_of),
            prompts: fingerprint(old, |p| {
                p.offer
                    .prompts
                    .iter()
                    .map(|t| t.qualified.clone())
                    .collect()
            }) != fingerprint(new, |p| {
                p.offer
                    .prompts
                    .iter()
                    .map(|t| t.qualified.clone())
                    .collect()
            }),
        }
    }

    pub fn any(self) -> bool {
        self.tools || self.resources || self.prompts
    }
}

fn resources_of(plugin: &LoadedPlugin) -> Vec<String> {
    let resources = plugin.offer.resources.iter().map(|r| r.uri.clone());
    resources
        .chain(
            plugin
                .offer
                .templates
                .iter()
                .map(|t| t.uri_template.clone()),
        )
        .collect()
}

/// A registry's items of one kind, each with the version of the plugin
/// (component and policy) that serves it: a new version may describe an
/// item differently, so it counts as a change.
fn fingerprint(
    registry: &Registry,
    items: impl Fn(&LoadedPlugin) -> Vec<String>,
) -> Vec<(String, Digest, Digest)> {
    registry
        .plugins()
        .iter()
        .flat_map(|p| {
            items(p)
                .into_iter()
                .map(|item| (item, p.compiled.hash, p.policy_digest))
        })
        .collect()
}

/// What one reload did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub regranted: Vec<String>,
    pub removed: Vec<String>,
    pub failed: Vec<LoadFailure>,
    pub change: Change,
}

/// Rebuilds the registry from the folders and swaps it in.
pub struct Reloader {
    runtime: Arc<Runtime>,
    plugins: PathBuf,
    policies: PolicyDir,
    shared: Arc<Shared>,
    remembered: VecDeque<Arc<Compiled>>,
}

impl Reloader {
    pub fn new(
        runtime: Arc<Runtime>,
        plugins: PathBuf,
        policies: PolicyDir,
        shared: Arc<Shared>,
    ) -> Self {
        Reloader {
            runtime,
            plugins,
            policies,
            shared,
            remembered: VecDeque::new(),
        }
    }

    /// Rebuilds and swaps in the registry; on an error that affects every
    /// plugin (unreadable folder, broken `host.toml`) nothing changes.
    pub async fn reload(&mut self) -> anyhow::Result<Outcome> {
        let current = self.shared.registry.load_full();
        let guardrails = Arc::new(self.policies.guardrails()?);
        let files = loader::plugin_files(&self.plugins)?;

        // Read everything first, then compile what is new, in parallel.
        let mut wanted = Vec::new();
        let mut failed = Vec::new();
        for path in files {
            let name = match loader::name_of(&path) {
                Ok(name) => name,
                Err(reason) => {
                    failed.push(LoadFailure { path, reason });
                    continue;
                }
            };
            match tokio::fs::read(&path).await {
                Ok(bytes) => wanted.push((name, path, sha256(&bytes), bytes)),
                Err(e) => failed.push(LoadFailure {
                    path,
                    reason: format!("cannot read it: {e}"),
                }),
            }
        }
        let known = |hash: &Digest| -> Option<Arc<Compiled>> {
            current
                .plugins()
                .iter()
                .map(|p| &p.compiled)
                .chain(&self.remembered)
                .find(|c| c.hash == *hash)
                .cloned()
        };
        let mut compiling = tokio::task::JoinSet::new();
        let mut compiled: HashMap<Digest, Result<Arc<Compiled>, String>> = HashMap::new();
        for (_, _, hash, bytes) in &mut wanted {
            if let Some(found) = known(hash) {
                compiled.insert(*hash, Ok(found));
            } else if !compiled.contains_key(hash) {
                compiled.insert(*hash, Err("not compiled".into()));
                let runtime = self.runtime.clone();
                let (hash, bytes) = (*hash, std::mem::take(bytes));
                compiling.spawn(async move {
                    (hash, loader::compile(&runtime, bytes).await.map(Arc::new))
                });
            }
        }
        while let Some(done) = compiling.join_next().await {
            let (hash, result) = done?;
            compiled.insert(hash, result);
        }

        let mut outcome = Outcome::default();
        let mut next = Vec::new();
        for (name, path, hash, _) in wanted {
            let old = current.plugins().iter().find(|p| p.name == name);
            let policy_digest = self.policies.digest_for(&name);
            if let Some(old) = old
                && old.compiled.hash == hash
                && old.policy_digest == policy_digest
            {
                next.push(old.clone());
                continue;
            }
            let assembled = compiled[&hash].clone().and_then(|component| {
                let grants = self
                    .policies
                    .grants_for(&name, &guardrails)
                    .map_err(|e| e.to_string())?;
                loader::assemble(&name, &path, component, grants, policy_digest)
            });
            match (assembled, old) {
                (Ok(plugin), old) => {
                    match old {
                        None => outcome.added.push(name),
                        Some(old) if old.compiled.hash == hash => outcome.regranted.push(name),
                        Some(_) => outcome.updated.push(name),
                    }
                    next.push(Arc::new(plugin));
                }
                (Err(reason), Some(old)) => {
                    let reason = format!("{reason}; still serving the previous version");
                    outcome.failed.push(LoadFailure { path, reason });
                    next.push(old.clone());
                }
                (Err(reason), None) => outcome.failed.push(LoadFailure { path, reason }),
            }
        }
        outcome.removed = current
            .plugins()
            .iter()
            .filter(|p| !next.iter().any(|n| n.name == p.name))
            .map(|p| p.name.clone())
            .collect();
        self.remember(current.plugins());

        failed.extend(outcome.failed.iter().cloned());
        let registry = Registry::new(next, failed);
        outcome.change = Change::between(&current, &registry);
        self.shared.registry.store(Arc::new(registry));
        if outcome.change.any() {
            // No receiver simply means no client is connected.
            let _ = self.shared.changes.send(outcome.change);
        }
        Ok(outcome)
    }

    /// Keeps the components of replaced and removed plugins for a while, so
    /// putting one back is instant.
    fn remember(&mut self, plugins: &[Arc<LoadedPlugin>]) {
        for plugin in plugins {
            if !self
                .remembered
                .iter()
                .any(|c| c.hash == plugin.compiled.hash)
            {
                self.remembered.push_back(plugin.compiled.clone());
            }
        }
        while self.remembered.len() > REMEMBERED {
            self.remembered.pop_front();
        }
    }

    /// Reloads, logging and auditing what happened and how long it took.
    async fn reload_and_report(&mut self) {
        let started = Instant::now();
        let outcome = match self.reload().await {
            Ok(outcome) => outcome,
            Err(e) => {
                self.shared.metrics.reload(false);
                tracing::error!("reload failed, nothing changed: {e:#}");
                self.shared.audit.record(Event::LoadFailed {
                    file: self.policies.dir.display().to_string(),
                    reason: format!("reload failed, nothing changed: {e:#}"),
                });
                return;
            }
        };
        self.shared.metrics.reload(true);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let registry = self.shared.registry.load();
        for name in outcome
            .added
            .iter()
            .chain(&outcome.updated)
            .chain(&outcome.regranted)
        {
            if let Some(plugin) = registry.plugins().iter().find(|p| &p.name == name) {
                self.shared.audit.record(Event::Loaded {
                    plugin: name.clone(),
                    tools: plugin.offer.tools.len(),
                });
            }
        }
        for name in &outcome.removed {
            self.shared.audit.record(Event::Unloaded {
                plugin: name.clone(),
            });
        }
        for failure in &outcome.failed {
            tracing::error!("{failure}");
            self.shared.audit.record(Event::LoadFailed {
                file: failure.path.display().to_string(),
                reason: failure.reason.clone(),
            });
        }
        if outcome.change.any() || !outcome.regranted.is_empty() || !outcome.failed.is_empty() {
            tracing::info!(
                added = ?outcome.added,
                updated = ?outcome.updated,
                regranted = ?outcome.regranted,
                removed = ?outcome.removed,
                failed = outcome.failed.len(),
                "reloaded in {ms:.1} ms"
            );
        }
    }
}

/// Watches the plugins and policies folders and reloads on every change
/// until the returned watch is dropped.
pub fn watch(mut reloader: Reloader) -> anyhow::Result<Watch> {
    let folders: Vec<PathBuf> = [&reloader.plugins, &reloader.policies.dir]
        .into_iter()
        .map(|folder| std::path::absolute(folder).unwrap_or_else(|_| folder.clone()))
        .collect();
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let mut debouncer = new_debouncer(QUIET, move |result: DebounceEventResult| {
        let _ = events.send(result);
    })
    .map_err(|e| anyhow::anyhow!("cannot watch the plugin folders: {e}"))?;
    watch_folders(&mut debouncer, &folders)?;
    let task = tokio::spawn(async move {
        while let Some(result) = received.recv().await {
            let relevant = match result {
                Ok(events) => events.iter().any(|e| concerns(&folders, &e.path)),
                Err(e) => {
                    tracing::warn!("watching the plugin folders: {e}");
                    true
                }
            };
            if !relevant {
                continue;
            }
            // A folder replaced whole is a new folder: watch it again.
            if let Err(e) = watch_folders(&mut debouncer, &folders) {
                tracing::warn!("{e:#}");
            }
            reloader.reload_and_report().await;
        }
    });
    Ok(Watch(task))
}

/// The running watch.
pub struct Watch(tokio::task::JoinHandle<()>);

impl Watch {
    /// Stops watching, and waits until the reloader (and what it holds) is
    /// gone.
    pub async fn stop(self) {
        self.0.abort();
        let _ = self.0.await;
    }
}

/// Watches each folder and its parent (to see the folder itself replaced).
fn watch_folders<W: Watcher>(
    debouncer: &mut Debouncer<W>,
    folders: &[PathBuf],
) -> anyhow::Result<()> {
    for folder in folders {
        let watcher = debouncer.watcher();
        let _ = watcher.unwatch(folder);
        watcher
            .watch(folder, RecursiveMode::NonRecursive)
            .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", folder.display()))?;
        if let Some(parent) = folder.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = watcher.watch(parent, RecursiveMode::NonRecursive);
        }
    }
    Ok(())
}

/// Whether a change at `path` can matter: one of the folders itself, or a
/// `.wasm` or `.toml` file directly in one.
fn concerns(folders: &[PathBuf], path: &Path) -> bool {
    folders.iter().any(|folder| {
        path == folder
            || (path.parent() == Some(folder.as_path())
                && path.extension().is_some_and(|x| x == "wasm" || x == "toml"))
    })
}

#[cfg(test)]
mod tests {
    use super::concerns;
    use std::path::{Path, PathBuf};

    #[test]
    fn only_plugins_policies_and_the_folders_themselves_matter() {
        let folders = [PathBuf::from("/r/plugins"), PathBuf::from("/r/policies")];
        let matters = |p: &str| concerns(&folders, Path::new(p));
        assert!(matters("/r/plugins/a.wasm"));
        assert!(matters("/r/policies/a.toml"));
        assert!(matters("/r/plugins"));
        assert!(!matters("/r/audit.jsonl"));
        assert!(!matters("/r/plugins/.a.wasm.partial"));
        assert!(!matters("/r/plugins/target/x.wasm"));
        assert!(!matters("/r/plugins-old/a.wasm"));
    }
}
