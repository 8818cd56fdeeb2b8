//! The registry: every loaded plugin and an index of what it serves.
//!
//! A registry is immutable once built; serving code holds an `Arc` to one,
//! so a call always sees one consistent set of plugins.
//!
//! Resource URIs are namespaced by scheme: a plugin serves only URIs whose
//! scheme it owns ([`claim_schemes`]), so no plugin can take over, shadow or
//! get refused another's resources by declaring their URIs.

use super::loader::{LoadFailure, LoadedPlugin};
use super::manifest::{PromptEntry, ToolEntry};
use crate::interface::types;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What is being served, and what failed to load.
#[derive(Default)]
pub struct Registry {
    plugins: Vec<Arc<LoadedPlugin>>,
    /// The resources each plugin (same index) serves.
    served: Vec<Resources>,
    tools: HashMap<String, (usize, usize)>,
    prompts: HashMap<String, (usize, usize)>,
    /// URI scheme → the plugin owning it.
    schemes: HashMap<String, usize>,
    /// Withheld tool → (its plugin, why).
    withheld: HashMap<String, (usize, String)>,
    failures: Vec<LoadFailure>,
}

/// A plugin's resources and templates the registry serves, and those it
/// does not with why; and its tools and prompts whose names another plugin
/// serves.
#[derive(Default)]
pub struct Resources {
    pub resources: Vec<types::Resource>,
    pub templates: Vec<types::ResourceTemplate>,
    /// URI or template → why it is not served.
    pub withheld: Vec<(String, String)>,
    /// Tools and prompts not served because another plugin owns the name.
    pub names_withheld: Vec<NameWithheld>,
}

/// A tool or prompt not served because another plugin serves its name.
#[derive(Clone, Debug)]
pub struct NameWithheld {
    /// `tool` or `prompt`.
    pub kind: &'static str,
    /// The name clients call it by.
    pub qualified: String,
    pub reason: String,
}

impl Resources {
    /// Whether the plugin's `kind` (`tool` or `prompt`) named `qualified`
    /// is served under that name.
    pub fn serves(&self, kind: &str, qualified: &str) -> bool {
        !self
            .names_withheld
            .iter()
            .any(|w| w.kind == kind && w.qualified == qualified)
    }
}

impl Registry {
    /// Indexes `loaded`, with `previous` the registry being replaced (empty
    /// at start-up). Tool and prompt names (as clients call them) are owned
    /// like URI schemes: when several plugins offer one name, the plugin
    /// that served it already keeps it, so a newcomer never displaces an
    /// incumbent; failing that, the first plugin by name gets it. The other
    /// offers of that name are withheld — only those items, the rest of
    /// their plugin is served — and reported. Resources are served by URI
    /// scheme, as [`claim_schemes`] decides.
    pub fn new(
        loaded: Vec<Arc<LoadedPlugin>>,
        mut failures: Vec<LoadFailure>,
        previous: &Registry,
    ) -> Registry {
        let mut registry = Registry {
            plugins: loaded,
            ..Registry::default()
        };
        let tool_claims: Vec<Vec<&str>> = registry
            .plugins
            .iter()
            .map(|plugin| {
                let served = plugin.offer.tools.iter().map(|t| t.qualified.as_str());
                let withheld = plugin.offer.withheld.iter().map(|t| t.qualified.as_str());
                served.chain(withheld).collect()
            })
            .collect();
        let prompt_claims: Vec<Vec<&str>> = registry
            .plugins
            .iter()
            .map(|plugin| {
                let prompts = plugin.offer.prompts.iter();
                prompts.map(|p| p.qualified.as_str()).collect()
            })
            .collect();
        let incumbent_tools = previous.name_owners(&previous.tools, &previous.withheld_owners());
        let incumbent_prompts = previous.name_owners(&previous.prompts, &HashMap::new());
        let names = &registry.plugins;
        let tool_owners = claim_names(names, &tool_claims, &incumbent_tools);
        let prompt_owners = claim_names(names, &prompt_claims, &incumbent_prompts);
        let mut names_withheld: Vec<Vec<NameWithheld>> = vec![Vec::new(); names.len()];
        let mut withhold = |index: usize, kind: &'static str, qualified: &str, owner: usize| {
            names_withheld[index].push(NameWithheld {
                kind,
                qualified: qualified.to_owned(),
                reason: format!(
                    "the name is served by plugin {}, which offered it first",
                    names[owner].name
                ),
            });
        };
        for (index, plugin) in names.iter().enumerate() {
            for (i, tool) in plugin.offer.tools.iter().enumerate() {
                match tool_owners[tool.qualified.as_str()] {
                    owner if owner == index => {
                        registry.tools.insert(tool.qualified.clone(), (index, i));
                    }
                    owner => withhold(index, "tool", &tool.qualified, owner),
                }
            }
            for tool in &plugin.offer.withheld {
                match tool_owners[tool.qualified.as_str()] {
                    owner if owner == index => {
                        let entry = (index, tool.reason.clone());
                        registry.withheld.insert(tool.qualified.clone(), entry);
                    }
                    owner => withhold(index, "tool", &tool.qualified, owner),
                }
            }
            for (i, prompt) in plugin.offer.prompts.iter().enumerate() {
                match prompt_owners[prompt.qualified.as_str()] {
                    owner if owner == index => {
                        registry
                            .prompts
                            .insert(prompt.qualified.clone(), (index, i));
                    }
                    owner => withhold(index, "prompt", &prompt.qualified, owner),
                }
            }
        }

