//! What a new registry changes for clients: which of the lists they see
//! (tools, resources, prompts) differ from the registry it replaces.

use super::{LoadedPlugin, Registry, Resources};
use crate::digest::Digest;

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
        let tools = |p: &LoadedPlugin, served: &Resources| -> Vec<String> {
            let tools = p.offer.tools.iter().map(|t| &t.qualified);
            let tools = tools.filter(|name| served.serves("tool", name));
            tools.cloned().collect()
        };
        let prompts = |p: &LoadedPlugin, served: &Resources| -> Vec<String> {
            let prompts = p.offer.prompts.iter().map(|p| &p.qualified);
            let prompts = prompts.filter(|name| served.serves("prompt", name));
            prompts.cloned().collect()
        };
        let resources = |_: &LoadedPlugin, served: &Resources| -> Vec<String> {
            let resources = served.resources.iter().map(|r| r.uri.clone());
            let templates = served.templates.iter().map(|t| t.uri_template.clone());
            resources.chain(templates).collect()
        };
        Change {
            tools: fingerprint(old, tools) != fingerprint(new, tools),
            resources: fingerprint(old, resources) != fingerprint(new, resources),
            prompts: fingerprint(old, prompts) != fingerprint(new, prompts),
        }
    }

    pub fn any(self) -> bool {
        self.tools || self.resources || self.prompts
    }
}

/// A registry's items of one kind, each with the version of the plugin
/// (component and policy) that serves it: a new version may describe an
/// item differently, so it counts as a change.
fn fingerprint(
    registry: &Registry,
    items: impl Fn(&LoadedPlugin, &Resources) -> Vec<String>,
) -> Vec<(String, Digest, Digest)> {
    registry
        .served()
        .flat_map(|(p, served)| {
            items(p, served)
                .into_iter()
                .map(|item| (item, p.compiled.hash, p.policy_digest))
        })
        .collect()
}
