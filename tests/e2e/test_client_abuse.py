"""The front door, round two: nothing a client sends grows the host without
bound, and one client cannot starve the rest (issue 19)."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time

import pytest

from harness import HttpHost, make_root
from test_front_door import ACCEPT, INITIALIZE, jsonrpc_error, list_tools, open_session, send


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
