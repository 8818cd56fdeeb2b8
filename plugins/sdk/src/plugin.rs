//! The plugin builder: what a plugin offers and which function serves each.

use crate::__private::wit;
use crate::tool::{Tool, ToolError, ToolOutput, failure};
use crate::{Completion, CompletionTarget, Error, PromptResult, ResourceContents, ToolResult};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

type ToolHandler = Box<dyn Fn(&str) -> ToolResult>;
type ResourceReader = Box<dyn Fn(&str) -> Result<Vec<ResourceContents>, Error>>;
type TemplateReader = Box<dyn Fn(&str, &Vars) -> Result<Vec<ResourceContents>, Error>>;
type PromptRenderer = Box<dyn Fn(&Vars) -> Result<PromptResult, Error>>;
type Completer = Box<dyn Fn(&CompletionTarget, &str, &str, &Vars) -> Result<Completion, Error>>;

/// Named string values: a prompt's arguments or a URI template's variables.
pub type Vars = BTreeMap<String, String>;

/// Everything a plugin offers, with the function that serves each item.
///
/// Building one is cheap (input schemas are derived only when the host asks
/// for the manifest), so a plugin builds it afresh on every call.
pub struct Plugin {
    name: String,
    version: String,
    description: Option<String>,
    tools: Vec<ToolEntry>,
    resources: Vec<(wit::Resource, ResourceReader)>,
    templates: Vec<(wit::ResourceTemplate, TemplateReader)>,
    prompts: Vec<(wit::Prompt, PromptRenderer)>,
    completer: Option<Completer>,
}

/// A tool's description, how to derive its schemas, and its handler.
struct ToolEntry {
    description: wit::Tool,
    input_schema: InputSchema,
    output_schema: fn() -> Option<String>,
    handler: ToolHandler,
}

/// A tool's input schema: as the author wrote it, or derived from the
/// argument type when the manifest is asked for (deriving is the costly
/// part, and only the manifest needs it).
enum InputSchema {
    Written(String),
    Derived(fn() -> String),
}

/// A resource with a fixed URI.
pub struct Resource(wit::Resource);

impl Resource {
    /// The resource at `uri`, with a short machine-friendly `name`.
    pub fn new(uri: &str, name: &str) -> Self {
        Resource(wit::Resource {
            uri: uri.to_owned(),
            name: name.to_owned(),
            title: None,
            description: None,
            mime_type: None,
        })
    }

    /// What the resource holds.
    pub fn description(mut self, description: &str) -> Self {
        self.0.description = Some(description.to_owned());
        self
    }

    /// The MIME type of its contents.
    pub fn mime_type(mut self, mime_type: &str) -> Self {
        self.0.mime_type = Some(mime_type.to_owned());
        self
    }
}

/// A family of resources named by a URI template such as
/// `market://bars/{symbol}/{timeframe}`. Each `{name}` matches one path
/// segment (no `/`).
pub struct ResourceTemplate(wit::ResourceTemplate);

impl ResourceTemplate {
    /// The resources matching `uri_template`, with a short `name`.
    pub fn new(uri_template: &str, name: &str) -> Self {
        ResourceTemplate(wit::ResourceTemplate {
            uri_template: uri_template.to_owned(),
            name: name.to_owned(),
            title: None,
            description: None,
            mime_type: None,
        })
    }

    /// What the resources hold.
    pub fn description(mut self, description: &str) -> Self {
        self.0.description = Some(description.to_owned());
        self
    }

    /// The MIME type of their contents.
    pub fn mime_type(mut self, mime_type: &str) -> Self {
        self.0.mime_type = Some(mime_type.to_owned());
        self
    }
}

/// A prompt template and the arguments it takes.
pub struct Prompt(wit::Prompt);

