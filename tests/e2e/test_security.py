"""The security suite: a hostile plugin tries every way out of its sandbox.
Each attempt must be denied, the client must get an error naming the rule,
and the audit log must hold a record of it."""

import os

import pytest
from mcp import Client

from harness import HttpHost, audit_records, make_root, text_of

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def security(tmp_path_factory, broker):
    root = make_root(tmp_path_factory.mktemp("security"), fixtures=("intruder",))
    (root / "secret.txt").write_text("the root's secret")
    ro = root / "intruder" / "ro"
    ro.mkdir(parents=True)
    (root / "intruder" / "rw").mkdir()
    (ro / "data.txt").write_text("market history")
    os.symlink("../../secret.txt", ro / "escape")
    os.symlink("/etc/hostname", ro / "absolute-escape")
    host = HttpHost(root, {"BROKER_URL": broker.url, "HOME": "/root"})
    yield root, host, broker
    host.stop()


async def attempt(host, tool: str, arguments: dict) -> str:
    async with Client(host.url) as client:
        result = await client.call_tool(f"intruder__{tool}", arguments)
    assert result.is_error, f"{tool} {arguments} succeeded: {text_of(result)}"
    return text_of(result)


def assert_denied_and_audited(root, message: str, tool: str, rule: str, attempt_text: str) -> None:
    assert f"host: denied by {rule}" in message, message
    assert attempt_text in message, message

    def matches(record):
        return (
            record["event"] == "denied"
            and record["plugin"] == "intruder"
            and record["target"] == f"intruder__{tool}"
            and record["rule"].startswith(rule)
            and attempt_text in record["attempt"]
        )

    records = audit_records(root, until=matches)
    assert any(matches(r) for r in records), f"no audit record of {attempt_text!r}"


FILE_ATTEMPTS = [
    ("read outside the grants", {"op": "read", "path": "/etc/passwd"}, "policy (no mount holds this path)", "open /etc/passwd"),
    ("a relative path", {"op": "read", "path": "secret.txt"}, "policy (no mount holds this path)", "secret.txt"),
    ("dot-dot out of a mount", {"op": "read", "path": "/ro/../../secret.txt"}, "the sandbox", "open /ro/../../secret.txt"),
    ("a symlink out of a mount", {"op": "read", "path": "/ro/escape"}, "the sandbox", "open /ro/escape"),
    ("an absolute symlink", {"op": "read", "path": "/ro/absolute-escape"}, "the sandbox", "open /ro/absolute-escape"),
    ("write to a read-only mount", {"op": "write", "path": "/ro/new.txt"}, "the sandbox", "open /ro/new.txt"),
    ("truncate in a read-only mount", {"op": "truncate", "path": "/ro/data.txt"}, "the sandbox", "open /ro/data.txt"),
    ("rename out of a read-only mount", {"op": "rename", "path": "/ro/data.txt", "to": "/rw/moved.txt"}, "the sandbox", "rename /ro/data.txt"),
    ("hard-link out of a read-only mount", {"op": "hardlink", "path": "/ro/data.txt", "to": "/rw/linked.txt"}, "the sandbox", "hard-link /ro/data.txt"),
    ("delete in a read-only mount", {"op": "delete", "path": "/ro/data.txt"}, "the sandbox", "delete /ro/data.txt"),
    ("mkdir in a read-only mount", {"op": "mkdir", "path": "/ro/sub"}, "the sandbox", "create the directory /ro/sub"),
]


@pytest.mark.parametrize("case, arguments, rule, attempt_text", FILE_ATTEMPTS, ids=[c[0] for c in FILE_ATTEMPTS])
async def test_file_escapes_are_denied(security, case, arguments, rule, attempt_text):
    root, host, _ = security
    message = await attempt(host, "fs", arguments)
    assert_denied_and_audited(root, message, "fs", rule, attempt_text)
    assert (root / "intruder" / "ro" / "data.txt").read_text() == "market history"
    assert sorted(p.name for p in (root / "intruder" / "rw").iterdir() if p.name != "ok.txt") == []


async def test_granted_files_still_work(security):
    _, host, _ = security
    async with Client(host.url) as client:
        read = await client.call_tool("intruder__fs", {"op": "read", "path": "/ro/data.txt"})
        assert not read.is_error and text_of(read) == "market history"
        write = await client.call_tool("intruder__fs", {"op": "write", "path": "/rw/ok.txt"})
        assert not write.is_error, text_of(write)


