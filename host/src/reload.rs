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

use crate::audit::{AuditLog, Event};
use crate::digest::Digest;
use crate::mcp::Shared;
use crate::plugin::loader::{self, Compiled, Known, Late, LoadedPlugin, Outcome, Patience};
use crate::plugin::{Change, Resources};
use crate::policy::PolicyDir;
use crate::runtime::Runtime;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// How long the folders must be quiet before a change is acted on: long
/// enough to gather an editor's write-rename-delete into one reload.
const QUIET: Duration = Duration::from_millis(25);

/// How many compiled components are remembered beyond those being served.
const REMEMBERED: usize = 32;

/// Records that `plugin` is served, with what it offers that is not.
pub async fn record_served(audit: &AuditLog, plugin: &LoadedPlugin, served: &Resources) {
    audit
        .record(Event::Loaded {
            plugin: plugin.name.clone(),
            tools: plugin.offer.tools.len()
                - served.names_withheld.len().min(plugin.offer.tools.len()),
        })
        .await;
    for name in &served.names_withheld {
        tracing::warn!(plugin = %plugin.name, "{} {} not served: {}", name.kind, name.qualified, name.reason);
        audit
            .record(Event::NameWithheld {
                plugin: plugin.name.clone(),
                kind: name.kind,
                name: name.qualified.clone(),
                rule: name.reason.clone(),
            })
            .await;
    }
    for tool in &plugin.offer.withheld {
        audit
            .record(Event::Withheld {
                plugin: plugin.name.clone(),
                tool: tool.qualified.clone(),
                rule: tool.reason.clone(),
            })
            .await;
    }
    for (uri, reason) in &served.withheld {
        tracing::warn!(plugin = %plugin.name, "resource {uri} not served: {reason}");
        audit
            .record(Event::ResourceWithheld {
                plugin: plugin.name.clone(),
                uri: uri.clone(),
                rule: reason.clone(),
            })
            .await;
    }
}

/// How long a build waits for plugins to describe themselves before it
/// serves the rest: a plugin slower than this joins when it is done.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// How many components that failed to describe themselves are remembered,
/// so a slow failure is not retried on every reload.
const REMEMBERED_FAILURES: usize = 64;

/// Rebuilds the registry from the folders and swaps it in.
pub struct Reloader {
    runtime: Arc<Runtime>,
    plugins: PathBuf,
    policies: PolicyDir,
    shared: Arc<Shared>,
    remembered: VecDeque<Arc<Compiled>>,
    /// Components that failed after a build stopped waiting for them.
    failed: HashMap<Digest, String>,
    /// Components still describing themselves in the background.
    running: HashSet<Digest>,
    /// Where those descriptions arrive when done.
    late: (UnboundedSender<Late>, Option<UnboundedReceiver<Late>>),
}

impl Reloader {
    pub fn new(
        runtime: Arc<Runtime>,
        plugins: PathBuf,
        policies: PolicyDir,
        shared: Arc<Shared>,
        late: (UnboundedSender<Late>, UnboundedReceiver<Late>),
    ) -> Self {
        Reloader {
            runtime,
            plugins,
            policies,
            shared,
            remembered: VecDeque::new(),
            failed: HashMap::new(),
            running: HashSet::new(),
            late: (late.0, Some(late.1)),
        }
    }

    /// Notes that the components `hashes` are describing themselves in the
    /// background (a build stopped waiting for them).
    pub fn describing(&mut self, hashes: &[Digest]) {
        self.running.extend(hashes.iter().copied());
    }

    /// Takes in a description that finished in the background.
    fn arrived(&mut self, (hash, result): Late) {
        self.running.remove(&hash);
        match result {
            Ok(compiled) => self.remembered.push_back(compiled),
            Err(reason) => {
                if self.failed.len() >= REMEMBERED_FAILURES {
                    self.failed.clear();
                }
                self.failed.insert(hash, reason);
            }
        }
    }

