"""The front door, round two: nothing a client sends grows the host without
bound, and one client cannot starve the rest (issue 19)."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from harness import HttpHost, audit_records, make_root
from test_front_door import ACCEPT, INITIALIZE, jsonrpc_error, list_tools, messages, open_session, send


def public_host(tmp_path, http_section: str = "", auth_extra: str = "") -> HttpHost:
    root = make_root(tmp_path)
    config = root / "host.toml"
    config.write_text(f"[http]\n{http_section}\n[auth]\nmode = \"public\"\n{auth_extra}\n"
                      "[auth.rate_limit]\nrequests_per_minute = 0\ntool_calls_per_minute = 0\n")
    host = HttpHost(root, None, "--config", str(config))
    host.root = root
    return host


def raw_post(port: int, body: bytes, headers: list[tuple[str, str]], source: str = "127.0.0.1"):
    """(status, headers, body) of a POST with headers sent byte for byte
    (latin-1), repeated names included."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        connection.putrequest("POST", "/mcp", skip_host=True, skip_accept_encoding=True)
        for name, value in [("host", f"127.0.0.1:{port}"), *ACCEPT.items(), ("content-length", str(len(body))), *headers]:
            connection.putheader(name, value.encode("latin-1"))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def gauge(host: HttpHost, name: str) -> float:
    _, _, text = send(host.origin + "/metrics", "GET")
    found = re.search(rf"^mcp_host_{name} (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


def until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


# A session the table never sees.

MALFORMED_SESSION_HEADERS = [
    [("mcp-session-id", "\x80")],
    [("mcp-session-id", "\xff\xfe")],
    [("mcp-session-id", "abc\x80def")],
    [("mcp-session-id", "has space")],
    [("mcp-session-id", "tab\there")],
    [("mcp-session-id", "x" * 129)],
    [("mcp-session-id", "a"), ("mcp-session-id", "b")],
    [("Mcp-Session-Id", "é")],
]


def test_a_malformed_session_header_is_refused_and_opens_nothing(tmp_path):
    host = public_host(tmp_path, "max_sessions = 20\nmax_sessions_per_user = 10\n")
    try:
        body = json.dumps(INITIALIZE).encode()
        for _ in range(10):
            for headers in MALFORMED_SESSION_HEADERS:
                status, answer, text = raw_post(host.port, body, headers)
                assert status == 400, (headers, status, text)
                assert jsonrpc_error(text)["code"] == -32600, text
                assert not any(name.lower() == "mcp-session-id" for name in answer), answer
        # Nothing was opened behind the table's back: there is room, and
        # no session task is alive.
        assert gauge(host, "session_watchers") == 0
        sessions = [open_session(host.url) for _ in range(3)]
        assert all(list_tools(host.url, s)[0] == 200 for s in sessions)
    finally:
        host.stop()


def test_sessions_closed_or_evicted_leave_no_task_behind(tmp_path):
    host = public_host(tmp_path, "max_sessions_per_user = 2\n")
    try:
        for _ in range(150):
            open_session(host.url)
        # Each new session past two closed the oldest: two are left, and
        # with them two tasks watching for reloads.
        assert until(lambda: gauge(host, "session_watchers") <= 2), gauge(host, "session_watchers")
        deleted = open_session(host.url)
        assert send(host.url, "DELETE", headers={"mcp-session-id": deleted})[0] in (200, 204)
        assert until(lambda: gauge(host, "session_watchers") <= 2), gauge(host, "session_watchers")
    finally:
        host.stop()


# Unfair limits: eviction never ends a live stream or a call in flight.

class Stream:
    """A GET event stream on a session, held open on its own thread."""

    def __init__(self, host: HttpHost, session: str):
        self.connection = http.client.HTTPConnection("127.0.0.1", host.port, timeout=60)
        self.connection.request("GET", "/mcp", headers={
            "host": f"127.0.0.1:{host.port}", "accept": "text/event-stream", "mcp-session-id": session})
        self.response = self.connection.getresponse()
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            while self.response.read1(4096):
                pass
        except Exception:
            pass
        self.ended.set()

    def close(self):
        self.connection.close()


def test_eviction_never_ends_a_session_with_a_live_stream(tmp_path):
    host = public_host(tmp_path, "max_sessions_per_user = 2\n")
    streams = []
    try:
        streamed = open_session(host.url)
        streams.append(Stream(host, streamed))
        assert streams[0].response.status == 200
        for _ in range(5):
            open_session(host.url)  # each evicts an idle one, never the streamed one
        assert not streams[0].ended.wait(1), "the live stream was ended by an eviction"
        assert list_tools(host.url, streamed)[0] == 200
        # With both of its sessions streaming, a user is told to end one.
        other = open_session(host.url)
        streams.append(Stream(host, other))
        status, _, text = send(host.url, body=json.dumps(INITIALIZE).encode())
        assert status == 429, (status, text)
        assert "max_sessions_per_user" in jsonrpc_error(text)["message"], text
        assert list_tools(host.url, streamed)[0] == 200 and list_tools(host.url, other)[0] == 200
    finally:
        for stream in streams:
            stream.close()
        host.stop()


def test_a_few_addresses_cannot_keep_newcomers_out(tmp_path):
    """Eight addresses fill the table; every new address still gets in,
    at the expense of whoever holds the most idle sessions."""
    host = public_host(tmp_path, "max_sessions = 40\nmax_sessions_per_user = 32\n")
    try:
        body = json.dumps(INITIALIZE).encode()
        flood = [raw_post(host.port, body, [], source=f"127.0.0.{2 + n % 8}")[0] for n in range(200)]
        assert flood.count(200) >= 40, flood
        newcomers = [raw_post(host.port, body, [], source=f"127.0.1.{n}")[0] for n in range(1, 21)]
        assert newcomers == [200] * 20, newcomers
    finally:
        host.stop()


# Client text kept or repeated without bound.

def rpc(host: HttpHost, session: str, method: str, params: dict, id: int = 7):
    body = json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).encode()
    status, _, text = send(host.url, body=body, headers={"mcp-session-id": session})
    return status, text


