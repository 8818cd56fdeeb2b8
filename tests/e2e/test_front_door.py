"""The HTTP front door under abuse: sessions bound to their user and held to
bounds, JSON-RPC errors as JSON, the Host check on every path, bounded
metrics labels and echoes, and graceful shutdown on both transports."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from harness import HOST, HttpHost, audit_records, host_args, make_root, run_host
from test_auth import ENV, bearer, direct, issued, keypair, post, start  # noqa: F401 (fixtures)

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
ACCEPT = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def send(url: str, method: str = "POST", body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body text) of one request, whatever its status."""
    request = urllib.request.Request(url, data=body, method=method, headers={**ACCEPT, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def messages(body: str) -> list[dict]:
    if body.lstrip().startswith("{"):
        return [json.loads(body)]
    return [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:") and line[5:].strip()]


def open_session(url: str, headers: dict | None = None) -> str:
    status, answer, body = send(url, body=json.dumps(INITIALIZE).encode(), headers=headers)
    assert status == 200, body
    session = answer.get("mcp-session-id") or answer.get("Mcp-Session-Id")
    assert session
    send(url, body=json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode(),
         headers={**(headers or {}), "mcp-session-id": session})
    return session


def list_tools(url: str, session: str, headers: dict | None = None) -> tuple[int, str]:
    body = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}).encode()
    status, _, text = send(url, body=body, headers={**(headers or {}), "mcp-session-id": session})
    return status, text


def jsonrpc_error(text: str) -> dict:
    answer = json.loads(text)
    assert answer["jsonrpc"] == "2.0" and "id" in answer, answer
    return answer["error"]


# Sessions belong to their user.

def test_another_user_cannot_post_listen_or_delete_on_a_session(direct, keypair):
    alice = bearer(issued(direct, "alice", key=keypair[0]))
    mallory = bearer(issued(direct, "mallory", key=keypair[0]))
    session = open_session(direct.url, alice)
    for method, body in [("POST", json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}).encode()),
                         ("GET", None), ("DELETE", None)]:
        status, _, text = send(direct.url, method, body, {**mallory, "mcp-session-id": session})
        assert status == 404, (method, status, text)
        assert "session not found" in jsonrpc_error(text)["message"]
    # Refused exactly like a session that does not exist.
    status, _, unknown = send(direct.url, "DELETE", None, {**mallory, "mcp-session-id": "no-such-session"})
    assert status == 404 and jsonrpc_error(unknown) == jsonrpc_error(text)
    # The owner's session is untouched, and each attempt is audited.
    status, tools = list_tools(direct.url, session, alice)
    assert status == 200 and "market-data__get_quote" in tools
    refused = audit_records(direct.root, until=lambda r: r["event"] == "session-refused" and r["request"] == "DELETE"
                            and r["client"]["principal"] == "mallory")
    attempts = [r for r in refused if r["event"] == "session-refused" and r["client"]["principal"] == "mallory"]
    assert {r["request"] for r in attempts} >= {"POST", "GET", "DELETE"}
    assert all(r["client"]["session"] == session for r in attempts[:3])


def test_deleting_ones_own_session_answers_204_and_ends_it(direct, keypair):
    alice = bearer(issued(direct, "alice", key=keypair[0]))
    session = open_session(direct.url, alice)
    status, _, body = send(direct.url, "DELETE", None, {**alice, "mcp-session-id": session})
    assert (status, body) == (204, "")
    assert list_tools(direct.url, session, alice)[0] == 404


@pytest.fixture(scope="module")
def bounded(tmp_path_factory, keypair):
    """Direct mode with room for three sessions, two per user, idle after 2 s."""
    auth = (f'mode = "direct"\nresource = "https://mcp.test/mcp"\nissuer = "https://auth.test"\n'
            f'ed25519_public_keys = ["{keypair[1]}"]\n')
    root = make_root(tmp_path_factory.mktemp("bounded"))
    config = root / "host.toml"
    config.write_text(f"[http]\nmax_sessions = 3\nmax_sessions_per_user = 2\nsession_idle_s = 2\n[auth]\n{auth}")
    host = HttpHost(root, ENV, "--config", str(config))
    host.config = config
    yield host
    host.stop()


