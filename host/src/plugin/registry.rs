//! The registry: every loaded plugin and an index of what it serves.
//!
//! A registry is immutable once built; serving code holds an `Arc` to one,
//! so a call always sees one consistent set of plugins.

use super::loader::{LoadFailure, LoadedPlugin};
use super::manifest::{PromptEntry, ToolEntry};
use crate::runtime::types;
use std::collections::HashMap;
use std::sync::Arc;

/// What is being served, and what failed to load.
#[derive(Default)]
pub struct Registry {
    plugins: Vec<Arc<LoadedPlugin>>,
    tools: HashMap<String, (usize, usize)>,
    prompts: HashMap<String, (usize, usize)>,
    resources: HashMap<String, usize>,
    /// Withheld tool → (its plugin, why).
    withheld: HashMap<String, (usize, String)>,
    failures: Vec<LoadFailure>,
}

impl Registry {
    /// Indexes `loaded`. A plugin offering a resource URI or template, or
    /// (served unprefixed) a tool or prompt name, that an earlier plugin (by
    /// name) already offers is refused whole: what a name reaches never
    /// depends on load order.
    pub fn new(loaded: Vec<Arc<LoadedPlugin>>, mut failures: Vec<LoadFailure>) -> Registry {
        let mut registry = Registry::default();
        for plugin in loaded {
            let uris = plugin
                .offer
                .resources
                .iter()
                .map(|r| &r.uri)
                .chain(plugin.offer.templates.iter().map(|t| &t.uri_template));
            let resource = uris
                .filter_map(|uri| Some((format!("resource {uri}"), *registry.resources.get(uri)?)))
                .next();
            let tools = plugin
                .offer
                .tools
                .iter()
                .map(|t| &t.qualified)
                .chain(plugin.offer.withheld.iter().map(|t| &t.qualified));
            let tool = tools
                .filter_map(|name| Some((format!("tool {name}"), registry.tool_owner(name)?)))
                .next();
            let prompt = plugin
                .offer
                .prompts
                .iter()
                .filter_map(|p| {
                    let &(owner, _) = registry.prompts.get(&p.qualified)?;
                    Some((format!("prompt {}", p.qualified), owner))
                })
                .next();
            if let Some((what, owner)) = resource.or(tool).or(prompt) {
                let owner = &registry.plugins[owner].name;
                failures.push(LoadFailure {
                    path: plugin.path.clone(),
                    reason: format!("{what} is already served by plugin {owner}"),
                });
                continue;
            }
            let index = registry.plugins.len();
            for (i, tool) in plugin.offer.tools.iter().enumerate() {
                registry.tools.insert(tool.qualified.clone(), (index, i));
            }
            for (i, prompt) in plugin.offer.prompts.iter().enumerate() {
                registry
                    .prompts
                    .insert(prompt.qualified.clone(), (index, i));
            }
            for tool in &plugin.offer.withheld {
                registry
                    .withheld
                    .insert(tool.qualified.clone(), (index, tool.reason.clone()));
            }
            for resource in &plugin.offer.resources {
                registry.resources.insert(resource.uri.clone(), index);
            }
            for template in &plugin.offer.templates {
                registry
                    .resources
                    .insert(template.uri_template.clone(), index);
            }
            registry.plugins.push(plugin);
        }
        failures.sort_by(|a, b| a.path.cmp(&b.path));
        registry.failures = failures;
        registry
    }

    /// The loaded plugins, by name.
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// The plugins that failed to load.
    pub fn failures(&self) -> &[LoadFailure] {
        &self.failures
    }

    /// The tool clients call `qualified`, with its plugin.
    pub fn tool(&self, qualified: &str) -> Option<(&Arc<LoadedPlugin>, &ToolEntry)> {
        let &(plugin, tool) = self.tools.get(qualified)?;
        let plugin = &self.plugins[plugin];
        Some((plugin, &plugin.offer.tools[tool]))
    }

