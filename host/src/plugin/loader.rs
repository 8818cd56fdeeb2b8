//! Loading a plugin file, in two steps:
//!
//! 1. [`compile`]: compile, link and ask the component what it offers —
//!    everything that does not depend on a policy, and the costly part;
//! 2. [`assemble`]: check the offer under the plugin's grants — cheap, so a
//!    policy change re-grants a plugin without recompiling it.

use super::Registry;
use super::manifest::{self, Offer};
use crate::capability::SandboxGrants;
use crate::digest::{Digest, sha256};
use crate::interface::types;
use crate::policy::{Grants, PolicyDir};
use crate::runtime::{CallContext, Prepared, Runtime};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How long a plugin may take to describe itself.
const DESCRIBE_TIMEOUT_MS: u64 = 5_000;

/// A component compiled, linked and described: everything about a plugin
/// that does not depend on its policy.
pub struct Compiled {
    /// The SHA-256 of the `.wasm` file.
    pub hash: Digest,
    pub manifest: types::Manifest,
    prepared: Prepared,
}

/// A plugin ready to serve.
pub struct LoadedPlugin {
    /// Its name: the file's name without `.wasm`, chosen by the operator.
    pub name: String,
    pub path: PathBuf,
    pub compiled: Arc<Compiled>,
    pub offer: Offer,
    /// The plugin's effective grants (tools run with narrowed copies).
    pub grants: Grants,
    /// The digest of the policy text these grants came from.
    pub policy_digest: Digest,
    /// The component, with the line its calls wait in under this policy.
    pub prepared: Prepared,
}

/// A plugin file that could not be loaded, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {}: {reason}", path.display())]
pub struct LoadFailure {
    pub path: PathBuf,
    pub reason: String,
}

/// The `*.wasm` files of `dir`, sorted by name.
pub fn plugin_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the plugins folder {}: {e} (set it with --plugins)",
            dir.display()
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|x| x == "wasm") && path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// The file a command-line `PLUGIN` names: a `.wasm` path as given, or a
/// plugin name looked up in the plugins folder.
pub fn file_for(plugins: &Path, plugin: &str) -> PathBuf {
    if plugin.ends_with(".wasm") {
        PathBuf::from(plugin)
    } else {
        plugins.join(format!("{plugin}.wasm"))
    }
}

/// The plugin name a file stands for.
pub fn name_of(path: &Path) -> Result<String, String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or("the file name is not UTF-8")?;
    if manifest::valid_plugin_name(stem) {
        Ok(stem.to_owned())
    } else {
        Err(format!(
            "{stem:?} is not a valid plugin name: rename the file to lower-case letters, digits \
             and single dashes, starting with a letter (e.g. market-data.wasm)"
        ))
    }
}

/// Compiles, links and describes the component in `bytes`.
pub async fn compile(runtime: &Arc<Runtime>, bytes: Vec<u8>) -> Result<Compiled, String> {
    let hash = sha256(&bytes);
    let component = compile_component(runtime, hash, bytes).await?;
    describe(runtime, hash, component).await
}

/// Compiles the component in `bytes` (the host's own work, cached by
/// content), off the async workers.
async fn compile_component(
    runtime: &Arc<Runtime>,
    hash: Digest,
    bytes: Vec<u8>,
) -> Result<wasmtime::component::Component, String> {
    let compiler = runtime.clone();
    tokio::task::spawn_blocking(move || compiler.component(&hash, &bytes))
        .await
        .map_err(|e| format!("compilation was interrupted: {e}"))?
        .map_err(|e| format!("not a WebAssembly component this host can run: {e:#}"))
}

/// Links `component` and asks it what it offers: the plugin's own code
/// runs here, in a sandbox with no grants and a time limit.
async fn describe(
    runtime: &Arc<Runtime>,
    hash: Digest,
    component: wasmtime::component::Component,
) -> Result<Compiled, String> {
    let started = Instant::now();
    let prepared = runtime
        .prepare(&component, 1)
        .map_err(|e| format!("does not fit the plugin interface: {e:#}"))?;
    let (manifest, _) = runtime
        .run(
            &prepared,
            &describe_grants(),
            CallContext::default(),
            Box::new(|handler, store| {
                Box::pin(async move {
                    handler.check_types(store)?;
                    handler.call_describe(store).await
                })
            }),
        )
        .await
        .map_err(|e| format!("describing itself failed: {e}"))?;
    let manifest = manifest::sanitize(manifest)?;
    tracing::debug!(
        describe_ms = started.elapsed().as_secs_f64() * 1000.0,
        "described the component of {}",
        manifest.name
    );
    Ok(Compiled {
        hash,
        manifest,
        prepared,
    })
}