def test_a_user_past_its_share_loses_its_own_oldest_session_and_the_host_refuses_past_its_bound(bounded, keypair):
    token = {user: bearer(issued(bounded, user, key=keypair[0])) for user in ("alice", "bob", "carol", "erin")}
    first = open_session(bounded.url, token["alice"])
    second = open_session(bounded.url, token["alice"])
    assert list_tools(bounded.url, first, token["alice"])[0] == 200  # now the most recently used
    third = open_session(bounded.url, token["alice"])
    assert list_tools(bounded.url, second, token["alice"])[0] == 404  # the least recently used went
    assert list_tools(bounded.url, first, token["alice"])[0] == 200
    assert list_tools(bounded.url, third, token["alice"])[0] == 200
    open_session(bounded.url, token["bob"])
    # The host is full; carol, holding none, gets the place of the least
    # recently used session of alice, who holds the most.
    open_session(bounded.url, token["carol"])
    assert list_tools(bounded.url, first, token["alice"])[0] == 404
    assert list_tools(bounded.url, third, token["alice"])[0] == 200
    # Now everyone holds one: nobody gives one up for erin.
    status, answer, text = send(bounded.url, body=json.dumps(INITIALIZE).encode(), headers=token["erin"])
    assert status == 503, text
    assert jsonrpc_error(text)["code"] == -32000
    # A session nobody uses expires and makes room.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status, _, _ = send(bounded.url, body=json.dumps(INITIALIZE).encode(), headers=token["erin"])
        if status == 200:
            break
        time.sleep(0.5)
    assert status == 200
    assert list_tools(bounded.url, third, token["alice"])[0] == 404


def test_an_open_stream_keeps_its_session_alive_past_the_idle_time(bounded, keypair):
    dave = bearer(issued(bounded, "dave", key=keypair[0]))
    session = open_session(bounded.url, dave)
    listening = socket.create_connection(("127.0.0.1", bounded.port))
    listening.sendall((f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                       f"Authorization: {dave['authorization']}\r\nMcp-Session-Id: {session}\r\n\r\n").encode())
    assert b"200" in listening.recv(4096).split(b"\r\n")[0]
    time.sleep(5)
    assert list_tools(bounded.url, session, dave)[0] == 200
    listening.close()


# JSON-RPC errors as JSON.

@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("plain"))
    host = HttpHost(root)
    host.root = root
    yield host
    host.stop()


@pytest.mark.parametrize("body, status, code, id", [
    (b"{not json", 400, -32700, None),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"', 400, -32700, None),
    (b"", 400, -32700, None),
    (b"[1, 2]", 400, -32600, None),
    (b"42", 400, -32600, None),
    (b'"initialize"', 400, -32600, None),
    (b'{"jsonrpc": "2.0", "id": 3}', 400, -32600, 3),
    (b'{"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}', 400, -32600, None),
])
def test_unparsable_and_invalid_bodies_get_jsonrpc_errors(plain, body, status, code, id):
    got, headers, text = send(plain.url, body=body)
    assert got == status, text
    assert headers.get("content-type", headers.get("Content-Type")).startswith("application/json")
    error = jsonrpc_error(text)
    assert error["code"] == code, error
    assert json.loads(text)["id"] == id


def test_transport_refusals_are_jsonrpc_errors_too(plain):
    status, _, text = send(plain.url, body=json.dumps(INITIALIZE).encode(), headers={"accept": "application/json"})
    assert status == 406 and "accept" in jsonrpc_error(text)["message"].lower()
    status, _, text = send(plain.url, body=json.dumps(INITIALIZE).encode(), headers={"content-type": "text/plain"})
    assert status == 415 and jsonrpc_error(text)["code"] == -32600
    status, _, text = send(plain.url, "GET", headers={"mcp-session-id": "nope"})
    assert status == 404 and jsonrpc_error(text)


def test_ill_typed_params_of_a_known_method_are_invalid_params(plain):
    session = open_session(plain.url)
    for params in ["x", 5, [1], {"name": 5}, {"name": "x", "arguments": "y"}]:
        body = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params}).encode()
        status, _, text = send(plain.url, body=body, headers={"mcp-session-id": session})
        (answer,) = [m for m in messages(text) if m.get("id") == 9]
        assert answer["error"]["code"] == -32602, answer
    body = json.dumps({"jsonrpc": "2.0", "id": 10, "method": "tools/frobnicate", "params": {}}).encode()
    _, _, text = send(plain.url, body=body, headers={"mcp-session-id": session})
    (answer,) = [m for m in messages(text) if m.get("id") == 10]
    assert answer["error"]["code"] == -32601


