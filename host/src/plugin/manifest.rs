//! Checking what a plugin says it offers, before anything is served.

use crate::interface::types;
use crate::policy::Grants;
use crate::policy::narrow::{self, Annotations};
use jsonschema::Validator;
use std::collections::HashSet;
use std::sync::Arc;

/// Separates a plugin's name from its tool or prompt names on the wire:
/// `market-data__get_quote`. Plugin names hold no `_`, so the split is
/// unambiguous; names served without the prefix may not contain it, so no
/// plugin can pose as another.
pub const SEPARATOR: &str = "__";

/// The name clients use for item `name` of `plugin`.
fn wire_name(plugin: &str, name: &str, grants: &Grants) -> Result<String, String> {
    if grants.prefix_names {
        Ok(format!("{plugin}{SEPARATOR}{name}"))
    } else if name.contains(SEPARATOR) {
        Err(format!(
            "{name:?} contains {SEPARATOR:?}, so it cannot be served without the plugin's \
             name ([names] prefix = false): it would look like another plugin's"
        ))
    } else {
        Ok(name.to_owned())
    }
}

/// A tool ready to serve: its description and compiled schemas.
pub struct ToolEntry {
    /// The name clients call it by: `plugin__tool`, or `tool` when the
    /// policy serves its names unprefixed.
    pub qualified: String,
    pub tool: types::Tool,
    pub input: Arc<Validator>,
    pub input_schema: Arc<JsonObject>,
    /// The output schema, compiled and as written, if the tool has one.
    pub output: Option<Schema>,
    /// The plugin's grants narrowed by the tool's declared effects: what
    /// its calls run with.
    pub grants: Arc<Grants>,
    /// Annotations computed from those grants.
    pub annotations: Annotations,
}

/// A tool the plugin offers that is not served, and why.
pub struct Withheld {
    /// The name clients would call it by.
    pub qualified: String,
    /// The rule withholding it, e.g. `denied by guardrail no-order-execution: …`.
    pub reason: String,
}

/// A prompt ready to serve.
pub struct PromptEntry {
    /// The name clients ask for: `plugin__prompt`, or `prompt` unprefixed.
    pub qualified: String,
    pub prompt: types::Prompt,
}

/// Everything a plugin offers, checked.
pub struct Offer {
    /// The grants resource reads, prompts and completions run with.
    pub reading: Arc<Grants>,
    pub tools: Vec<ToolEntry>,
    /// Tools a guardrail or the policy keeps from being served.
    pub withheld: Vec<Withheld>,
    pub prompts: Vec<PromptEntry>,
    pub resources: Vec<types::Resource>,
    pub templates: Vec<types::ResourceTemplate>,
}

/// Whether `name` can name a plugin: 1 to 64 characters of lower-case
/// letters, digits and single `-`, starting with a letter.
pub fn valid_plugin_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// Whether `name` can name a tool or prompt within a plugin.
fn valid_item_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The most tools, and the most prompts, one plugin may offer.
pub const MAX_TOOLS: usize = 256;
/// The most resources and templates, together, one plugin may offer.
pub const MAX_RESOURCES: usize = 1024;
/// The most arguments one prompt may take.
const MAX_PROMPT_ARGUMENTS: usize = 64;
/// The longest description, title, name, URI or MIME type, in bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// The longest input or output schema, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// The most text a whole manifest may hold, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 2 * 1024 * 1024;

