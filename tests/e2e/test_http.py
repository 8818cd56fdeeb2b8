"""Streamable HTTP: secure by default. Origin and Host are validated, and the
host refuses to listen anywhere but loopback."""

import json
import urllib.error
import urllib.request

import pytest

from harness import host_args, run_host

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw-http", "version": "0"},
    },
}


def post(url: str, body: dict, headers: dict[str, str]) -> tuple[int, str, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            **headers,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


def test_a_foreign_origin_is_refused(http_host):
    status, _, _ = post(http_host.url, INITIALIZE, {"origin": "https://evil.example"})
    assert status == 403


@pytest.mark.parametrize("origin", [None, "http://localhost:5173", "http://127.0.0.1:6274"])
def test_loopback_and_absent_origins_are_accepted(http_host, origin):
    headers = {"origin": origin} if origin else {}
    status, body, response_headers = post(http_host.url, INITIALIZE, headers)
    assert status == 200, body
    assert "mcp-session-id" in {k.lower() for k in response_headers}
    assert '"protocolVersion":"2025-11-25"' in body


def test_a_foreign_host_header_is_refused(http_host):
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1.
    status, _, _ = post(http_host.url, INITIALIZE, {"host": "evil.example"})
    assert status in (400, 403)


def test_an_allowed_origin_can_be_added(root):
    from harness import HttpHost

    host = HttpHost(root, None, "--allow-origin", "https://app.example.com")
    try:
        allowed, _, _ = post(host.url, INITIALIZE, {"origin": "https://app.example.com"})
        assert allowed == 200
        other, _, _ = post(host.url, INITIALIZE, {"origin": "https://other.example.com"})
        assert other == 403
    finally:
        host.stop()


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0"])
def test_non_loopback_addresses_are_refused(root, address):
    result = run_host("serve", "--http", address, *host_args(root), timeout=60)
    assert result.returncode == 1
    assert "only listens on loopback" in result.stderr