def test_auth_refusals_carry_a_jsonrpc_body_beside_the_challenge(direct):
    status, headers, text = post(direct.url, {})
    assert status == 401
    assert "Bearer" in headers.get("www-authenticate", headers.get("WWW-Authenticate", ""))
    assert "bearer token" in jsonrpc_error(text)["message"].lower() or jsonrpc_error(text)["message"]
    status, _, text = post(direct.url, bearer("not.a.token"))
    assert status == 401 and jsonrpc_error(text)["code"] == -32001


# The Host check, on every path.

def raw_request(url: str, request: bytes) -> bytes:
    port = int(url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize("path", ["/health", "/metrics", "/mcp", "/.well-known/oauth-protected-resource"])
def test_a_foreign_host_name_is_refused_on_every_path(plain, path):
    for host in ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "localhost.evil"]:
        answer = raw_request(plain.url, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 403"), (host, answer[:200])
    answer = raw_request(plain.url, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:200]
    answer = raw_request(plain.url, f"GET http://evil.example{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                    f"Connection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    answer = raw_request(plain.url, b"GET /health HTTP/1.1\r\nHost: LOCALHOST:9\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


# Bounded labels and echoes.

def test_unknown_names_never_become_metrics_labels_and_are_not_echoed_whole(plain):
    session = open_session(plain.url)
    for n in range(40):
        name = f"nosuch__tool_{n}_" + "x" * 2000
        body = json.dumps({"jsonrpc": "2.0", "id": 100 + n, "method": "tools/call",
                           "params": {"name": name, "arguments": {}}}).encode()
        _, _, text = send(plain.url, body=body, headers={"mcp-session-id": session})
        assert len(text) < 2000, len(text)
    _, _, metrics = send(plain.origin + "/metrics", "GET")
    assert "nosuch" not in metrics
    assert 'target="unknown"' in metrics
    huge = {"indicator": "x" * 1_000_000, "closes": "y" * 500_000, "params": {"period": ["z" * 500_000]}}
    body = json.dumps({"jsonrpc": "2.0", "id": 200, "method": "tools/call",
                       "params": {"name": "indicators__compute_indicator", "arguments": huge}}).encode()
    _, _, text = send(plain.url, body=body, headers={"mcp-session-id": session})
    assert len(text) < 8000, len(text)
    assert "invalid arguments" in text


# Graceful shutdown.

def slow_call(url: str, session: str, seconds: int, results: list) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                       "params": {"name": "slow_compute", "arguments": {"seconds": seconds}}}).encode()
    results.append(send(url, body=body, headers={"mcp-session-id": session}))


def test_sigterm_over_http_lets_calls_in_flight_finish_and_refuses_new_ones(tmp_path):
    root = make_root(tmp_path, fixtures=("conformance",))
    host = HttpHost(root)
    try:
        session = open_session(host.url)
        results: list = []
        call = threading.Thread(target=slow_call, args=(host.url, session, 3, results))
        call.start()
        time.sleep(1)
        host.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        try:
            refused = send(host.url, body=json.dumps(INITIALIZE).encode())[0]
        except (urllib.error.URLError, ConnectionError):
            refused = "connection refused"
        assert refused in (503, "connection refused")
        call.join(timeout=30)
        status, _, text = results[0]
        assert status == 200, text
        (answer,) = [m for m in messages(text) if m.get("id") == 5]
        assert "Computed for 3 seconds" in json.dumps(answer["result"])
        assert host.process.wait(timeout=30) == 0
    finally:
        host.stop()
    calls = [r for r in audit_records(root) if r["event"] == "call" and r["target"] == "slow_compute"]
    assert calls and calls[-1]["outcome"] == "ok"


def stdio_host(root, *extra: str) -> subprocess.Popen:
    process = subprocess.Popen([str(HOST), "serve", *host_args(root), *extra], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdin.write(json.dumps(INITIALIZE) + "\n")
    process.stdin.flush()
    assert json.loads(process.stdout.readline())["id"] == 1
    process.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
    process.stdin.flush()
    return process


def stdio_host_computing(root, seconds: int) -> subprocess.Popen:
    """A stdio host 0.8 s into a `slow_compute` call of `seconds` (id 5)."""
    process = stdio_host(root)
    process.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                                    "params": {"name": "slow_compute", "arguments": {"seconds": seconds}}}) + "\n")
    process.stdin.flush()
    time.sleep(0.8)
    return process


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_on_stdio_delivers_the_answers_of_calls_in_flight(tmp_path, sig):
    root = make_root(tmp_path, fixtures=("conformance",))
    process = stdio_host_computing(root, 2)
    try:
        process.send_signal(sig)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    answers = [json.loads(line) for line in out.splitlines() if line.strip()]
    (answer,) = [a for a in answers if a.get("id") == 5]
    assert "Computed for 2 seconds" in json.dumps(answer["result"]), answer
    assert process.returncode == 0, err
    calls = [r for r in audit_records(root) if r["event"] == "call" and r["target"] == "slow_compute"]
    assert calls and calls[-1]["outcome"] == "ok"


