"""What the end-to-end tests share: where things are, test roots, and the
processes and stand-ins they run. Everything here drives the real `host`
binary; nothing is mocked."""

from __future__ import annotations

import json
import os
import pathlib
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mcp import StdioServerParameters

REPO = pathlib.Path(__file__).resolve().parents[2]
HOST = pathlib.Path(os.environ.get("HOST_BIN", REPO / "target" / "debug" / "host"))
EXAMPLES = ("market-data", "indicators", "strategies", "broker", "backtest", "journal", "workspace")
# Examples in other languages: large components, copied only where a test asks.
LANGUAGE_EXAMPLES = ("risk", "screener")
FIXTURE_WASM = REPO / "tests" / "fixtures" / "target" / "wasm32-wasip2" / "release"
PYTHON_FIXTURE_WASM = REPO / "tests" / "fixtures" / "target" / "python"
JS_FIXTURE_WASM = REPO / "tests" / "fixtures" / "target" / "js"

# Node 22 and the Node-based clients (`npm install` in tests/, done by tests/run).
NODE_MODULES = REPO / "tests" / "node_modules"
NODE = NODE_MODULES / ".bin" / "node"


def node_env() -> dict[str, str]:
    """The environment for Node-based clients: Node 22 first on PATH."""
    return {**os.environ, "PATH": f"{NODE.parent}{os.pathsep}{os.environ['PATH']}"}


# Every host the tests start shares one compiled-component cache of its own.
os.environ["XDG_CACHE_HOME"] = str(REPO / "target" / "test-cache")


def make_root(
    path: pathlib.Path, fixtures: tuple[str, ...] = (), examples: tuple[str, ...] = ()
) -> pathlib.Path:
    """A host root like the repository's: plugins/, policies/ and the sample
    market data, with the Rust example plugins, the named examples in other
    languages and the named test fixtures (Rust, or Python and JavaScript
    when built into tests/fixtures/target/python and .../js)."""
    plugins = path / "plugins"
    plugins.mkdir(parents=True)
    shutil.copytree(REPO / "plugins" / "market-data" / "data", plugins / "market-data" / "data")
    # As in the repository: the example strategy, room for more.
    (plugins / "strategies" / "saved").mkdir(parents=True)
    shutil.copy(REPO / "plugins" / "strategies" / "saved" / "sma_cross.json", plugins / "strategies" / "saved")
    for name in (*EXAMPLES, *examples):
        shutil.copy(REPO / "plugins" / f"{name}.wasm", plugins / f"{name}.wasm")
    for name in fixtures:
        built = next(
            (p for p in (PYTHON_FIXTURE_WASM / f"{name}.wasm", JS_FIXTURE_WASM / f"{name}.wasm") if p.exists()),
            FIXTURE_WASM / f"{name.replace('-', '_')}.wasm",
        )
        shutil.copy(built, plugins / f"{name}.wasm")
    policies = path / "policies"
    policies.mkdir()
    # The host's own policy and those of the plugins copied: a policy with
    # no plugin is a stray that `host check` reports.
    for name in ("host", *EXAMPLES, *examples):
        policy = REPO / "policies" / f"{name}.toml"
        if policy.exists():
            shutil.copy(policy, policies)
    for name in fixtures:
        policy = REPO / "tests" / "fixtures" / "policies" / f"{name}.toml"
        if policy.exists():
            shutil.copy(policy, policies)
    return path


async def wait_for_tools(client, *names: str, within: float = 180) -> dict:
    """The client's tools once `names` are among them: a large component
    compiled cold joins after the handshake (announced by list_changed)."""
    import anyio

    deadline = time.monotonic() + within
    while True:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        if all(name in tools for name in names) or time.monotonic() > deadline:
            return tools
        await anyio.sleep(0.2)


def http_host_serving(root: pathlib.Path, env: dict[str, str], *tools: str) -> "HttpHost":
    """`host serve --http` on `root`, returned once `tools` are listed: on a
    cold cache a large component (Python, JavaScript) joins after the
    handshake."""
    import anyio
    from mcp import Client

    host = HttpHost(root, env)

    async def listed():
        async with Client(host.url) as client:
            await wait_for_tools(client, *tools)

    anyio.run(listed)
    return host


def client_opener(transport: str, root: pathlib.Path, env: dict[str, str], host: "HttpHost"):
    """Opens a Python SDK client over `transport` ("stdio": a host of its
    own on `root`; "http": `host`)."""
    import contextlib

    from mcp import Client

    @contextlib.asynccontextmanager
    async def open_client():
        server = stdio_params(root, env) if transport == "stdio" else host.url
        async with Client(server) as client:
            yield client

    return open_client