    /// The plugin offering the tool `qualified`, served or withheld.
    fn tool_owner(&self, qualified: &str) -> Option<usize> {
        let served = self.tools.get(qualified).map(|&(plugin, _)| plugin);
        served.or_else(|| self.withheld.get(qualified).map(|&(plugin, _)| plugin))
    }

    /// The plugin offering the tool `qualified` and why the tool is not
    /// served, if a guardrail or the plugin's policy withholds it.
    pub fn withheld(&self, qualified: &str) -> Option<(&str, &str)> {
        let (plugin, reason) = self.withheld.get(qualified)?;
        Some((self.plugins[*plugin].name.as_str(), reason.as_str()))
    }

    /// The prompt clients ask for as `qualified`, with its plugin.
    pub fn prompt(&self, qualified: &str) -> Option<(&Arc<LoadedPlugin>, &PromptEntry)> {
        let &(plugin, prompt) = self.prompts.get(qualified)?;
        let plugin = &self.plugins[plugin];
        Some((plugin, &plugin.offer.prompts[prompt]))
    }

    /// The plugin serving `uri`: the one with that exact resource, else the
    /// one whose template matches it.
    pub fn resource_owner(&self, uri: &str) -> Option<&Arc<LoadedPlugin>> {
        if let Some(&index) = self.resources.get(uri) {
            return Some(&self.plugins[index]);
        }
        self.plugins.iter().find(|plugin| {
            plugin
                .offer
                .templates
                .iter()
                .any(|t| template_matches(&t.uri_template, uri))
        })
    }

    /// The plugin owning the resource template `uri_template`.
    pub fn template_owner(&self, uri_template: &str) -> Option<&Arc<LoadedPlugin>> {
        self.resources
            .get(uri_template)
            .map(|&index| &self.plugins[index])
    }

    /// Every resource, with the plugin serving it.
    pub fn resources(&self) -> impl Iterator<Item = &types::Resource> {
        self.plugins.iter().flat_map(|p| p.offer.resources.iter())
    }

    /// Every resource template.
    pub fn templates(&self) -> impl Iterator<Item = &types::ResourceTemplate> {
        self.plugins.iter().flat_map(|p| p.offer.templates.iter())
    }

    /// Every tool, in plugin then declaration order.
    pub fn tools(&self) -> impl Iterator<Item = &ToolEntry> {
        self.plugins.iter().flat_map(|p| p.offer.tools.iter())
    }

    /// Every prompt, in plugin then declaration order.
    pub fn prompts(&self) -> impl Iterator<Item = &PromptEntry> {
        self.plugins.iter().flat_map(|p| p.offer.prompts.iter())
    }
}

/// Whether `uri` matches a template whose `{name}` parts each stand for one
/// non-empty run of characters without `/` (RFC 6570 simple expansion).
pub fn template_matches(template: &str, uri: &str) -> bool {
    let mut rest = uri;
    let mut parts = template.split('{');
    let Some(literal) = parts.next() else {
        return false;
    };
    let Some(after) = rest.strip_prefix(literal) else {
        return false;
    };
    rest = after;
    for part in parts {
        let Some((_, literal)) = part.split_once('}') else {
            return false;
        };
        let end = if literal.is_empty() {
            rest.find('/').unwrap_or(rest.len())
        } else {
            match rest.find(literal) {
                Some(end) => end,
                None => return false,
            }
        };
        let value = &rest[..end];
        if value.is_empty() || value.contains('/') {
            return false;
        }
        rest = &rest[end + literal.len()..];
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::template_matches;

    #[test]
    fn templates_match_whole_segments() {
        let t = "market://bars/{symbol}/{timeframe}";
        assert!(template_matches(t, "market://bars/AAPL/1d"));
        assert!(!template_matches(t, "market://bars/AAPL"));
        assert!(!template_matches(t, "market://bars//1d"));
        assert!(!template_matches(t, "market://bars/AAPL/1d/extra"));
        assert!(!template_matches(t, "other://bars/AAPL/1d"));
        assert!(template_matches(
            "test://template/{id}/data",
            "test://template/42/data"
        ));
    }
}
