"""The security suite: a hostile plugin tries every way out of its sandbox.
Each attempt must be denied, the client must get an error naming the rule,
and the audit log must hold a record of it."""

import os
import socket
import time

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

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
    # Things that are neither files nor folders, put there from outside.
    os.mkfifo(ro / "fifo")
    os.mkfifo(root / "intruder" / "rw" / "fifo")
    os.symlink("fifo", ro / "link-to-fifo")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(ro / "socket"))
    # The stand-in is the declared broker "paper" (at BROKER_URL); these
    # tests read its test routes too.
    host_toml = root / "policies" / "host.toml"
    host_toml.write_text(host_toml.read_text().replace(
        'read = []', 'read = ["/positions", "/redirect", "/big"]'))
    host = HttpHost(root, {"BROKER_URL": broker.url, "HOME": "/root"})
    yield root, host, broker
    host.stop()
    listener.close()


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


SPECIAL_FILES = [
    ("read a FIFO in a read-only mount", {"op": "read", "path": "/ro/fifo"}, "open /ro/fifo", "a FIFO"),
    ("write a FIFO in a read-write mount", {"op": "write", "path": "/rw/fifo"}, "open /rw/fifo", "a FIFO"),
    ("read a FIFO through a link", {"op": "read", "path": "/ro/link-to-fifo"}, "open /ro/link-to-fifo", "a FIFO"),
    ("truncate a FIFO", {"op": "truncate", "path": "/rw/fifo"}, "open /rw/fifo", "a FIFO"),
    ("read a socket", {"op": "read", "path": "/ro/socket"}, "open /ro/socket", "a socket"),
]


@pytest.mark.parametrize("case, arguments, attempt_text, kind", SPECIAL_FILES, ids=[c[0] for c in SPECIAL_FILES])
async def test_only_regular_files_and_folders_open_in_mounts(security, case, arguments, attempt_text, kind):
    root, host, _ = security
    started = time.monotonic()
    message = await attempt(host, "fs", arguments)
    # Refused at once: the FIFO is never opened, so no host thread waits on it.
    assert time.monotonic() - started < 3, "the open blocked"
    # wasmtime-wasi reports FIFOs and sockets alike as of an unknown type.
    rule = "policy (only regular files and folders open in a mount; this is a"
    assert_denied_and_audited(root, message, "fs", rule, attempt_text)


async def test_fifo_opens_hold_no_host_thread(security):
    """Forty FIFO opens, then ordinary calls: had each open held a thread
    of the pool file operations share, the calls after would stall."""
    _, host, _ = security
    async with Client(host.url) as client:
        for _ in range(40):
            result = await client.call_tool("intruder__fs", {"op": "read", "path": "/ro/fifo"})
            assert result.is_error
        started = time.monotonic()
        read = await client.call_tool("intruder__fs", {"op": "read", "path": "/ro/data.txt"})
        assert not read.is_error and text_of(read) == "market history"
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("case, arguments, rule, attempt_text", FILE_ATTEMPTS, ids=[c[0] for c in FILE_ATTEMPTS])
async def test_file_escapes_are_denied(security, case, arguments, rule, attempt_text):
    root, host, _ = security
    message = await attempt(host, "fs", arguments)
    assert_denied_and_audited(root, message, "fs", rule, attempt_text)
    assert (root / "intruder" / "ro" / "data.txt").read_text() == "market history"
    assert sorted(p.name for p in (root / "intruder" / "rw").iterdir() if p.name not in ("ok.txt", "fifo")) == []


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
        ("a denied method on an allowed host", "http", {"method": "PUT", "url": f"{broker_url}/redirect"},
         "policy (no network rule", f"PUT {broker_url}/redirect"),
        ("closing positions on an allowed host", "http", {"method": "DELETE", "url": f"{broker_url}/positions"},
         "guardrail no-order-execution", f"DELETE {broker_url}/positions"),
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


