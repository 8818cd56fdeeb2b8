"""Plugins written in TypeScript (componentize-js and plugins/sdk-js): the
`screener` example served over both transports. (The hostile JavaScript
plugin is in test_hostile_languages.py.)"""

import csv
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import PromptReference

from harness import REPO, client_opener, http_host_serving, make_root, text_of

pytestmark = pytest.mark.anyio

DATA = REPO / "plugins" / "market-data" / "data"


class WatchLists(BaseHTTPRequestHandler):
    """Watch lists, as a desk's service would serve them."""

    def do_GET(self):
        bodies = {
            "/watchlist": json.dumps({"symbols": ["spy", "aapl", "MSFT"]}),
            "/watchlist.txt": "SPY\nBTC-USD\n",
            "/watchlist-unknown": json.dumps({"symbols": ["SPY", "NOPE"]}),
            "/secret": "not for plugins",
        }
        body = bodies.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write((body or "").encode())

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def js_host(tmp_path_factory, broker):
    root = make_root(tmp_path_factory.mktemp("javascript"), examples=("screener",))
    lists = ThreadingHTTPServer(("127.0.0.1", 0), WatchLists)
    threading.Thread(target=lists.serve_forever, daemon=True).start()
    env = {"BROKER_URL": broker.url}
    host = http_host_serving(root, env, "screener__screen")
    yield root, host, env, f"http://127.0.0.1:{lists.server_address[1]}"
    host.stop()
    lists.shutdown()


@pytest.fixture(params=["stdio", "http"])
def js_client(request, js_host):
    root, host, env, _ = js_host
    return client_opener(request.param, root, env, host)


