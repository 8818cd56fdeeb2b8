"""The broker plugin reads positions from a loopback stand-in, and its order
is refused by the host: the stand-in never receives the POST."""

import json

import pytest
from mcp import Client

from harness import stdio_params

pytestmark = pytest.mark.anyio


def text_of(result) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_positions_are_read_and_orders_never_leave_the_sandbox(transport, root, broker, broker_env, http_host):
    server = stdio_params(root, broker_env) if transport == "stdio" else http_host.url
    async with Client(server) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert "broker__get_positions" in tools

        positions = await client.call_tool("broker__get_positions", {})
        assert not positions.is_error, text_of(positions)
        assert json.loads(text_of(positions)) == {"positions": broker.POSITIONS}
        assert ("GET", "/positions") in broker.requests

        order = await client.call_tool("broker__place_order", {"symbol": "AAPL", "side": "buy", "quantity": 5})
        assert order.is_error
        message = text_of(order)
        assert f"denied POST {broker.url}/orders" in message
        assert "no network rule" in message
    assert all(method == "GET" for method, _ in broker.requests), broker.requests
