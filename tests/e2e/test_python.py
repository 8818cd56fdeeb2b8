"""Plugins written in Python (componentize-py and plugins/sdk-python): the
`risk` example served over both transports. (The hostile Python plugin is in
test_hostile_languages.py.)"""

import csv
import math
import statistics

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import ResourceTemplateReference

from harness import REPO, client_opener, http_host_serving, make_root, text_of

pytestmark = pytest.mark.anyio

DATA = REPO / "plugins" / "market-data" / "data"


@pytest.fixture(scope="module")
def python_host(tmp_path_factory, broker):
    root = make_root(tmp_path_factory.mktemp("python"), examples=("risk",))
    env = {"BROKER_URL": broker.url}
    host = http_host_serving(root, env, "risk__value_at_risk")
    yield root, host, env
    host.stop()


@pytest.fixture(params=["stdio", "http"])
def python_client(request, python_host):
    root, host, env = python_host
    return client_opener(request.param, root, env, host)


def closes(symbol: str) -> list[tuple[str, float]]:
    with open(DATA / symbol / "1d.csv", newline="") as file:
        return [(row["timestamp"], float(row["close"])) for row in csv.DictReader(file)]


def daily_returns(symbol: str) -> dict[str, float]:
    bars = closes(symbol)
    return {t1: c1 / c0 - 1 for (_, c0), (t1, c1) in zip(bars, bars[1:])}


# ---- risk --------------------------------------------------------------------------


async def test_risk_tools_have_schemas_from_type_hints_and_computed_annotations(python_client):
    async with python_client() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    sizing = tools["risk__position_size"]
    equity = sizing.input_schema["properties"]["equity"]
    assert equity["type"] == "number" and equity["exclusiveMinimum"] == 0
    assert "Account equity" in equity["description"]
    assert sizing.input_schema["properties"]["method"]["enum"] == ["fixed-fractional", "volatility-scaled"]
    assert sizing.input_schema["required"] == ["symbol", "equity"]
    assert sizing.input_schema["additionalProperties"] is False
    assert "shares" in sizing.output_schema["properties"]
    holding = tools["risk__value_at_risk"].input_schema["properties"]["positions"]
    assert holding["minItems"] == 1 and holding["items"]["required"] == ["symbol", "quantity"]
    # The policy mounts market data read-only: the host says so, whatever the plugin claims.
    assert sizing.annotations.read_only_hint is True
    assert sizing.annotations.open_world_hint is False


async def test_position_sizes_match_an_independent_computation(python_client):
    price = closes("AAPL")[-1][1]
    async with python_client() as client:
        fixed = await client.call_tool(
            "risk__position_size", {"symbol": "aapl", "equity": 100_000, "stop_distance_pct": 2}
        )
        assert not fixed.is_error, text_of(fixed)
        shares = math.floor(100_000 * 0.01 / (price * 0.02))
        assert fixed.structured_content["shares"] == shares
        assert fixed.structured_content["price"] == price
        assert fixed.structured_content["stop_price"] == pytest.approx(price * 0.98)

        scaled = await client.call_tool(
            "risk__position_size",
            {"symbol": "SPY", "equity": 50_000, "method": "volatility-scaled", "target_volatility_pct": 10},
        )
        assert not scaled.is_error, text_of(scaled)
        returns = list(daily_returns("SPY").values())[-20:]
        volatility = statistics.stdev(returns) * math.sqrt(252)
        spy = closes("SPY")[-1][1]
        expected = min(math.floor(50_000 * 0.10 / volatility / spy), math.floor(50_000 / spy))
        assert scaled.structured_content["shares"] == expected
        assert scaled.structured_content["annualised_volatility_pct"] == pytest.approx(volatility * 100, abs=1e-3)

        # Never more than the equity buys.
        capped = await client.call_tool(
            "risk__position_size",
            {"symbol": "AAPL", "equity": 1_000, "risk_fraction": 0.1, "stop_distance_pct": 0.1},
        )
        assert capped.structured_content["capped_by_equity"] is True
        assert capped.structured_content["shares"] == math.floor(1_000 / price)


