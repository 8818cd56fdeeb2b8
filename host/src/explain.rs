//! `host policy explain PLUGIN`: a plugin's effective grants, guardrails
//! applied, in plain words, with what was refused and why.

use crate::capability::filesystem::Access;
use crate::config::Settings;
use crate::plugin::{LoadedPlugin, loader};
use crate::policy::guardrails::{Guardrails, MARKET_DATA_READ_ONLY, NO_ORDER_EXECUTION};
use crate::runtime::Runtime;
use crate::runtime::types::Effects;
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
    let ok = match loader::load(runtime, &path, &settings.policies, &guardrails).await {
        Ok(loaded) => {
            describe_plugin(&mut out, &loaded);
            true
        }
        Err(failure) => {
            let _ = writeln!(out, "REFUSED {failure}");
            false
        }
    };
    print!("{out}");
    Ok(ok)
}

fn describe_guardrails(out: &mut String, guardrails: &Guardrails) {
    let _ = writeln!(
        out,
        "Host-wide guardrails (policies/host.toml), which no plugin policy can widen:"
    );
    match &guardrails.market_data {
        Some(folders) if folders.is_empty() => {
            let _ = writeln!(
                out,
                "  {MARKET_DATA_READ_ONLY}: on, but no market-data folder is named"
            );
        }
        Some(folders) => {
            let folders: Vec<String> = folders.iter().map(|f| f.display().to_string()).collect();
            let _ = writeln!(
                out,
                "  {MARKET_DATA_READ_ONLY}: on; only read-only mounts of {}",
                folders.join(", ")
            );
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

    let _ = writeln!(out, "\nFiles:");
    if g.mounts.is_empty() {
        let _ = writeln!(out, "  none: every path is refused");
    }
    for mount in &g.mounts {
        let _ = writeln!(
            out,
            "  {} sees {} ({})",
            mount.guest,
            mount.describe_host(),
            mount.access
        );
    }

    let _ = writeln!(out, "\nOutgoing HTTP, checked in this order:");
    let _ = writeln!(
        out,
        "  1. paths with `..`, `.`, `//`, `\\` or encoded separators are refused"
    );
    let _ = writeln!(out, "  2. the guardrails above");
    for (i, rule) in g.http.iter().enumerate() {
        let _ = writeln!(out, "  {}. allowed: {}", i + 3, rule.text());
    }
    let _ = writeln!(out, "  then: everything else is refused");

    let _ = writeln!(out, "\nRaw sockets:");
    let s = &g.sockets;
    if s.tcp_connect.is_empty() && s.udp.is_empty() {
        let _ = writeln!(out, "  none: TCP and UDP are refused");
    }
    for addr in &s.tcp_connect {
        let _ = writeln!(out, "  TCP connect to {}", show_addr(addr.ip, addr.port));
    }
    for addr in &s.udp {
        let _ = writeln!(out, "  UDP to {}", show_addr(addr.ip, addr.port));
    }
    let _ = writeln!(
        out,
        "  name lookup: {}",
        if s.name_lookup { "allowed" } else { "refused" }
    );

    let _ = writeln!(out, "\nEnvironment:");
    if g.env.is_empty() {
        let _ = writeln!(out, "  none: every variable is refused");
    }
    for var in &g.env {
        let _ = writeln!(out, "  {} (granted; its value is not shown)", var.name);
    }

    let l = &g.limits;
    let _ = writeln!(
        out,
        "\nLimits: {} MiB of memory, {} ms per call ({} ms of CPU), {} calls at once, {} KiB per result",
        l.memory_mib,
        l.timeout_ms,
        l.cpu_ms(),
        l.max_concurrency,
        l.max_output_kib
    );

    let _ = writeln!(out, "\nTools:");
    for tool in &plugin.offer.tools {
        let a = tool.annotations;
        let mut notes = Vec::new();
        let effects = tool.tool.effects;
        if !effects.contains(Effects::WRITE_FILES)
            && plugin
                .grants
                .mounts
                .iter()
                .any(|m| m.access == Access::ReadWrite)
        {
            notes.push("its mounts are read-only (it does not declare write-files)");
        }
        if !effects.intersects(Effects::NETWORK_READ | Effects::NETWORK_WRITE) && !g.http.is_empty()
        {
            notes.push("it has no network (it declares no network effect)");
        } else if !effects.contains(Effects::NETWORK_WRITE)
            && g.http.iter().any(|r| !r.is_read_only())
        {
            notes.push("it may only GET and HEAD (it does not declare network-write)");
        }
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

fn show_addr(ip: std::net::IpAddr, port: Option<u16>) -> String {
    let port = port.map_or("any port".to_owned(), |p| format!("port {p}"));
    format!("{ip}, {port}")
}
