#!/usr/bin/env python3
"""Instructions per call, counted by callgrind: the figure that does not
drift with the machine (calls/s on a shared VM moves 2x within an hour).

Runs a `host` binary under `valgrind --tool=callgrind` with the hello
fixture, makes warm-up calls, then counts the host's instructions over a
fixed number of calls: over stdio, and over HTTP with several clients.
Valgrind runs one thread at a time, so this counts work, not contention.

    python3 host/benches/instructions.py [--host target/release/host] [--calls 400]

Needs valgrind, the release host and the fixtures (see BENCHMARKS.md). To
compare builds, run it once per binary: it uses only config keys every
build knows.
"""

import argparse
import http.client
import json
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
HELLO = REPO / "tests" / "fixtures" / "target" / "wasm32-wasip2" / "release" / "hello.wasm"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "count", "version": "1"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def call(i: int, tool: str) -> dict:
    return {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": tool, "arguments": {"name": "Ada"}}}


def callgrind(host: str, root: pathlib.Path, out: pathlib.Path, extra: list[str]) -> list[str]:
    return [
        "valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--instr-atstart=no",
        f"--callgrind-out-file={out}", host, "serve",
        "--plugins", str(root / "plugins"), "--policies", str(root / "policies"),
        "--cache-dir", str(root / "cache"), "--no-audit-log", "--native-noop", *extra,
    ]


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=False)


def total(out: pathlib.Path) -> int:
    text = subprocess.run(["callgrind_annotate", str(out)], capture_output=True, text=True).stdout
    line = next(line for line in text.splitlines() if "PROGRAM TOTALS" in line)
    return int(line.split()[0].replace(",", ""))


def over_stdio(host: str, root: pathlib.Path, tool: str, calls: int, extra: list[str]) -> float:
    out = root / f"stdio-{tool}.out"
    process = subprocess.Popen(callgrind(host, root, out, extra), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def request(message: dict) -> None:
        process.stdin.write(json.dumps(message) + "\n")
        process.stdin.flush()
        while json.loads(process.stdout.readline()).get("id") != message["id"]:
            pass

    request(INITIALIZE)
    process.stdin.write(json.dumps(INITIALIZED) + "\n")
    for i in range(1, 11):
        request(call(i, tool))
    control(process.pid, "-i", "on")
    for i in range(100, 100 + calls):
        request(call(i, tool))
    control(process.pid, "-i", "off")
    control(process.pid, "-d")
    process.stdin.close()
    process.wait()
    return total(out.with_name(out.name + ".1")) / calls


def over_http(host: str, root: pathlib.Path, tool: str, calls: int, clients: int, extra: list[str]) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = root / f"http-{tool}.out"
    process = subprocess.Popen(callgrind(host, root, out, [*extra, "--http", f"127.0.0.1:{port}"]),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)

    class Client:
        def __init__(self) -> None:
            self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            self.session = None
            self.post(INITIALIZE)
            self.post(INITIALIZED)

        def post(self, message: dict) -> None:
            extra = {"Mcp-Session-Id": self.session, "MCP-Protocol-Version": "2025-11-25"} if self.session else {}
            self.connection.request("POST", "/mcp", json.dumps(message), {**headers, **extra})
            response = self.connection.getresponse()
            body = response.read()
            assert response.status in (200, 202), (response.status, body)
            self.session = self.session or response.getheader("Mcp-Session-Id")

        def calls(self, first: int, count: int) -> None:
            for i in range(first, first + count):
                self.post(call(i, tool))

    pool = [Client() for _ in range(clients)]

    def in_parallel(first: int, count: int) -> None:
        threads = [threading.Thread(target=client.calls, args=(first, count)) for client in pool]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    in_parallel(1, 5)
    control(process.pid, "-i", "on")
    per_client = calls // clients
    in_parallel(100, per_client)
    control(process.pid, "-i", "off")
    control(process.pid, "-d")
    process.terminate()
    process.wait()
    return total(out.with_name(out.name + ".1")) / (per_client * clients)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=str(REPO / "target" / "release" / "host"))
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8, help="HTTP clients (each user may hold 32 sessions)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    with tempfile.TemporaryDirectory() as work:
        root = pathlib.Path(work)
        (root / "plugins").mkdir()
        (root / "policies").mkdir()
        shutil.copy(HELLO, root / "plugins" / "hello.wasm")
        # One sandbox slot: the pool's address-space reservation must fit valgrind's.
        (root / "engine.toml").write_text("[engine]\nmax_sandboxes = 1\n")
        (root / "policies" / "hello.toml").write_text("version = 1\n[limits]\nmax_concurrency = 256\n")
        extra = ["--config", str(root / "engine.toml")]
        print("| transport | tool | instructions per call |")
        print("| --- | --- | --- |")
        for tool in ("hello__greet", "host__noop"):
            print(f"| stdio | {tool} | {over_stdio(args.host, root, tool, args.calls, extra):,.0f} |")
        for tool in ("hello__greet", "host__noop"):
            count = over_http(args.host, root, tool, args.calls, args.clients, extra)
            print(f"| http ({args.clients} clients) | {tool} | {count:,.0f} |")


if __name__ == "__main__":
    main()