def metrics(symbol: str, window: int = 20) -> dict:
    with open(DATA / symbol / "1d.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    closes = [float(r["close"]) for r in rows]
    volumes = [float(r["volume"]) for r in rows]
    period = 14
    changes = [b - a for a, b in zip(closes, closes[1:])]
    gain = sum(max(c, 0) for c in changes[:period]) / period
    loss = sum(max(-c, 0) for c in changes[:period]) / period
    for c in changes[period:]:
        gain = (gain * (period - 1) + max(c, 0)) / period
        loss = (loss * (period - 1) + max(-c, 0)) / period
    return {
        "price": closes[-1],
        "return_pct": (closes[-1] / closes[-1 - window] - 1) * 100,
        "avg_volume": sum(volumes[-window:]) / window,
        "rsi": 100 - 100 / (1 + gain / loss),
    }


async def test_screener_schemas_come_from_zod_and_annotations_are_computed(js_client):
    async with js_client() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    screen = tools["screener__screen"]
    assert screen.input_schema["properties"]["rank_by"]["enum"] == ["return", "volume", "rsi", "price"]
    assert screen.input_schema["properties"]["min_price"]["exclusiveMinimum"] == 0
    assert screen.output_schema["properties"]["matches"]["items"]["required"] == [
        "symbol", "price", "return_pct", "avg_volume", "rsi"]
    assert screen.annotations.read_only_hint is True and screen.annotations.open_world_hint is False
    watch = tools["screener__screen_watchlist"]
    assert watch.input_schema["required"] == ["url"]
    # It may read the network: the host says so, whatever the plugin claims.
    assert watch.annotations.open_world_hint is True


async def test_screen_matches_an_independent_computation(js_client):
    expected = {s: metrics(s) for s in ("AAPL", "BTC-USD", "EURUSD", "MSFT", "SPY")}
    async with js_client() as client:
        result = await client.call_tool("screener__screen", {"rsi_below": 50, "rank_by": "rsi"})
        assert not result.is_error, text_of(result)
    report = result.structured_content
    assert report["screened"] == 5
    wanted = sorted((s for s, m in expected.items() if m["rsi"] < 50), key=lambda s: -expected[s]["rsi"])
    assert [m["symbol"] for m in report["matches"]] == wanted
    for match in report["matches"]:
        mine = expected[match["symbol"]]
        assert match["price"] == mine["price"]
        assert match["rsi"] == pytest.approx(mine["rsi"], abs=1e-3)
        assert match["return_pct"] == pytest.approx(mine["return_pct"], abs=1e-3)
        assert match["avg_volume"] == pytest.approx(mine["avg_volume"], abs=0.01)
    assert report["rules"] == ["RSI(14) < 50", "ranked by rsi, at most 10"]


async def test_screener_refuses_nonsense_input_with_a_clear_message(js_client):
    async with js_client() as client:
        negative = await client.call_tool("screener__screen", {"min_price": -5})
        assert negative.is_error and "/min_price" in text_of(negative)
        crossed = await client.call_tool("screener__screen", {"min_price": 500, "max_price": 10})
        assert text_of(crossed) == "min_price 500 is above max_price 10: nothing could match"
        window = await client.call_tool("screener__screen", {"window": 250})
        assert window.is_error and "ask for a window below 250" in text_of(window), text_of(window)
        for result in (crossed, window):
            assert "\n" not in text_of(result) and " at " not in text_of(result)


async def test_a_watch_list_is_read_under_the_grant_and_screened(js_client, js_host):
    lists = js_host[3]
    progress = []

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    async with js_client() as client:
        result = await client.call_tool(
            "screener__screen_watchlist", {"url": f"{lists}/watchlist", "rank_by": "price"}, progress_callback=on_progress
        )
        assert not result.is_error, text_of(result)
        assert [m["symbol"] for m in result.structured_content["matches"]] == ["MSFT", "SPY", "AAPL"]
        assert progress == [(1, 3, "screened SPY"), (2, 3, "screened AAPL"), (3, 3, "screened MSFT")]
        lines = await client.call_tool("screener__screen_watchlist", {"url": f"{lists}/watchlist.txt"})
        assert lines.structured_content["screened"] == 2
        unknown = await client.call_tool("screener__screen_watchlist", {"url": f"{lists}/watchlist-unknown"})
        assert unknown.is_error and "unknown symbols: NOPE" in text_of(unknown)
        refused = await client.call_tool("screener__screen_watchlist", {"url": f"{lists}/secret"})
        assert refused.is_error
        assert "denied by the host's policy" in text_of(refused)
        assert "host: denied by policy (no network rule of the plugin allows it)" in text_of(refused)
        assert "not for plugins" not in text_of(refused)


async def test_screener_resources_prompts_and_completions(js_client):
    async with js_client() as client:
        universe = await client.read_resource("screener://universe")
        assert json.loads(universe.contents[0].text) == {"symbols": ["AAPL", "BTC-USD", "EURUSD", "MSFT", "SPY"]}
        with pytest.raises(MCPError):
            await client.read_resource("screener://nothing")
        prompt = await client.get_prompt("screener__find_setups", {"style": "momentum"})
        assert "momentum setups" in prompt.messages[0].content.text
        with pytest.raises(MCPError):
            await client.get_prompt("screener__find_setups", {})
        ref = PromptReference(type="ref/prompt", name="screener__find_setups")
        completion = await client.complete(ref, {"name": "style", "value": "m"})
        assert completion.completion.values == ["mean reversion", "momentum"]


def test_a_plugin_that_misuses_the_interface_is_not_built(tmp_path):
    """TypeScript checks a plugin against the declarations `jco types` makes
    from wit/: a wrong log level, a tool whose result does not match its
    output schema and a misspelt SDK call stop the build, each named with
    its line, and no component is written."""
    plugin = tmp_path / "careless"
    plugin.mkdir()
    (plugin / "index.ts").write_text(
        'import { Plugin, host, z } from "mcp-plugin-sdk";\n'
        'const plugin = new Plugin("careless", "0.1.0");\n'
        'plugin.tool({ name: "shout", description: "Logs loudly.", input: z.object({}),\n'
        '              output: z.object({ done: z.boolean() }) }, () => {\n'
        '  host.log("loud", "hello");\n'
        '  return { done: "yes" };\n'
        "});\n"
        "plugin.toool;\n"
        "export const handler = plugin.handler();\n"
    )
    output = tmp_path / "careless.wasm"
    build = subprocess.run([str(REPO / "plugins/sdk-js/componentize"), str(plugin), str(output)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode != 0
    assert "type error(s) against the plugin interface; the plugin was not built" in build.stderr
    for line, complaint in [(5, "'\"loud\"' is not assignable to parameter of type 'LogLevel'"),
                            (4, "Type 'string' is not assignable to type 'boolean'"),
                            (8, "Property 'toool' does not exist on type 'Plugin'")]:
        assert f"index.ts({line}," in build.stderr and complaint in build.stderr, build.stderr
    assert not output.exists()
