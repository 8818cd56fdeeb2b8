"""The example plugins through the official Python SDK, over stdio and HTTP,
in both protocol revisions: auto (2026-07-28, server/discover) and legacy
(2025-11-25, initialize)."""

import json
import uuid

import pytest
from mcp.shared.exceptions import MCPError

from harness import text_of

pytestmark = pytest.mark.anyio



async def test_lists_every_example_tool_with_description_schema_and_annotations(connect):
    async with connect() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    expected = {
        "market-data__get_quote",
        "market-data__get_bars",
        "indicators__compute_indicator",
        "strategies__create_strategy",
        "strategies__list_strategies",
        "strategies__get_strategy",
        "broker__get_positions",
    }
    assert expected <= set(tools)
    for tool in (tools[name] for name in expected):
        assert len(tool.description) > 20, tool.name
        assert tool.input_schema["type"] == "object", tool.name
        assert tool.annotations is not None, tool.name
    assert tools["market-data__get_bars"].input_schema["required"] == ["symbol", "timeframe"]
    assert tools["market-data__get_quote"].output_schema["type"] == "object"
    for name in ("market-data__get_quote", "market-data__get_bars", "indicators__compute_indicator"):
        assert tools[name].annotations.read_only_hint is True, name
        assert tools[name].annotations.open_world_hint is False, name
    create = tools["strategies__create_strategy"].annotations
    assert create.read_only_hint is False
    assert create.destructive_hint is False
    assert tools["strategies__list_strategies"].annotations.read_only_hint is True


# Argument names agent frameworks inject themselves: LangChain's tools take
# `config`, `callbacks` and `run_manager`, so a tool asking for one of them
# cannot be called from a LangChain agent.
RESERVED_BY_AGENT_FRAMEWORKS = {"config", "callbacks", "run_manager"}


async def test_no_example_tool_takes_an_argument_agent_frameworks_reserve(connect):
    async with connect() as client:
        tools = (await client.list_tools()).tools
    for tool in tools:
        taken = RESERVED_BY_AGENT_FRAMEWORKS & set(tool.input_schema.get("properties", {}))
        assert not taken, (tool.name, taken)


async def test_market_data_tools(connect):
    async with connect() as client:
        quote = await client.call_tool("market-data__get_quote", {"symbol": "AAPL"})
        assert not quote.is_error, text_of(quote)
        assert quote.structured_content["symbol"] == "AAPL"
        assert quote.structured_content["price"] > 0
        assert json.loads(text_of(quote)) == quote.structured_content

        bars = await client.call_tool(
            "market-data__get_bars",
            {"symbol": "SPY", "timeframe": "1d", "start": "2024-03-01", "end": "2024-03-31"},
        )
        assert not bars.is_error, text_of(bars)
        data = bars.structured_content
        assert data["count"] == len(data["bars"]) == 21
        assert data["range"] == ["2024-03-01T00:00:00Z", "2024-03-29T00:00:00Z"]
        for bar in data["bars"]:
            assert bar["low"] <= min(bar["open"], bar["close"]) <= max(bar["open"], bar["close"]) <= bar["high"]

        limited = await client.call_tool("market-data__get_bars", {"symbol": "MSFT", "timeframe": "1h", "limit": 5})
        assert limited.structured_content["count"] == 5

        unknown = await client.call_tool("market-data__get_quote", {"symbol": "NOPE"})
        assert unknown.is_error
        assert "unknown symbol NOPE" in text_of(unknown)
        assert "AAPL" in text_of(unknown) and "SPY" in text_of(unknown)

        missing = await client.call_tool("market-data__get_bars", {"symbol": "AAPL", "timeframe": "5m"})
        assert missing.is_error
        assert "stored timeframes: 1h, 1d" in text_of(missing)


