"""The plugin's handler as componentize-py exports it: the WIT interface's
records built from what ``Plugin`` answers. Nothing here lets an exception
out: a tool failure is a tool error, any other an ``error`` variant, so no
call traps the instance."""

from __future__ import annotations

import json
import typing

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import mcp_host_plugin_types as t

from .errors import InvalidArguments, NotFound, describe_failure, out_of_memory

_EFFECTS = {
    "read-files": t.Effects.READ_FILES,
    "write-files": t.Effects.WRITE_FILES,
    "network-read": t.Effects.NETWORK_READ,
    "network-write": t.Effects.NETWORK_WRITE,
    "trade": t.Effects.TRADE,
    "write-state": t.Effects.WRITE_STATE,
}
_TASKS = {
    "forbidden": t.TaskSupport.FORBIDDEN,
    "optional": t.TaskSupport.OPTIONAL,
    "required": t.TaskSupport.REQUIRED,
}
_ROLES = {"user": t.Role.USER, "assistant": t.Role.ASSISTANT}


def _effects(names: tuple[str, ...]) -> t.Effects:
    flags = t.Effects(0)
    for name in names:
        flags |= _EFFECTS[name]
    return flags


def _error(error: BaseException) -> Err:
    if isinstance(error, MemoryError):
        out_of_memory()
    if isinstance(error, NotFound):
        return Err(t.Error_NotFound(str(error)))
    if isinstance(error, InvalidArguments):
        return Err(t.Error_InvalidArguments(str(error)))
    return Err(t.Error_Failed(describe_failure(error)))


def _body(body: str | bytes):
    if isinstance(body, bytes):
        return t.ResourceBody_Blob(body)
    return t.ResourceBody_Text(str(body))


def make_handler(plugin: typing.Any) -> type:
    """The handler class for `plugin` (a `Plugin`: not imported here, since
    `Plugin.handler` imports this module)."""
    manifest = t.Manifest(
        name=plugin.name,
        version=plugin.version,
        description=plugin.description,
        tools=[
            t.Tool(
                name=spec.name,
                title=spec.title,
                description=spec.signature.description,
                input_schema=json.dumps(spec.signature.input_schema),
                output_schema=(
                    json.dumps(spec.signature.output_schema)
                    if spec.signature.output_schema is not None
                    else None
                ),
                hints=t.ToolHints(**spec.hints),
                effects=_effects(spec.effects),
                task_support=_TASKS[spec.task_support],
            )
            for spec in plugin.tools.values()
        ],
        resources=[
            t.Resource(spec.uri, spec.name, spec.title, spec.description, spec.mime_type)
            for spec in plugin.resources.values()
        ],
        resource_templates=[
            t.ResourceTemplate(spec.uri, spec.name, spec.title, spec.description, spec.mime_type)
            for spec in plugin.templates
        ],
        prompts=[
            t.Prompt(
                spec.name,
                spec.title,
                spec.description,
                [t.PromptArgument(a, None, d, r) for a, d, r in spec.arguments],
            )
            for spec in plugin.prompts.values()
        ],
    )

    class Handler(exports.Handler):
        def describe(self) -> t.Manifest:
            return manifest

        def call_tool(self, name: str, arguments: str) -> t.ToolResult:
            outcome = plugin.call(name, arguments)
            structured = None
            if outcome.structured is not None:
                structured = json.dumps(outcome.structured)
            return t.ToolResult([t.Content_Text(outcome.text)], structured, outcome.is_error)

        def read_resource(self, uri: str):
            try:
                contents = plugin.read(uri)
            except BaseException as error:  # noqa: BLE001
                raise _error(error) from None
            return [t.ResourceContents(u, m, _body(b)) for u, m, b in contents]

        def get_prompt(self, name: str, arguments):
            try:
                description, messages = plugin.render(name, dict(arguments))
            except BaseException as error:  # noqa: BLE001
                raise _error(error) from None
            return t.PromptResult(
                description,
                [t.PromptMessage(_ROLES.get(r, t.Role.USER), t.Content_Text(x)) for r, x in messages],
            )

        def complete(self, target, argument: str, value: str, context):
            if isinstance(target, t.CompletionTarget_Prompt):
                kind = "prompt"
            else:
                kind = "template"
            try:
                values = plugin.suggest(kind, target.value, argument, value, dict(context))
            except BaseException as error:  # noqa: BLE001
                raise _error(error) from None
            return t.Completion(values[:100], len(values), len(values) > 100)

    return Handler