        let claims: Vec<Claim> = registry
            .plugins
            .iter()
            .map(|plugin| Claim {
                plugin: &plugin.name,
                listed: &plugin.grants.uri_schemes,
            })
            .collect();
        let incumbents: HashMap<&str, &str> = previous
            .schemes
            .iter()
            .map(|(scheme, &owner)| (scheme.as_str(), previous.plugins[owner].name.as_str()))
            .collect();
        let (schemes, refused) = claim_schemes(&claims, &incumbents);
        registry.served = registry
            .plugins
            .iter()
            .enumerate()
            .map(|(index, plugin)| {
                let mut served = Resources::default();
                let why_not = |uri: &str| -> Option<String> {
                    let scheme = scheme_of(uri).unwrap_or_default();
                    if schemes.get(&scheme) == Some(&index) {
                        return None;
                    }
                    let lost = refused
                        .iter()
                        .find(|r| r.plugin == index && r.scheme == scheme);
                    let whose = match schemes.get(&scheme) {
                        Some(&owner) => {
                            format!("served by plugin {}", registry.plugins[owner].name)
                        }
                        None => "not the plugin's".to_owned(),
                    };
                    Some(match lost {
                        Some(lost) => lost.reason.clone(),
                        None => format!(
                            "its URI scheme {scheme}: is {whose} (a plugin serves {}: and \
                             the schemes its policy's [resources] schemes lists)",
                            plugin.name
                        ),
                    })
                };
                for resource in &plugin.offer.resources {
                    match why_not(&resource.uri) {
                        None => served.resources.push(resource.clone()),
                        Some(why) => served.withheld.push((resource.uri.clone(), why)),
                    }
                }
                for template in &plugin.offer.templates {
                    match why_not(&template.uri_template) {
                        None => served.templates.push(template.clone()),
                        Some(why) => served.withheld.push((template.uri_template.clone(), why)),
                    }
                }
                served.names_withheld = std::mem::take(&mut names_withheld[index]);
                served
            })
            .collect();
        registry.schemes = schemes;
        failures.sort_by(|a, b| a.path.cmp(&b.path));
        registry.failures = failures;
        registry
    }

    /// The loaded plugins, by name.
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// Each loaded plugin with the resources it serves.
    pub fn served(&self) -> impl Iterator<Item = (&Arc<LoadedPlugin>, &Resources)> {
        self.plugins.iter().zip(&self.served)
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

    /// The plugin serving `uri`: the owner of its scheme, if it serves that
    /// resource or a template matching it.
    /// What serves `uri`: its own URI for a fixed resource, else the
    /// template it matches. Bounded by what plugins declare, so it may name
    /// `uri` in metrics where the URI itself may not.
    pub fn resource_served_as(&self, uri: &str) -> Option<&str> {
        let owner = *self.schemes.get(&scheme_of(uri)?)?;
        let served = &self.served[owner];
        if let Some(resource) = served.resources.iter().find(|r| r.uri == uri) {
            return Some(&resource.uri);
        }
        served
            .templates
            .iter()
            .find(|t| template_matches(&t.uri_template, uri))
            .map(|t| t.uri_template.as_str())
    }

    pub fn resource_owner(&self, uri: &str) -> Option<&Arc<LoadedPlugin>> {
        let owner = *self.schemes.get(&scheme_of(uri)?)?;
        let served = &self.served[owner];
        let found = served.resources.iter().any(|r| r.uri == uri)
            || served
                .templates
                .iter()
                .any(|t| template_matches(&t.uri_template, uri));
        found.then(|| &self.plugins[owner])
    }

    /// The plugin serving the resource template `uri_template`.
    pub fn template_owner(&self, uri_template: &str) -> Option<&Arc<LoadedPlugin>> {
        let owner = *self.schemes.get(&scheme_of(uri_template)?)?;
        let served = &self.served[owner].templates;
        served
            .iter()
            .any(|t| t.uri_template == uri_template)
            .then(|| &self.plugins[owner])
    }

    /// Every served tool with its plugin, in plugin then declaration order.
    pub fn served_tools(&self) -> impl Iterator<Item = (&Arc<LoadedPlugin>, &ToolEntry)> {
        self.served().flat_map(|(plugin, served)| {
            let tools = plugin.offer.tools.iter();
            tools
                .filter(|t| served.serves("tool", &t.qualified))
                .map(move |t| (plugin, t))
        })
    }

    /// Every served prompt with its plugin, in plugin then declaration order.
    pub fn served_prompts(&self) -> impl Iterator<Item = (&Arc<LoadedPlugin>, &PromptEntry)> {
        self.served().flat_map(|(plugin, served)| {
            let prompts = plugin.offer.prompts.iter();
            prompts
                .filter(|p| served.serves("prompt", &p.qualified))
                .map(move |p| (plugin, p))
        })
    }

    /// Every served tool, in plugin then declaration order.
    pub fn tools(&self) -> impl Iterator<Item = &ToolEntry> {
        self.served_tools().map(|(_, tool)| tool)
    }

    /// Name → owning plugin's name, for `index` (tools or prompts) and the
    /// owners of withheld tools.
    fn name_owners<'a>(
        &'a self,
        index: &'a HashMap<String, (usize, usize)>,
        withheld: &HashMap<&'a str, usize>,
    ) -> HashMap<&'a str, &'a str> {
        let served = index
            .iter()
            .map(|(name, &(owner, _))| (name.as_str(), owner));
        served
            .chain(withheld.iter().map(|(&name, &owner)| (name, owner)))
            .map(|(name, owner)| (name, self.plugins[owner].name.as_str()))
            .collect()
    }

    /// Withheld tool → its owning plugin.
    fn withheld_owners(&self) -> HashMap<&str, usize> {
        self.withheld
            .iter()
            .map(|(name, &(owner, _))| (name.as_str(), owner))
            .collect()
    }
}