/// Refuses a manifest too large to serve: every client lists it, and puts
/// its descriptions and schemas in a model's context, on every connection.
fn check_size(manifest: &types::Manifest) -> Result<(), String> {
    let count = |what: &str, n: usize, max: usize| match n > max {
        true => Err(format!("offers {n} {what}; at most {max} are served")),
        false => Ok(()),
    };
    count("tools", manifest.tools.len(), MAX_TOOLS)?;
    count("prompts", manifest.prompts.len(), MAX_TOOLS)?;
    let resources = manifest.resources.len() + manifest.resource_templates.len();
    count("resources and templates", resources, MAX_RESOURCES)?;
    if let Some(prompt) = manifest
        .prompts
        .iter()
        .find(|p| p.arguments.len() > MAX_PROMPT_ARGUMENTS)
    {
        return Err(format!(
            "prompt {:?} takes {} arguments; at most {MAX_PROMPT_ARGUMENTS} are served",
            truncated(&prompt.name),
            prompt.arguments.len()
        ));
    }

    let mut texts: Vec<(&str, &str)> =
        vec![("name", &manifest.name), ("version", &manifest.version)];
    texts.extend(manifest.description.as_deref().map(|d| ("description", d)));
    for tool in &manifest.tools {
        texts.extend([
            ("tool name", &*tool.name),
            ("tool description", &*tool.description),
        ]);
        texts.extend(tool.title.as_deref().map(|t| ("tool title", t)));
    }
    for r in &manifest.resources {
        texts.extend([("resource URI", &*r.uri), ("resource name", &*r.name)]);
        for (what, text) in [
            ("resource title", &r.title),
            ("resource description", &r.description),
            ("resource MIME type", &r.mime_type),
        ] {
            texts.extend(text.as_deref().map(|t| (what, t)));
        }
    }
    for t in &manifest.resource_templates {
        texts.extend([
            ("resource template", &*t.uri_template),
            ("template name", &*t.name),
        ]);
        for (what, text) in [
            ("template title", &t.title),
            ("template description", &t.description),
            ("template MIME type", &t.mime_type),
        ] {
            texts.extend(text.as_deref().map(|t| (what, t)));
        }
    }
    for p in &manifest.prompts {
        texts.push(("prompt name", &p.name));
        for (what, text) in [
            ("prompt title", &p.title),
            ("prompt description", &p.description),
        ] {
            texts.extend(text.as_deref().map(|t| (what, t)));
        }
        for a in &p.arguments {
            texts.push(("prompt argument name", &a.name));
            for (what, text) in [
                ("prompt argument title", &a.title),
                ("prompt argument description", &a.description),
            ] {
                texts.extend(text.as_deref().map(|t| (what, t)));
            }
        }
    }
    if let Some((what, text)) = texts.iter().find(|(_, text)| text.len() > MAX_TEXT_BYTES) {
        return Err(format!(
            "a {what} ({:?}…) is {} bytes; at most {MAX_TEXT_BYTES} are served",
            truncated(text),
            text.len()
        ));
    }
    let schemas = manifest.tools.iter().flat_map(|tool| {
        std::iter::once(("input", tool, &tool.input_schema))
            .chain(tool.output_schema.as_ref().map(|s| ("output", tool, s)))
    });
    let mut total: usize = texts.iter().map(|(_, text)| text.len()).sum();
    for (which, tool, schema) in schemas {
        if schema.len() > MAX_SCHEMA_BYTES {
            return Err(format!(
                "tool {:?}'s {which} schema is {} bytes; at most {MAX_SCHEMA_BYTES} are served",
                truncated(&tool.name),
                schema.len()
            ));
        }
        total += schema.len();
    }
    if total > MAX_MANIFEST_BYTES {
        return Err(format!(
            "the manifest holds {total} bytes of text and schemas; at most {MAX_MANIFEST_BYTES} are served"
        ));
    }
    Ok(())
}

