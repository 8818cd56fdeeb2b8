"""Plugins keep state in granted key-value buckets (`wasi:keyvalue`):
the journal example over both transports and across restarts, one user's
data never another's, every refusal (a bucket not granted, a write where
only reads are granted, quotas, sizes) named to the plugin and the client,
bucket-name tricks, and no acknowledged write lost to `kill -9`."""

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from harness import (
    HOST,
    HttpHost,
    audit_records,
    host_args,
    make_root,
    run_host,
    text_of,
    wait_for_tools,
)

pytestmark = pytest.mark.anyio

SECRET = "an-hs256-secret-of-at-least-32-bytes!"
ENV = {"TEST_HS256_SECRET": SECRET}
AUDIENCE = "https://mcp.test/mcp"
ISSUER = "https://auth.test"

INSIGHT = {"text": "RSI(2) below 5 on SPY daily bounced within 3 days in 8 of 10 ranging months",
           "category": "pattern", "tags": ["rsi", "mean-reversion"], "importance": 7, "symbol": "SPY"}


def token(sub: str) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "nbf": now - 10,
              "scope": "mcp:read mcp:write"}
    signed = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signed}.{b64(hmac.new(SECRET.encode(), signed.encode(), hashlib.sha256).digest())}"


def as_user(url: str, sub: str) -> Client:
    headers = {"authorization": f"Bearer {token(sub)}"}
    return Client(streamable_http_client(url, http_client=create_mcp_http_client(headers=headers)))


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A real redis-server on loopback (Debian's package), for the module."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(folder)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True).stdout.strip() != b"PONG":
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield port
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(params=["embedded", "redis"])
def backend(request):
    """The store every host of a test uses: the embedded one, or Redis
    (emptied first); the same tests run on both."""
    if request.param == "embedded":
        return None
    port = request.getfixturevalue("redis_server")
    subprocess.run(["redis-cli", "-p", str(port), "FLUSHALL"], check=True, capture_output=True)
    return f"redis://127.0.0.1:{port}"


def configure(root, backend: str | None, auth: str = "") -> list[str]:
    """Writes the host config of `root` (its store and `auth`); the
    arguments that make a host read it."""
    state = f'[state]\nbackend = "redis"\nurl = "{backend}"\n' if backend else ""
    (root / "host.toml").write_text(auth + state)
    return ["--config", str(root / "host.toml")]


def config_args(root) -> list[str]:
    return ["--config", str(root / "host.toml")]


def stdio(root) -> StdioServerParameters:
    return StdioServerParameters(command=str(HOST), args=["serve", *host_args(root, *config_args(root))],
                                 env=dict(os.environ))


def authenticated(root, backend: str | None) -> HttpHost:
    auth = (f'[auth]\nmode = "direct"\nresource = "{AUDIENCE}"\nissuer = "{ISSUER}"\n'
            f'authorization_servers = ["{ISSUER}"]\nhs256_secret_env = "TEST_HS256_SECRET"\n')
    return HttpHost(root, ENV, *configure(root, backend, auth))


def stateful_root(tmp_path, *extra_plugins: str):
    """A root with the stateful fixture (and copies of it under other
    plugin names, each with the same policy)."""
    root = make_root(tmp_path, fixtures=("stateful",))
    for name in extra_plugins:
        shutil.copy(root / "plugins" / "stateful.wasm", root / "plugins" / f"{name}.wasm")
        shutil.copy(root / "policies" / "stateful.toml", root / "policies" / f"{name}.toml")
    return root


async def op(client, tool: str = "stateful__write", **arguments):
    result = await client.call_tool(tool, arguments)
    return result.is_error, text_of(result)


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_insights_survive_a_restart_and_are_found_again(tmp_path, transport, backend):
    root = make_root(tmp_path)
    configure(root, backend)
    other = {"text": "Opening-range breakouts on QQQ 5m failed in every trending week of 2024",
             "category": "failure", "importance": 4, "tags": ["breakout"]}

    def opened():
        if transport == "stdio":
            return Client(stdio(root)), None
        host = HttpHost(root, None, *config_args(root))
        return Client(host.url), host

    client, host = opened()
    async with client:
        saved = await client.call_tool("journal__save_insight", INSIGHT)
        assert not saved.is_error, text_of(saved)
        first = saved.structured_content["id"]
        saved = await client.call_tool("journal__save_insight", other)
        assert saved.structured_content["id"] == first + 1
    if host:
        host.stop()
    client, host = opened()
    try:
        async with client:
            found = await client.call_tool("journal__search_insights", {"text": "rsi spy"})
            assert [i["id"] for i in found.structured_content["insights"]] == [first]
            newest = await client.call_tool("journal__search_insights", {"limit": 1})
            assert newest.structured_content["insights"][0]["category"] == "failure"
            assert newest.structured_content["next_before"] == first + 1
            older = await client.call_tool("journal__search_insights", {"before": first + 1})
            assert [i["id"] for i in older.structured_content["insights"]] == [first]
            read = await client.read_resource(f"journal://insights/{first}")
            assert json.loads(read.contents[0].text)["text"] == INSIGHT["text"]
            gone = await client.call_tool("journal__delete_insight", {"id": first})
            assert gone.structured_content == {"id": first, "deleted": True}
            left = await client.call_tool("journal__search_insights", {})
            assert [i["id"] for i in left.structured_content["insights"]] == [first + 1]
            # Tools that only read are advertised so, from the grants.
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert tools["journal__search_insights"].annotations.read_only_hint is True
            assert tools["journal__save_insight"].annotations.read_only_hint is False
    finally:
        if host:
            host.stop()
    assert (root / "state" / "keyvalue.redb").is_file() != bool(backend)
    records = audit_records(root, until=lambda r: r["event"] == "call" and r["target"] == "journal__delete_insight")
    assert any(r["event"] == "call" and r["target"] == "journal__delete_insight" and r["outcome"] == "ok"
               for r in records)
    # Bucket opens and writes are audited by key, never by value.
    saves = [r for r in records if r["event"] == "state" and r["target"] == "journal__save_insight"]
    assert len(saves) == 2, saves
    (bucket,) = saves[0]["buckets"]
    assert bucket["bucket"] == "insights" and bucket["user"] == "local" and bucket["writes"] == 2
    assert bucket["keys"] == ["next-id", f"insight/{first:012}"]
    searches = [r for r in records if r["event"] == "state" and r["target"] == "journal__search_insights"]
    assert searches and all(b["writes"] == 0 and b["reads"] >= 1 for r in searches for b in r["buckets"])
    assert "RSI(2)" not in (root / "audit.jsonl").read_text()


async def test_one_user_never_sees_another_users_insights(tmp_path, backend):
    root = make_root(tmp_path)
    configure(root, backend)
    host = authenticated(root, backend)
    try:
        async with as_user(host.url, "alice") as alice:
            saved = await alice.call_tool("journal__save_insight", INSIGHT)
            assert not saved.is_error, text_of(saved)
            mine = saved.structured_content["id"]
        async with as_user(host.url, "bob") as bob:
            found = await bob.call_tool("journal__search_insights", {})
            assert found.structured_content["insights"] == []
            with pytest.raises(Exception, match="no insight"):
                await bob.read_resource(f"journal://insights/{mine}")
            # Bob's ids start from his own counter: his first is also 1.
            saved = await bob.call_tool("journal__save_insight", {**INSIGHT, "text": "bob's own"})
            assert saved.structured_content["id"] == mine
        # /metrics counts bucket operations, and the embedded store's size.
        with urllib.request.urlopen(host.origin + "/metrics", timeout=10) as response:
            metrics = response.read().decode()
        writes = re.search(r'mcp_host_keyvalue_operations_total\{(?=[^}]*plugin="journal")(?=[^}]*kind="write")[^}]*\} (\d+)',
                           metrics)
        assert writes and int(writes.group(1)) == 4, metrics  # two saves: counter and insight each
        size = int(re.search(r"mcp_host_keyvalue_store_bytes (\d+)", metrics).group(1))
        assert (size > 0) != bool(backend), size
    finally:
        host.stop()
    host = authenticated(root, backend)
    try:
        async with as_user(host.url, "alice") as alice:
            found = await alice.call_tool("journal__search_insights", {})
            texts = [i["text"] for i in found.structured_content["insights"]]
            assert texts == [INSIGHT["text"]]
    finally:
        host.stop()


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_every_refusal_is_named_to_plugin_and_client(tmp_path, transport, backend):
    root = stateful_root(tmp_path)
    configure(root, backend)
    host = HttpHost(root, None, *config_args(root)) if transport == "http" else None
    try:
        async with Client(host.url if host else stdio(root)) as client:
            refused, text = await op(client, op="open", bucket="journal")
            assert refused and "no bucket \"journal\" is granted" in text, text
            assert "denied by policy (no [keyvalue] grant names the bucket)" in text, text
            refused, text = await op(client, op="set", bucket="shared", key="k", value="v")
            assert refused and "denied by policy (the bucket shared is read-only here" in text, text
            # Granted read-write, but `read` does not declare write-state.
            refused, text = await op(client, "stateful__read", op="set", bucket="notes", key="k", value="v")
            assert refused and "the bucket notes is read-only here" in text, text
            refused, text = await op(client, "stateful__read", op="increment", bucket="notes", key="n", delta=1)
            assert refused and "read-only" in text, text
            refused, text = await op(client, op="set", bucket="notes", key="big", size=2000)
            assert refused and "over max_value_kib = 1" in text, text
            refused, text = await op(client, op="set", bucket="notes", key="k" * 1025, value="v")
            assert refused and "keys are at most 1024 bytes" in text, text
            # Reading needs no write-state.
            assert await op(client, op="set", bucket="notes", key="k", value="v1") == (False, "set")
            assert await op(client, "stateful__read", op="get", bucket="notes", key="k") == (False, "v1")
    finally:
        if host:
            host.stop()
    records = audit_records(root, until=lambda r: "keys are at most" in r.get("rule", ""))
    rules = " | ".join(r["rule"] for r in records if r["event"] == "denied")
    for rule in ("policy (no [keyvalue] grant names the bucket)", "the bucket shared is read-only here",
                 "the bucket notes is read-only here", "limit (the bucket notes: a value of 2000 bytes",
                 "limit (the bucket notes: keys are at most 1024 bytes)"):
        assert rule in rules, rules


async def test_quotas_hold_and_a_refused_write_leaves_the_bucket_as_it_was(tmp_path, backend):
    root = stateful_root(tmp_path)
    configure(root, backend)
    async with Client(stdio(root)) as client:
        refused, text = await op(client, op="fill", bucket="notes", key="k", value="v", size=10)
        assert refused and "after 5 keys" in text and "max_keys = 5" in text, text
        keys = json.loads((await op(client, op="keys", bucket="notes"))[1])
        assert keys == [f"k{i}" for i in range(5)]
        # Overwriting within the quota is fine; a batch that would pass it
        # is refused whole.
        assert await op(client, op="set", bucket="notes", key="k0", value="w") == (False, "set")
        refused, text = await op(client, op="set_many", bucket="notes", key="m", value="v", size=3)
        assert refused and "max_keys = 5" in text, text
        assert json.loads((await op(client, op="keys", bucket="notes"))[1]) == keys
        # Bytes: five keys of 900 bytes pass 4 KiB.
        for key in keys:
            await op(client, op="delete", bucket="notes", key=key)
        for i in range(4):
            assert await op(client, op="set", bucket="notes", key=f"b{i}", size=900) == (False, "set")
        refused, text = await op(client, op="set", bucket="notes", key="b4", size=900)
        assert refused and "max_kib = 4" in text, text
        assert await op(client, op="exists", bucket="notes", key="b4") == (False, "false")
        # Counters and compare-and-swap count too, and work.
        await op(client, op="delete", bucket="notes", key="b3")
        assert await op(client, op="increment", bucket="notes", key="n", delta=41) == (False, "41")
        assert await op(client, op="increment", bucket="notes", key="n", delta=1) == (False, "42")
        refused, text = await op(client, op="increment", bucket="notes", key="b0", delta=1)
        assert refused and "does not hold an integer" in text, text
        assert await op(client, op="update", bucket="mine", key="u") == (False, "1")
        assert await op(client, op="update", bucket="mine", key="u") == (False, "2")


BUCKET_TRICKS = [
    "Notes", "NOTES", "notes ", " notes", "notes\n", "notes\u0000", "notes/", "./notes", "notes/..",
    "../notes", "notes/../shared", "../stateful-b/notes", "stateful-b/notes", "stateful/notes",
    "n\u043etes",              # Cyrillic o
    "\uff4e\uff4f\uff54\uff45\uff53",  # fullwidth
    "notes\u200b",             # zero-width space
    "note\u0301s",            # combining accent
    "NOTES".lower().upper(),
    "notes%2f..", "notes\\..\\shared", "", "*", "notes*", "n" * 70_000,
]


async def test_no_bucket_name_reaches_another_plugins_or_users_data(tmp_path, backend):
    root = stateful_root(tmp_path, "stateful-b")
    configure(root, backend)
    async with Client(stdio(root)) as client:
        assert await op(client, op="set", bucket="notes", key="secret", value="a's") == (False, "set")
        # The same bucket name in another plugin is another plugin's bucket.
        assert await op(client, "stateful-b__write", op="get", bucket="notes", key="secret") == (False, "(none)")
        for trick in BUCKET_TRICKS:
            refused, text = await op(client, "stateful-b__write", op="get", bucket=trick, key="secret")
            assert refused and "is granted" in text, (trick[:40], text[:300])
            assert len(text) < 4000, "a long name comes back cut"
    denied = [r for r in audit_records(root, until=lambda r: "no [keyvalue] grant" in r.get("rule", ""))
              if r["event"] == "denied"]
    assert denied and all(len(json.dumps(r)) < 8000 for r in denied)
    # Per-user buckets: another principal sees only its own (stdio is `local`).
    host = authenticated(root, backend)
    try:
        async with as_user(host.url, "alice") as alice:
            assert await op(alice, op="set", bucket="mine", key="k", value="alice") == (False, "set")
        async with as_user(host.url, "bob") as bob:
            assert await op(bob, op="get", bucket="mine", key="k") == (False, "(none)")
            assert await op(bob, op="keys", bucket="mine") == (False, "[]")
    finally:
        host.stop()


async def test_a_per_user_bucket_is_refused_to_the_shared_anonymous_principal(tmp_path, backend):
    root = stateful_root(tmp_path)
    configure(root, backend)
    # Public mode serves read-only tools only: `read` opens without writing.
    host = HttpHost(root, None, *configure(root, backend, '[auth]\nmode = "public"\n'))
    try:
        async with Client(host.url) as client:
            refused, text = await op(client, "stateful__read", op="get", bucket="mine", key="k")
            assert refused and "per user, and the call runs for no user of its own" in text, text
            assert await op(client, "stateful__read", op="get", bucket="notes", key="k") == (False, "(none)")
    finally:
        host.stop()


def test_no_acknowledged_write_is_lost_to_kill_9(tmp_path, backend):
    """A burst of writes, the host killed in the middle of it: every write
    the client saw succeed is there after a restart (counted)."""
    root = stateful_root(tmp_path)
    configure(root, backend)
    process = subprocess.Popen([str(HOST), "serve", *host_args(root, *config_args(root))], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def send(message: dict) -> None:
        process.stdin.write(json.dumps(message) + "\n")
        process.stdin.flush()

    send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "burst", "version": "1"}}})
    assert json.loads(process.stdout.readline())["id"] == 0
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    writes = 2000
    for i in range(1, writes + 1):
        send({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {
            "name": "stateful__write", "arguments": {"op": "set", "bucket": "burst", "key": f"k{i}", "value": "v"}}})
    acknowledged = set()
    while len(acknowledged) < 60:
        answer = json.loads(process.stdout.readline())
        if answer.get("id") and not answer.get("result", {}).get("isError", True):
            acknowledged.add(answer["id"])
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    import anyio

    async def stored() -> set[int]:
        async with Client(stdio(root)) as client:
            keys = json.loads((await op(client, "stateful__read", op="keys", bucket="burst"))[1])
        return {int(key[1:]) for key in keys}

    kept = anyio.run(stored)
    assert acknowledged <= kept, sorted(acknowledged - kept)[:10]
    assert len(kept) < writes, "the kill landed after the burst: nothing was tested"


