"""Exact wire checks with a raw JSON-RPC client on the host's stdio: nothing
but JSON-RPC ever appears on stdout, whatever a plugin prints, and bad input
gets an answer without taking the host down."""

import json
import os
import queue
import subprocess
import threading

import pytest

from harness import HOST, host_args


class RawStdio:
    """`host serve` on stdio, spoken to line by line."""

    def __init__(self, root):
        self.process = subprocess.Popen(
            [str(HOST), "serve", *host_args(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=os.environ.copy(),
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.seen: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)

    def send_raw(self, data: bytes) -> None:
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, message: dict) -> None:
        self.send_raw(json.dumps(message).encode() + b"\n")

    def next_message(self, timeout: float = 30) -> dict:
        line = self.lines.get(timeout=timeout)
        self.seen.append(line)
        return json.loads(line)

    def response(self, request_id) -> dict:
        while True:
            message = self.next_message()
            if message.get("id") == request_id and ("result" in message or "error" in message):
                return message

    def request(self, request_id, method: str, params: dict | None = None) -> dict:
        message = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self.response(request_id)

    def initialize(self) -> dict:
        response = self.request(
            0,
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "0"},
            },
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return response

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture
def raw(root):
    client = RawStdio(root)
    yield client
    if client.process.poll() is None:
        client.process.kill()


def test_initialize_result_is_exact(raw):
    result = raw.initialize()["result"]
    assert result["protocolVersion"] == "2025-11-25"
    assert result["serverInfo"]["name"] == "host"
    capabilities = result["capabilities"]
    assert capabilities["tools"] == {"listChanged": True}
    assert capabilities["prompts"] == {"listChanged": True}
    assert capabilities["resources"]["listChanged"] is True
    assert "logging" in capabilities and "completions" in capabilities
    tools = raw.request(1, "tools/list")["result"]["tools"]
    assert "market-data__get_quote" in {t["name"] for t in tools}


def test_stdout_stays_pure_json_rpc_when_a_plugin_prints(raw):
    raw.initialize()
    response = raw.request(1, "tools/call", {"name": "hostile__chatty", "arguments": {"lines": 200}})
    assert response["result"]["isError"] is False
    raw.close()
    while not raw.lines.empty():
        raw.seen.append(raw.lines.get())
    for line in raw.seen:
        message = json.loads(line)
        assert message["jsonrpc"] == "2.0"
        # The plugin printed JSON-RPC-looking lines with id 999: none is a message.
        assert message.get("id") != 999
    printed = [json.loads(line) for line in raw.seen if b"stdout line" in line]
    assert printed and all(m["method"] == "notifications/message" for m in printed)


def test_malformed_input_is_answered_and_the_host_keeps_serving(raw):
    raw.initialize()
    # Unparsable input is answered with -32700 and `"id": null`.
    raw.send_raw(b"{this is not json\n")
    parse_error = raw.next_message()
    assert parse_error["id"] is None and parse_error["error"]["code"] == -32700
    ping = raw.request(4, "ping")
    assert ping == {"jsonrpc": "2.0", "id": 4, "result": {}}
    # Params that do not fit a method the host serves are -32602, as over HTTP.
    raw.send_raw(b'{"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": "not an object"}\n')
    invalid = raw.next_message()
    assert invalid["id"] == 5 and invalid["error"]["code"] == -32602
    unknown_method = raw.request(6, "no/such/method")
    assert unknown_method["error"]["code"] == -32601
    unknown_tool = raw.request(7, "tools/call", {"name": "nope__nope", "arguments": {}})
    assert unknown_tool["error"]["code"] == -32602
    assert "unknown tool" in unknown_tool["error"]["message"]
    ok = raw.request(8, "tools/call", {"name": "market-data__get_quote", "arguments": {"symbol": "AAPL"}})
    assert ok["result"]["isError"] is False
    assert ok["result"]["structuredContent"]["symbol"] == "AAPL"


JSON_SCHEMA_FORMATS = {"date-time", "date", "time", "duration", "email", "idn-email", "hostname", "idn-hostname",
                       "ipv4", "ipv6", "uri", "uri-reference", "iri", "iri-reference", "uuid", "uri-template",
                       "json-pointer", "relative-json-pointer", "regex"}


def formats(schema) -> set:
    if isinstance(schema, dict):
        found = {schema["format"]} if isinstance(schema.get("format"), str) else set()
        return found.union(*(formats(value) for value in schema.values()))
    if isinstance(schema, list):
        return set().union(*(formats(value) for value in schema))
    return set()


def test_served_schemas_use_only_formats_json_schema_defines(raw):
    raw.initialize()
    tools = raw.request(2, "tools/list", {})["result"]["tools"]
    used = formats([[tool["inputSchema"], tool.get("outputSchema")] for tool in tools])
    assert used <= JSON_SCHEMA_FORMATS, used - JSON_SCHEMA_FORMATS
    # Bounds the plugin wrote stay as written.
    bars = next(tool for tool in tools if tool["name"] == "market-data__get_bars")
    limit = bars["inputSchema"]["properties"]["limit"]
    assert (limit["minimum"], limit["maximum"]) == (1, 5000), limit


def test_a_plugins_io_errors_read_as_words_not_wasi_errno_numbers(tmp_path):
    from harness import make_root

    root = make_root(tmp_path)
    policy = root / "policies" / "strategies.toml"
    policy.write_text(policy.read_text().replace('access = "read-write"', 'access = "read-only"'))
    raw = RawStdio(root)
    try:
        raw.initialize()
        config = {"symbols": ["SPY"], "timeframe": "1d", "indicators": [], "entry": "close > 1",
                  "exit": "close < 1", "risk": {"position_size_pct": 10}}
        answer = raw.request(2, "tools/call", {"name": "strategies__create_strategy",
                                               "arguments": {"name": "blocked", "definition": config}})
    finally:
        raw.process.kill()
    text = " ".join(block["text"] for block in answer["result"]["content"])
    assert answer["result"]["isError"] and "cannot write strategies" in text, text
    assert "os error" not in text and "not permitted" in text, text