/// The start of `text`, for an error message.
fn truncated(text: &str) -> &str {
    let mut end = text.len().min(40);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Checks `manifest` for plugin `plugin`, whose policy grants `grants`; the
/// first problem is the error.
pub fn check(plugin: &str, manifest: &types::Manifest, grants: &Grants) -> Result<Offer, String> {
    check_size(manifest)?;
    let mut names = HashSet::new();
    let mut tools = Vec::new();
    let mut withheld = Vec::new();
    for tool in &manifest.tools {
        let name = &tool.name;
        if !valid_item_name(name) {
            return Err(format!(
                "tool name {name:?} must be 1 to 64 characters of letters, digits, _ and -"
            ));
        }
        if !names.insert(name.as_str()) {
            return Err(format!("two tools are named {name:?}"));
        }
        if tool.description.trim().is_empty() {
            return Err(format!("tool {name:?} has no description"));
        }
        let (input, input_schema) =
            schema(&tool.input_schema).map_err(|e| format!("tool {name:?}: input schema {e}"))?;
        let output = match &tool.output_schema {
            Some(text) => {
                Some(schema(text).map_err(|e| format!("tool {name:?}: output schema {e}"))?)
            }
            None => None,
        };
        let qualified = wire_name(plugin, name, grants)?;
        let reason = grants
            .guardrails
            .check_tool(tool.effects)
            .or_else(|| grants.tools.withholds(name));
        if let Some(reason) = reason {
            withheld.push(Withheld { qualified, reason });
            continue;
        }
        let tool_grants = narrow::for_tool(grants, tool.effects);
        tools.push(ToolEntry {
            qualified,
            tool: tool.clone(),
            input,
            input_schema,
            output,
            annotations: narrow::annotations(&tool_grants, &tool.hints),
            grants: Arc::new(tool_grants),
        });
    }

    let declared: Vec<&str> = manifest.tools.iter().map(|t| t.name.as_str()).collect();
    if let Some(typo) = grants.tools.unknown(&declared).first() {
        return Err(format!(
            "the policy's [tools] lists {typo:?}, which is not a tool of this plugin"
        ));
    }

    let mut names = HashSet::new();
    let mut prompts = Vec::new();
    for prompt in &manifest.prompts {
        let name = &prompt.name;
        if !valid_item_name(name) {
            return Err(format!(
                "prompt name {name:?} must be 1 to 64 characters of letters, digits, _ and -"
            ));
        }
        if !names.insert(name.as_str()) {
            return Err(format!("two prompts are named {name:?}"));
        }
        let mut arguments = HashSet::new();
        if let Some(dup) = prompt.arguments.iter().find(|a| !arguments.insert(&a.name)) {
            return Err(format!(
                "prompt {name:?} has two arguments named {:?}",
                dup.name
            ));
        }
        prompts.push(PromptEntry {
            qualified: wire_name(plugin, name, grants)?,
            prompt: prompt.clone(),
        });
    }

    let mut uris = HashSet::new();
    for resource in &manifest.resources {
        check_uri(&resource.uri)?;
        if !uris.insert(resource.uri.as_str()) {
            return Err(format!("two resources have the URI {}", resource.uri));
        }
    }
    for template in &manifest.resource_templates {
        check_uri(&template.uri_template)?;
        if !template.uri_template.contains('{') {
            return Err(format!(
                "resource template {} has no {{variable}}",
                template.uri_template
            ));
        }
        if !uris.insert(template.uri_template.as_str()) {
            return Err(format!(
                "two resource templates are {}",
                template.uri_template
            ));
        }
    }

    Ok(Offer {
        reading: Arc::new(narrow::for_reading(grants)),
        tools,
        withheld,
        prompts,
        resources: manifest.resources.clone(),
        templates: manifest.resource_templates.clone(),
    })
}

fn check_uri(uri: &str) -> Result<(), String> {
    let scheme = uri.split_once(':').map(|(scheme, _)| scheme);
    let valid = scheme.is_some_and(|s| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            && s.as_bytes()[0].is_ascii_alphabetic()
    });
    if valid && !uri.chars().any(char::is_whitespace) {
        Ok(())
    } else {
        Err(format!(
            "{uri:?} is not a URI (expected something like market://symbols)"
        ))
    }
}