def audit_records(root: pathlib.Path, timeout: float = 10.0, until=None) -> list[dict]:
    """The audit log's records; with `until`, waits (the writer is
    asynchronous) until some record satisfies it."""
    path = root / "audit.jsonl"
    deadline = time.monotonic() + timeout
    while True:
        records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        if until is None or any(until(r) for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def host_args(root: pathlib.Path, *extra: str) -> list[str]:
    return ["--plugins", str(root / "plugins"), "--policies", str(root / "policies"), *extra]


def stdio_params(root: pathlib.Path, env: dict[str, str] | None = None) -> StdioServerParameters:
    """Launches `host serve` on stdio, as a desktop client would."""
    return StdioServerParameters(
        command=str(HOST),
        args=["serve", *host_args(root)],
        env={**os.environ, **(env or {})},
    )


def run_host(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(HOST), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


class HttpHost:
    """`host serve --http 127.0.0.1:0` in the background; `url` is its endpoint."""

    def __init__(self, root: pathlib.Path, env: dict[str, str] | None = None, *extra: str):
        self.process = subprocess.Popen(
            [str(HOST), "serve", "--http", "127.0.0.1:0", *host_args(root), *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.log: list[str] = []
        lines: queue.Queue[str] = queue.Queue()

        def drain() -> None:
            for line in self.process.stderr:
                self.log.append(line)
                lines.put(line)

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + 60
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError("host did not start serving:\n" + "".join(self.log))
            found = re.search(r"at (http://127\.0\.0\.1:\d+/mcp)", line)
            if found:
                self.url = found.group(1)
                self.origin = self.url.removesuffix("/mcp")
                return

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    def post_unfinished(self, headers: dict[str, str], length: int, start: bytes = b"") -> str:
        """POSTs to /mcp announcing a body of `length` bytes, sends only
        `start` of it, and returns the first answer (within 5 s)."""
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.sendall(f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {length}\r\n{head}\r\n".encode() + start)
            sock.settimeout(5)
            return sock.recv(65536).decode()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class RawHttp:
    """A bare JSON-RPC client for the Streamable HTTP endpoint (2025-11-25
    session): it checks nothing itself, so what it sees is what the host
    sent."""

    def __init__(self, url: str, capabilities: dict | None = None):
        self.url = url
        self.session: str | None = None
        self.next_id = 0
        self.request("initialize", {
            "protocolVersion": "2025-11-25",
            "capabilities": capabilities or {},
            "clientInfo": {"name": "raw-http", "version": "0"},
        })
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def post(self, message: dict) -> list[dict]:
        import urllib.request

        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        if self.session:
            headers["mcp-session-id"] = self.session
        request = urllib.request.Request(self.url, data=json.dumps(message).encode(), headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            self.session = response.headers.get("mcp-session-id", self.session)
            body = response.read().decode()
        if not body.strip():
            return []
        if body.lstrip().startswith("{"):
            return [json.loads(body)]
        return [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:") and line[5:].strip()]

    def request(self, method: str, params: dict) -> dict:
        self.next_id += 1
        messages = self.post({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        return next(m for m in messages if m.get("id") == self.next_id)


class RawModern:
    """A bare JSON-RPC client speaking 2026-07-28 over HTTP: no session;
    every request carries the protocol version, the client's name and
    capabilities in `_meta`, and the standard `Mcp-*` headers."""

    NAMED_BY = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri",
                "tasks/get": "taskId", "tasks/cancel": "taskId"}

    def __init__(self, url: str, capabilities: dict | None = None, name: str = "raw-modern"):
        self.url = url
        self.meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                     "io.modelcontextprotocol/clientInfo": {"name": name, "version": "0"},
                     "io.modelcontextprotocol/clientCapabilities": capabilities or {}}
        self.next_id = 0

    def request(self, method: str, params: dict) -> dict:
        import urllib.request

        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": {**params, "_meta": self.meta}}
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                   "mcp-protocol-version": "2026-07-28", "mcp-method": method}
        if method in self.NAMED_BY:
            headers["mcp-name"] = params[self.NAMED_BY[method]]
        request = urllib.request.Request(self.url, data=json.dumps(message).encode(), headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read().decode()
        if body.lstrip().startswith("{"):
            messages = [json.loads(body)]
        else:
            messages = [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:") and line[5:].strip()]
        return next(m for m in messages if m.get("id") == self.next_id)


class BrokerStandIn:
    """A broker API on loopback that records every request it receives."""

    POSITIONS = [{"symbol": "AAPL", "quantity": 10, "average_price": 185.2}]
    ACCOUNT = {"cash": 25000.0, "equity": 26852.0, "buying_power": 50000.0}

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.hosts: list[str] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                standin.requests.append((self.command, self.path))
                standin.hosts.append(self.headers.get("host", ""))

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._record()
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("location", "/secret")
                    self.send_header("content-length", "0")
                    self.end_headers()
                elif self.path == "/big":
                    body = b"x" * 4096
                    self.send_response(200)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path in ("/positions", "/v2/positions", "/v2/account"):
                    answer = {"/v2/account": {"account": standin.ACCOUNT}}.get(self.path, {"positions": standin.POSITIONS})
                    body = json.dumps(answer).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def do_POST(self) -> None:  # noqa: N802
                self._record()
                self.send_response(201)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def do_HEAD(self) -> None:  # noqa: N802
                self._record()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            # Every other method is recorded too, so a leak shows.
            do_PUT = do_PATCH = do_DELETE = do_FROB = do_OPTIONS = do_TRACE = do_POST  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def text_of(result) -> str:
    """The text blocks of a tool result, joined."""
    return "\n".join(block.text for block in result.content if block.type == "text")
