"""The official TypeScript SDK as a client, over stdio, over Streamable
HTTP, and through mcp-remote (the stdio-to-HTTP bridge desktop clients use
to reach a remote host), with and without credentials."""

import json
import subprocess

import pytest

from harness import HOST, NODE, NODE_MODULES, host_args, node_env
from test_auth import ENV, bearer, direct, issued, keypair  # noqa: F401 (fixtures)

CLIENT = __import__("pathlib").Path(__file__).with_name("ts_client.mjs")
MCP_REMOTE = NODE_MODULES / "mcp-remote" / "dist" / "proxy.js"


def run_client(target: list[str], tmp_path, env: dict | None = None) -> dict:
    done = subprocess.run([str(NODE), str(CLIENT), *target], capture_output=True, text=True, timeout=120,
                          env={**node_env(), **(env or {}), "MCP_REMOTE_CONFIG_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    # The SDK warns about schema keywords it does not know (`format: "uint"` once did).
    assert "unknown format" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def check_basics(seen: dict, example_strategy: bool = True) -> None:
    assert seen["server"]["name"] == "host"
    tools = {tool["name"]: tool for tool in seen["tools"]}
    assert {"market-data__get_quote", "backtest__run_backtest", "strategies__create_strategy"} <= set(tools)
    assert tools["market-data__get_quote"]["annotations"]["readOnlyHint"] is True
    assert not seen["quote"].get("isError") and seen["quote"]["structuredContent"]["symbol"] == "SPY"
    assert seen["invalid"]["isError"] and "invalid arguments" in seen["invalid"]["content"][0]["text"]
    assert seen["unknown"]["code"] == -32602 and "unknown tool" in seen["unknown"]["message"]
    if example_strategy:
        assert seen["backtest"]["structuredContent"]["strategy"] == "sma_cross", seen["backtest"]
    else:  # each user has a strategies folder of their own, empty at first
        assert seen["backtest"]["isError"] and "sma_cross" in seen["backtest"]["content"][0]["text"]
    symbols = json.loads(seen["symbols"]["contents"][0]["text"])
    assert "SPY" in [s["symbol"] for s in symbols]
    assert "momentum" in seen["prompt"]["messages"][0]["content"]["text"]


@pytest.mark.parametrize("transport", ["stdio", "http", "mcp-remote"])
def test_the_typescript_sdk_gets_the_basics(transport, root, broker_env, http_host, tmp_path):
    target = {
        "stdio": ["stdio", str(HOST), "serve", *host_args(root)],
        "http": ["http", http_host.url],
        "mcp-remote": ["stdio", str(NODE), str(MCP_REMOTE), http_host.url],
    }[transport]
    check_basics(run_client(target, tmp_path, broker_env))


def test_mcp_remote_reaches_a_direct_mode_host_with_a_bearer_token(direct, keypair, tmp_path):
    """What the README tells desktop users of a direct-mode host to do."""
    token = issued(direct, "alice", key=keypair[0])
    seen = run_client(["stdio", str(NODE), str(MCP_REMOTE), direct.url, "--header", f"Authorization: Bearer {token}"],
                      tmp_path, ENV)
    check_basics(seen, example_strategy=False)