/// Decides which plugin owns each tool or prompt name, given each plugin's
/// `claims` (same order as `plugins`, which is by name) and the
/// `incumbents` (name → plugin) of the registry being replaced: the
/// incumbent if it still claims the name, else the first claimant.
fn claim_names<'a>(
    plugins: &[Arc<LoadedPlugin>],
    claims: &[Vec<&'a str>],
    incumbents: &HashMap<&str, &str>,
) -> HashMap<&'a str, usize> {
    let mut owners: HashMap<&'a str, usize> = HashMap::new();
    for (index, names) in claims.iter().enumerate() {
        for &name in names {
            let incumbent = incumbents.get(name).copied();
            match owners.get(name) {
                None => {
                    owners.insert(name, index);
                }
                Some(&owner)
                    if incumbent == Some(plugins[index].name.as_str())
                        && incumbent != Some(plugins[owner].name.as_str()) =>
                {
                    owners.insert(name, index);
                }
                Some(_) => {}
            }
        }
    }
    owners
}

/// The canonical (lower-case) scheme of `uri`, if it has one.
fn scheme_of(uri: &str) -> Option<String> {
    let (scheme, _) = uri.split_once(':')?;
    crate::policy::uri_scheme(scheme)
}

/// A plugin's claim to URI schemes: its own name, and those its policy lists.
struct Claim<'a> {
    plugin: &'a str,
    listed: &'a [String],
}

/// A scheme a plugin claimed and did not get.
#[derive(Debug, PartialEq)]
struct Refused {
    plugin: usize,
    scheme: String,
    reason: String,
}

