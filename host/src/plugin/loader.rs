//! Loading a plugin file, in two steps:
//!
//! 1. [`compile`]: compile, link and ask the component what it offers —
//!    everything that does not depend on a policy, and the costly part;
//! 2. [`assemble`]: check the offer under the plugin's grants — cheap, so a
//!    policy change re-grants a plugin without recompiling it.

use super::manifest::{self, Offer};
use crate::digest::{Digest, sha256};
use crate::policy::guardrails::Guardrails;
use crate::policy::{Grants, PolicyDir};
use crate::runtime::{CallContext, Prepared, Runtime, types};
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
    let started = Instant::now();
    let hash = sha256(&bytes);
    // Compiling is CPU-bound work: keep it off the async workers.
    let compiler = runtime.clone();
    let component = tokio::task::spawn_blocking(move || compiler.component(&hash, &bytes))
        .await
        .map_err(|e| format!("compilation was interrupted: {e}"))?
        .map_err(|e| format!("not a WebAssembly component this host can run: {e:#}"))?;
    let compiled = started.elapsed();
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
    tracing::debug!(
        compile_or_cache_ms = compiled.as_secs_f64() * 1000.0,
        total_ms = started.elapsed().as_secs_f64() * 1000.0,
        "loaded the component of {}",
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
            .with_concurrency(grants.limits.max_concurrency),
        compiled,
        offer,
        grants,
        policy_digest,
    })
}

/// Loads the plugin at `path` under its policy from `policies` and the
/// host-wide `guardrails`.
pub async fn load(
    runtime: &Arc<Runtime>,
    path: &Path,
    policies: &PolicyDir,
    guardrails: &Arc<Guardrails>,
) -> Result<LoadedPlugin, LoadFailure> {
    let failure = |reason: String| LoadFailure {
        path: path.to_owned(),
        reason,
    };
    let name = name_of(path).map_err(failure)?;
    let grants = policies
        .grants_for(&name, guardrails)
        .map_err(|e| failure(e.to_string()))?;
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| failure(format!("cannot read it: {e}")))?;
    let compiled = compile(runtime, bytes).await.map_err(failure)?;
    let policy_digest = policies.digest_for(&name);
    assemble(&name, path, Arc::new(compiled), grants, policy_digest).map_err(failure)
}

/// Describing runs with no grants at all, and a short time limit.
fn describe_grants() -> Arc<Grants> {
    let mut grants = Grants::default();
    grants.limits.timeout_ms = DESCRIBE_TIMEOUT_MS;
    Arc::new(grants)
}

/// Loads `files`, compiling them in parallel. Guardrails that cannot be read
/// stop everything: the host never runs plugins without them.
pub async fn load_all(
    runtime: &Arc<Runtime>,
    files: Vec<PathBuf>,
    policies: &PolicyDir,
) -> anyhow::Result<(Vec<LoadedPlugin>, Vec<LoadFailure>)> {
    let guardrails = Arc::new(policies.guardrails()?);
    let mut tasks = tokio::task::JoinSet::new();
    for path in files {
        let runtime = runtime.clone();
        let policies = policies.clone();
        let guardrails = guardrails.clone();
        tasks.spawn(async move { load(&runtime, &path, &policies, &guardrails).await });
    }
    let (mut loaded, mut failed) = (Vec::new(), Vec::new());
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(plugin)) => loaded.push(plugin),
            Ok(Err(failure)) => failed.push(failure),
            Err(e) => anyhow::bail!("a plugin load task failed: {e}"),
        }
    }
    loaded.sort_by(|a, b| a.name.cmp(&b.name));
    failed.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((loaded, failed))
}
