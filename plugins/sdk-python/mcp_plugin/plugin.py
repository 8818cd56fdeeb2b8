"""A plugin: what it offers, declared with decorators, and the dispatch of
the host's calls to the functions behind it.

Pure Python with no host bindings (``handler.py`` adapts this to the WIT
interface), so a plugin's logic can be tested natively.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
import urllib.parse
from typing import Any, Callable

from . import schema as _schema
from .errors import InvalidArguments, NotFound, PluginDefinitionError, ToolError, describe_failure, out_of_memory

EFFECTS = ("read-files", "write-files", "network-read", "network-write", "trade", "write-state")
TASK_SUPPORT = ("forbidden", "optional", "required")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclasses.dataclass
class Outcome:
    """A tool call's result, before it becomes the WIT record."""

    text: str
    structured: Any | None = None
    is_error: bool = False


@dataclasses.dataclass
class ToolSpec:
    name: str
    func: Callable
    title: str | None
    signature: _schema.Signature
    effects: tuple[str, ...]
    hints: dict[str, bool | None]
    task_support: str


@dataclasses.dataclass
class ResourceSpec:
    uri: str
    name: str
    func: Callable
    title: str | None
    description: str | None
    mime_type: str | None
    pattern: re.Pattern | None = None


@dataclasses.dataclass
class PromptSpec:
    name: str
    func: Callable
    title: str | None
    description: str | None
    arguments: list[tuple[str, str | None, bool]]