@pytest.mark.parametrize("fixture", ["stateful-py", "stateful-js"])
async def test_python_and_javascript_plugins_keep_state_under_the_same_rules(tmp_path, fixture, backend):
    """The SDKs of the other languages reach the same buckets through the
    same checks, and get the host's refusals as their own errors."""
    root = make_root(tmp_path, fixtures=(fixture,))
    configure(root, backend)
    write, read = f"{fixture}__write", f"{fixture}__read"
    async with Client(stdio(root)) as client:
        await wait_for_tools(client, write)
        assert await op(client, write, op="set", bucket="notes", key="k", value="v1") == (False, "set")
        assert await op(client, read, op="get", bucket="notes", key="k") == (False, "v1")
        assert await op(client, write, op="increment", bucket="notes", key="n", delta=41) == (False, "41")
        assert await op(client, write, op="update", bucket="mine", key="u") == (False, "1")
        assert await op(client, write, op="update", bucket="mine", key="u") == (False, "2")
        refused, text = await op(client, read, op="get_many", bucket="notes", key="k,n,x")
        assert not refused and json.loads(text) == ["v1", "41", None], text
        refused, text = await op(client, write, op="open", bucket="Notes")
        assert refused and "is granted" in text and "no [keyvalue] grant" in text, text
        refused, text = await op(client, read, op="set", bucket="notes", key="k", value="v")
        assert refused and "read-only here" in text, text
        refused, text = await op(client, write, op="set", bucket="shared", key="k", value="v")
        assert refused and "the bucket shared is read-only here" in text, text
        refused, text = await op(client, write, op="set", bucket="notes", key="big", size=2000)
        assert refused and "max_value_kib = 1" in text, text
        refused, text = await op(client, write, op="set_many", bucket="notes", key="m", value="v", size=10)
        assert refused and "max_keys = 5" in text, text
        refused, text = await op(client, read, op="keys", bucket="notes")
        assert not refused and json.loads(text) == ["k", "n"], text
    # Another start: the same data.
    async with Client(stdio(root)) as client:
        await wait_for_tools(client, read)
        assert await op(client, read, op="get", bucket="notes", key="k") == (False, "v1")