ORDER_SPELLINGS = [
    ("POST", "/%6Frders"),
    ("POST", "/v%32/orders"),
    ("POST", "/v2/%2e%2e/orders"),
    ("POST", "/x/../orders"),
    ("POST", "/x/%2E%2E/orders"),
    ("POST", "/api/orders"),
    ("POST", "/v1/orders"),
    ("POST", "/ORDERS"),
    ("POST", "/v2/Orders/1"),
    ("POST", "/api/orders.json"),
    ("POST", "/v2/bulk-orders"),
    ("POST", "/api/v1/order"),
    ("post", "/orders"),
    ("PUT", "/orders"),
    ("PATCH", "/v2/orders/1"),
    ("DELETE", "/api/v1/orders/7"),
    ("FROB", "/orders"),
]

AMBIGUOUS_PATHS = [
    ("POST", "/x/..;/orders", "policy (the path has a ; parameter)"),
    ("POST", "/v2;x/orders", "policy (the path has a ; parameter)"),
    ("POST", "/v2%3bx/orders", "policy (the path has a ; parameter)"),
    ("POST", "/v2/orders%2F1", "policy (the path has an encoded slash"),
    ("POST", "/x/..%2forders", "policy (the path has an encoded slash"),
    ("POST", "/x/..%5corders", "policy (the path has a backslash)"),
    ("POST", "/x/%252e%252e/orders", "policy (the path has an encoded %"),
    ("POST", "/x//orders", "policy (the path has an empty segment"),
    ("POST", "/../../orders", "policy (the path climbs above /"),
    ("GET", "/positions/..;/orders", "policy (the path has a ; parameter)"),
]


@pytest.mark.parametrize("method, path", ORDER_SPELLINGS, ids=[f"{m} {p}" for m, p in ORDER_SPELLINGS])
async def test_orders_in_every_spelling_are_refused(security, method, path):
    root, host, broker = security
    before = len(broker.requests)
    message = await attempt(host, "http", {"method": method, "url": f"{broker.url}{path}"})
    assert "host: denied by guardrail no-order-execution" in message, message
    assert broker.requests[before:] == []
    # The attempt is named in its canonical form, in the message and the audit log.
    attempt_text = message.split("host: denied by ", 1)[1].splitlines()[0].split("): ", 1)[1]
    assert attempt_text.startswith(f"{method.upper()} {broker.url}/")
    assert "%" not in attempt_text and "/./" not in attempt_text and "/../" not in attempt_text

    def this(record):
        return record["event"] == "denied" and record["attempt"] == attempt_text

    records = audit_records(root, until=this)
    assert any(this(r) and r["rule"].startswith("guardrail no-order-execution") for r in records)


@pytest.mark.parametrize("method, path, rule", AMBIGUOUS_PATHS, ids=[f"{m} {p}" for m, p, _ in AMBIGUOUS_PATHS])
async def test_paths_servers_read_two_ways_are_refused(security, method, path, rule):
    root, host, broker = security
    before = len(broker.requests)
    message = await attempt(host, "http", {"method": method, "url": f"{broker.url}{path}"})
    assert f"host: denied by {rule}" in message, message
    assert broker.requests[before:] == []


async def test_what_was_checked_is_what_is_sent(security):
    """The canonical form is sent: escapes of unreserved characters decoded,
    dot segments resolved, the method upper case, the Host header canonical."""
    _, host, broker = security
    port = broker.url.rsplit(":", 1)[1]
    async with Client(host.url) as client:
        for url in (f"{broker.url}/%70ositions", f"{broker.url}/x/../positions", f"http://127.0.0.1:{port}/./positions"):
            before = len(broker.requests)
            result = await client.call_tool("intruder__http", {"method": "GET", "url": url})
            assert not result.is_error and text_of(result).startswith("200 "), text_of(result)
            assert broker.requests[before:] == [("GET", "/positions")]
            assert broker.hosts[-1] == f"127.0.0.1:{port}"