    /// Rebuilds and swaps in the registry; on an error that affects every
    /// plugin (unreadable folder, broken `host.toml`) nothing changes.
    pub async fn reload(&mut self) -> anyhow::Result<(Outcome, Change)> {
        let current = self.shared.registry.load_full();
        let files = loader::plugin_files(&self.plugins)?;
        let known = Known {
            compiled: self.remembered.iter().cloned().collect(),
            failed: self.failed.clone(),
            running: self.running.clone(),
        };
        let patience = Patience::Until(PATIENCE, self.late.0.clone());
        let (registry, outcome) = loader::build(
            &self.runtime,
            files,
            &self.policies,
            &current,
            &known,
            &patience,
        )
        .await?;
        self.describing(&outcome.started);
        self.remember(current.plugins());
        let change = Change::between(&current, &registry);
        self.shared.registry.store(Arc::new(registry));
        if change.any() {
            // No receiver simply means no client is connected.
            let _ = self.shared.changes.send(change);
        }
        Ok((outcome, change))
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
        let (outcome, change) = match self.reload().await {
            Ok(done) => done,
            Err(e) => {
                self.shared.metrics.reload(false);
                tracing::error!("reload failed, nothing changed: {e:#}");
                self.shared
                    .audit
                    .record(Event::LoadFailed {
                        file: self.policies.dir.display().to_string(),
                        reason: format!("reload failed, nothing changed: {e:#}"),
                    })
                    .await;
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
            if let Some((plugin, served)) = registry.served().find(|(p, _)| &p.name == name) {
                record_served(&self.shared.audit, plugin, served).await;
            }
        }
        for name in &outcome.removed {
            self.shared
                .audit
                .record(Event::Unloaded {
                    plugin: name.clone(),
                })
                .await;
        }
        for failure in &outcome.failed {
            tracing::error!("{failure}");
            self.shared
                .audit
                .record(Event::LoadFailed {
                    file: failure.path.display().to_string(),
                    reason: failure.reason.clone(),
                })
                .await;
        }
        if change.any() || !outcome.regranted.is_empty() || !outcome.failed.is_empty() {
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
///
/// Only events that can change what is served count: a file created,
/// written, renamed or removed. Opening, reading and closing a file without
/// writing it (an operator's `cat`, or the reloader's own reads) and
/// metadata changes are ignored, so reading never starts a reload.
pub fn watch(mut reloader: Reloader) -> anyhow::Result<Watch> {
    let folders: Vec<PathBuf> = [&reloader.plugins, &reloader.policies.dir]
        .into_iter()
        .map(|folder| std::path::absolute(folder).unwrap_or_else(|_| folder.clone()))
        .collect();
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let _ = events.send(event);
    })
    .map_err(|e| anyhow::anyhow!("cannot watch the plugin folders: {e}"))?;
    watch_folders(&mut watcher, &folders)?;
    let mut late = reloader.late.1.take();
    let task = tokio::spawn(async move {
        loop {
            // A plugin that was slow to describe itself is ready: serve it.
            let first = tokio::select! {
                first = received.recv() => first,
                Some(done) = async { late.as_mut()?.recv().await } => {
                    reloader.arrived(done);
                    while let Some(more) = late.as_mut().and_then(|l| l.try_recv().ok()) {
                        reloader.arrived(more);
                    }
                    reloader.reload_and_report().await;
                    continue;
                }
            };
            let Some(first) = first else { return };
            // Gather the burst (an editor's write-rename-delete) until the
            // folders are quiet, or for at most a few quiet periods.
            let mut relevant = matters(&folders, &first);
            let gathering = tokio::time::Instant::now() + QUIET * 8;
            loop {
                let quiet = tokio::time::Instant::now() + QUIET;
                match tokio::time::timeout_at(quiet.min(gathering), received.recv()).await {
                    Ok(Some(next)) => relevant |= matters(&folders, &next),
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if !relevant {
                continue;
            }
            // A folder replaced whole is a new folder: watch it again.
            if let Err(e) = watch_folders(&mut watcher, &folders) {
                tracing::warn!("{e:#}");
            }
            reloader.reload_and_report().await;
        }
    });
    Ok(Watch(task))
}

/// Whether `event` may change what is served: it changes the content or
/// the name of a plugin, a policy, or one of the folders. An error counts,
/// since what it hid is unknown.
fn matters(folders: &[PathBuf], event: &notify::Result<notify::Event>) -> bool {
    let event = match event {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!("watching the plugin folders: {e}");
            return true;
        }
    };
    changes_content(&event.kind) && event.paths.iter().any(|path| concerns(folders, path))
}

/// Whether an event of `kind` can change a file's content or name.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        _ => true,
    }
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

/// Watches each folder and its parent (to see the folder itself replaced,
/// or made: a host started without a policies folder sees one created).
fn watch_folders(watcher: &mut impl Watcher, folders: &[PathBuf]) -> anyhow::Result<()> {
    for folder in folders {
        let _ = watcher.unwatch(folder);
        if folder.exists() {
            watcher
                .watch(folder, RecursiveMode::NonRecursive)
                .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", folder.display()))?;
        }
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
    use super::{changes_content, concerns};
    use notify::EventKind;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, MetadataKind, ModifyKind, RemoveKind,
        RenameMode,
    };
    use std::path::{Path, PathBuf};

    #[test]
    fn only_events_that_change_content_or_names_count() {
        for counts in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Any,
        ] {
            assert!(changes_content(&counts), "{counts:?}");
        }
        for ignored in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
        ] {
            assert!(!changes_content(&ignored), "{ignored:?}");
        }
    }

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