def test_a_second_signal_exits_at_once(tmp_path):
    root = make_root(tmp_path, fixtures=("conformance",))
    process = stdio_host_computing(root, 60)
    try:
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert process.poll() is None  # still finishing the call
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 130
        assert time.monotonic() - started < 5
    finally:
        process.kill()


def test_bad_session_limits_are_refused_with_the_reason(tmp_path):
    root = make_root(tmp_path)
    config = root / "host.toml"
    for table, reason in [("max_sessions = 0", "max_sessions must be"),
                          ("max_sessions = 2\nmax_sessions_per_user = 3", "max_sessions_per_user must be"),
                          ("session_idle_s = 0", "session_idle_s must be")]:
        config.write_text(f"[http]\n{table}\n")
        checked = run_host("check", *host_args(root), "--config", str(config))
        assert checked.returncode != 0 and reason in checked.stderr, checked.stderr


# Connections: a cap, and no patience for clients slow to send a request.

@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """Room for three connections; a request's headers and body must each
    arrive within 1 s."""
    root = make_root(tmp_path_factory.mktemp("patient"))
    config = root / "host.toml"
    config.write_text("[http]\nmax_connections = 3\nread_timeout_s = 1\n")
    host = HttpHost(root, None, "--config", str(config))
    yield host
    host.stop()


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the host closes `sock` within `seconds` (reading whatever it
    sends first)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("sent", [
    b"",                                                    # silent from the start
    b"POST /mcp HTTP/1.1\r\n",                              # headers begun, never ended
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",    # one request, then idle keep-alive
])
def test_a_connection_that_does_not_send_a_request_in_time_is_closed(patient, sent):
    with socket.create_connection(("127.0.0.1", patient.port)) as sock:
        sock.sendall(sent)
        assert closed_within(sock, 5)


def test_headers_dribbled_byte_by_byte_do_not_keep_a_connection(patient):
    request = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 40
    with socket.create_connection(("127.0.0.1", patient.port)) as sock:
        started = time.monotonic()
        sock.settimeout(0.2)
        closed = False
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(4096) == b"":
                    closed = True
                    break
            except (TimeoutError, socket.timeout):
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed and time.monotonic() - started < 5


def test_a_body_that_does_not_arrive_in_time_gets_408(patient):
    answer = patient.post_unfinished({"Accept": "application/json, text/event-stream"}, 100, b'{"jsonrpc"')
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 408"), answer
    assert "within 1 s" in json.loads(body)["error"]["message"]


def test_past_the_connection_cap_health_is_served_the_rest_wait_and_the_host_recovers(patient):
    silent = [socket.create_connection(("127.0.0.1", patient.port)) for _ in range(3)]
    try:
        # All three slots are held: health checks still get a reserved
        # connection at once; MCP on one is told why it is not served.
        started = time.monotonic()
        status, _, _ = send(patient.origin + "/health", "GET")
        assert status == 200 and time.monotonic() - started < 0.5
        assert eventually(lambda: send(patient.origin + "/ready", "GET")[0] == 200)
        # (Each reserved connection closes after its answer; the host may
        # take a moment to count it closed, meanwhile saying 429.)
        deadline = time.monotonic() + 2
        while True:
            status, _, text = send(patient.url, body=json.dumps(INITIALIZE).encode())
            if status != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == 503 and "max_connections" in jsonrpc_error(text)["message"], text
    finally:
        for sock in silent:
            sock.close()
    assert "connection cap reached" in "".join(patient.log)
    # The slots free again (closed here, or at the read timeout).
    assert until_served(patient.url)