def longest_log_line(host: HttpHost) -> int:
    return max(len(line) for line in host.log)


def test_a_huge_client_name_is_kept_short_in_every_audit_record(tmp_path):
    host = public_host(tmp_path)
    try:
        hello = json.loads(json.dumps(INITIALIZE))
        hello["params"]["clientInfo"]["name"] = "N" * (3 << 20) + "\nERROR host: forged"
        status, answer, text = send(host.url, body=json.dumps(hello).encode())
        assert status == 200, text[:300]
        session = answer.get("mcp-session-id") or answer.get("Mcp-Session-Id")
        send(host.url, body=b'{"jsonrpc":"2.0","method":"notifications/initialized"}', headers={"mcp-session-id": session})
        for n in range(20):
            assert rpc(host, session, "resources/read", {"uri": "market://symbols"}, id=n + 2)[0] == 200
        records = [r for r in audit_records(host.root, until=lambda r: r.get("target") == "market://symbols")
                   if r.get("client")]
        assert records, "no audited call"
        for record in records:
            name = record["client"].get("name") or ""
            assert len(name) <= 131 and "\n" not in name, len(name)
            assert len(json.dumps(record)) < 4096
        assert (host.root / "audit.jsonl").stat().st_size < 200_000
        assert longest_log_line(host) < 4096
    finally:
        host.stop()


def test_resource_uris_are_not_metrics_labels_and_long_ones_are_refused_short(tmp_path):
    host = public_host(tmp_path)
    try:
        session = open_session(host.url)
        for n in range(40):
            rpc(host, session, "resources/read", {"uri": f"market://bars/SYM{n}X/1d"}, id=n + 2)
        _, _, metrics = send(host.origin + "/metrics", "GET")
        assert "SYM17X" not in metrics
        assert 'target="market://bars/{symbol}/{timeframe}"' in metrics, metrics
        for uri in ["market://bars/" + "x" * (1 << 20) + "/1d", "nosuch://" + "\u202e" * 100_000]:
            status, text = rpc(host, session, "resources/read", {"uri": uri})
            error = json.loads(text)["error"] if text.startswith("{") else messages(text)[0]["error"]
            assert len(error["message"]) < 1000, len(error["message"])
        _, _, metrics = send(host.origin + "/metrics", "GET")
        assert len(metrics) < 64_000
        assert longest_log_line(host) < 4096
    finally:
        host.stop()