impl Prompt {
    /// The prompt `name` (1 to 64 characters of `[A-Za-z0-9_-]`).
    pub fn new(name: &str, description: &str) -> Self {
        Prompt(wit::Prompt {
            name: name.to_owned(),
            title: None,
            description: Some(description.to_owned()),
            arguments: Vec::new(),
        })
    }

    /// A short human-readable name.
    pub fn title(mut self, title: &str) -> Self {
        self.0.title = Some(title.to_owned());
        self
    }

    /// Adds an argument.
    pub fn argument(mut self, name: &str, description: &str, required: bool) -> Self {
        self.0.arguments.push(wit::PromptArgument {
            name: name.to_owned(),
            title: None,
            description: Some(description.to_owned()),
            required,
        });
        self
    }
}

impl Plugin {
    /// An empty plugin; `version` is usually `env!("CARGO_PKG_VERSION")`.
    pub fn new(name: &str, version: &str) -> Self {
        Plugin {
            name: name.to_owned(),
            version: version.to_owned(),
            description: None,
            tools: Vec::new(),
            resources: Vec::new(),
            templates: Vec::new(),
            prompts: Vec::new(),
            completer: None,
        }
    }

    /// What the plugin is for.
    pub fn description(mut self, description: &str) -> Self {
        self.description = Some(description.to_owned());
        self
    }

    /// Adds a tool served by `handler`. The input schema is derived from
    /// `A`, the output schema from `O` when it is [`crate::Structured`].
    pub fn tool<A, O, F>(mut self, tool: Tool, handler: F) -> Self
    where
        A: DeserializeOwned + JsonSchema + 'static,
        O: ToolOutput + 'static,
        F: Fn(A) -> Result<O, ToolError> + 'static,
    {
        let description = wit::Tool {
            name: tool.name,
            title: tool.title,
            description: tool.description,
            // Filled in by `manifest`: deriving schemas is the costly part,
            // and only the manifest needs them.
            input_schema: String::new(),
            output_schema: None,
            hints: tool.hints,
            effects: tool.effects,
            task_support: tool.task_support,
        };
        let handler = move |arguments: &str| match serde_json::from_str::<A>(arguments) {
            Ok(args) => match handler(args) {
                Ok(output) => output.into_result(),
                Err(ToolError(message)) => failure(message),
            },
            Err(e) => failure(format!("invalid arguments: {e}")),
        };
        self.tools.push(ToolEntry {
            description,
            input_schema: match tool.input_schema {
                Some(schema) => InputSchema::Written(schema),
                None => InputSchema::Derived(crate::schema::schema_for::<A>),
            },
            output_schema: O::output_schema,
            handler: Box::new(handler),
        });
        self
    }

    /// Adds a resource served by `reader`, which gets the requested URI.
    pub fn resource<F>(mut self, resource: Resource, reader: F) -> Self
    where
        F: Fn(&str) -> Result<Vec<ResourceContents>, Error> + 'static,
    {
        self.resources.push((resource.0, Box::new(reader)));
        self
    }

    /// Adds a resource template served by `reader`, which gets the requested
    /// URI and the template's variables taken from it.
    pub fn resource_template<F>(mut self, template: ResourceTemplate, reader: F) -> Self
    where
        F: Fn(&str, &Vars) -> Result<Vec<ResourceContents>, Error> + 'static,
    {
        self.templates.push((template.0, Box::new(reader)));
        self
    }

    /// Adds a prompt rendered by `render` from its arguments.
    pub fn prompt<F>(mut self, prompt: Prompt, render: F) -> Self
    where
        F: Fn(&Vars) -> Result<PromptResult, Error> + 'static,
    {
        self.prompts.push((prompt.0, Box::new(render)));
        self
    }

    /// Sets the function that suggests argument values for prompts and
    /// resource templates: `(target, argument, value so far, other arguments)`.
    pub fn completer<F>(mut self, complete: F) -> Self
    where
        F: Fn(&CompletionTarget, &str, &str, &Vars) -> Result<Completion, Error> + 'static,
    {
        self.completer = Some(Box::new(complete));
        self
    }

