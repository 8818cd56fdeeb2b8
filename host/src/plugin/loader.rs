//! Loading a plugin file: compile, link, ask it what it offers, check that.

use super::manifest::{self, Offer};
use crate::policy::guardrails::Guardrails;
use crate::policy::{Grants, PolicyDir};
use crate::runtime::{CallContext, Prepared, Runtime, types};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::Component;

/// How long a plugin may take to describe itself.
const DESCRIBE_TIMEOUT_MS: u64 = 5_000;

/// A plugin ready to serve.
pub struct LoadedPlugin {
    /// Its name: the file's name without `.wasm`, chosen by the operator.
    pub name: String,
    pub path: PathBuf,
    pub manifest: types::Manifest,
    pub offer: Offer,
    /// The plugin's effective grants (tools run with narrowed copies).
    pub grants: Grants,
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
    let started = Instant::now();
    let name = name_of(path).map_err(failure)?;
    let grants = policies
        .grants_for(&name, guardrails)
        .map_err(|e| failure(e.to_string()))?;
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| failure(format!("cannot read it: {e}")))?;

    // Compiling is CPU-bound work: keep it off the async workers.
    let engine = runtime.engine().clone();
    let component = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
        .await
        .map_err(|e| failure(format!("compilation was interrupted: {e}")))?
        .map_err(|e| {
            failure(format!(
                "not a WebAssembly component this host can run: {e:#}"
            ))
        })?;
    let compiled = started.elapsed();

    let prepared = runtime
        .prepare(&component, grants.limits.max_concurrency)
        .map_err(|e| failure(format!("does not fit the plugin interface: {e:#}")))?;
    let manifest = runtime
        .run(
            &prepared,
            &describe_grants(),
            CallContext::default(),
            Box::new(|handler, store| Box::pin(handler.call_describe(store))),
        )
        .await
        .map_err(|e| failure(format!("describing itself failed: {e}")))?
        .0;
    let offer = manifest::check(&name, &manifest, &grants).map_err(failure)?;
    tracing::debug!(
        plugin = %name,
        compile_ms = compiled.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "loaded"
    );
    Ok(LoadedPlugin {
        prepared,
        grants,
        name,
        path: path.to_owned(),
        manifest,
        offer,
    })
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