async def test_operators_list_export_import_and_forget_a_user(tmp_path, backend):
    root = make_root(tmp_path)
    configure(root, backend)
    host = authenticated(root, backend)
    try:
        for user in ("alice", "bob"):
            async with as_user(host.url, user) as client:
                saved = await client.call_tool("journal__save_insight", {**INSIGHT, "text": f"{user}'s insight"})
                assert not saved.is_error, text_of(saved)
        # The embedded store is one host's at a time: a command says so, and
        # how to go on. Redis is shared.
        beside = run_host("state", "list", *host_args(root, *config_args(root)))
        if backend:
            assert beside.returncode == 0 and "user alice" in beside.stdout, beside.stderr
        else:
            assert beside.returncode != 0 and "open in another host process" in beside.stderr, beside.stderr
    finally:
        host.stop()
    listed = run_host("state", "list", *host_args(root, *config_args(root)))
    assert listed.returncode == 0, listed.stderr
    assert "journal/insights (user alice)  2 keys" in listed.stdout, listed.stdout
    assert "journal/insights (user bob)  2 keys" in listed.stdout, listed.stdout
    exported = tmp_path / "alice.jsonl"
    done = run_host("state", "export", "--user", "alice", "--out", str(exported), *host_args(root, *config_args(root)))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert {line["user"] for line in lines} == {"alice"} and len(lines) == 2
    assert any("alice's insight" in line["value"] for line in lines)
    forgot = run_host("state", "forget", "--user", "alice", *host_args(root, *config_args(root)))
    assert forgot.returncode == 0 and "2 keys in 1 buckets" in forgot.stdout, forgot.stdout
    listed = run_host("state", "list", *host_args(root, *config_args(root)))
    assert "alice" not in listed.stdout and "user bob" in listed.stdout, listed.stdout
    restored = run_host("state", "import", str(exported), *host_args(root, *config_args(root)))
    assert restored.returncode == 0 and "imported 2 keys" in restored.stderr, restored.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"plugin": "journal", "bucket": "insights", "key": "k"}\n')
    refused = run_host("state", "import", str(bad), *host_args(root, *config_args(root)))
    assert refused.returncode != 0 and "line 1: give one of value and value_base64" in refused.stderr
    host = authenticated(root, backend)
    try:
        async with as_user(host.url, "alice") as alice:
            found = await alice.call_tool("journal__search_insights", {})
            assert [i["text"] for i in found.structured_content["insights"]] == ["alice's insight"]
    finally:
        host.stop()


