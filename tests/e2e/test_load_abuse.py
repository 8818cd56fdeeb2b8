"""Load and abuse, one case per class of the front door (issue 19): each
floods a host as an attacker would while a monitor asks `/health` every
100 ms. The host's resident memory stays under the case's stated ceiling
above its start, every health check is answered within a second, and a
well-behaved client is served afterwards.

Set ABUSE_RSS_REPORT to a file to have each case's peak growth appended
(as JSON lines): BENCHMARKS.md quotes them. ABUSE_SCALE multiplies every
flood (default 1): a bounded host grows no more at 4 than at 1."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import HttpHost, make_root
from test_client_abuse import open_listen, raw_post
from test_front_door import INITIALIZE, list_tools, open_session, resident_mb, send

GATEWAY_SECRET = "a-gateway-secret-of-at-least-32-bytes"
SCALE = int(os.environ.get("ABUSE_SCALE", "1"))


class Monitor:
    """Asks /health every 100 ms and samples the host's memory."""

    def __init__(self, host: HttpHost):
        self.host = host
        self.baseline = resident_mb(host.process.pid)
        self.peak = self.baseline
        self.slowest = 0.0
        self.failures: list[str] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopped.is_set():
            started = time.monotonic()
            try:
                status, _, _ = send(self.host.origin + "/health", "GET")
                if status != 200:
                    self.failures.append(f"/health answered {status}")
            except Exception as error:  # noqa: BLE001 - any failure is the finding
                self.failures.append(f"/health failed: {error}")
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.peak = max(self.peak, resident_mb(self.host.process.pid))
            self.stopped.wait(0.1)

    def stop(self) -> float:
        self.stopped.set()
        self.thread.join()
        self.peak = max(self.peak, resident_mb(self.host.process.pid))
        return self.peak - self.baseline


def flood(work, jobs, threads: int = 16) -> list:
    """Runs `work(job)` for every job on `threads` threads; what each gave
    (or the exception it raised)."""
    def guarded(job):
        try:
            return work(job)
        except Exception as error:  # noqa: BLE001 - a refused connection is an outcome
            return error
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(guarded, jobs))


def host_with(tmp_path, config: str, env: dict | None = None) -> HttpHost:
    root = make_root(tmp_path)
    (root / "host.toml").write_text(config)
    return HttpHost(root, env, "--config", str(root / "host.toml"))


PUBLIC = ('[auth]\nmode = "public"\n[auth.rate_limit]\nrequests_per_minute = 0\n'
          "tool_calls_per_minute = 0\n")


def malformed_sessions(host: HttpHost) -> None:
    """20,000 initializes naming sessions the table never issued, from 100
    addresses (each refused 400), then 3,000 real ones (the table holds
    1,000)."""
    body = json.dumps(INITIALIZE).encode()
    spellings = ["\x80", "\x80\x81", " x", "a b", "\t", "\x7f", "é" * 10, "x" * 200]
    flood(lambda n: raw_post(host.port, body, [("mcp-session-id", spellings[n % len(spellings)])],
                             source=f"127.0.2.{n % 100}"), range(20_000 * SCALE))
    flood(lambda n: raw_post(host.port, body, [], source=f"127.0.3.{n % 100}"), range(3_000 * SCALE))


def client_text(host: HttpHost) -> None:
    """4 MiB client names, 1 MiB URIs read and subscribed, a 1 MiB method."""
    hello = json.loads(json.dumps(INITIALIZE))
    hello["params"]["clientInfo"]["name"] = "N" * ((4 << 20) - 1000)
    sessions = flood(lambda n: raw_post(host.port, json.dumps(hello).encode(), [], source=f"127.0.4.{n}")[1],
                     range(20), threads=4)
    session_ids = [{k.lower(): v for k, v in headers.items()}.get("mcp-session-id")
                   for headers in sessions if isinstance(headers, dict)]
    session = next(s for s in session_ids if s)
    uri = "market://bars/" + "S" * (1 << 20)

    def abuse(n: int):
        method = ["resources/read", "resources/subscribe", "x" * (1 << 20)][n % 3]
        body = json.dumps({"jsonrpc": "2.0", "id": n, "method": method, "params": {"uri": uri}}).encode()
        return send(host.url, body=body, headers={"mcp-session-id": session})[0]

    flood(abuse, range(600 * SCALE), threads=8)