def test_subscriptions_are_capped_per_session(tmp_path):
    host = public_host(tmp_path)
    try:
        session = open_session(host.url)
        answers = [rpc(host, session, "resources/subscribe", {"uri": f"market://bars/S{n}/1d"}, id=n + 2)
                   for n in range(300)]
        accepted = [text for _, text in answers if '"result"' in text]
        refused = [text for _, text in answers if '"error"' in text]
        assert len(accepted) == 256 and len(refused) == 44, (len(accepted), refused[:1])
        assert "256 resources" in refused[0]
        # Subscribing again to one already watched is fine; after an
        # unsubscribe there is room for one more.
        assert '"result"' in rpc(host, session, "resources/subscribe", {"uri": "market://bars/S0/1d"})[1]
        assert '"result"' in rpc(host, session, "resources/unsubscribe", {"uri": "market://bars/S1/1d"})[1]
        assert '"result"' in rpc(host, session, "resources/subscribe", {"uri": "market://bars/S999/1d"})[1]
        long_uri = "market://bars/" + "y" * 5000 + "/1d"
        assert '"error"' in rpc(host, session, "resources/subscribe", {"uri": long_uri})[1]
    finally:
        host.stop()


def test_a_huge_token_field_is_not_echoed_whole(tmp_path):
    from test_auth import AUDIENCE, ISSUER, b64url, start as start_auth

    auth = (f'mode = "direct"\nresource = "{AUDIENCE}"\nissuer = "{ISSUER}"\n'
            f'hs256_secret_env = "TEST_HS256_SECRET"\n')
    host, _ = start_auth(tmp_path, auth, "failed_auth_per_minute = 1000\n")
    try:
        header = b64url(json.dumps({"alg": "A" * 200_000 + "\u001b[2J", "typ": "JWT"}).encode())
        token = f"{header}.{b64url(b'{}')}.sig"
        status, answer, text = send(host.url, body=json.dumps(INITIALIZE).encode(),
                                    headers={"authorization": f"Bearer {token}"})
        assert status == 401
        challenge = answer.get("www-authenticate") or answer.get("WWW-Authenticate")
        assert challenge and len(challenge) < 1000, len(challenge or "")
        assert len(text) < 2000, len(text)
        assert longest_log_line(host) < 4096
    finally:
        host.stop()


# Duplicate ids over HTTP, and the JSON-RPC codes for what is not a message.

