"""JSON Schemas from Python type hints, and values to and from JSON.

Pure Python with no host bindings, so it runs (and is tested) natively as
well as inside a component. What maps to what:

- ``str``, ``int``, ``float``, ``bool``, ``None``; ``list[T]``, ``tuple[T, ...]``,
  ``dict[str, T]``; ``Optional[T]`` and ``T | None``; ``Literal[...]``; ``Enum``
  subclasses (their values);
- dataclasses and ``TypedDict`` classes become objects (their docstring is the
  description; a field with a default is optional);
- ``Annotated[T, Field(...)]`` adds a description and constraints: ``ge``, ``gt``,
  ``le``, ``lt``, ``min_length``, ``max_length`` (strings and lists),
  ``pattern``, ``examples``.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import types
import typing
from typing import Any, Callable

_NONE = type(None)


@dataclasses.dataclass(frozen=True)
class Field:
    """Constraints and a description for one argument or field, used as
    ``Annotated[float, Field(gt=0, description="Account equity")]``."""

    description: str | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    examples: list | None = None

    def apply(self, schema: dict) -> dict:
        schema = dict(schema)
        if self.description:
            schema["description"] = self.description
        for name, key in (
            ("ge", "minimum"),
            ("gt", "exclusiveMinimum"),
            ("le", "maximum"),
            ("lt", "exclusiveMaximum"),
            ("pattern", "pattern"),
            ("examples", "examples"),
        ):
            value = getattr(self, name)
            if value is not None:
                schema[key] = value
        is_array = schema.get("type") == "array"
        if self.min_length is not None:
            schema["minItems" if is_array else "minLength"] = self.min_length
        if self.max_length is not None:
            schema["maxItems" if is_array else "maxLength"] = self.max_length
        return schema


class SchemaError(TypeError):
    """A type hint the SDK cannot describe as JSON Schema."""


def _is_typeddict(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, dict) and hasattr(hint, "__total__")


def _optional_inner(hint: Any) -> Any | None:
    """``T`` for ``Optional[T]`` (``T | None``), else ``None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not _NONE]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
    return None