async def test_a_response_past_the_size_cap_is_cut_off(security):
    root, host, broker = security
    message = await attempt(host, "http", {"method": "GET", "url": f"{broker.url}/big"})
    assert_denied_and_audited(root, message, "http", "limit ([network] max_response_kib = 1)", f"GET {broker.url}/big")


def narrowed_attempts(broker_url: str):
    return [
        ("a mounted file, declaring no file effect", {"op": "read", "path": "/ro/data.txt"},
         "policy (no mount holds this path)", "open /ro/data.txt"),
        ("a granted raw socket, declaring only network-read", {"op": "tcp", "path": "127.0.0.1:9"},
         "policy (no [sockets] grant", "TCP connect 127.0.0.1:9"),
        ("a write a rule allows, declaring only network-read", {"op": "post", "path": f"{broker_url}/api/x"},
         "policy (no network rule", f"POST {broker_url}/api/x"),
    ]


@pytest.mark.parametrize("case", [c[0] for c in narrowed_attempts("http://127.0.0.1:1")])
async def test_a_tool_gets_only_what_it_declares(security, case):
    """Grants are narrowed by the tool's declared effects: the plugin holds
    a mount, a socket grant and a rule allowing POST, but its tool declaring
    only network-read reaches none of them."""
    root, host, broker = security
    _, arguments, rule, attempt_text = next(c for c in narrowed_attempts(broker.url) if c[0] == case)
    before = len(broker.requests)
    message = await attempt(host, "reader", arguments)
    assert_denied_and_audited(root, message, "reader", rule, attempt_text)
    assert broker.requests[before:] == []


async def test_the_socket_grant_holds_for_a_tool_declaring_network_write(security):
    _, host, _ = security
    async with Client(host.url) as client:
        result = await client.call_tool("intruder__tcp", {"target": "127.0.0.1:9"})
    # Granted: the connection is tried (whether anything listens on the
    # discard port or not), never refused by the host.
    message = text_of(result)
    assert "denied by" not in message and (message == "connected" or "guest saw:" in message), message


async def test_granted_network_and_env_still_work(security):
    _, host, broker = security
    async with Client(host.url) as client:
        positions = await client.call_tool("intruder__http", {"method": "GET", "url": f"{broker.url}/positions"})
        assert not positions.is_error and text_of(positions).startswith("200 ")
        granted = await client.call_tool("intruder__env", {"target": "GRANTED"})
        assert text_of(granted) == "yes"


MAX_REFUSALS = 256  # host/src/capability/denials.rs


async def storm(host, broker, tag: str, times: int, after: int = 0):
    """Buries one order attempt among `times` different refused reads before
    it and `after` more after it; returns the client's message and the order
    attempt as the host names it."""
    last = f"POST {broker.url}/orders/{tag}"
    async with Client(host.url) as client:
        result = await client.call_tool(
            "intruder__storm",
            {"url": f"{broker.url}/secret/{tag}/", "times": times, "then": f"{broker.url}/orders/{tag}", "after": after},
        )
    assert result.is_error, text_of(result)
    return text_of(result), last


def storm_records(root, tag: str, until) -> list[dict]:
    """This storm's refusal and call records, once `until` holds for one."""

    def ours(record):
        return (record["event"] in ("denied", "denied-more") and f"/{tag}" in record.get("attempt", record.get("latest_attempt", ""))) or (
            record["event"] == "call" and record["target"] == "intruder__storm" and record.get("outcome") == "refusal-limit")

    records = audit_records(root, until=lambda r: ours(r) and until(r), timeout=30)
    assert any(ours(r) and until(r) for r in records)
    return [r for r in records if ours(r) and r["event"] != "call"]


def attempt_is(text):
    return lambda record: record.get("attempt") == text