/// Decides which plugin owns each URI scheme, given each plugin's `claims`
/// and the `incumbents` (scheme → plugin) of the registry being replaced.
/// A scheme one plugin claims is its. A scheme several claim goes to the
/// one that served it already, so a newcomer's claim never displaces an
/// incumbent; failing that, to the plugin of that name; failing that, to
/// none of them (which of two policies the operator meant cannot be
/// guessed). Every losing claim is returned with why.
fn claim_schemes(
    claims: &[Claim<'_>],
    incumbents: &HashMap<&str, &str>,
) -> (HashMap<String, usize>, Vec<Refused>) {
    let mut claimants: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, claim) in claims.iter().enumerate() {
        let own = crate::policy::uri_scheme(claim.plugin).into_iter();
        for scheme in own.chain(claim.listed.iter().cloned()) {
            let those = claimants.entry(scheme).or_default();
            if !those.contains(&index) {
                those.push(index);
            }
        }
    }
    let mut owners = HashMap::new();
    let mut refused = Vec::new();
    for (scheme, those) in claimants {
        let named = |name: Option<&&str>| {
            those
                .iter()
                .copied()
                .find(|&i| name.is_some_and(|name| claims[i].plugin == *name))
        };
        let owner = match those[..] {
            [only] => Some(only),
            _ => named(incumbents.get(scheme.as_str())).or_else(|| named(Some(&scheme.as_str()))),
        };
        for &index in &those {
            if Some(index) == owner {
                continue;
            }
            let reason = match owner {
                Some(owner) => format!(
                    "its URI scheme {scheme}: is served by plugin {}",
                    claims[owner].plugin
                ),
                None => {
                    let others: Vec<&str> = those
                        .iter()
                        .filter(|&&i| i != index)
                        .map(|&i| claims[i].plugin)
                        .collect();
                    format!(
                        "its URI scheme {scheme}: is also listed by the policy of plugin {}, \
                         so none of them serves it",
                        others.join(", ")
                    )
                }
            };
            refused.push(Refused {
                plugin: index,
                scheme: scheme.clone(),
                reason,
            });
        }
        if let Some(owner) = owner {
            owners.insert(scheme, owner);
        }
    }
    (owners, refused)
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
    use super::*;

    fn owners(claims: &[(&str, &[&str])], incumbents: &[(&str, &str)]) -> Vec<(String, String)> {
        let listed: Vec<Vec<String>> = claims
            .iter()
            .map(|(_, listed)| listed.iter().map(|s| s.to_string()).collect())
            .collect();
        let claims: Vec<Claim> = claims
            .iter()
            .zip(&listed)
            .map(|((plugin, _), listed)| Claim { plugin, listed })
            .collect();
        let incumbents = incumbents.iter().copied().collect();
        let (owners, _) = claim_schemes(&claims, &incumbents);
        let mut owners: Vec<(String, String)> = owners
            .into_iter()
            .map(|(scheme, i)| (scheme, claims[i].plugin.to_owned()))
            .collect();
        owners.sort();
        owners
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_plugin_owns_its_name_and_the_schemes_its_policy_lists() {
        let got = owners(&[("market-data", &["market"]), ("strategies", &[])], &[]);
        assert_eq!(
            got,
            pairs(&[
                ("market", "market-data"),
                ("market-data", "market-data"),
                ("strategies", "strategies")
            ])
        );
    }

    #[test]
    fn a_newcomer_never_displaces_the_incumbent() {
        // `aaa` sorts first and lists the victim's scheme; the victim keeps it.
        let claims: &[(&str, &[&str])] = &[("aaa", &["market"]), ("market-data", &["market"])];
        let got = owners(claims, &[("market", "market-data")]);
        assert!(
            got.contains(&("market".into(), "market-data".into())),
            "{got:?}"
        );
        // Even against a plugin named after the scheme, added later.
        let claims: &[(&str, &[&str])] = &[("market", &[]), ("market-data", &["market"])];
        let got = owners(claims, &[("market", "market-data")]);
        assert!(
            got.contains(&("market".into(), "market-data".into())),
            "{got:?}"
        );
    }

    #[test]
    fn without_an_incumbent_the_name_wins_and_otherwise_nobody() {
        let claims: &[(&str, &[&str])] = &[("market", &[]), ("market-data", &["market"])];
        assert!(owners(claims, &[]).contains(&("market".into(), "market".into())));
        let claims: &[(&str, &[&str])] = &[("a", &["quotes"]), ("b", &["quotes"])];
        assert!(
            !owners(claims, &[])
                .iter()
                .any(|(scheme, _)| scheme == "quotes")
        );
    }

    #[test]
    fn every_losing_claim_says_who_won() {
        let listed = ["market".to_owned()];
        let claims = [
            Claim {
                plugin: "aaa",
                listed: &listed,
            },
            Claim {
                plugin: "market",
                listed: &[],
            },
        ];
        let (_, refused) = claim_schemes(&claims, &HashMap::new());
        assert_eq!(
            refused,
            vec![Refused {
                plugin: 0,
                scheme: "market".into(),
                reason: "its URI scheme market: is served by plugin market".into(),
            }]
        );
    }

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
