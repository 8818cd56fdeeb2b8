"""The MCP Inspector CLI (Node) against `host serve`, over stdio and HTTP:
a second official client, written in another language."""

import json
import subprocess

import pytest

from harness import HOST, NODE, NODE_MODULES, host_args, node_env

INSPECTOR = NODE_MODULES / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build" / "index.js"


@pytest.fixture(params=["stdio", "http"])
def inspect(request, root, broker_env, http_host):
    """Runs one Inspector CLI method against the host; its JSON answer."""

    def run(*method: str) -> dict:
        if request.param == "stdio":
            target = [str(HOST), "serve", *host_args(root)]
        else:
            target = [http_host.url]
        done = subprocess.run(
            [str(NODE), str(INSPECTOR), "--cli", *target, *method],
            capture_output=True, text=True, timeout=120, env={**node_env(), **broker_env},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    return run


def test_lists_and_calls_tools(inspect):
    tools = {t["name"]: t for t in inspect("--method", "tools/list")["tools"]}
    assert {"market-data__get_quote", "backtest__run_backtest", "strategies__create_strategy"} <= set(tools)
    assert tools["market-data__get_quote"]["annotations"]["readOnlyHint"] is True
    quote = inspect("--method", "tools/call", "--tool-name", "market-data__get_quote", "--tool-arg", "symbol=SPY")
    assert not quote.get("isError"), quote
    assert quote["structuredContent"]["symbol"] == "SPY"


def test_reads_resources_and_templates(inspect):
    templates = inspect("--method", "resources/templates/list")["resourceTemplates"]
    assert "market://bars/{symbol}/{timeframe}" in [t["uriTemplate"] for t in templates]
    bars = inspect("--method", "resources/read", "--uri", "market://bars/AAPL/1d")["contents"][0]
    assert bars["mimeType"] == "text/csv"
    assert bars["text"].startswith("timestamp,open,high,low,close,volume\n")
    symbols = json.loads(inspect("--method", "resources/read", "--uri", "market://symbols")["contents"][0]["text"])
    assert "SPY" in [s["symbol"] for s in symbols]


def test_gets_prompts(inspect):
    prompts = [p["name"] for p in inspect("--method", "prompts/list")["prompts"]]
    assert "indicators__research_session" in prompts
    session = inspect("--method", "prompts/get", "--prompt-name", "indicators__research_session",
                      "--prompt-args", "focus=mean reversion on SPY")
    assert "mean reversion on SPY" in session["messages"][0]["content"]["text"]


def test_runs_the_readme_backtest_on_the_shipped_strategy(inspect):
    """The Inspector declares the tasks extension whatever the protocol; on a
    2025-11-25 session that is ignored, so the backtest answers directly."""
    result = inspect("--method", "tools/call", "--tool-name", "backtest__run_backtest",
                     "--tool-arg", "strategy=sma_cross", "--tool-arg", "symbol=SPY", "--tool-arg", "timeframe=1d")
    assert not result.get("isError"), result
    report = result["structuredContent"]
    assert report["strategy"] == "sma_cross" and report["symbol"] == "SPY"