def test_a_request_reusing_an_id_in_flight_is_refused_and_the_first_answered(tmp_path):
    from test_front_door import slow_call

    root = make_root(tmp_path, fixtures=("conformance",))
    host = HttpHost(root)
    try:
        session = open_session(host.url)
        results: list = []
        first = threading.Thread(target=slow_call, args=(host.url, session, 2, results))
        first.start()
        time.sleep(0.7)
        second: list = []
        slow_call(host.url, session, 1, second)
        status, _, text = second[0]
        assert status == 400, text
        answer = json.loads(text)
        assert answer["id"] == 5 and answer["error"]["code"] == -32600, answer
        first.join(30)
        status, _, text = results[0]
        assert status == 200 and messages(text)[-1]["id"] == 5 and "result" in messages(text)[-1], text
        # Once answered, the id may be used again.
        again: list = []
        slow_call(host.url, session, 0, again)
        assert again[0][0] == 200, again
        # Another session's ids are its own.
        other = open_session(host.url)
        concurrent: list = []
        threads = [threading.Thread(target=slow_call, args=(host.url, s, 1, concurrent)) for s in (session, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert [r[0] for r in concurrent] == [200, 200], concurrent
    finally:
        host.stop()


DEEP = b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":' + b"[" * 1000 + b"]" * 1000 + b"}"


@pytest.mark.parametrize("body, code, id", [
    (b'{"jsonrpc":"1.0","id":1,"method":"ping"}', -32600, 1),
    (b'{"id":1,"method":"ping"}', -32600, 1),
    (b'{"jsonrpc":2.0,"id":1,"method":"ping"}', -32600, 1),
    (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', -32600, None),
    (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', -32600, None),
    (b'{"jsonrpc":"2.0","id":18446744073709551616,"method":"ping"}', -32600, None),
    (b'{"jsonrpc":"2.0","id":1e3,"method":"ping"}', -32600, None),
    (b'{"jsonrpc":"2.0","id":18446744073709551615,"method":"ping"}', -32600, None),
    (b'{"jsonrpc":"2.0","id":"' + b"i" * 300 + b'","method":"ping"}', -32600, None),
    (b'{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}', -32600, None),
    (b'{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}', -32600, None),
    (b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x\xff\xfe"}}', -32700, None),
    (b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"\xc0\xae"}}', -32700, None),
    (DEEP, -32700, None),
    (DEEP.replace(b'"tools/call"', b'"initialize"'), -32700, None),
    (b'{"jsonrpc":"2.0","id":4,"method":"initialize","params":{"clientInfo":{"name":"\xff"}}}', -32700, None),
])
@pytest.mark.parametrize("with_session", [True, False], ids=["session", "sessionless"])
def test_what_is_not_a_valid_message_gets_the_code_for_why(tmp_path_factory, body, code, id, with_session):
    host = shared_public_host(tmp_path_factory)
    headers = {"mcp-session-id": open_session(host.url)} if with_session else {}
    status, _, text = send(host.url, body=body, headers=headers)
    assert status == 400, text
    answer = json.loads(text)
    assert answer["error"]["code"] == code and answer["id"] == id, answer


def test_large_integer_ids_come_back_exactly(tmp_path_factory):
    host = shared_public_host(tmp_path_factory)
    session = open_session(host.url)
    for id in (9223372036854775807, -9223372036854775808, "ï-d"):
        body = json.dumps({"jsonrpc": "2.0", "id": id, "method": "ping"}).encode()
        status, _, text = send(host.url, body=body, headers={"mcp-session-id": session})
        assert status == 200, text
        assert f'"id":{json.dumps(id, ensure_ascii=False)}' in text.replace(" ", ""), text


_shared: dict = {}


def shared_public_host(tmp_path_factory) -> HttpHost:
    if "host" not in _shared:
        _shared["host"] = public_host(tmp_path_factory.mktemp("codes"))
    return _shared["host"]


@pytest.fixture(scope="module", autouse=True)
def _stop_shared():
    yield
    if "host" in _shared:
        _shared.pop("host").stop()


def test_metadata_without_auth_is_a_json_404(tmp_path_factory):
    host = shared_public_host(tmp_path_factory)
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        status, headers, text = send(host.origin + path, "GET")
        assert status == 404 and headers.get("content-type", "").startswith("application/json"), (status, headers)
        assert "[auth] resource" in json.loads(text)["error"]["message"]


def test_stdio_gives_the_same_codes(tmp_path):
    from test_front_door import stdio_answers

    root = make_root(tmp_path)
    answers = stdio_answers(root, [
        b'{"jsonrpc":"1.0","id":1,"method":"ping"}\n',
        b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}\n',
        b'{"jsonrpc":"2.0","id":null,"method":"ping"}\n',
        b'{"jsonrpc":"2.0","id":4,"id":5,"method":"ping"}\n',
        b'{"jsonrpc":"2.0","id":18446744073709551616,"method":"ping"}\n',
        DEEP + b"\n",
        b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":7}\n',
    ])
    codes = sorted((a["error"]["code"], json.dumps(a["id"])) for a in answers)
    assert codes == [(-32700, "null")] + [(-32600, "1")] + [(-32600, "null")] * 4, answers


@pytest.mark.anyio
async def test_a_refused_connection_names_the_url_and_what_to_check(tmp_path):
    from mcp import Client

    from harness import text_of

    root = make_root(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    url = f"http://127.0.0.1:{closed}"
    host = HttpHost(root, {"BROKER_URL": url})
    try:
        async with Client(host.url) as client:
            result = await client.call_tool("broker__get_positions", {})
        assert result.is_error
        text = text_of(result)
        assert f"{url}/v2/positions" in text, text
        assert "connection refused (is the service running" in text, text
        assert "ErrorCode" not in text, text
        # The host's log has no library's debug dump of it either.
        log = "".join(host.log)
        assert "Os {" not in log and "wasmtime_wasi_http" not in log, log
    finally:
        host.stop()


def sleepy_host(tmp_path) -> HttpHost:
    """A host serving the hostile fixture, whose `sleep` waits up to 20 s."""
    root = make_root(tmp_path, fixtures=("hostile",))
    policy = root / "policies" / "hostile.toml"
    policy.write_text(policy.read_text().replace("timeout_ms = 1000", "timeout_ms = 20000"))
    host = HttpHost(root, None)
    host.root = root
    return host


def call_outcome(root, tool: str) -> str | None:
    records = audit_records(root, until=lambda r: r.get("event") == "call" and r.get("target") == tool)
    outcomes = [r["outcome"] for r in records if r.get("event") == "call" and r.get("target") == tool]
    return outcomes[-1] if outcomes else None


def in_background(call) -> tuple[threading.Thread, dict]:
    """Starts `call()` on a thread; what it answered and how long it took."""
    answered: dict = {}

    def run() -> None:
        started = time.monotonic()
        answered["answer"] = call()
        answered["seconds"] = time.monotonic() - started

    caller = threading.Thread(target=run)
    caller.start()
    return caller, answered


def stopped_soon(caller: threading.Thread, answered: dict, root) -> None:
    """The sleeping call (stopped about 1 s in) was answered within
    seconds and recorded as cancelled, having run no longer than that."""
    caller.join(15)
    assert not caller.is_alive() and answered["seconds"] < 5, answered
    assert call_outcome(root, "hostile__sleep") == "cancelled"
    records = audit_records(root, until=lambda r: r.get("target") == "hostile__sleep")
    duration = next(r["duration_ms"] for r in records if r.get("target") == "hostile__sleep")
    assert duration < 3000, duration


def test_deleting_a_session_ends_its_calls(tmp_path):
    host = sleepy_host(tmp_path)
    try:
        session = open_session(host.url)
        call = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                           "params": {"name": "hostile__sleep", "arguments": {}}}).encode()
        caller, answered = in_background(lambda: send(host.url, body=call, headers={"mcp-session-id": session}))
        time.sleep(1.0)
        status, _, _ = send(host.url, "DELETE", headers={"mcp-session-id": session})
        assert status in (200, 204)
        stopped_soon(caller, answered, host.root)
    finally:
        host.stop()


def test_a_cancellation_without_a_session_stops_the_call_it_names(tmp_path):
    from harness import RawModern

    host = sleepy_host(tmp_path)
    try:
        client = RawModern(host.url)
        caller, answered = in_background(
            lambda: client.request("tools/call", {"name": "hostile__sleep", "arguments": {}}))
        time.sleep(1.0)
        # Another client of the same owner cancels a request id nobody has
        # in flight: nothing happens; then the one in flight.
        for request_id in (99, 1):
            cancel = json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                 "params": {"requestId": request_id, "reason": "user stop",
                                            "_meta": client.meta}}).encode()
            status, _, text = send(host.url, body=cancel, headers={"mcp-protocol-version": "2026-07-28",
                                                                   "mcp-method": "notifications/cancelled"})
            assert status == 202, (status, text)
            if request_id == 99:
                time.sleep(0.5)
                assert caller.is_alive()
        stopped_soon(caller, answered, host.root)
    finally:
        host.stop()