async def test_a_store_that_is_down_fails_its_calls_clearly_and_comes_back(tmp_path, redis_server):
    """Redis stopped under a serving host: bucket calls fail at once with
    a clear error, every other plugin is served, and once Redis is back the
    host reconnects by itself."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tmp_path / "redis"
    folder.mkdir()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(folder)]

    def start_redis():
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True).stdout.strip() != b"PONG":
            time.sleep(0.05)
        return server

    redis = start_redis()
    root = make_root(tmp_path / "root")
    configure(root, f"redis://127.0.0.1:{port}")
    try:
        async with Client(stdio(root)) as client:
            saved = await client.call_tool("journal__save_insight", INSIGHT)
            assert not saved.is_error, text_of(saved)
            redis.terminate()
            redis.wait(timeout=10)
            started = time.monotonic()
            failed = await client.call_tool("journal__search_insights", {})
            assert failed.is_error and "the key-value store is unavailable" in text_of(failed), text_of(failed)
            assert f"127.0.0.1:{port}" in text_of(failed)
            assert time.monotonic() - started < 8, "a store that is down fails fast"
            quote = await client.call_tool("market-data__get_quote", {"symbol": "SPY"})
            assert not quote.is_error, text_of(quote)
            redis = start_redis()  # empty: it kept nothing on disk
            deadline = time.monotonic() + 20
            while True:
                found = await client.call_tool("journal__search_insights", {})
                if not found.is_error or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert not found.is_error, text_of(found)
            saved = await client.call_tool("journal__save_insight", INSIGHT)
            assert not saved.is_error, text_of(saved)
    finally:
        redis.terminate()


async def test_a_reloaded_plugin_and_policy_keep_their_buckets(tmp_path, backend):
    """A new policy, or a new build of the plugin, is the same plugin: it
    sees the same buckets."""
    root = make_root(tmp_path)
    configure(root, backend)

    def loads() -> int:
        return (root / "audit.jsonl").read_text().count('"event":"loaded","plugin":"journal"')

    def replaced(path, content: bytes) -> None:
        partial = path.with_suffix(".partial")
        partial.write_bytes(content)
        before = loads()
        os.replace(partial, path)
        deadline = time.monotonic() + 20
        while loads() == before:
            assert time.monotonic() < deadline, f"{path.name} was not reloaded"
            time.sleep(0.05)

    async with Client(stdio(root)) as client:
        saved = await client.call_tool("journal__save_insight", INSIGHT)
        assert not saved.is_error, text_of(saved)
        policy = root / "policies" / "journal.toml"
        replaced(policy, policy.read_bytes().replace(b"max_keys = 20000", b"max_keys = 30000"))
        wasm = root / "plugins" / "journal.wasm"
        replaced(wasm, wasm.read_bytes() + b"\x00\x09\x08rebuilt!")  # a custom section: a new build
        found = await client.call_tool("journal__search_insights", {})
        assert [i["text"] for i in found.structured_content["insights"]] == [INSIGHT["text"]]


REDIS_PASSWORD = "pw-7d1e0c9a-never-logged"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    """A redis-server that speaks only TLS, with a certificate from a
    private authority (made here with openssl) and a password: the way
    Redis is run beside hosts that share it. Yields its port and the
    authority's certificate file."""
    folder = tmp_path_factory.mktemp("tls-redis")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=mcp-host test authority")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "names").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "names")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(folder / "server.pem"), "--tls-key-file", str(folder / "server.key"),
         "--tls-ca-cert-file", str(folder / "ca.pem"), "--tls-auth-clients", "no",
         "--requirepass", REDIS_PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ping = ["redis-cli", "--tls", "--cacert", str(folder / "ca.pem"), "-p", str(port), "--no-auth-warning",
            "-a", REDIS_PASSWORD, "PING"]
    deadline = time.monotonic() + 10
    while subprocess.run(ping, capture_output=True).stdout.strip() != b"PONG":
        assert time.monotonic() < deadline, "redis-server (TLS) did not start"
        time.sleep(0.05)
    yield port, folder / "ca.pem"
    server.terminate()
    server.wait(timeout=10)