/// Checks what `compiled` offers under `grants`, making the plugin `name`
/// served from `path`.
pub fn assemble(
    name: &str,
    path: &Path,
    compiled: Arc<Compiled>,
    grants: Grants,
    policy_digest: Digest,
) -> Result<LoadedPlugin, String> {
    let offer = manifest::check(name, &compiled.manifest, &grants)?;
    Ok(LoadedPlugin {
        name: name.to_owned(),
        path: path.to_owned(),
        prepared: compiled
            .prepared
            .with_concurrency(grants.sandbox.limits.max_concurrency),
        compiled,
        offer,
        grants,
        policy_digest,
    })
}

/// Describing runs with no grants at all, and a short time limit.
fn describe_grants() -> Arc<SandboxGrants> {
    let mut grants = SandboxGrants::default();
    grants.limits.timeout_ms = DESCRIBE_TIMEOUT_MS;
    Arc::new(grants)
}

/// A component whose description was still running when [`build`] stopped
/// waiting, once it is done.
pub type Late = (Digest, Result<Arc<Compiled>, String>);

/// How long serving waits for components to compile before it answers
/// clients; the rest join when compiled. Under the ten seconds clients
/// commonly allow a handshake, and above what any Rust plugin takes cold.
pub const COMPILE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(4);

/// How long [`build`] waits for plugins to compile and describe themselves.
pub enum Patience {
    /// Until every plugin is described: `check`, `explain`, and serving
    /// without reloads.
    All,
    /// This long for descriptions (and [`COMPILE_PATIENCE`] for
    /// compiling); what is still running then goes on in the background
    /// and is sent here when done, so one slow plugin never holds up the
    /// rest.
    Until(
        std::time::Duration,
        tokio::sync::mpsc::UnboundedSender<Late>,
    ),
}

/// What earlier builds left behind: components described, components that
/// failed, and descriptions still running.
#[derive(Default)]
pub struct Known {
    pub compiled: Vec<Arc<Compiled>>,
    pub failed: HashMap<Digest, String>,
    pub running: std::collections::HashSet<Digest>,
}

/// What building a registry changed, plugin by plugin.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Still describing themselves: they join (or replace their previous
    /// version) when done.
    pub pending: Vec<String>,
    /// The components this build left describing in the background.
    pub started: Vec<Digest>,
    pub added: Vec<String>,
    pub updated: Vec<String>,
    /// Same component, new policy: re-granted without recompiling.
    pub regranted: Vec<String>,
    pub removed: Vec<String>,
    pub failed: Vec<LoadFailure>,
}

