"""The research workflow through the Python SDK, over stdio and HTTP in
both revisions: the bars resource template and its completions, the
research prompts, and backtests with progress, structured metrics and
cancellation."""

import json
import time
import uuid

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import PromptReference, ResourceTemplateReference

from harness import HttpHost, RawHttp, RawModern, audit_records, make_root, stdio_params, text_of

pytestmark = pytest.mark.anyio

BARS = "market://bars/{symbol}/{timeframe}"
SMA_CROSS = {
    "description": "Fast SMA crossing the slow one starts a trend worth following.",
    "symbols": ["SPY"],
    "timeframe": "1d",
    "indicators": [
        {"id": "sma_fast", "kind": "sma", "params": {"period": 5}},
        {"id": "sma_slow", "kind": "sma", "params": {"period": 20}},
        {"id": "rsi", "kind": "rsi", "params": {"period": 14}},
    ],
    "entry": "sma_fast crosses_above sma_slow",
    "exit": "sma_fast crosses_below sma_slow or rsi > 80",
    "risk": {"position_size_pct": 100, "stop_loss_pct": 5},
}


async def test_bars_template_is_listed_and_read(connect):
    async with connect() as client:
        templates = (await client.list_resource_templates()).resource_templates
        bars = next(t for t in templates if t.uri_template == BARS)
        assert bars.mime_type == "text/csv"
        read = await client.read_resource("market://bars/SPY/1d")
        contents = read.contents[0]
        assert contents.uri == "market://bars/SPY/1d"
        assert contents.mime_type == "text/csv"
        lines = contents.text.splitlines()
        assert lines[0] == "timestamp,open,high,low,close,volume"
        assert len(lines) == 251
        for missing in ("market://bars/NOPE/1d", "market://bars/SPY/1w", "market://bars/EURUSD/1m"):
            with pytest.raises(MCPError) as raised:
                await client.read_resource(missing)
            # Not found, naming the URI (SEP-2164: in the error's data too).
            assert raised.value.error.data == {"uri": missing}
            assert missing in raised.value.error.message


async def test_bars_template_arguments_complete_from_the_stored_data(connect):
    ref = ResourceTemplateReference(uri=BARS)
    async with connect() as client:
        symbols = await client.complete(ref, {"name": "symbol", "value": "S"})
        assert symbols.completion.values == ["SPY"]
        everything = await client.complete(ref, {"name": "symbol", "value": ""})
        assert everything.completion.values == ["AAPL", "BTC-USD", "EURUSD", "MSFT", "SPY"]
        stored = await client.complete(ref, {"name": "timeframe", "value": ""}, {"symbol": "SPY"})
        assert stored.completion.values == ["1h", "1d"]
        hourly = await client.complete(ref, {"name": "timeframe", "value": "1h"}, {"symbol": "SPY"})
        assert hourly.completion.values == ["1h"]


async def test_research_session_prompt_takes_a_focus(connect):
    async with connect() as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        session = prompts["indicators__research_session"]
        assert [(a.name, a.required) for a in session.arguments] == [("focus", True)]
        assert "indicators__optimise_strategy" in prompts
        result = await client.get_prompt("indicators__research_session", {"focus": "momentum on BTC-USD"})
        text = result.messages[0].content.text
        assert "momentum on BTC-USD" in text
        for step in ("Hypothesis", "market-data__get_bars", "indicators__compute_indicator",
                     "backtest__run_backtest", "Insights"):
            assert step in text, step
        with pytest.raises(MCPError) as raised:
            await client.get_prompt("indicators__research_session", {})
        assert "focus" in raised.value.error.message
        focus = await client.complete(PromptReference(name="indicators__research_session"),
                                      {"name": "focus", "value": "m"})
        assert focus.completion.values == ["mean reversion", "momentum", "moving average crossovers"]


async def test_backtest_reports_progress_and_metrics(connect):
    name = f"sma_cross_{uuid.uuid4().hex[:8]}"
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    async with connect() as client:
        created = await client.call_tool("strategies__create_strategy", {"name": name, "definition": SMA_CROSS})
        assert not created.is_error, text_of(created)
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["backtest__run_backtest"].annotations.read_only_hint is True
        result = await client.call_tool(
            "backtest__run_backtest",
            {"strategy": name, "symbol": "SPY", "timeframe": "1d", "start": "2024-02-01"},
            progress_callback=on_progress,
        )
    assert not result.is_error, text_of(result)
    report = result.structured_content
    assert json.loads(text_of(result)) == report
    assert report["strategy"] == name and report["symbol"] == "SPY"
    assert report["period"][0].startswith("2024-02-01")
    for metric in ("total_return_pct", "buy_and_hold_return_pct", "max_drawdown_pct", "final_equity"):
        assert isinstance(report[metric], (int, float)), metric
    assert report["trade_count"] >= 1
    assert 0 <= report["max_drawdown_pct"] < 100
    assert report["final_equity"] == pytest.approx(10_000 * (1 + report["total_return_pct"] / 100), rel=1e-3)
    assert len(progress) >= 10
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert progress[-1] == (report["bars"], report["bars"])


async def test_backtest_errors_name_what_is_missing(connect):
    async with connect() as client:
        missing = await client.call_tool(
            "backtest__run_backtest", {"strategy": "no_such_strategy", "symbol": "SPY", "timeframe": "1d"})
        assert missing.is_error and "strategies://list" in text_of(missing)
        bad = await client.call_tool(
            "backtest__run_backtest", {"strategy": "../../etc", "symbol": "SPY", "timeframe": "1d"})
        assert bad.is_error and "/strategy" in text_of(bad)