async def test_redis_over_tls_with_a_private_authority_and_a_password(tmp_path, tls_redis):
    """`rediss://` with the password in an environment variable and the
    authority in `ca_file`: buckets work. A wrong password, or no
    `ca_file` (so the private authority is not trusted), fails each bucket
    call with what is wrong, and the password is in no answer, log line or
    audit record."""
    port, authority = tls_redis
    root = make_root(tmp_path / "root")
    config = root / "host.toml"

    def serve(url: str, *, ca_file: bool = True) -> HttpHost:
        trust = f'ca_file = "{authority}"\n' if ca_file else ""
        config.write_text(f'[state]\nbackend = "redis"\nurl_env = "TEST_REDIS_URL"\n{trust}')
        return HttpHost(root, {"TEST_REDIS_URL": url}, "--config", str(config))

    good = f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    host = serve(good)
    try:
        async with Client(host.url) as client:
            saved = await client.call_tool("journal__save_insight", INSIGHT)
            assert not saved.is_error, text_of(saved)
            found = await client.call_tool("journal__search_insights", {"text": "RSI"})
            assert not found.is_error, text_of(found)
            assert "RSI(2) below 5" in text_of(found)
    finally:
        host.stop()
    stored = subprocess.run(["redis-cli", "--tls", "--cacert", str(authority), "-p", str(port), "--no-auth-warning",
                             "-a", REDIS_PASSWORD, "--scan", "--pattern", "mcp-host:kv:*"],
                            capture_output=True, text=True, check=True).stdout
    assert stored.strip(), "the insight went to the TLS Redis"

    wrong = f"rediss://:not-{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    for url, ca_file, said in [
        (wrong, True, "password authentication failed - authenticationfailed; check the user and password in "
                      "[state] url"),
        (good, False, "invalid peer certificate: unknownissuer; the server's certificate must chain to an "
                      "authority in [state] ca_file"),
    ]:
        host = serve(url, ca_file=ca_file)
        try:
            async with Client(host.url) as client:
                failed = await client.call_tool("journal__search_insights", {})
                assert failed.is_error, text_of(failed)
                message = text_of(failed)
                assert "the key-value store is unavailable" in message, message
                assert f"rediss://127.0.0.1:{port}" in message, message
                assert said.lower() in message.lower(), message
                assert REDIS_PASSWORD not in message
                quote = await client.call_tool("market-data__get_quote", {"symbol": "SPY"})
                assert not quote.is_error, text_of(quote)
        finally:
            host.stop()
        assert REDIS_PASSWORD not in "".join(host.log)
        assert any(r["event"] == "call" and r["target"] == "journal__search_insights" for r in audit_records(root))
        assert REDIS_PASSWORD not in (root / "audit.jsonl").read_text()
