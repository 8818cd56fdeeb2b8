//! `host check`: load everything, serve nothing, report plainly.

use crate::config::Settings;
use crate::plugin::{LoadedPlugin, Registry, Resources, loader};
use crate::runtime::Runtime;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

/// Loads the plugins named in `only` (all when empty), prints a report, and
/// says whether everything loaded.
pub async fn run(
    runtime: &Arc<Runtime>,
    settings: &Settings,
    only: &[String],
) -> anyhow::Result<bool> {
    let files: Vec<PathBuf> = if only.is_empty() {
        loader::plugin_files(&settings.plugins)?
    } else {
        only.iter()
            .map(|p| loader::file_for(&settings.plugins, p))
            .collect()
    };
    if files.is_empty() {
        println!(
            "no plugins (*.wasm) in {}: nothing to check",
            settings.plugins.display()
        );
        return Ok(false);
    }
    let empty = Registry::default();
    let (registry, _) = loader::build(
        runtime,
        files,
        &settings.policies,
        &empty,
        &loader::Known::default(),
        &loader::Patience::All,
    )
    .await?;
    let mut out = String::new();
    for (plugin, served) in registry.served() {
        describe(&mut out, plugin, served);
    }
    for failure in registry.failures() {
        let _ = writeln!(out, "FAILED {failure}\n");
    }
    let names: Vec<&str> = registry.plugins().iter().map(|p| p.name.as_str()).collect();
    let failed_names: Vec<String> = registry
        .failures()
        .iter()
        .filter_map(|f| loader::name_of(&f.path).ok())
        .collect();
    let known: Vec<&str> = names
        .iter()
        .copied()
        .chain(failed_names.iter().map(String::as_str))
        .collect();
    let orphans = if only.is_empty() {
        settings.policies.orphans(&known)
    } else {
        Vec::new()
    };
    for orphan in &orphans {
        let _ = writeln!(
            out,
            "FAILED policy {}: no plugin of that name in {} (a typo leaves the plugin with no grants)\n",
            orphan.display(),
            settings.plugins.display()
        );
    }
    let _ = writeln!(
        out,
        "{} plugin(s) loaded, {} failed, {} stray polic{}",
        registry.plugins().len(),
        registry.failures().len(),
        orphans.len(),
        if orphans.len() == 1 { "y" } else { "ies" }
    );
    print!("{}", crate::printable::report(&out));
    Ok(registry.failures().is_empty() && orphans.is_empty())
}

fn describe(out: &mut String, plugin: &LoadedPlugin, served: &Resources) {
    let m = &plugin.compiled.manifest;
    let _ = writeln!(
        out,
        "{} {} ({})",
        plugin.name,
        m.version,
        plugin.path.display()
    );
    if let Some(description) = &m.description {
        let _ = writeln!(out, "  {}", crate::printable::escape(description));
    }
    let g = &plugin.grants;
    let policy = g
        .source
        .as_ref()
        .map_or("none: nothing granted".to_owned(), |p| {
            p.display().to_string()
        });
    let _ = writeln!(out, "  policy: {policy}");
    for capability in g.sandbox.describe() {
        for line in capability.summary {
            let _ = writeln!(out, "  {line}");
        }
    }
    for tool in &plugin.offer.tools {
        if !served.serves("tool", &tool.qualified) {
            continue;
        }
        let a = tool.annotations;
        let mut flags = vec![if a.read_only { "read-only" } else { "writes" }];
        if a.destructive {
            flags.push("destructive");
        }
        if a.open_world {
            flags.push("open-world");
        }
        let _ = writeln!(out, "  tool {} [{}]", tool.qualified, flags.join(", "));
    }
    for resource in &served.resources {
        let _ = writeln!(out, "  resource {}", resource.uri);
    }
    for template in &served.templates {
        let _ = writeln!(out, "  resource template {}", template.uri_template);
    }
    for (uri, reason) in &served.withheld {
        let _ = writeln!(out, "  resource {uri} NOT SERVED: {reason}");
    }
    for tool in &plugin.offer.withheld {
        let _ = writeln!(out, "  tool {} NOT SERVED: {}", tool.qualified, tool.reason);
    }
    for prompt in &plugin.offer.prompts {
        if served.serves("prompt", &prompt.qualified) {
            let _ = writeln!(out, "  prompt {}", prompt.qualified);
        }
    }
    for name in &served.names_withheld {
        let _ = writeln!(
            out,
            "  {} {} NOT SERVED: {}",
            name.kind, name.qualified, name.reason
        );
    }
    out.push('\n');
}