@pytest.fixture(scope="module")
def big_root(tmp_path_factory):
    """A root with years of minute bars for one symbol: a backtest long
    enough to cancel, and a saved strategy to run on it."""
    root = make_root(tmp_path_factory.mktemp("big"))
    series = root / "plugins" / "market-data" / "data" / "BIG"
    series.mkdir()
    rows = ["timestamp,open,high,low,close,volume"]
    price = 100.0
    for i in range(600_000):
        price *= 1.0002 if (i // 700) % 2 else 0.9998
        day, minute = divmod(i, 1440)
        rows.append(f"2020-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T{minute // 60:02d}:{minute % 60:02d}:00Z,"
                    f"{price:.4f},{price * 1.001:.4f},{price * 0.999:.4f},{price:.4f},1000")
    (series / "1m.csv").write_text("\n".join(rows) + "\n")
    saved = root / "plugins" / "strategies" / "saved"
    saved.mkdir(parents=True, exist_ok=True)
    (saved / "slow_cross.json").write_text(json.dumps({"name": "slow_cross", "config": {**SMA_CROSS, "symbols": ["BIG"], "timeframe": "1m"}}))
    return root


@pytest.fixture(scope="module")
def big_http(big_root):
    host = HttpHost(big_root, None, "--audit-log", str(big_root / "audit.jsonl"))
    yield host
    host.stop()


@pytest.mark.parametrize("transport,mode", [("stdio", "auto"), ("stdio", "legacy"), ("http", "auto"), ("http", "legacy")])
async def test_cancelling_a_running_backtest_ends_it_promptly(big_root, big_http, transport, mode):
    server = stdio_params(big_root) if transport == "stdio" else big_http.url
    started = anyio.Event()
    async with Client(server, mode=mode) as client:

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            started.set()

        async with anyio.create_task_group() as group:

            async def backtest() -> None:
                await client.call_tool(
                    "backtest__run_backtest",
                    {"strategy": "slow_cross", "symbol": "BIG", "timeframe": "1m"},
                    progress_callback=on_progress,
                )
                pytest.fail("the backtest finished before it could be cancelled")

            group.start_soon(backtest)
            with anyio.fail_after(60):
                await started.wait()
            cancelled_at = time.monotonic()
            group.cancel_scope.cancel()

        # The host dropped the sandbox: it answers at once, and the next
        # backtest call gets a sandbox of its own.
        with anyio.fail_after(5):
            quote = await client.call_tool("market-data__get_quote", {"symbol": "SPY"})
        assert not quote.is_error, text_of(quote)
        assert time.monotonic() - cancelled_at < 5
    if transport == "http":
        records = audit_records(big_root, until=lambda r: r.get("outcome") == "cancelled")
        assert any(r.get("target") == "backtest__run_backtest" and r.get("outcome") == "cancelled"
                   for r in records)


TASKS = {"extensions": {"io.modelcontextprotocol/tasks": {}}}


def poll(raw: RawModern, task_id: str, until) -> dict:
    deadline = time.monotonic() + 60
    while True:
        task = raw.request("tasks/get", {"taskId": task_id})["result"]
        if until(task) or time.monotonic() > deadline:
            return task
        time.sleep(0.05)


def test_backtests_run_as_tasks_for_clients_that_take_them(big_root, big_http):
    """run_backtest is long-running: a 2026-07-28 client declaring the tasks
    extension gets a task handle at once, watches its progress in tasks/get
    and can cancel it; other clients get the result directly (above)."""
    raw = RawModern(big_http.url, TASKS, name="task-taker")
    created = raw.request("tools/call", {"name": "backtest__run_backtest",
                                         "arguments": {"strategy": "slow_cross", "symbol": "SPY", "timeframe": "1d"}})
    handle = created["result"]
    assert handle["resultType"] == "task" and handle["status"] == "working", handle
    done = poll(raw, handle["taskId"], lambda t: t["status"] != "working")
    assert done["status"] == "completed", done
    assert done["result"]["structuredContent"]["symbol"] == "SPY"

    long = raw.request("tools/call", {"name": "backtest__run_backtest",
                                      "arguments": {"strategy": "slow_cross", "symbol": "BIG", "timeframe": "1m"}})
    task_id = long["result"]["taskId"]
    running = poll(raw, task_id, lambda t: "simulating" in (t.get("statusMessage") or ""))
    assert running["status"] == "working", running
    assert raw.request("tasks/cancel", {"taskId": task_id})["result"]["resultType"] == "complete"
    cancelled = poll(raw, task_id, lambda t: t["status"] != "working")
    assert cancelled["status"] == "cancelled", cancelled
    assert "result" not in cancelled

    unknown = raw.request("tasks/get", {"taskId": "0" * 32})
    assert unknown["error"]["code"] == -32602
    # Without the extension, the same tool answers directly; and on a
    # 2025-11-25 session the extension is ignored (it belongs to 2026-07-28).
    backtest = {"name": "backtest__run_backtest",
                "arguments": {"strategy": "slow_cross", "symbol": "SPY", "timeframe": "1d"}}
    for client in (RawModern(big_http.url), RawHttp(big_http.url, TASKS)):
        direct = client.request("tools/call", backtest)
        assert direct["result"]["structuredContent"]["symbol"] == "SPY", direct
    # A 2026-07-28 request's audit record names the client its `_meta` names.
    calls = [r for r in audit_records(big_root, until=lambda r: r.get("client", {}).get("name") == "task-taker")
             if r.get("event") == "call"]
    assert any(r["client"]["name"] == "task-taker" for r in calls)