def test_the_tasks_extension_is_advertised_only_where_it_is_served(tmp_path_factory):
    host = shared_public_host(tmp_path_factory)
    status, _, text = send(host.url, body=json.dumps(INITIALIZE).encode())
    assert status == 200, text
    (answer,) = messages(text)
    extensions = answer["result"]["capabilities"].get("extensions") or {}
    assert "io.modelcontextprotocol/tasks" not in extensions, answer
    discover = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {}}}}).encode()
    status, _, text = send(host.url, body=discover, headers={"mcp-protocol-version": "2026-07-28",
                                                            "mcp-method": "server/discover"})
    assert status == 200, text
    (answer,) = messages(text)
    assert "io.modelcontextprotocol/tasks" in answer["result"]["capabilities"]["extensions"], answer


# Streams and connections: a budget per client and per address, a reserved
# slot for health checks, and shutdown that streams cannot hold up.

MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
               "io.modelcontextprotocol/clientInfo": {"name": "listener", "version": "0"},
               "io.modelcontextprotocol/clientCapabilities": {}}
LISTEN = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": {
    "notifications": {"toolsListChanged": True}, "_meta": MODERN_META}}).encode()


def open_listen(port: int, source: str) -> tuple[int, socket.socket]:
    """A `subscriptions/listen` stream from `source`, left open: the status
    and the socket (still open when the stream is)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    head = (f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
            "accept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\n"
            f"mcp-method: subscriptions/listen\r\ncontent-length: {len(LISTEN)}\r\n\r\n").encode()
    sock.sendall(head + LISTEN)
    status_line = b""
    while not status_line.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        status_line += chunk
    status = int(status_line.split()[1]) if status_line.startswith(b"HTTP/1.1") else 0
    return status, sock


def timed_health(host: HttpHost) -> float:
    started = time.monotonic()
    status, _, _ = send(host.origin + "/health", "GET")
    assert status == 200
    return time.monotonic() - started


def test_streams_from_a_few_addresses_cannot_take_every_connection(tmp_path):
    from test_front_door import resident_mb

    host = public_host(tmp_path, "max_connections = 256\nmax_streams_per_client = 8\n")
    held: list[socket.socket] = []
    try:
        before = resident_mb(host.process.pid)
        statuses = []
        for n in range(300):
            status, sock = open_listen(host.port, f"127.0.0.{2 + n % 5}")
            statuses.append(status)
            (held if status == 200 else []).append(sock)
            if status != 200:
                sock.close()
            if n % 50 == 0:
                assert timed_health(host) < 1.0
        # Eight streams per address (anonymous clients are their address).
        assert statuses.count(200) == 40 and statuses.count(429) == 260, sorted(set(statuses))
        # Everyone else is served, health checks at once.
        assert timed_health(host) < 1.0
        session = open_session(host.url)
        assert list_tools(host.url, session)[0] == 200
        assert resident_mb(host.process.pid) - before < 60
    finally:
        for sock in held:
            sock.close()
        host.stop()


def test_one_address_gets_its_share_of_connections_and_health_its_slot(tmp_path):
    host = public_host(tmp_path, "max_connections = 64\nmax_connections_per_address = 16\n")
    silent: list[socket.socket] = []
    try:
        silent = [socket.create_connection(("127.0.0.1", host.port), source_address=("127.0.0.9", 0))
                  for _ in range(16)]
        # The 17th from that address is its health-check slot: served for
        # /health only; the 18th is answered 429 at once and closed.
        status, _, text = raw_post(host.port, json.dumps(INITIALIZE).encode(), [], source="127.0.0.9")
        assert status == 503 and "max_connections_per_address" in text, (status, text)
        time.sleep(0.3)  # that reserved connection is counted closed
        reserved = socket.create_connection(("127.0.0.1", host.port), source_address=("127.0.0.9", 0))
        silent.append(reserved)
        status, _, text = raw_post(host.port, json.dumps(INITIALIZE).encode(), [], source="127.0.0.9")
        assert status == 429 and "max_connections_per_address" in text, (status, text)
        # Every other address is served as before.
        assert raw_post(host.port, json.dumps(INITIALIZE).encode(), [], source="127.0.0.10")[0] == 200
        assert timed_health(host) < 1.0
    finally:
        for sock in silent:
            sock.close()
        host.stop()


def test_an_open_stream_does_not_hold_up_shutdown(tmp_path):
    host = public_host(tmp_path)
    status, sock = open_listen(host.port, "127.0.0.2")
    try:
        assert status == 200
        started = time.monotonic()
        host.process.send_signal(signal.SIGTERM)
        host.process.wait(timeout=20)
        assert time.monotonic() - started < 5, time.monotonic() - started
        assert host.process.returncode == 0
    finally:
        sock.close()
        host.stop()


def test_a_stdio_client_that_stops_reading_cannot_keep_the_host_alive(tmp_path):
    from harness import HOST, host_args

    root = make_root(tmp_path)
    config = root / "host.toml"
    config.write_text("shutdown_deadline_s = 1\n")
    process = subprocess.Popen([str(HOST), "serve", "--config", str(config), *host_args(root)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        hello = json.dumps({**INITIALIZE, "params": {**INITIALIZE["params"]}}).encode() + b"\n"
        process.stdin.write(hello + b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        # Answers pile up in a pipe nobody reads (64 KiB) until writes block.
        for n in range(400):
            process.stdin.write(json.dumps({"jsonrpc": "2.0", "id": n + 2, "method": "tools/list"}).encode() + b"\n")
        process.stdin.flush()
        time.sleep(1.0)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        assert time.monotonic() - started < 15, time.monotonic() - started
    finally:
        process.kill()
        process.wait()


def test_anonymous_clients_each_have_their_own_tool_budget(tmp_path):
    root = make_root(tmp_path)
    config = root / "host.toml"
    config.write_text('[auth]\nmode = "public"\n[auth.rate_limit]\nrequests_per_minute = 0\n'
                      "tool_calls_per_minute = 2\n")
    host = HttpHost(root, None, "--config", str(config))
    try:
        def quotes(source: str, times: int) -> list[bool]:
            _, headers, _ = raw_post(host.port, json.dumps(INITIALIZE).encode(), [], source=source)
            session = {k.lower(): v for k, v in headers.items()}["mcp-session-id"]
            limited = []
            for n in range(times):
                body = json.dumps({"jsonrpc": "2.0", "id": n + 2, "method": "tools/call", "params": {
                    "name": "market-data__get_quote", "arguments": {"symbol": "SPY"}}}).encode()
                _, _, text = raw_post(host.port, body, [("mcp-session-id", session)], source=source)
                limited.append("rate limit" in text)
            return limited

        assert quotes("127.0.0.2", 3) == [False, False, True]
        # Another anonymous client is not limited by the first one's calls.
        assert quotes("127.0.0.3", 2) == [False, False]
    finally:
        host.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_call_cancelled_through_mcp_remote_stops(tmp_path, mode):
    """A desktop client cancels a slow call; mcp-remote forwards the
    cancellation to the HTTP host, whose call stops at once."""
    import anyio
    from mcp import Client, StdioServerParameters

    from harness import NODE, NODE_MODULES, node_env

    host = sleepy_host(tmp_path)
    try:
        bridge = StdioServerParameters(
            command=str(NODE), args=[str(NODE_MODULES / "mcp-remote" / "dist" / "proxy.js"), host.url],
            env={**node_env(), "MCP_REMOTE_CONFIG_DIR": str(tmp_path / "mcp-remote")})
        async with Client(bridge, mode=mode) as client:
            started = time.monotonic()
            with anyio.move_on_after(2):
                await client.call_tool("hostile__sleep", {})
            assert time.monotonic() - started < 5
            # The connection still serves afterwards.
            assert (await client.list_tools()).tools
        assert call_outcome(host.root, "hostile__sleep") == "cancelled"
        records = audit_records(host.root, until=lambda r: r.get("target") == "hostile__sleep")
        duration = next(r["duration_ms"] for r in records if r.get("target") == "hostile__sleep")
        assert duration < 4000, duration
    finally:
        host.stop()