def network_attempts(broker_url: str):
    port = broker_url.rsplit(":", 1)[1]
    return [
        ("an unlisted host", "http", {"method": "GET", "url": f"http://localhost:{port}/positions"},
         "policy (no network rule", f"GET http://localhost:{port}/positions"),
        ("an IP literal", "http", {"method": "GET", "url": "http://10.255.255.1/positions"},
         "policy (no network rule", "GET http://10.255.255.1:80/positions"),
        ("a denied method on an allowed host", "http", {"method": "DELETE", "url": f"{broker_url}/positions"},
         "policy (no network rule", f"DELETE {broker_url}/positions"),
        ("a denied path on an allowed host", "http", {"method": "GET", "url": f"{broker_url}/secret"},
         "policy (no network rule", f"GET {broker_url}/secret"),
        ("an order POST where GET is allowed", "http", {"method": "POST", "url": f"{broker_url}/orders"},
         "guardrail no-order-execution", f"POST {broker_url}/orders"),
        ("a redirect to a denied URL", "http", {"method": "GET", "url": f"{broker_url}/redirect", "follow_redirect": True},
         "policy (no network rule", f"GET {broker_url}/secret"),
        ("an order from a tool declaring nothing", "quiet", {"target": f"{broker_url}/orders"},
         "guardrail no-order-execution", f"POST {broker_url}/orders"),
        ("raw TCP", "tcp", {"target": f"127.0.0.1:{port}"},
         "policy (no [sockets] grant", f"TCP connect 127.0.0.1:{port}"),
        ("raw UDP", "udp", {"target": "127.0.0.1:9"},
         "policy (no [sockets] grant", "UDP"),
        ("name lookup", "dns", {"target": "example.com"},
         "policy (no [sockets] name_lookup grant)", "resolve the host name example.com"),
        ("an env var not granted", "env", {"target": "HOME"},
         "policy (no [env] grant)", "read the environment variable HOME"),
    ]


NETWORK_CASES = [case[0] for case in network_attempts("http://127.0.0.1:1")]


@pytest.mark.parametrize("case", NETWORK_CASES)
async def test_network_socket_and_env_escapes_are_denied(security, case):
    root, host, broker = security
    _, tool, arguments, rule, attempt_text = next(c for c in network_attempts(broker.url) if c[0] == case)
    before = list(broker.requests)
    message = await attempt(host, tool, arguments)
    assert_denied_and_audited(root, message, tool, rule, attempt_text)
    received = broker.requests[len(before):]
    assert all(path in ("/positions", "/redirect") and method == "GET" for method, path in received), received


async def test_a_response_past_the_size_cap_is_cut_off(security):
    root, host, broker = security
    message = await attempt(host, "http", {"method": "GET", "url": f"{broker.url}/big"})
    assert_denied_and_audited(root, message, "http", "limit ([network] max_response_kib = 1)", f"GET {broker.url}/big")


async def test_granted_network_and_env_still_work(security):
    _, host, broker = security
    async with Client(host.url) as client:
        positions = await client.call_tool("intruder__http", {"method": "GET", "url": f"{broker.url}/positions"})
        assert not positions.is_error and text_of(positions).startswith("200 ")
        granted = await client.call_tool("intruder__env", {"target": "GRANTED"})
        assert text_of(granted) == "yes"


async def test_every_call_is_audited_with_its_client(security):
    root, host, _ = security
    async with Client(host.url, mode="legacy") as client:
        await client.call_tool("intruder__env", {"target": "GRANTED"})

    def this_call(record):
        return record["event"] == "call" and record["target"] == "intruder__env" and record["client"].get("session")

    record = next(r for r in audit_records(root, until=this_call) if this_call(r))
    assert record["outcome"] == "ok"
    assert record["method"] == "tools/call"
    assert record["client"]["transport"] == "http"
    assert record["duration_ms"] >= 0
    assert "arguments" not in record and len(record["arguments_sha256"]) == 64

    async with Client(host.url) as client:
        await client.read_resource("market://symbols")

    def read(record):
        return record["event"] == "call" and record["method"] == "resources/read" and record["target"] == "market://symbols"

    record = next(r for r in audit_records(root, until=read) if read(r))
    assert record["plugin"] == "market-data" and record["outcome"] == "ok"