def eventually(condition, seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def until_served(url: str) -> bool:
    return eventually(lambda: send(url, body=json.dumps(INITIALIZE).encode())[0] == 200, 10.0)


# Stdio framing: every line that is not a message gets the answer JSON-RPC gives it.

def stdio_answers(root, lines: list[bytes]) -> list[dict]:
    """Every answer a stdio host gives to `lines` after initialisation, once
    its input ends."""
    process = stdio_host(root)
    out, err = process.communicate(b"".join(lines).decode(), timeout=60)
    assert process.returncode == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_stdio_answers_what_is_not_a_message_and_never_a_notification(root):
    answers = stdio_answers(root, [
        b"{this is not json\n",
        b"[1, 2]\n",
        b'"a string"\n',
        b'{"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": "not an object"}\n',
        b'{"jsonrpc": "2.0", "id": {"an": "object"}, "method": "ping"}\n',
        b'{"jsonrpc": "2.0", "method": "notifications/progress", "params": "not an object"}\n',
        b"\xef\xbb\xbf" + json.dumps({"jsonrpc": "2.0", "id": 12, "method": "ping"}).encode() + b"\r\n",
        b"\n   \n",
        b'{"jsonrpc": "2.0", "id": 13, "method": "ping"}',  # the last line need not end in a newline
    ])
    errors = sorted((a["error"]["code"], a["id"]) for a in answers if "error" in a)
    assert errors == [(-32700, None), (-32602, 11), (-32600, None), (-32600, None), (-32600, None)], answers
    assert all("id" in a for a in answers)  # `"id": null`, never left out
    assert {a["id"] for a in answers if "result" in a} == {12, 13}


def test_a_stdio_line_past_the_limit_is_discarded_as_it_streams(root):
    process = stdio_host(root)
    try:
        baseline = peak_rss_mb(process.pid)
        process.stdin.write('{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "')
        for _ in range(40):
            process.stdin.write("x" * 1_000_000)
        process.stdin.write('"}}\n' + json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping"}) + "\n")
        process.stdin.flush()
        answers = [json.loads(process.stdout.readline()) for _ in range(2)]
        peak = peak_rss_mb(process.pid)
    finally:
        process.kill()
    refused = next(a for a in answers if "error" in a)
    assert refused["id"] is None and refused["error"]["code"] == -32600
    assert "longer than" in refused["error"]["message"]
    assert any(a.get("id") == 2 and "result" in a for a in answers)
    # 40 MB went through a 4 MiB window.
    assert peak - baseline < 32, (baseline, peak)


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_stdio_request_reusing_an_id_in_flight_is_refused_and_both_are_answered(tmp_path):
    root = make_root(tmp_path, fixtures=("conformance",))
    process = stdio_host_computing(root, 2)
    duplicate = json.dumps({"jsonrpc": "2.0", "id": 5, "method": "ping"})
    after = json.dumps({"jsonrpc": "2.0", "id": 6, "method": "ping"})
    try:
        process.stdin.write(duplicate + "\n")
        process.stdin.flush()
        first = json.loads(process.stdout.readline())
        second = json.loads(process.stdout.readline())
        # Once answered, the id is free again.
        process.stdin.write(duplicate + "\n" + after + "\n")
        process.stdin.flush()
        out, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert first["id"] == 5 and first["error"]["code"] == -32600
    assert "still in flight" in first["error"]["message"]
    assert second["id"] == 5 and "Computed for 2 seconds" in json.dumps(second["result"])
    later = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert sorted((a["id"], "result" in a) for a in later) == [(5, True), (6, True)]


# Failed authentication is rate-limited per address (and per credential:
# see test_auth).

def test_an_address_that_keeps_failing_authentication_is_held_off_for_new_credentials(tmp_path, keypair):
    auth = (f'mode = "direct"\nresource = "https://mcp.test/mcp"\nissuer = "https://auth.test"\n'
            f'ed25519_public_keys = ["{keypair[1]}"]\n')
    host, root = start(tmp_path, auth, "failed_auth_per_minute = 3\n")
    try:
        host.config = root / "host.toml"
        good = bearer(issued(host, "alice", key=keypair[0]))
        assert send(host.url, body=json.dumps(INITIALIZE).encode(), headers=good)[0] == 200
        guesses = [send(host.url, body=json.dumps(INITIALIZE).encode(), headers=bearer(f"guess.{n}.x"))
                   for n in range(4)]
        assert [status for status, _, _ in guesses] == [401, 401, 401, 429]
        # A credential never seen from there waits; alice's, which worked, does not.
        other = bearer(issued(host, "bob", key=keypair[0]))
        status, headers, text = send(host.url, body=json.dumps(INITIALIZE).encode(), headers=other)
        assert status == 429, text
        assert int(headers.get("retry-after") or headers.get("Retry-After")) >= 1
        assert "failed authentications" in jsonrpc_error(text)["message"]
        assert send(host.url, body=json.dumps(INITIALIZE).encode(), headers=good)[0] == 200
        _, _, metrics = send(host.origin + "/metrics", "GET")
        assert 'reason="auth-rate-limited"' in metrics
    finally:
        host.stop()


# Task polling from clients that leave out Mcp-Name (fastmcp, mcp-remote).

STATELESS_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}}