    /// The manifest the host asks for when it loads the plugin.
    pub fn manifest(self) -> wit::Manifest {
        wit::Manifest {
            name: self.name,
            version: self.version,
            description: self.description,
            tools: self
                .tools
                .into_iter()
                .map(|entry| wit::Tool {
                    input_schema: match entry.input_schema {
                        InputSchema::Written(schema) => schema,
                        InputSchema::Derived(derive) => derive(),
                    },
                    output_schema: (entry.output_schema)(),
                    ..entry.description
                })
                .collect(),
            resources: self.resources.into_iter().map(|(r, _)| r).collect(),
            resource_templates: self.templates.into_iter().map(|(t, _)| t).collect(),
            prompts: self.prompts.into_iter().map(|(p, _)| p).collect(),
        }
    }

    /// Calls the tool `name` with JSON `arguments`.
    pub fn call_tool(&self, name: &str, arguments: &str) -> ToolResult {
        match self.tools.iter().find(|t| t.description.name == name) {
            Some(entry) => (entry.handler)(arguments),
            None => failure(format!("no tool named {name:?}")),
        }
    }

    /// Reads the resource at `uri`, from a fixed resource or a template.
    pub fn read_resource(&self, uri: &str) -> Result<Vec<ResourceContents>, Error> {
        if let Some((_, reader)) = self.resources.iter().find(|(r, _)| r.uri == uri) {
            return reader(uri);
        }
        for (template, reader) in &self.templates {
            if let Some(vars) = match_template(&template.uri_template, uri) {
                return reader(uri, &vars);
            }
        }
        Err(Error::NotFound(format!("no resource at {uri}")))
    }

    /// Renders the prompt `name`, checking its required arguments.
    pub fn get_prompt(
        &self,
        name: &str,
        arguments: Vec<(String, String)>,
    ) -> Result<PromptResult, Error> {
        let (prompt, render) = self
            .prompts
            .iter()
            .find(|(p, _)| p.name == name)
            .ok_or_else(|| Error::NotFound(format!("no prompt named {name:?}")))?;
        let arguments: Vars = arguments.into_iter().collect();
        if let Some(missing) = prompt
            .arguments
            .iter()
            .find(|a| a.required && !arguments.contains_key(&a.name))
        {
            return Err(Error::InvalidArguments(format!(
                "prompt {name:?} needs the argument {:?}",
                missing.name
            )));
        }
        render(&arguments)
    }

    /// Suggests values for `argument`; no suggestions without a completer.
    pub fn complete(
        &self,
        target: CompletionTarget,
        argument: &str,
        value: &str,
        context: Vec<(String, String)>,
    ) -> Result<Completion, Error> {
        match &self.completer {
            Some(complete) => complete(&target, argument, value, &context.into_iter().collect()),
            None => Ok(Completion {
                values: Vec::new(),
                total: Some(0),
                has_more: false,
            }),
        }
    }
}

/// Matches `uri` against a template whose `{name}` parts each stand for one
/// non-empty path segment; returns the variables when it matches.
fn match_template(template: &str, uri: &str) -> Option<Vars> {
    let mut vars = Vars::new();
    let mut rest = uri;
    let mut parts = template.split('{');
    let literal = parts.next()?;
    rest = rest.strip_prefix(literal)?;
    for part in parts {
        let (name, literal) = part.split_once('}')?;
        // The variable runs to the next literal (or the end), never across `/`.
        let end = if literal.is_empty() {
            rest.len()
        } else {
            rest.find(literal)?
        };
        let value = &rest[..end];
        if value.is_empty() || value.contains('/') {
            return None;
        }
        vars.insert(name.to_owned(), value.to_owned());
        rest = rest[end..].strip_prefix(literal)?;
    }
    rest.is_empty().then_some(vars)
}