def streams(host: HttpHost) -> None:
    """1,024 long-lived streams from five addresses, held while a client works."""
    held = flood(lambda n: open_listen(host.port, f"127.0.5.{n % 5}"), range(1024 * SCALE), threads=32)
    try:
        session = open_session(host.url)
        assert list_tools(host.url, session)[0] == 200
    finally:
        for outcome in held:
            if isinstance(outcome, tuple):
                outcome[1].close()


def unfair(host: HttpHost) -> None:
    """32 addresses filling the session table as fast as they can, and
    anonymous clients calling one tool from many addresses."""
    body = json.dumps(INITIALIZE).encode()
    flood(lambda n: raw_post(host.port, body, [], source=f"127.0.6.{n % 32}"), range(4_000 * SCALE), threads=32)
    newcomers = [raw_post(host.port, body, [], source=f"127.0.7.{n}")[0] for n in range(1, 11)]
    assert newcomers == [200] * 10, newcomers


def gateway_signatures(host: HttpHost) -> None:
    """Wrong signatures with 3 MB bodies, 200 of them, 32 at a time."""
    body = b"x" * 3_000_000

    def wrong(n: int):
        timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
        digest = hashlib.sha256(body).hexdigest()
        message = "\n".join(["mcp-gateway-v2", "POST", "/mcp", "", "dana", timestamp, nonce, digest])
        signature = hmac.new(b"not-the-secret-at-all-32-bytes-long!", message.encode(), hashlib.sha256).hexdigest()
        headers = [("x-mcp-user", "dana"), ("x-mcp-timestamp", timestamp), ("x-mcp-nonce", nonce),
                   ("x-mcp-body-sha256", digest), ("x-mcp-signature", signature)]
        with socket.create_connection(("127.0.0.1", host.port), timeout=10) as sock:
            head = "".join(f"{k}: {v}\r\n" for k, v in headers)
            sock.sendall(f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{host.port}\r\ncontent-type: application/json\r\n"
                         f"content-length: {len(body)}\r\n{head}\r\n".encode())
            try:
                sock.sendall(body)
            except OSError:
                pass
            return sock.recv(64)

    flood(wrong, range(200 * SCALE), threads=32)


def duplicate_ids(host: HttpHost) -> None:
    """Requests reusing ids on one session, 2,000 of them at once."""
    session = open_session(host.url)
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {}}).encode()
    flood(lambda _: send(host.url, body=body, headers={"mcp-session-id": session})[0], range(2_000 * SCALE), threads=32)
    assert list_tools(host.url, session)[0] == 200


CASES = {
    # class: (flood, host config, ceiling in MB above the host's start)
    "sessions-the-table-never-sees": (malformed_sessions, PUBLIC, 120),
    "client-text": (client_text, PUBLIC, 150),
    "streams": (streams, PUBLIC, 80),
    "unfair-limits": (unfair, PUBLIC + "[http]\nmax_sessions = 100\n", 80),
    "gateway-body-before-signature": (
        gateway_signatures,
        '[auth]\nmode = "gateway"\ngateway_secret_env = "TEST_GATEWAY_SECRET"\n', 60),
    "duplicate-ids": (duplicate_ids, PUBLIC, 60),
}


@pytest.mark.parametrize("case", list(CASES))
def test_abuse_leaves_the_host_bounded_and_healthy(tmp_path, case):
    attack, config, ceiling_mb = CASES[case]
    host = host_with(tmp_path, config, {"TEST_GATEWAY_SECRET": GATEWAY_SECRET})
    try:
        # Warm: the first calls grow the host's pools before the baseline.
        send(host.origin + "/health", "GET")
        monitor = Monitor(host)
        attack(host)
        growth = monitor.stop()
        report = os.environ.get("ABUSE_RSS_REPORT")
        if report:
            with open(report, "a") as out:
                out.write(json.dumps({"case": case, "baseline_mb": round(monitor.baseline, 1),
                                      "growth_mb": round(growth, 1), "ceiling_mb": ceiling_mb,
                                      "slowest_health_s": round(monitor.slowest, 3)}) + "\n")
        assert not monitor.failures, monitor.failures[:5]
        assert monitor.slowest < 1.0, monitor.slowest
        assert growth < ceiling_mb, (growth, ceiling_mb)
        assert host.process.poll() is None
    finally:
        host.stop()