def schema_of(hint: Any) -> dict:
    """The JSON Schema of values of type ``hint``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        schema = schema_of(args[0])
        for extra in args[1:]:
            if isinstance(extra, Field):
                schema = extra.apply(schema)
        return schema
    if hint is Any:
        return {}
    if hint is str:
        return {"type": "string"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is _NONE or hint is None:
        return {"type": "null"}
    if hint is list or hint is tuple:
        return {"type": "array"}
    if hint is dict:
        return {"type": "object"}
    if origin is typing.Literal:
        schema: dict = {"enum": list(args)}
        kinds = {type(a) for a in args}
        if kinds == {str}:
            schema["type"] = "string"
        elif kinds <= {int}:
            schema["type"] = "integer"
        return schema
    if origin in (typing.Union, types.UnionType):
        inner = _optional_inner(hint)
        if inner is not None:
            return {"anyOf": [schema_of(inner), {"type": "null"}]}
        return {"anyOf": [schema_of(a) for a in args]}
    if origin in (list, typing.List, set, frozenset):
        return {"type": "array", "items": schema_of(args[0])} if args else {"type": "array"}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": schema_of(args[0])}
        return {
            "type": "array",
            "prefixItems": [schema_of(a) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin is dict:
        if args and args[0] is not str:
            raise SchemaError(f"dict keys must be str for JSON, not {args[0]!r}")
        schema = {"type": "object"}
        if args:
            schema["additionalProperties"] = schema_of(args[1])
        return schema
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values = [member.value for member in hint]
        schema = {"enum": values}
        if all(isinstance(v, str) for v in values):
            schema["type"] = "string"
        return schema
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _object_schema(hint, _dataclass_fields(hint))
    if _is_typeddict(hint):
        hints = typing.get_type_hints(hint, include_extras=True)
        required = getattr(hint, "__required_keys__", set(hints))
        return _object_schema(hint, [(n, h, n in required) for n, h in hints.items()])
    raise SchemaError(f"cannot describe {hint!r} as JSON Schema")


def _dataclass_fields(cls: type) -> list[tuple[str, Any, bool]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = []
    for field in dataclasses.fields(cls):
        has_default = (
            field.default is not dataclasses.MISSING
            or field.default_factory is not dataclasses.MISSING
        )
        fields.append((field.name, hints[field.name], not has_default))
    return fields


def _object_schema(cls: type, fields: list[tuple[str, Any, bool]]) -> dict:
    schema: dict = {"type": "object", "properties": {}, "additionalProperties": False}
    described = parse_docstring(cls.__doc__ if _own_doc(cls) else None)
    if described.summary:
        schema["description"] = described.summary
    required = []
    for name, hint, is_required in fields:
        field_schema = schema_of(hint)
        if name in described.params and "description" not in field_schema:
            field_schema["description"] = described.params[name]
        schema["properties"][name] = field_schema
        if is_required:
            required.append(name)
    if required:
        schema["required"] = required
    return schema


def _own_doc(cls: type) -> bool:
    """Whether ``cls`` has a docstring of its own (dataclasses make one up)."""
    doc = cls.__doc__ or ""
    return bool(doc) and not doc.startswith(f"{cls.__name__}(")


@dataclasses.dataclass
class Docstring:
    summary: str
    params: dict[str, str]


def parse_docstring(doc: str | None) -> Docstring:
    """The text of a docstring before its sections, and the descriptions of
    its ``Args:`` (or ``Attributes:``/``Fields:``) entries, Google style."""
    if not doc:
        return Docstring("", {})
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section = None
    current = None
    entry_indent = None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped in ("Args:", "Arguments:", "Parameters:", "Attributes:", "Fields:"):
            section, current, entry_indent = "params", None, None
            continue
        if stripped in ("Returns:", "Raises:", "Examples:", "Example:", "Notes:"):
            section = "other"
            continue
        if section is None:
            summary.append(line)
        elif section == "params" and stripped:
            head, colon, rest = stripped.partition(":")
            name = head.split(" ")[0].strip("*")
            if entry_indent is None:
                entry_indent = indent
            if colon and indent <= entry_indent and name.isidentifier():
                current = name
                params[current] = rest.strip()
            elif current is not None:
                params[current] = (params[current] + " " + stripped).strip()
    return Docstring("\n".join(summary).strip(), params)


@dataclasses.dataclass
class Signature:
    """What the SDK reads of a function: its arguments' schema and how to
    turn a JSON arguments object into its call."""

    description: str
    input_schema: dict
    output_schema: dict | None
    hints: dict[str, Any]
    returns: Any


def read_function(func: Callable, skip: tuple[str, ...] = ()) -> Signature:
    """The input schema of ``func``'s parameters (an object, no other keys
    allowed) and, when it returns an object type, its output schema."""
    hints = typing.get_type_hints(func, include_extras=True)
    described = parse_docstring(func.__doc__)
    properties: dict = {}
    required: list[str] = []
    for name, parameter in inspect.signature(func).parameters.items():
        if name in skip:
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise SchemaError(f"{func.__name__}: *{name} cannot be described as an argument")
        if name not in hints:
            raise SchemaError(f"{func.__name__}: argument `{name}` needs a type hint")
        schema = schema_of(hints[name])
        if name in described.params and "description" not in schema:
            schema["description"] = described.params[name]
        if parameter.default is inspect.Parameter.empty:
            required.append(name)
        elif parameter.default is not None and _jsonable(parameter.default):
            schema["default"] = to_json(parameter.default)
        properties[name] = schema
    input_schema: dict = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        input_schema["required"] = required
    returns = hints.get("return", Any)
    output_schema = None
    if is_object_type(returns):
        output_schema = schema_of(returns)
    return Signature(described.summary, input_schema, output_schema, hints, returns)


def is_object_type(hint: Any) -> bool:
    """Whether values of ``hint`` are JSON objects (structured output)."""
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return (
        (dataclasses.is_dataclass(hint) and isinstance(hint, type))
        or _is_typeddict(hint)
        or hint is dict
        or typing.get_origin(hint) is dict
    )


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, list, dict, enum.Enum)) or dataclasses.is_dataclass(value)


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data: dataclasses become objects, enums
    their values, tuples and sets lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any, hint: Any) -> Any:
    """``value`` (already valid against ``schema_of(hint)``) as ``hint``:
    objects become dataclasses, values enums, arrays tuples where asked."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return from_json(value, args[0])
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        inner = _optional_inner(hint)
        return from_json(value, inner) if inner is not None else value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = typing.get_type_hints(hint, include_extras=True)
        return hint(**{k: from_json(v, hints.get(k, Any)) for k, v in value.items()})
    if origin in (list, typing.List) and args:
        return [from_json(v, args[0]) for v in value]
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_json(v, args[0]) for v in value)
        return tuple(from_json(v, h) for v, h in zip(value, args))
    if origin is dict and len(args) == 2:
        return {k: from_json(v, args[1]) for k, v in value.items()}
    return value
