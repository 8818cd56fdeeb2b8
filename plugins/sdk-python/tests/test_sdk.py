"""The SDK's pure parts, natively: schemas from type hints, arguments in,
results out, and every failure a clean tool error."""

import enum
import json
import pathlib
import sys
from dataclasses import dataclass, field
from typing import Annotated, Literal, Optional, TypedDict

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from mcp_plugin import Field, InvalidArguments, NotFound, Plugin, PluginDefinitionError, ToolError  # noqa: E402
from mcp_plugin.schema import parse_docstring, read_function, schema_of  # noqa: E402


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


@dataclass
class Leg:
    """One leg of a spread.

    Attributes:
        symbol: The instrument.
        weight: Its weight,
            negative for short.
    """

    symbol: str
    weight: float = 1.0


class Quote(TypedDict):
    symbol: str
    price: float


def test_scalars_containers_and_constraints_map_to_json_schema():
    assert schema_of(int) == {"type": "integer"}
    assert schema_of(list[float]) == {"type": "array", "items": {"type": "number"}}
    assert schema_of(dict[str, int]) == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert schema_of(Optional[str]) == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert schema_of(str | None) == schema_of(Optional[str])
    assert schema_of(Literal["1d", "1h"]) == {"enum": ["1d", "1h"], "type": "string"}
    assert schema_of(Side) == {"enum": ["buy", "sell"], "type": "string"}
    assert schema_of(tuple[int, str]) == {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "minItems": 2,
        "maxItems": 2,
    }
    constrained = schema_of(Annotated[float, Field(gt=0, le=1, description="A share")])
    assert constrained == {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "A share"}
    assert schema_of(Annotated[list[int], Field(min_length=1, max_length=3)]) == {
        "type": "array",
        "items": {"type": "integer"},
        "minItems": 1,
        "maxItems": 3,
    }
    assert schema_of(Annotated[str, Field(max_length=5, pattern="^[A-Z]+$")]) == {
        "type": "string",
        "maxLength": 5,
        "pattern": "^[A-Z]+$",
    }


def test_dataclasses_and_typeddicts_are_objects_described_by_their_docstrings():
    leg = schema_of(Leg)
    assert leg["description"] == "One leg of a spread."
    assert leg["required"] == ["symbol"]
    assert leg["properties"]["weight"]["description"] == "Its weight, negative for short."
    assert leg["additionalProperties"] is False
    quote = schema_of(Quote)
    assert quote["required"] == ["symbol", "price"] and quote["properties"]["price"] == {"type": "number"}


def test_a_type_json_cannot_carry_is_refused_at_build_time():
    with pytest.raises(TypeError, match="cannot describe"):
        schema_of(bytes)
    with pytest.raises(TypeError, match="keys must be str"):
        schema_of(dict[int, str])
    plugin = Plugin("p", "1")
    with pytest.raises(TypeError, match="needs a type hint"):

        @plugin.tool
        def untyped(x):
            """Has no hint."""


def test_docstring_args_describe_parameters_and_the_summary_the_tool():
    doc = parse_docstring(
        """Sizes a position.

        More text.

        Args:
            equity: The account's equity,
                in dollars.
            symbol (str): The symbol.

        Returns:
            A size.
        """
    )
    assert doc.summary == "Sizes a position.\n\nMore text."
    assert doc.params == {"equity": "The account's equity, in dollars.", "symbol": "The symbol."}


def make_plugin() -> Plugin:
    plugin = Plugin("p", "1.0.0")

    @plugin.tool(effects=["read-files"], read_only=True)
    def spread(legs: list[Leg], side: Side = Side.BUY, note: Optional[str] = None) -> Quote:
        """Prices a spread.

        Args:
            legs: The legs.
        """
        assert isinstance(legs[0], Leg) and isinstance(side, Side)
        return {"symbol": "+".join(leg.symbol for leg in legs), "price": sum(leg.weight for leg in legs)}

    @plugin.tool
    def fail(kind: str) -> str:
        """Fails as asked."""
        if kind == "tool":
            raise ToolError("unknown symbol XYZ")
        if kind == "exit":
            raise SystemExit(3)
        raise KeyError(kind)

    @plugin.resource_template("p://bars/{symbol}/{timeframe}")
    def bars(symbol: str, timeframe: str) -> str:
        """Bars."""
        return f"{symbol}@{timeframe}"

    @plugin.prompt
    def review(portfolio: str, horizon: str = "1d") -> str:
        """Reviews a portfolio.

        Args:
            portfolio: The holdings.
        """
        return f"review {portfolio} over {horizon}"

    @plugin.completion(template="p://bars/{symbol}/{timeframe}", argument="symbol")
    def symbols(value: str, context: dict) -> list[str]:
        return [s for s in ("AAPL", "AMZN", "MSFT") if s.startswith(value.upper())]

    return plugin