async def test_value_at_risk_matches_an_independent_computation(python_client):
    holdings = {"AAPL": 100.0, "MSFT": -50.0}
    series = {s: daily_returns(s) for s in holdings}
    prices = {s: closes(s)[-1][1] for s in holdings}
    common = sorted(set(series["AAPL"]) & set(series["MSFT"]))[-120:]
    pnl = sorted(sum(q * prices[s] * series[s][t] for s, q in holdings.items()) for t in common)
    index = 6 - 1  # the 5 % tail of 120 returns: the 6 worst
    historical_var = -pnl[index]
    historical_es = -sum(pnl[: index + 1]) / (index + 1)
    mean, deviation = statistics.fmean(pnl), statistics.stdev(pnl)
    z = statistics.NormalDist().inv_cdf(0.99)
    parametric_var = z * deviation - mean
    positions = [{"symbol": s, "quantity": q} for s, q in holdings.items()]
    async with python_client() as client:
        historical = await client.call_tool("risk__value_at_risk", {"positions": positions})
        assert not historical.is_error, text_of(historical)
        report = historical.structured_content
        assert report["observations"] == 120
        assert report["var"] == pytest.approx(historical_var, abs=0.01)
        assert report["expected_shortfall"] == pytest.approx(historical_es, abs=0.01)
        assert report["expected_shortfall"] >= report["var"]

        parametric = await client.call_tool(
            "risk__value_at_risk",
            {"positions": positions, "method": "parametric", "confidence": 0.99, "horizon_days": 10},
        )
        assert parametric.structured_content["var"] == pytest.approx(parametric_var * math.sqrt(10), abs=0.01)


async def test_risk_refuses_nonsense_input_with_a_clear_message(python_client):
    async with python_client() as client:
        negative = await client.call_tool("risk__position_size", {"symbol": "AAPL", "equity": -5})
        assert negative.is_error and "/equity" in text_of(negative)
        unknown = await client.call_tool("risk__position_size", {"symbol": "NOPE", "equity": 1000, "stop_distance_pct": 1})
        assert unknown.is_error
        assert text_of(unknown) == "unknown symbol NOPE; known: AAPL, BTC-USD, EURUSD, MSFT, SPY"
        empty = await client.call_tool("risk__value_at_risk", {"positions": []})
        assert empty.is_error and "/positions" in text_of(empty)
        too_long = await client.call_tool(
            "risk__value_at_risk", {"positions": [{"symbol": "SPY", "quantity": 1}], "window": 2000}
        )
        assert too_long.is_error
        assert "only 249 1d returns in common; ask for a window of at most 249" in text_of(too_long)
        no_stop = await client.call_tool("risk__position_size", {"symbol": "AAPL", "equity": 1000})
        assert no_stop.is_error and "needs stop_distance_pct" in text_of(no_stop)
        flat = await client.call_tool(
            "risk__value_at_risk", {"positions": [{"symbol": "SPY", "quantity": 0}]}
        )
        assert flat.is_error and "worth nothing" in text_of(flat)
        # Each refusal is one clean line: no traceback.
        for result in (unknown, too_long, no_stop, flat):
            assert "Traceback" not in text_of(result) and "\n" not in text_of(result)


async def test_value_at_risk_reports_progress_per_symbol(python_client):
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    positions = [{"symbol": s, "quantity": 1} for s in ("AAPL", "MSFT", "SPY")]
    async with python_client() as client:
        result = await client.call_tool("risk__value_at_risk", {"positions": positions}, progress_callback=on_progress)
    assert not result.is_error, text_of(result)
    assert progress == [(1, 3, "loaded AAPL"), (2, 3, "loaded MSFT"), (3, 3, "loaded SPY")]


async def test_risk_resources_prompts_and_completions(python_client):
    async with python_client() as client:
        methods = await client.read_resource("risk://methods")
        assert methods.contents[0].mime_type == "text/markdown"
        assert "Historical value-at-risk" in methods.contents[0].text
        volatility = await client.read_resource("risk://volatility/msft")
        assert '"symbol": "MSFT"' in volatility.contents[0].text
        with pytest.raises(MCPError) as missing:
            await client.read_resource("risk://nothing")
        assert "risk://nothing" in missing.value.error.message
        ref = ResourceTemplateReference(uri="risk://volatility/{symbol}")
        completion = await client.complete(ref, {"name": "symbol", "value": "e"})
        assert completion.completion.values == ["EURUSD"]
        prompt = await client.get_prompt("risk__risk_review", {"portfolio": "100 AAPL", "equity": "50000"})
        text = prompt.messages[0].content.text
        assert "100 AAPL" in text and "risk__position_size" in text
        with pytest.raises(MCPError):
            await client.get_prompt("risk__risk_review", {})
