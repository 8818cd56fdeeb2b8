"""Hot reload: plugins and policies change under a running host, and the
connected clients are told, in both protocol revisions and over both
transports."""

import contextlib
import os
import shutil
import threading
import time
import urllib.request

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from harness import FIXTURE_WASM, HttpHost, RawHttp, audit_records, make_root, stdio_params, text_of

pytestmark = pytest.mark.anyio

V1 = FIXTURE_WASM / "greeter_v1.wasm"
V2 = FIXTURE_WASM / "greeter_v2.wasm"
CONNECTIONS = [("stdio", "auto"), ("stdio", "legacy"), ("http", "auto"), ("http", "legacy")]
URLS: dict = {}


def client_url(root) -> str:
    """The endpoint of the HTTP host `connected` started for `root`."""
    return URLS[root]


class Changes:
    """Counts tools/list_changed notifications, however they arrive."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = anyio.Event()

    def bump(self) -> None:
        self.count += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def on_message(self, message) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            self.bump()

    async def after(self, seen: int, timeout: float = 15) -> None:
        """Waits for a notification beyond the `seen` first ones."""
        with anyio.fail_after(timeout):
            while self.count <= seen:
                await self._changed.wait()


async def listen(client, changes: Changes, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
    async with client.listen(tools_list_changed=True) as subscription:
        task_status.started()
        async for _ in subscription:
            changes.bump()


@contextlib.asynccontextmanager
async def connected(transport: str, mode: str, root):
    """A client of a host serving `root`, and the change notifications it gets:
    through its session in legacy mode, through subscriptions/listen in auto
    mode (2026-07-28)."""
    changes = Changes()
    host = HttpHost(root) if transport == "http" else None
    if host:
        URLS[root] = host.url
    server = host.url if host else stdio_params(root)
    try:
        async with Client(server, mode=mode, message_handler=changes.on_message) as client:
            async with anyio.create_task_group() as tasks:
                if mode == "auto":
                    await tasks.start(listen, client, changes)
                yield client, changes
                tasks.cancel_scope.cancel()
    finally:
        if host:
            host.stop()


def install(root, source, name: str = "greeter") -> None:
    """Puts `source` in place the way editors save: a new file renamed over."""
    temporary = root / "plugins" / f".{name}.wasm.partial"
    shutil.copy(source, temporary)
    os.replace(temporary, root / "plugins" / f"{name}.wasm")


async def tool_names(client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


async def greet(client) -> dict:
    # Re-list first, as a client does on a change notification: the SDK
    # checks structured output against the schemas of its last listing.
    await client.list_tools()
    result = await client.call_tool("greeter__greet", {"name": "Ada"})
    assert not result.is_error, result.content[0].text
    return result.structured_content


@pytest.mark.parametrize("connection", CONNECTIONS, ids=lambda c: f"{c[0]}-{c[1]}")
async def test_add_modify_break_and_remove_a_plugin(tmp_path, connection):
    root = make_root(tmp_path)
    async with connected(*connection, root) as (client, changes):
        assert "greeter__greet" not in await tool_names(client)

        seen = changes.count
        install(root, V1)
        await changes.after(seen)
        assert "greeter__greet" in await tool_names(client)
        assert await greet(client) == {"version": "v1", "greeting": "Hello, Ada!"}

        seen = changes.count
        install(root, V2)
        await changes.after(seen)
        assert await greet(client) == {"version": "v2", "greeting": "Howdy, Ada!"}

        # Garbage over a good plugin: reported, and the good version serves on.
        (root / "plugins" / "greeter.wasm").write_bytes(b"\x00asm garbage")

        def kept(record):
            return record["event"] == "load-failed" and "still serving the previous version" in record["reason"]

        assert any(kept(r) for r in audit_records(root, until=kept))
        assert await greet(client) == {"version": "v2", "greeting": "Howdy, Ada!"}

        seen = changes.count
        (root / "plugins" / "greeter.wasm").unlink()
        await changes.after(seen)
        assert "greeter__greet" not in await tool_names(client)
        with pytest.raises(MCPError) as gone:
            await client.call_tool("greeter__greet", {"name": "Ada"})
        assert 'unknown tool "greeter__greet"' in gone.value.error.message


@pytest.mark.parametrize("connection", CONNECTIONS, ids=lambda c: f"{c[0]}-{c[1]}")
async def test_a_policy_edit_revoking_a_grant_takes_effect_without_a_restart(tmp_path, connection):
    root = make_root(tmp_path)
    async with connected(*connection, root) as (client, changes):
        quote = await client.call_tool("market-data__get_quote", {"symbol": "AAPL"})
        assert not quote.is_error

        seen = changes.count
        policy = root / "policies" / "market-data.toml"
        policy.write_text("version = 1\n")
        await changes.after(seen)
        revoked = await client.call_tool("market-data__get_quote", {"symbol": "AAPL"})
        assert revoked.is_error
        text = "\n".join(block.text for block in revoked.content)
        assert "host: denied by policy (no mount holds this path)" in text


async def test_a_half_written_plugin_never_serves_and_the_complete_one_does(tmp_path):
    root = make_root(tmp_path)
    install(root, V1)
    async with connected("http", "legacy", root) as (client, changes):
        assert (await greet(client))["version"] == "v1"
        data = V2.read_bytes()
        target = root / "plugins" / "greeter.wasm"
        with target.open("wb") as out:
            out.write(data[: len(data) // 2])
            out.flush()
            # Slow enough for the host to try the half file.
            await anyio.sleep(0.5)
            assert (await greet(client))["version"] == "v1"
            seen = changes.count
            out.write(data[len(data) // 2 :])
        await changes.after(seen)
        assert (await greet(client))["version"] == "v2"


async def test_fifty_swaps_under_load_never_mix_versions(tmp_path):
    """Four raw clients call the plugin in a loop while it is swapped fifty
    times (every tenth swap removes it first). Each version's output schema
    names that version exactly, and the host checks every result against the
    schema of the version it described: a call mixing versions would fail."""
    root = make_root(tmp_path)
    install(root, V1)
    versions = {"v1": "Hello, Ada!", "v2": "Howdy, Ada!"}
    outcomes = {"v1": 0, "v2": 0, "unknown": 0}
    # (removed at, served again at): an unknown-tool answer is expected only
    # from a call that overlapped one of these.
    removals: list[list[float | None]] = []

    def during_a_removal(sent: float, answered: float) -> bool:
        return any(start <= answered and (end is None or sent <= end) for start, end in removals)

    def call_in_a_loop(url: str, done) -> None:
        raw = RawHttp(url)
        while not done.is_set():
            sent = time.monotonic()
            response = raw.request("tools/call", {"name": "greeter__greet", "arguments": {"name": "Ada"}})
            if "error" in response:
                assert 'unknown tool "greeter__greet"' in response["error"]["message"], response
                assert during_a_removal(sent, time.monotonic()), response
                outcomes["unknown"] += 1
                continue
            result = response["result"]
            assert not result.get("isError"), result
            answer = result["structuredContent"]
            assert versions[answer["version"]] == answer["greeting"], answer
            outcomes[answer["version"]] += 1

    async with connected("http", "legacy", root) as (client, changes):
        url = client_url(root)
        done = threading.Event()
        async with anyio.create_task_group() as tasks:
            for _ in range(4):
                tasks.start_soon(anyio.to_thread.run_sync, call_in_a_loop, url, done)
            for swap in range(50):
                seen = changes.count
                if swap % 10 == 9:
                    removals.append([time.monotonic(), None])
                    (root / "plugins" / "greeter.wasm").unlink()
                    await changes.after(seen)
                    seen = changes.count
                    install(root, V2 if swap % 2 == 0 else V1)
                    await changes.after(seen)
                    removals[-1][1] = time.monotonic()
                else:
                    install(root, V2 if swap % 2 == 0 else V1)
                    await changes.after(seen)
            done.set()
    assert outcomes["v1"] > 0 and outcomes["v2"] > 0, outcomes


@pytest.mark.parametrize("connection", CONNECTIONS, ids=lambda c: f"{c[0]}-{c[1]}")
async def test_subscribers_hear_when_a_resources_plugin_changes(tmp_path, connection):
    """A subscribed resource is reported updated when the plugin serving it
    gets a new version (here, a new policy); others stay quiet."""
    transport, mode = connection
    root = make_root(tmp_path)
    updated: list[str] = []
    heard = anyio.Event()

    async def on_message(message) -> None:
        # Legacy sessions hear through their session; auto mode through
        # its subscription below (the SDK passes those here too).
        if mode == "legacy" and getattr(message, "method", None) == "notifications/resources/updated":
            updated.append(message.params.uri)
            heard.set()

    host = HttpHost(root) if transport == "http" else None
    server = host.url if host else stdio_params(root)
    watched = ["market://symbols", "indicators://list"]
    try:
        async with Client(server, mode=mode, message_handler=on_message) as client:
            async with anyio.create_task_group() as tasks:
                if mode == "auto":

                    async def listen_for_updates(*, task_status=anyio.TASK_STATUS_IGNORED) -> None:
                        async with client.listen(resource_subscriptions=watched) as subscription:
                            assert sorted(subscription.honored.resource_subscriptions) == sorted(watched)
                            task_status.started()
                            async for event in subscription:
                                updated.append(event.uri)
                                heard.set()

                    await tasks.start(listen_for_updates)
                else:
                    for uri in watched:
                        # Deprecated by the SDK for 2026-07-28, and what 2025-11-25 has.
                        with pytest.warns(MCPDeprecationWarning):
                            await client.subscribe_resource(uri)
                policy = root / "policies" / "market-data.toml"
                partial = policy.with_suffix(".partial")
                partial.write_text(policy.read_text().replace("timeout_ms = 5000", "timeout_ms = 6000"))
                os.replace(partial, policy)
                with anyio.fail_after(15):
                    await heard.wait()
                await anyio.sleep(0.3)  # anything else would arrive by now
                tasks.cancel_scope.cancel()
    finally:
        if host:
            host.stop()
    assert updated == ["market://symbols"]


def reloads(host: HttpHost) -> float:
    """How many reloads the host has made, from its metrics."""
    with urllib.request.urlopen(host.origin + "/metrics", timeout=10) as response:
        text = response.read().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    if "mcp_host_reloads" not in families:  # none yet
        return 0
    return sum(sample.value for sample in families["mcp_host_reloads"].samples if sample.name.endswith("_total"))


def test_reading_watched_files_never_starts_a_reload(tmp_path):
    """Opening, reading, closing and stat-ing the watched files (an operator's
    `cat`, an editor opening a policy, a backup) change nothing: no reload,
    and so no reload loop fed by the reloader's own reads. A write still
    reloads."""
    root = make_root(tmp_path)
    host = HttpHost(root)
    try:
        time.sleep(0.5)  # the start-up settles
        before = reloads(host)
        watched = list((root / "plugins").glob("*.wasm")) + list((root / "policies").glob("*.toml"))
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for path in watched:
                path.read_bytes()
                os.stat(path)
                os.utime(path)  # metadata only
        time.sleep(1.0)
        assert reloads(host) == before, "reading the watched files started reloads"
        policy = root / "policies" / "market-data.toml"
        policy.write_text(policy.read_text() + "\n")
        deadline = time.monotonic() + 10
        while reloads(host) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reloads(host) >= before + 1, "a write did not reload"
        time.sleep(1.0)
        settled = reloads(host)
        time.sleep(1.0)
        assert reloads(host) == settled, "the reload kept reloading"
    finally:
        host.stop()


async def test_a_plugin_slow_to_describe_itself_holds_nothing_up(tmp_path):
    """A plugin whose describe() takes 3 s: the host serves the others at
    once, reloads stay fast while it is still loading, and it joins by itself
    when done, with a list-changed notification."""
    root = make_root(tmp_path, fixtures=("sleepy",))
    started = time.monotonic()
    host = HttpHost(root)
    try:
        ready = time.monotonic() - started
        assert ready < 3.0, f"start-up waited {ready:.1f} s for the slow plugin"
        notified = []

        async def on_message(message) -> None:
            if getattr(getattr(message, "root", message), "method", None) == "notifications/tools/list_changed":
                notified.append(time.monotonic())

        async with Client(host.url, mode="legacy", message_handler=on_message) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "market-data__get_quote" in names and "sleepy__awake" not in names
            # A reload while it is still loading does not wait for it either.
            policy = root / "policies" / "market-data.toml"
            policy.write_text(policy.read_text() + "\n# touched\n")
            with anyio.fail_after(20):
                while not any("reloaded in" in line for line in host.log):
                    await anyio.sleep(0.05)
            reload_ms = float(next(line for line in host.log if "reloaded in" in line).split("reloaded in ")[1].split(" ms")[0])
            assert reload_ms < 1000, reload_ms
            with anyio.fail_after(20):
                while "sleepy__awake" not in {t.name for t in (await client.list_tools()).tools}:
                    await anyio.sleep(0.1)
                # Told once for the policy edit, once more when it joined.
                while len(notified) < 2:
                    await anyio.sleep(0.05)
            joined = time.monotonic() - started
            assert joined < 10, joined
            result = await client.call_tool("sleepy__awake", {})
            assert text_of(result) == "awake"
    finally:
        host.stop()
