"""The broker plugin reads positions from a loopback stand-in, and its order
is refused by the host's no-order-execution guardrail: `place_order` is not
served, and the stand-in never receives an order."""

import json

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from harness import stdio_params, text_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_positions_are_read_and_orders_never_leave_the_sandbox(transport, root, broker, broker_env, http_host):
    server = stdio_params(root, broker_env) if transport == "stdio" else http_host.url
    async with Client(server) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert "broker__get_positions" in tools
        assert "broker__place_order" not in tools

        positions = await client.call_tool("broker__get_positions", {})
        assert not positions.is_error, text_of(positions)
        assert json.loads(text_of(positions)) == {"positions": broker.POSITIONS}
        assert ("GET", "/v2/positions") in broker.requests
        account = await client.call_tool("broker__get_account", {})
        assert not account.is_error, text_of(account)
        assert json.loads(text_of(account)) == {"account": broker.ACCOUNT}

        with pytest.raises(MCPError) as refused:
            await client.call_tool("broker__place_order", {"symbol": "AAPL", "side": "buy", "quantity": 5})
        message = refused.value.error.message
        assert message.startswith("tool broker__place_order is not served: denied by guardrail no-order-execution")
        assert "trade effect" in message
    assert all(method == "GET" for method, _ in broker.requests), broker.requests
