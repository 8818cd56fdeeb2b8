//! Between the plugin interface's types and MCP's.

use crate::interface::types;
use crate::plugin::manifest::{PromptEntry, ToolEntry};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rmcp::model::{
    ContentBlock, Prompt, PromptArgument, PromptMessage, Resource, ResourceContents,
    ResourceTemplate, Role, Tool, ToolAnnotations,
};

/// A tool as clients see it, annotations computed from its grants.
pub fn tool(entry: &ToolEntry) -> Tool {
    let description = entry.tool.description.clone();
    let mut tool = Tool::new(
        entry.qualified.clone(),
        description,
        entry.input_schema.clone(),
    );
    if let Some(title) = &entry.tool.title {
        tool = tool.with_title(title.clone());
    }
    if let Some((_, schema)) = &entry.output {
        tool = tool.with_raw_output_schema(schema.clone());
    }
    let a = entry.annotations;
    let mut annotations = ToolAnnotations::new()
        .read_only(a.read_only)
        .destructive(a.destructive)
        .idempotent(a.idempotent)
        .open_world(a.open_world);
    annotations.title = entry.tool.title.clone();
    tool.with_annotations(annotations)
}

/// A prompt as clients see it.
pub fn prompt(entry: &PromptEntry) -> Prompt {
    let p = &entry.prompt;
    let arguments = p
        .arguments
        .iter()
        .map(|a| {
            let mut argument = PromptArgument::new(a.name.clone()).with_required(a.required);
            if let Some(title) = &a.title {
                argument = argument.with_title(title.clone());
            }
            if let Some(description) = &a.description {
                argument = argument.with_description(description.clone());
            }
            argument
        })
        .collect();
    let mut prompt = Prompt::new(
        entry.qualified.clone(),
        p.description.clone(),
        Some(arguments),
    );
    if let Some(title) = &p.title {
        prompt = prompt.with_title(title.clone());
    }
    prompt
}

/// A resource as clients see it.
pub fn resource(r: &types::Resource) -> Resource {
    let mut resource = Resource::new(r.uri.clone(), r.name.clone());
    if let Some(title) = &r.title {
        resource = resource.with_title(title.clone());
    }
    if let Some(description) = &r.description {
        resource = resource.with_description(description.clone());
    }
    if let Some(mime) = &r.mime_type {
        resource = resource.with_mime_type(mime.clone());
    }
    resource
}

/// A resource template as clients see it.
pub fn template(t: &types::ResourceTemplate) -> ResourceTemplate {
    let mut template = ResourceTemplate::new(t.uri_template.clone(), t.name.clone());
    if let Some(title) = &t.title {
        template = template.with_title(title.clone());
    }
    if let Some(description) = &t.description {
        template = template.with_description(description.clone());
    }
    if let Some(mime) = &t.mime_type {
        template = template.with_mime_type(mime.clone());
    }
    template
}

/// Resource contents as clients see them (binary as base64).
pub fn contents(c: types::ResourceContents) -> ResourceContents {
    let converted = match c.body {
        types::ResourceBody::Text(text) => ResourceContents::text(text, c.uri),
        types::ResourceBody::Blob(data) => ResourceContents::blob(BASE64.encode(data), c.uri),
    };
    match c.mime_type {
        Some(mime) => converted.with_mime_type(mime),
        None => converted,
    }
}

/// A content block as clients see it.
pub fn content(c: types::Content) -> ContentBlock {
    match c {
        types::Content::Text(text) => ContentBlock::text(text),
        types::Content::Image(m) => ContentBlock::image(BASE64.encode(m.data), m.mime_type),
        types::Content::Audio(m) => ContentBlock::audio(BASE64.encode(m.data), m.mime_type),
        types::Content::Embedded(c) => ContentBlock::resource(contents(c)),
        types::Content::Link(r) => ContentBlock::resource_link(resource(&r)),
    }
}

/// A prompt message as clients see it.
pub fn message(m: types::PromptMessage) -> PromptMessage {
    let role = match m.role {
        types::Role::User => Role::User,
        types::Role::Assistant => Role::Assistant,
    };
    PromptMessage::new(role, content(m.content))
}

/// The size a content block takes on the wire, roughly.
pub fn content_size(c: &types::Content) -> usize {
    match c {
        types::Content::Text(text) => text.len(),
        types::Content::Image(m) | types::Content::Audio(m) => m.data.len() * 4 / 3,
        types::Content::Embedded(c) => contents_size(c),
        types::Content::Link(r) => r.uri.len() + r.name.len(),
    }
}

/// The size resource contents take on the wire, roughly.
pub fn contents_size(c: &types::ResourceContents) -> usize {
    c.uri.len()
        + match &c.body {
            types::ResourceBody::Text(text) => text.len(),
            types::ResourceBody::Blob(data) => data.len() * 4 / 3,
        }
}