def test_a_tool_call_converts_arguments_in_and_structured_output_out():
    plugin = make_plugin()
    spec = plugin.tools["spread"]
    assert spec.effects == ("read-files",)
    assert spec.signature.input_schema["properties"]["side"]["default"] == "buy"
    assert spec.signature.output_schema["required"] == ["symbol", "price"]
    outcome = plugin.call("spread", json.dumps({"legs": [{"symbol": "A", "weight": 2}, {"symbol": "B"}], "side": "sell"}))
    assert not outcome.is_error, outcome.text
    assert outcome.structured == {"symbol": "A+B", "price": 3.0}
    assert json.loads(outcome.text) == outcome.structured


def test_every_failure_is_a_one_line_tool_error_without_a_traceback():
    plugin = make_plugin()
    assert plugin.call("fail", '{"kind": "tool"}').text == "unknown symbol XYZ"
    crashed = plugin.call("fail", '{"kind": "other"}')
    assert crashed.is_error and crashed.text == "fail failed: KeyError: 'other'"
    exited = plugin.call("fail", '{"kind": "exit"}')
    assert exited.is_error and exited.text == "fail failed: SystemExit: 3"
    assert plugin.call("nope", "{}").text == "unknown tool `nope`"
    assert plugin.call("fail", "not json").is_error


def test_templates_prompts_and_completions_dispatch():
    plugin = make_plugin()
    assert plugin.read("p://bars/BRK%2EB/1d") == [("p://bars/BRK%2EB/1d", "text/plain", "BRK.B@1d")]
    with pytest.raises(NotFound):
        plugin.read("p://bars/AAPL")
    assert plugin.render("review", {"portfolio": "1 SPY"}) == ("Reviews a portfolio.", [("user", "review 1 SPY over 1d")])
    with pytest.raises(InvalidArguments, match="needs portfolio"):
        plugin.render("review", {})
    with pytest.raises(InvalidArguments, match="takes no extra"):
        plugin.render("review", {"portfolio": "x", "extra": "y"})
    assert plugin.prompts["review"].arguments == [("portfolio", "The holdings.", True), ("horizon", None, False)]
    assert plugin.suggest("template", "p://bars/{symbol}/{timeframe}", "symbol", "a", {}) == ["AAPL", "AMZN"]
    assert plugin.suggest("prompt", "review", "portfolio", "", {}) == []


def test_declaration_mistakes_are_caught_when_the_plugin_is_built():
    plugin = Plugin("p", "1")
    with pytest.raises(PluginDefinitionError, match="unknown effects"):

        @plugin.tool(effects=["launch-missiles"])
        def a() -> str:
            """A."""

    with pytest.raises(PluginDefinitionError, match="docstring"):

        @plugin.tool
        def b() -> str:
            pass

    with pytest.raises(PluginDefinitionError, match="name"):

        @plugin.tool(name="has space")
        def c() -> str:
            """C."""

    assert plugin.handler() is None  # natively: no component bindings to export through


def test_buckets_run_natively_in_memory():
    """Outside a component a bucket is a dict, so plugin logic using state
    is testable natively with the same calls."""
    from mcp_plugin import Bucket

    notes = Bucket.open("notes-native-test")
    assert notes.get("k") is None and not notes.exists("k")
    notes.set_json("k", {"a": 1})
    assert notes.get_json("k") == {"a": 1} and notes.exists("k")
    assert notes.increment("n", 41) == 41 and notes.increment("n") == 42
    assert notes.update_json("u", lambda v: (v or 0) + 1) == 1
    notes.set_many({"x1": b"1", "x2": b"2"})
    assert notes.get_many(["x1", "x3"]) == [b"1", None]
    assert notes.keys() == ["k", "n", "u", "x1", "x2"]
    notes.delete("k")
    assert Bucket.open("notes-native-test").keys() == ["n", "u", "x1", "x2"]