/// `manifest` made safe to show: names, URIs, MIME types and the version
/// with a control or bidirectional character are refused (they would read
/// as something else in a log, a terminal or a client's list), and titles
/// and descriptions lose such characters, keeping line breaks.
pub fn sanitize(mut manifest: types::Manifest) -> Result<types::Manifest, String> {
    use crate::printable::{is_unprintable, strip_controls};
    let plain = |what: &str, text: &str| match text.chars().any(is_unprintable) {
        true => Err(format!(
            "{what} {:?} holds a control or bidirectional character",
            crate::printable::escape(text)
        )),
        false => Ok(()),
    };
    let strip = |text: &mut String| {
        if let std::borrow::Cow::Owned(clean) = strip_controls(text) {
            *text = clean;
        }
    };
    let strip_option = |text: &mut Option<String>| {
        if let Some(text) = text {
            strip(text);
        }
    };
    plain("the plugin's name", &manifest.name)?;
    plain("the version", &manifest.version)?;
    strip_option(&mut manifest.description);
    for tool in &mut manifest.tools {
        plain("tool name", &tool.name)?;
        strip_option(&mut tool.title);
        strip(&mut tool.description);
    }
    for resource in &mut manifest.resources {
        plain("resource URI", &resource.uri)?;
        plain("resource name", &resource.name)?;
        plain(
            "MIME type",
            resource.mime_type.as_deref().unwrap_or_default(),
        )?;
        strip_option(&mut resource.title);
        strip_option(&mut resource.description);
    }
    for template in &mut manifest.resource_templates {
        plain("resource template", &template.uri_template)?;
        plain("resource template name", &template.name)?;
        plain(
            "MIME type",
            template.mime_type.as_deref().unwrap_or_default(),
        )?;
        strip_option(&mut template.title);
        strip_option(&mut template.description);
    }
    for prompt in &mut manifest.prompts {
        plain("prompt name", &prompt.name)?;
        strip_option(&mut prompt.title);
        strip_option(&mut prompt.description);
        for argument in &mut prompt.arguments {
            plain("prompt argument", &argument.name)?;
            strip_option(&mut argument.title);
            strip_option(&mut argument.description);
        }
    }
    Ok(manifest)
}

/// A compiled schema, and the schema as written.
pub type Schema = (Arc<Validator>, Arc<JsonObject>);

type JsonObject = serde_json::Map<String, serde_json::Value>;

/// Parses and compiles a JSON Schema for an object.
fn schema(text: &str) -> Result<Schema, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
    let serde_json::Value::Object(object) = &value else {
        return Err("must be a JSON object".into());
    };
    if object.get("type").and_then(|t| t.as_str()) != Some("object") {
        return Err(r#"must describe an object ("type": "object")"#.into());
    }
    let validator = jsonschema::options()
        .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(MAX_PATTERN_BYTES))
        .build(&value)
        .map_err(|e| {
            format!(
                "is invalid: {e} (patterns use a regex engine that runs in linear time, \
                 so lookaround and backreferences are not supported)"
            )
        })?;
    Ok((Arc::new(validator), Arc::new(object.clone())))
}

/// The largest a schema's compiled pattern may be. Patterns compile to
/// automata without backtracking, so validating takes time linear in the
/// input whatever a plugin's schema says.
const MAX_PATTERN_BYTES: usize = 1 << 20;

/// The longest description of one invalid argument.
const MAX_PROBLEM: usize = 300;