async def test_an_attempt_between_decoys_is_named_in_the_audit_log(security):
    """The attack that got through: one order attempt among decoys, then one
    more decoy. Every refusal is named, so the attempt is too."""
    root, host, broker = security
    message, last = await storm(host, broker, "between", 100, after=1)
    # The client's message stays short: the first refusals, then a count.
    assert "more refusals" in message and len(message) < 20_000
    records = storm_records(root, "between", attempt_is(f"GET {broker.url}/secret/between/after0"))
    named = [r["attempt"] for r in records if r["event"] == "denied"]
    assert last in named, "the hidden attempt is not named"
    assert len(named) == 102 and len(set(named)) == 102, len(named)
    assert not any(r["event"] == "denied-more" for r in records)
    assert not any(path.startswith("/orders") for _, path in broker.requests)


async def test_a_call_that_keeps_getting_refused_is_stopped(security):
    root, host, broker = security
    message, last = await storm(host, broker, "flood", 3000)
    # Stopped with a clear error long before its order attempt.
    assert f"stopped after {MAX_REFUSALS} refused attempts" in message, message
    assert len(message) < 20_000, len(message)

    def stopped(record):
        return record["event"] == "call" and record["target"] == "intruder__storm" and record.get("outcome") == "refusal-limit"

    records = storm_records(root, "flood", stopped)
    named = [r for r in records if r["event"] == "denied"]
    # Every refusal made is named, each once; the flood went no further.
    assert MAX_REFUSALS < len(named) < 3000, len(named)
    assert len({r["attempt"] for r in named}) == len(named)
    assert not any(r["attempt"] == last for r in named)
    assert not any(path.startswith("/orders") for _, path in broker.requests)


async def test_the_same_refusal_repeated_is_one_record_with_a_count(security):
    root, host, broker = security
    async with Client(host.url) as client:
        result = await client.call_tool(
            "intruder__storm",
            {"url": f"{broker.url}/secret/twice", "repeat": True, "times": 200, "then": f"{broker.url}/orders/twice"},
        )
    assert result.is_error
    message = text_of(result)
    read = f"GET {broker.url}/secret/twice"
    assert f"{read} (200 times)" in message, message
    last = f"POST {broker.url}/orders/twice"
    records = storm_records(root, "twice", attempt_is(last))
    assert [(r["attempt"], r.get("times", 1)) for r in records] == [(read, 200), (last, 1)], records


async def test_concurrent_floods_lose_no_attempt(security):
    """Many calls flooding at once fill the audit queue; the host waits for
    room rather than dropping records."""
    root, host, broker = security
    results = {}

    async def one(tag):
        results[tag] = await storm(host, broker, tag, 200)

    async with anyio.create_task_group() as group:
        for n in range(6):
            group.start_soon(one, f"crowd{n}")
    for tag, (_, last) in results.items():
        records = storm_records(root, tag, attempt_is(last))
        assert sum(1 for r in records if r["event"] == "denied") == 201


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


async def test_calls_are_refused_while_the_audit_log_cannot_be_written(tmp_path, broker):
    """A call that cannot be audited is not run: with the log on a full disk,
    every entry point refuses, says why, and the host stays up."""
    root = make_root(tmp_path, fixtures=("intruder",))
    (root / "intruder" / "ro").mkdir(parents=True)
    (root / "intruder" / "rw").mkdir()
    host = HttpHost(root, {"BROKER_URL": broker.url}, "--audit-log", "/dev/full")
    try:
        async with Client(host.url) as client:
            # The writer fails on the start-up records; a call racing it may
            # still be served, and its own record is what fails then.
            for _ in range(20):
                try:
                    await client.call_tool("intruder__env", {"target": "GRANTED"})
                except MCPError as refused:
                    message = refused.error.message
                    break
                await anyio.sleep(0.1)
            else:
                pytest.fail("calls are still served with an unwritable audit log")
            assert "audit log cannot be written" in message, message
            for _ in range(3):
                with pytest.raises(MCPError, match="audit log cannot be written"):
                    await client.call_tool("intruder__env", {"target": "GRANTED"})
            assert (await client.list_tools()).tools
        assert host.process.poll() is None
        assert any("cannot write the audit log" in line for line in host.log), "".join(host.log)
    finally:
        host.stop()