class Plugin:
    """Everything one plugin offers. Declare tools, resources and prompts
    with its decorators, then end the module with
    ``Handler = plugin.handler()``: the class componentize-py exports."""

    def __init__(self, name: str, version: str, description: str | None = None):
        self.name = name
        self.version = version
        self.description = description
        self.tools: dict[str, ToolSpec] = {}
        self.resources: dict[str, ResourceSpec] = {}
        self.templates: list[ResourceSpec] = []
        self.prompts: dict[str, PromptSpec] = {}
        self.completions: dict[tuple[str, str, str], Callable] = {}

    # ---- declaring ---------------------------------------------------------

    def tool(
        self,
        func: Callable | None = None,
        *,
        name: str | None = None,
        title: str | None = None,
        effects: typing.Iterable[str] = (),
        read_only: bool | None = None,
        destructive: bool | None = None,
        idempotent: bool | None = None,
        open_world: bool | None = None,
        task_support: str = "forbidden",
    ):
        """A tool: its arguments' JSON Schema comes from the type hints and
        the docstring's ``Args:``; a dataclass or ``TypedDict`` return type
        makes structured output. ``effects`` declares what it does (never
        what it may do: the policy grants that)."""

        def register(func: Callable) -> Callable:
            tool_name = name or func.__name__
            _check_name(tool_name, "tool")
            unknown = set(effects) - set(EFFECTS)
            if unknown:
                raise PluginDefinitionError(
                    f"tool {tool_name}: unknown effects {sorted(unknown)}; use {list(EFFECTS)}"
                )
            if task_support not in TASK_SUPPORT:
                raise PluginDefinitionError(
                    f"tool {tool_name}: task_support is one of {list(TASK_SUPPORT)}"
                )
            signature = _schema.read_function(func)
            if not signature.description:
                raise PluginDefinitionError(
                    f"tool {tool_name}: give it a docstring; clients show it to the model"
                )
            self.tools[tool_name] = ToolSpec(
                name=tool_name,
                func=func,
                title=title,
                signature=signature,
                effects=tuple(e for e in EFFECTS if e in set(effects)),
                hints={
                    "read_only": read_only,
                    "destructive": destructive,
                    "idempotent": idempotent,
                    "open_world": open_world,
                },
                task_support=task_support,
            )
            return func

        return register(func) if func is not None else register

    def resource(
        self,
        uri: str,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        mime_type: str | None = "text/plain",
    ):
        """A resource at a fixed URI; the function takes no arguments and
        returns ``str`` (text) or ``bytes`` (a blob)."""

        def register(func: Callable) -> Callable:
            self.resources[uri] = ResourceSpec(
                uri, name or func.__name__, func, title, description or _summary(func), mime_type
            )
            return func

        return register

    def resource_template(
        self,
        uri_template: str,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        mime_type: str | None = "text/plain",
    ):
        """A family of resources, ``market://bars/{symbol}``: each
        ``{variable}`` matches one path segment and is passed to the
        function by name, percent-decoded."""

        def register(func: Callable) -> Callable:
            spec = ResourceSpec(
                uri_template,
                name or func.__name__,
                func,
                title,
                description or _summary(func),
                mime_type,
                pattern=_template_pattern(uri_template),
            )
            self.templates.append(spec)
            return func

        return register

    def prompt(self, func: Callable | None = None, *, name: str | None = None, title: str | None = None):
        """A prompt: its arguments are the function's parameters (strings;
        those without a default are required), described by the docstring's
        ``Args:``. It returns the text of one user message, or a list of
        ``("user" | "assistant", text)`` messages."""

        def register(func: Callable) -> Callable:
            prompt_name = name or func.__name__
            _check_name(prompt_name, "prompt")
            described = _schema.parse_docstring(func.__doc__)
            arguments = [
                (p, described.params.get(p), parameter.default is inspect.Parameter.empty)
                for p, parameter in inspect.signature(func).parameters.items()
            ]
            self.prompts[prompt_name] = PromptSpec(
                prompt_name, func, title, described.summary or None, arguments
            )
            return func

        return register(func) if func is not None else register

    def completion(self, *, argument: str, prompt: str | None = None, template: str | None = None):
        """Suggestions for ``argument`` of a prompt or a resource template:
        the function takes the value typed so far and the other arguments
        (a dict), and returns matching values, best first."""
        if (prompt is None) == (template is None):
            raise PluginDefinitionError("completion: name exactly one of prompt= or template=")

        def register(func: Callable) -> Callable:
            kind = "prompt" if prompt is not None else "template"
            self.completions[(kind, prompt or template or "", argument)] = func
            return func

        return register

    def handler(self) -> type | None:
        """The class componentize-py exports as the plugin's handler;
        ``None`` outside a component (the plugin's logic tested natively)."""
        try:
            from .handler import make_handler
        except ImportError as error:
            if error.name and error.name.startswith(("wit_world", "componentize_py")):
                return None
            raise
        return make_handler(self)

    # ---- answering ---------------------------------------------------------

    def call(self, name: str, arguments: str) -> Outcome:
        """Runs the tool ``name``; every failure becomes a tool error."""
        spec = self.tools.get(name)
        if spec is None:
            return Outcome(f"unknown tool `{name}`", is_error=True)
        try:
            values = json.loads(arguments) if arguments else {}
            kwargs = {
                key: _schema.from_json(value, spec.signature.hints.get(key, Any))
                for key, value in values.items()
            }
            result = spec.func(**kwargs)
        except ToolError as error:
            return Outcome(str(error) or "the tool failed", is_error=True)
        except MemoryError:
            out_of_memory()
        except BaseException as error:  # noqa: BLE001 - no exception may trap the instance
            return Outcome(f"{name} failed: {describe_failure(error)}", is_error=True)
        return _outcome_of(result, spec.signature.output_schema is not None)

    def read(self, uri: str) -> list[tuple[str, str | None, str | bytes]]:
        """The contents at ``uri``: ``(uri, mime type, text or bytes)``."""
        spec = self.resources.get(uri)
        variables: dict[str, str] = {}
        if spec is None:
            for template in self.templates:
                match = template.pattern.fullmatch(uri) if template.pattern else None
                if match:
                    spec = template
                    variables = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
                    break
        if spec is None:
            raise NotFound(f"no resource at {uri}")
        body = spec.func(**variables)
        if isinstance(body, list):
            return [(u, m, b) for (u, m, b) in body]
        return [(uri, spec.mime_type, body)]

    def render(self, name: str, arguments: dict[str, str]) -> tuple[str | None, list[tuple[str, str]]]:
        spec = self.prompts.get(name)
        if spec is None:
            raise NotFound(f"no prompt named {name}")
        known = {argument for argument, _, _ in spec.arguments}
        missing = [a for a, _, required in spec.arguments if required and a not in arguments]
        if missing:
            raise InvalidArguments(f"prompt {name} needs {', '.join(missing)}")
        unknown = sorted(set(arguments) - known)
        if unknown:
            raise InvalidArguments(f"prompt {name} takes no {', '.join(unknown)}")
        rendered = spec.func(**arguments)
        if isinstance(rendered, str):
            return spec.description, [("user", rendered)]
        return spec.description, [(role, text) for role, text in rendered]

    def suggest(self, kind: str, target: str, argument: str, value: str, context: dict[str, str]) -> list[str]:
        func = self.completions.get((kind, target, argument))
        if func is None:
            return []
        return [str(v) for v in func(value, context)]


def _outcome_of(result: Any, structured: bool) -> Outcome:
    if structured:
        data = _schema.to_json(result)
        return Outcome(json.dumps(data, indent=2), structured=data)
    if isinstance(result, str):
        return Outcome(result)
    if result is None:
        return Outcome("done")
    return Outcome(json.dumps(_schema.to_json(result), indent=2))


def _summary(func: Callable) -> str | None:
    return _schema.parse_docstring(func.__doc__).summary or None


def _check_name(name: str, what: str) -> None:
    if not _NAME.match(name):
        raise PluginDefinitionError(
            f"{what} name {name!r}: 1 to 64 characters of letters, digits, _ and -"
        )


def _template_pattern(template: str) -> re.Pattern:
    parts = re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\})", template)
    regex = "".join(
        f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part) for part in parts
    )
    return re.compile(regex)