/// Checks `value` against a compiled schema; the error names each failing
/// field (up to ten) by its JSON pointer.
pub fn validate(validator: &Validator, value: &serde_json::Value) -> Result<(), String> {
    // The common case, valid input, takes the fast path.
    if validator.is_valid(value) {
        return Ok(());
    }
    let problems: Vec<String> = validator
        .iter_errors(value)
        .take(10)
        .map(|error| {
            let path = error.instance_path().to_string();
            let at = if path.is_empty() {
                "(root)".to_owned()
            } else {
                path
            };
            // The message quotes the value, which may be megabytes.
            let mut problem = format!("{at}: {error}");
            crate::printable::truncate(&mut problem, MAX_PROBLEM);
            problem
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, schema: &str) -> types::Tool {
        types::Tool {
            name: name.into(),
            title: None,
            description: "does things".into(),
            input_schema: schema.into(),
            output_schema: None,
            hints: types::ToolHints {
                read_only: None,
                destructive: None,
                idempotent: None,
                open_world: None,
            },
            effects: types::Effects::empty(),
            task_support: types::TaskSupport::Forbidden,
        }
    }

    fn manifest(tools: Vec<types::Tool>) -> types::Manifest {
        types::Manifest {
            name: "p".into(),
            version: "1".into(),
            description: None,
            tools,
            resources: vec![],
            resource_templates: vec![],
            prompts: vec![],
        }
    }

    fn check_all(plugin: &str, manifest: &types::Manifest) -> Result<Offer, String> {
        check(plugin, manifest, &Grants::default())
    }

    const OBJECT: &str = r#"{"type":"object","properties":{"symbol":{"type":"string","pattern":"^[A-Z]+$"}},"required":["symbol"]}"#;

    #[test]
    fn patterns_run_in_linear_time_and_lookaround_is_refused_with_the_reason() {
        let (validator, _) =
            schema(r#"{"type":"object","properties":{"s":{"type":"string","pattern":"^(a+)+$"}}}"#)
                .unwrap();
        // Catastrophic for a backtracking engine; one pass for this one.
        let evil = serde_json::json!({"s": format!("{}!", "a".repeat(100_000))});
        assert!(validate(&validator, &evil).is_err());
        assert!(validate(&validator, &serde_json::json!({"s": "aaaa"})).is_ok());
        for pattern in ["^(?=a)a$", "^(?!a)b$", r"(a)\1"] {
            let text = format!(
                r#"{{"type":"object","properties":{{"s":{{"type":"string","pattern":{pattern:?}}}}}}}"#
            );
            let error = schema(&text)
                .err()
                .unwrap_or_else(|| panic!("{pattern} accepted"));
            assert!(error.contains("linear time"), "{error}");
        }
    }

    #[test]
    fn tools_are_namespaced_by_plugin() {
        let offer = check_all("market-data", &manifest(vec![tool("get_quote", OBJECT)])).unwrap();
        assert_eq!(offer.tools[0].qualified, "market-data__get_quote");
    }

    #[test]
    fn unprefixed_names_cannot_pose_as_another_plugins() {
        let grants = Grants {
            prefix_names: false,
            ..Grants::default()
        };
        let offer = check(
            "conformance",
            &manifest(vec![tool("test_simple_text", OBJECT)]),
            &grants,
        );
        assert_eq!(offer.unwrap().tools[0].qualified, "test_simple_text");
        let impostor = manifest(vec![tool("market-data__get_quote", OBJECT)]);
        let error = check("intruder", &impostor, &grants).err().unwrap();
        assert!(error.contains("another plugin's"), "{error}");
    }

    #[test]
    fn duplicate_and_invalid_tool_names_are_errors() {
        let twice = manifest(vec![tool("a", OBJECT), tool("a", OBJECT)]);
        assert!(check_all("p", &twice).err().unwrap().contains("two tools"));
        assert!(check_all("p", &manifest(vec![tool("a b", OBJECT)])).is_err());
        assert!(check_all("p", &manifest(vec![tool("", OBJECT)])).is_err());
    }

    #[test]
    fn input_schemas_must_be_object_schemas() {
        for bad in [
            "nope",
            "[]",
            r#"{"type":"string"}"#,
            r#"{"type":"object","minLength":"x"}"#,
        ] {
            assert!(
                check_all("p", &manifest(vec![tool("a", bad)])).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn validation_errors_name_the_field() {
        let offer = check_all("p", &manifest(vec![tool("a", OBJECT)])).unwrap();
        let validator = &offer.tools[0].input;
        assert!(validate(validator, &serde_json::json!({"symbol": "AAPL"})).is_ok());
        let error = validate(validator, &serde_json::json!({"symbol": "aapl"})).unwrap_err();
        assert!(error.contains("/symbol"), "{error}");
        let error = validate(validator, &serde_json::json!({})).unwrap_err();
        assert!(error.contains("symbol"), "{error}");
    }

    #[test]
    fn plugin_names() {
        for good in ["market-data", "broker", "a1"] {
            assert!(valid_plugin_name(good), "{good}");
        }
        for bad in ["", "Market", "market_data", "-a", "a-", "a--b", "1a", "a.b"] {
            assert!(!valid_plugin_name(bad), "{bad}");
        }
    }
}