@pytest.mark.parametrize("method", ["tasks/get", "tasks/cancel"])
def test_task_methods_without_mcp_name_are_served_and_a_contradicting_one_is_refused(http_host, method):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                       "params": {"taskId": "no-such-task", "_meta": STATELESS_META}}).encode()
    headers = {"mcp-protocol-version": "2026-07-28", "mcp-method": method}
    status, _, text = send(http_host.url, body=body, headers=headers)
    assert status == 200, text
    (answer,) = messages(text)
    assert answer["id"] == 1 and "no task no-such-task" in answer["error"]["message"]
    status, _, text = send(http_host.url, body=body, headers={**headers, "mcp-name": "another-task"})
    assert status == 400 and jsonrpc_error(text)["code"] == -32020


# Load and abuse: memory stays bounded.

def resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def initialize_from(port: int, source: str) -> int:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        connection.request("POST", "/mcp", json.dumps(INITIALIZE), {**ACCEPT, "host": f"127.0.0.1:{port}"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_many_sessions_silent_sockets_and_unknown_names_leave_memory_bounded(tmp_path):
    """Public mode, where every address is a user of its own; the default
    limits, with only the request budgets lifted so the flood gets through."""
    root = make_root(tmp_path)
    config = root / "host.toml"
    config.write_text('[auth]\nmode = "public"\n[auth.rate_limit]\nrequests_per_minute = 0\n'
                      'tool_calls_per_minute = 0\n')
    host = HttpHost(root, None, "--config", str(config))
    port = host.port
    silent: list[socket.socket] = []
    try:
        session = open_session(host.url)
        list_tools(host.url, session)
        before = resident_mb(host.process.pid)
        # 3,000 sessions from 100 addresses: 30 each (under the per-user
        # cap), so the global cap of 1,000 is what holds.
        statuses = [initialize_from(port, f"127.0.0.{2 + n % 100}") for n in range(3000)]
        assert statuses.count(200) == 999 and statuses.count(503) == 2001, sorted(set(statuses))
        # 800 connections that never send a byte, from 8 addresses (one
        # address gets 128 at most: see test_client_abuse).
        silent = [socket.create_connection(("127.0.0.1", port), source_address=(f"127.0.1.{n % 8}", 0))
                  for n in range(800)]
        # 2,000 calls to tools that do not exist, each with a long new name.
        for n in range(2000):
            body = json.dumps({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                               "params": {"name": f"nosuch{n}_" + "x" * 1000, "arguments": {}}}).encode()
            send(host.url, body=body, headers={"mcp-session-id": session})
        after = resident_mb(host.process.pid)
        _, _, metrics = send(host.origin + "/metrics", "GET")
        assert len(metrics) < 64_000, len(metrics)
        assert after - before < 150, (before, after)
        assert list_tools(host.url, session)[0] == 200  # still serving
    finally:
        for sock in silent:
            sock.close()
        host.stop()


def test_a_gateway_request_whose_body_is_late_gets_408(tmp_path):
    """Gateway mode reads the body before rmcp to check its signature: with
    the same deadline as every other body."""
    from test_auth import GatewaySigner

    root = make_root(tmp_path)
    config = root / "host.toml"
    config.write_text('[http]\nread_timeout_s = 1\n[auth]\nmode = "gateway"\n'
                      'gateway_secret_env = "TEST_GATEWAY_SECRET"\n')
    host = HttpHost(root, ENV, "--config", str(config))
    try:
        signed = GatewaySigner("dana").headers("POST", "/mcp", None, json.dumps(INITIALIZE).encode())
        answer = host.post_unfinished(signed, 100, b'{"jsonrpc"')
    finally:
        host.stop()
    assert answer.startswith("HTTP/1.1 408"), answer