@pytest.mark.parametrize(
    "indicator, params, series",
    [
        ("sma", {"period": 3}, ["sma"]),
        ("ema", {"period": 3}, ["ema"]),
        ("rsi", {"period": 5}, ["rsi"]),
        ("macd", {"fast": 3, "slow": 6, "signal": 3}, ["histogram", "macd", "signal"]),
        ("bollinger", {"period": 5, "std_dev": 2}, ["lower", "middle", "upper"]),
    ],
)
async def test_compute_indicator(connect, indicator, params, series):
    closes = [100, 101, 103, 102, 105, 107, 106, 108, 110, 109, 111, 113]
    async with connect() as client:
        result = await client.call_tool(
            "indicators__compute_indicator",
            {"indicator": indicator, "closes": closes, "params": params},
        )
    assert not result.is_error, text_of(result)
    output = result.structured_content
    assert sorted(output["series"]) == series
    for values in output["series"].values():
        assert len(values) == len(closes)
        assert values[-1] is not None
    if indicator == "sma":
        assert output["series"]["sma"][:3] == [None, None, pytest.approx(101.333333)]


async def test_strategies_round_trip(connect, root):
    name = f"sma_cross_{uuid.uuid4().hex[:8]}"
    config = {
        "description": "Fast SMA crossing a slow one on SPY.",
        "symbols": ["SPY"],
        "timeframe": "1d",
        "indicators": [
            {"id": "sma_fast", "kind": "sma", "params": {"period": 10}},
            {"id": "sma_slow", "kind": "sma", "params": {"period": 30}},
        ],
        "entry": "sma_fast crosses_above sma_slow",
        "exit": "sma_fast crosses_below sma_slow",
        "risk": {"position_size_pct": 10, "stop_loss_pct": 5},
    }
    async with connect() as client:
        created = await client.call_tool("strategies__create_strategy", {"name": name, "definition": config})
        assert not created.is_error, text_of(created)
        assert (root / "plugins" / "strategies" / "saved" / f"{name}.json").is_file()

        again = await client.call_tool("strategies__create_strategy", {"name": name, "definition": config})
        assert again.is_error and "exists already" in text_of(again)

        listed = await client.call_tool("strategies__list_strategies", {})
        assert name in listed.structured_content["strategies"]

        fetched = await client.call_tool("strategies__get_strategy", {"name": name})
        assert fetched.structured_content == {"name": name, "config": config}

        bad_rule = dict(config, entry="rsi_fast > 70")
        rejected = await client.call_tool("strategies__create_strategy", {"name": name + "_x", "definition": bad_rule})
        assert rejected.is_error and "rsi_fast" in text_of(rejected)


async def test_schema_invalid_arguments_name_the_field_and_never_run_the_plugin(connect, root):
    saved = root / "plugins" / "strategies" / "saved"
    before = sorted(saved.iterdir()) if saved.exists() else []
    async with connect() as client:
        result = await client.call_tool(
            "strategies__create_strategy",
            {"name": "Bad Name!", "definition": {"symbols": [], "timeframe": "2d"}},
        )
        assert result.is_error
        message = text_of(result)
        assert message.startswith("invalid arguments for strategies__create_strategy")
        assert "/name" in message

        bars = await client.call_tool("market-data__get_bars", {"symbol": "AAPL", "timeframe": "2d"})
        assert bars.is_error and "/timeframe" in text_of(bars)

        extra = await client.call_tool("market-data__get_quote", {"symbol": "AAPL", "nope": 1})
        assert extra.is_error and "nope" in text_of(extra)

        missing = await client.call_tool("indicators__compute_indicator", {})
        assert missing.is_error and "indicator" in text_of(missing)
    after = sorted(saved.iterdir()) if saved.exists() else []
    assert after == before


async def test_unknown_tool_is_a_protocol_error(connect):
    async with connect() as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("market-data__no_such_tool", {})
        assert raised.value.error.code == -32602
        assert "unknown tool" in raised.value.error.message
        # The connection still serves.
        assert (await client.call_tool("market-data__get_quote", {"symbol": "SPY"})).is_error is False


async def test_resources(connect):
    async with connect() as client:
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"market://symbols", "indicators://list", "strategies://list"} <= uris
        symbols = json.loads((await client.read_resource("market://symbols")).contents[0].text)
        assert [s["symbol"] for s in symbols] == ["AAPL", "BTC-USD", "EURUSD", "MSFT", "SPY"]
        indicators = json.loads((await client.read_resource("indicators://list")).contents[0].text)
        assert {i["name"] for i in indicators} == {"sma", "ema", "rsi", "macd", "bollinger"}
        with pytest.raises(MCPError):
            await client.read_resource("nowhere://nothing")
