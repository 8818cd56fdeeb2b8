"""The workspace example: per-user context resources an agent gateway
reads before each turn, updated by tools, with `resources/updated` to
subscribers when one changes — and never another user's."""

import json

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning

from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from harness import make_root, stdio_params, text_of
from test_keyvalue import authenticated, token

pytestmark = pytest.mark.anyio

PROFILE = "context://user-profile"


class Heard:
    """Resource updates a client hears, by URI."""

    def __init__(self):
        self.uris: list[str] = []
        self.event = anyio.Event()

    async def on_message(self, message) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated":
            self.uris.append(message.params.uri)
            self.event.set()

    async def wait(self) -> None:
        with anyio.fail_after(10):
            await self.event.wait()
        self.event = anyio.Event()


def user(url: str, sub: str, heard: Heard) -> Client:
    """A 2025-11-25 session of `sub`, hearing resource updates."""
    headers = {"authorization": f"Bearer {token(sub)}"}
    transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    return Client(transport, mode="legacy", message_handler=heard.on_message)


async def read(client, uri: str) -> str:
    return (await client.read_resource(uri)).contents[0].text


async def subscribe(client, uri: str) -> None:
    with pytest.warns(MCPDeprecationWarning):
        await client.subscribe_resource(uri)


async def test_context_resources_update_and_subscribers_hear_it(tmp_path):
    root = make_root(tmp_path)
    heard = Heard()
    async with Client(stdio_params(root), mode="legacy", message_handler=heard.on_message) as client:
        assert json.loads(await read(client, PROFILE)) == {}
        assert await read(client, "context://system-prompt") == ""
        await subscribe(client, PROFILE)
        await subscribe(client, "context://workspace-state")
        done = await client.call_tool("workspace__update_profile", {"trading_style": "swing", "markets": ["US equities"]})
        assert not done.is_error, text_of(done)
        await heard.wait()
        await anyio.sleep(0.3)  # anything else would arrive by now
        # Only what watches this plugin's changed state hears: both
        # resources may have changed (the host knows the bucket, not the key).
        assert PROFILE in heard.uris
        done = await client.call_tool("workspace__update_profile", {"risk_tolerance": "low"})
        assert done.structured_content["now"] == {"trading_style": "swing", "markets": ["US equities"],
                                                  "risk_tolerance": "low"}
        profile = json.loads(await read(client, PROFILE))
        assert profile["trading_style"] == "swing" and profile["risk_tolerance"] == "low"
        heard.uris.clear()
        state = {"chart": {"symbol": "SPY", "timeframe": "1d"}, "watched_symbols": ["SPY", "QQQ"],
                 "indicators": ["sma(50)", "rsi(14)"], "active_strategy": "sma_cross"}
        done = await client.call_tool("workspace__update_workspace_state", state)
        assert not done.is_error, text_of(done)
        await heard.wait()
        assert json.loads(await read(client, "context://workspace-state")) == state
        # Reading changes nothing: no update follows a read.
        heard.uris.clear()
        await read(client, PROFILE)
        await anyio.sleep(0.5)
        assert heard.uris == []
        refused = await client.call_tool("workspace__update_workspace_state", {"chart": {"symbol": "spy", "timeframe": "1d"}})
        assert refused.is_error
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["workspace__set_system_prompt"].annotations.read_only_hint is False


async def test_each_user_has_their_own_context_and_hears_only_their_own_changes(tmp_path):
    root = make_root(tmp_path)
    host = authenticated(root, None)
    alice_heard, bob_heard = Heard(), Heard()
    try:
        async with user(host.url, "alice", alice_heard) as alice:
            async with user(host.url, "bob", bob_heard) as bob:
                await subscribe(alice, "context://system-prompt")
                await subscribe(bob, "context://system-prompt")
                done = await alice.call_tool("workspace__set_system_prompt", {"text": "Answer in bullet points."})
                assert not done.is_error, text_of(done)
                assert await read(alice, "context://system-prompt") == "Answer in bullet points."
                assert await read(bob, "context://system-prompt") == ""
                await anyio.sleep(1.0)
                assert "context://system-prompt" not in bob_heard.uris, "bob heard alice's change"
    finally:
        host.stop()