/// Builds the registry that the plugin `files` and their policies describe.
///
/// This is the one load path: start-up, `host check` and `host policy
/// explain` build from an empty registry, a reload from the one being
/// served. A plugin of `current` whose component and policy are unchanged is
/// kept as it is; one whose policy alone changed is re-granted without
/// recompiling; one whose new version fails keeps serving. Each file and
/// policy is read once; each distinct component not in `current` or `known`
/// is compiled once, in parallel. Guardrails that cannot be read stop
/// everything: the host never runs plugins without them.
pub async fn build(
    runtime: &Arc<Runtime>,
    files: Vec<PathBuf>,
    policies: &PolicyDir,
    current: &Registry,
    known: &Known,
    patience: &Patience,
) -> anyhow::Result<(Registry, Outcome)> {
    let guardrails = Arc::new(policies.guardrails()?);

    // Read everything first, then compile what is new, in parallel.
    let mut wanted = Vec::new();
    let mut failed = Vec::new();
    for path in files {
        let name = match name_of(&path) {
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
    let reusable = |hash: &Digest| -> Option<Result<Arc<Compiled>, String>> {
        let compiled = current.plugins().iter().map(|p| &p.compiled);
        let found = compiled.chain(&known.compiled).find(|c| c.hash == *hash);
        match found {
            Some(found) => Some(Ok(found.clone())),
            None => known.failed.get(hash).cloned().map(Err),
        }
    };
    let mut outcome = Outcome::default();
    let mut compiling = tokio::task::JoinSet::new();
    let mut compiled: HashMap<Digest, Result<Arc<Compiled>, String>> = HashMap::new();
    // What is being compiled: those left when patience runs out join later.
    let mut still_compiling = std::collections::HashSet::new();
    for (_, _, hash, bytes) in &mut wanted {
        if let Some(found) = reusable(hash) {
            compiled.insert(*hash, found);
        } else if !compiled.contains_key(hash) && !known.running.contains(hash) {
            compiled.insert(*hash, Err("not compiled".into()));
            still_compiling.insert(*hash);
            let runtime = runtime.clone();
            let (hash, bytes) = (*hash, std::mem::take(bytes));
            compiling.spawn(async move {
                let component = compile_component(&runtime, hash, bytes).await;
                (hash, component)
            });
        }
    }
    // Compiling is the host's own work, awaited while it is quick. One that
    // takes longer (a large component on a cold cache: an interpreter
    // compiled in, as Python plugins have) joins when it is done, like a
    // plugin slow to describe itself, so no client's handshake waits on it.
    let compile_deadline = match patience {
        Patience::All => None,
        Patience::Until(..) => Some(tokio::time::Instant::now() + COMPILE_PATIENCE),
    };
    let mut describing = tokio::task::JoinSet::new();
    let mut in_progress = std::collections::HashSet::new();
    loop {
        let next = match compile_deadline {
            None => compiling.join_next().await,
            Some(deadline) => {
                match tokio::time::timeout_at(deadline, compiling.join_next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            }
        };
        let Some(done) = next else { break };
        let (hash, component) = done?;
        still_compiling.remove(&hash);
        match component {
            Ok(component) => {
                in_progress.insert(hash);
                let runtime = runtime.clone();
                describing.spawn(async move {
                    let described = describe(&runtime, hash, component).await;
                    (hash, described.map(Arc::new))
                });
            }
            Err(reason) => {
                compiled.insert(hash, Err(reason));
            }
        }
    }
    if let (Patience::Until(_, send), false) = (patience, compiling.is_empty()) {
        in_progress.extend(still_compiling);
        let (send, runtime) = (send.clone(), runtime.clone());
        tokio::spawn(async move {
            while let Some(done) = compiling.join_next().await {
                let Ok((hash, component)) = done else {
                    continue;
                };
                let described = match component {
                    Ok(component) => describe(&runtime, hash, component).await.map(Arc::new),
                    Err(reason) => Err(reason),
                };
                let _ = send.send((hash, described));
            }
        });
    }
    // Describing runs the plugin's code: awaited only as long as patience.
    let deadline = match patience {
        Patience::All => None,
        Patience::Until(patience, _) => Some(tokio::time::Instant::now() + *patience),
    };
    loop {
        let next = match deadline {
            None => describing.join_next().await,
            Some(deadline) => match tokio::time::timeout_at(deadline, describing.join_next()).await
            {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        let Some(done) = next else { break };
        let (hash, result) = done?;
        in_progress.remove(&hash);
        compiled.insert(hash, result);
    }
    if let (Patience::Until(_, send), false) = (patience, describing.is_empty()) {
        let send = send.clone();
        tokio::spawn(async move {
            while let Some(done) = describing.join_next().await {
                if let Ok(done) = done {
                    let _ = send.send(done);
                }
            }
        });
    }
    for hash in &in_progress {
        compiled.remove(hash);
    }
    outcome.started = in_progress.into_iter().collect();

    let mut next = Vec::new();
    for (name, path, hash, _) in wanted {
        let old = current.plugins().iter().find(|p| p.name == name);
        let Some(component) = compiled.get(&hash) else {
            // Still describing itself: the previous version (if any) serves.
            outcome.pending.push(name);
            next.extend(old.cloned());
            continue;
        };
        let policy = policies.read(&name, &guardrails);
        if let (Some(old), Ok(policy)) = (old, &policy)
            && old.compiled.hash == hash
            && old.policy_digest == policy.digest
        {
            next.push(old.clone());
            continue;
        }
        let assembled = component.clone().and_then(|component| {
            let policy = policy.map_err(|e| e.to_string())?;
            let grants = policies
                .grants(&policy, &guardrails)
                .map_err(|e| e.to_string())?;
            assemble(&name, &path, component, grants, policy.digest)
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
    next.sort_by(|a, b| a.name.cmp(&b.name));
    failed.extend(outcome.failed.iter().cloned());
    Ok((Registry::new(next, failed, current), outcome))
}
