//! `host policy explain PLUGIN`: a plugin's effective grants, guardrails
//! applied, in plain words, with what was refused and why.

use crate::config::Settings;
use crate::plugin::{LoadedPlugin, Registry, loader};
use crate::policy::guardrails::{Guardrails, MARKET_DATA_READ_ONLY, NO_ORDER_EXECUTION};
use crate::runtime::Runtime;
use std::fmt::Write as _;
use std::sync::Arc;

/// Explains `plugin`; false when its policy (or the plugin) is refused.
pub async fn run(
    runtime: &Arc<Runtime>,
    settings: &Settings,
    plugin: &str,
) -> anyhow::Result<bool> {
    let guardrails = Arc::new(settings.policies.guardrails()?);
    let mut out = String::new();
    describe_guardrails(&mut out, &guardrails);
    let path = loader::file_for(&settings.plugins, plugin);
    let empty = Registry::default();
    let (registry, _) = loader::build(
        runtime,
        vec![path],
        &settings.policies,
        &empty,
        &loader::Known::default(),
        &loader::Patience::All,
    )
    .await?;
    for loaded in registry.plugins() {
        describe_plugin(&mut out, loaded);
    }
    for failure in registry.failures() {
        let _ = writeln!(out, "REFUSED {failure}");
    }
    let ok = registry.failures().is_empty();
    print!("{}", crate::printable::report(&out));
    Ok(ok)
}

fn describe_guardrails(out: &mut String, guardrails: &Guardrails) {
    let _ = writeln!(
        out,
        "Host-wide guardrails (policies/host.toml), which no plugin policy can widen:"
    );
    match &guardrails.market_data {
        Some(guard) => {
            let _ = writeln!(out, "  {MARKET_DATA_READ_ONLY}: {}", guard.describe());
        }
        None => {
            let _ = writeln!(
                out,
                "  {MARKET_DATA_READ_ONLY}: OFF (turned off by the operator)"
            );
        }
    }
    match &guardrails.orders {
        Some(routes) => {
            let _ = writeln!(
                out,
                "  {NO_ORDER_EXECUTION}: on; {routes}; tools declaring `trade` are not served"
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  {NO_ORDER_EXECUTION}: OFF (turned off by the operator)"
            );
        }
    }
    out.push('\n');
}

fn describe_plugin(out: &mut String, plugin: &LoadedPlugin) {
    let g = &plugin.grants;
    let _ = writeln!(
        out,
        "Plugin {} {} ({})",
        plugin.name,
        plugin.compiled.manifest.version,
        plugin.path.display()
    );
    match &g.source {
        Some(source) => {
            let _ = writeln!(out, "Policy: {}", source.display());
        }
        None => {
            let _ = writeln!(
                out,
                "Policy: none, so nothing is granted beyond the default limits"
            );
        }
    }

    for capability in g.sandbox.describe() {
        let _ = writeln!(out, "\n{}:", capability.title);
        for line in capability.explained {
            let _ = writeln!(out, "  {line}");
        }
    }

    let schemes: Vec<&str> = std::iter::once(plugin.name.as_str())
        .chain(g.uri_schemes.iter().map(String::as_str))
        .collect();
    let _ = writeln!(
        out,
        "\nResources: only URIs with the scheme{} {} (`host check` shows any claimed by another plugin)",
        if schemes.len() == 1 { "" } else { "s" },
        schemes
            .iter()
            .map(|s| format!("{s}:"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let _ = writeln!(out, "\nTools:");
    for tool in &plugin.offer.tools {
        let a = tool.annotations;
        let notes = plugin.grants.sandbox.narrowed(tool.tool.effects);
        let _ = writeln!(
            out,
            "  {} — served; advertised {}{}{}",
            tool.qualified,
            if a.read_only {
                "read-only"
            } else {
                "as writing"
            },
            if a.destructive { ", destructive" } else { "" },
            if a.open_world { ", open-world" } else { "" },
        );
        for note in notes {
            let _ = writeln!(out, "      {note}");
        }
    }
    for tool in &plugin.offer.withheld {
        let _ = writeln!(out, "  {} — NOT SERVED: {}", tool.qualified, tool.reason);
    }
}
