"""The same hostile checks as for a Rust plugin (test_hostile.py,
test_security.py), made from inside a Python and a JavaScript plugin: each
attempt is contained with the same message, and the host and every other
plugin keep serving."""

import os

import pytest
from mcp import Client

from harness import audit_records, http_host_serving, make_root, text_of

pytestmark = pytest.mark.anyio

LANGUAGES = ["hostile-py", "hostile-js"]


@pytest.fixture(scope="module")
def hostile_host(tmp_path_factory, broker):
    root = make_root(tmp_path_factory.mktemp("languages"), fixtures=tuple(LANGUAGES))
    (root / "secret.txt").write_text("the root's secret")
    for plugin in LANGUAGES:
        ro = root / plugin / "ro"
        ro.mkdir(parents=True)
        (ro / "data.txt").write_text("market history")
        os.symlink("../../secret.txt", ro / "escape")
    host = http_host_serving(root, {"BROKER_URL": broker.url}, *(f"{plugin}__spin" for plugin in LANGUAGES))
    yield root, host
    host.stop()


async def attempt(host, plugin: str, tool: str, arguments: dict) -> str:
    async with Client(host.url) as client:
        result = await client.call_tool(f"{plugin}__{tool}", arguments)
        assert result.is_error, f"{plugin} {tool} {arguments} succeeded: {text_of(result)}"
        # The host and the other plugins keep serving.
        still = await client.call_tool(
            "indicators__compute_indicator", {"indicator": "sma", "closes": [1, 2, 3], "params": {"period": 2}}
        )
        assert not still.is_error, text_of(still)
    return text_of(result)


@pytest.mark.parametrize("plugin", LANGUAGES)
async def test_a_loop_is_stopped_at_its_cpu_budget(hostile_host, plugin):
    message = await attempt(hostile_host[1], plugin, "spin", {})
    assert "used up its CPU budget of 1000 ms" in message, message


@pytest.mark.parametrize("plugin", LANGUAGES)
async def test_an_allocation_bomb_hits_the_memory_limit_in_one_line(hostile_host, plugin):
    message = await attempt(hostile_host[1], plugin, "hog", {})
    assert "ran out of memory" in message and "48 MiB" in message, message
    assert "\n" not in message and "backtrace" not in message and "Traceback" not in message, message


FILE_ATTEMPTS = [
    ("read outside the grants", "read", "/etc/passwd", "policy (no mount holds this path)"),
    ("dot-dot out of a mount", "read", "/ro/../../secret.txt", "the sandbox"),
    ("a symlink out of a mount", "read", "/ro/escape", "the sandbox"),
    ("write to a read-only mount", "write", "/ro/new.txt", "the sandbox"),
    ("list outside the grants", "list", "/etc", "policy (no mount holds this path)"),
]


@pytest.mark.parametrize("plugin", LANGUAGES)
@pytest.mark.parametrize("case, op, path, rule", FILE_ATTEMPTS, ids=[c[0] for c in FILE_ATTEMPTS])
async def test_file_escapes_are_denied_and_audited(hostile_host, plugin, case, op, path, rule):
    root, host = hostile_host
    message = await attempt(host, plugin, "fs", {"op": op, "path": path})
    assert f"host: denied by {rule}" in message, message
    assert "the root's secret" not in message

    def matches(record):
        return (
            record["event"] == "denied"
            and record["target"] == f"{plugin}__fs"
            and record["rule"].startswith(rule)
            and path in record["attempt"]
        )

    assert any(matches(r) for r in audit_records(root, until=matches)), f"no audit record of {path}"
    assert sorted(p.name for p in (root / plugin / "ro").iterdir()) == ["data.txt", "escape"]


@pytest.mark.parametrize("plugin", LANGUAGES)
@pytest.mark.parametrize("method, path", [("POST", "/v2/orders"), ("DELETE", "/v2/orders/1"), ("POST", "/v2/positions/SPY/close")])
async def test_an_order_is_refused_by_the_guardrail(hostile_host, broker, plugin, method, path):
    before = len(broker.requests)
    message = await attempt(hostile_host[1], plugin, "fetch", {"method": method, "url": f"{broker.url}{path}"})
    assert "host: denied by guardrail no-order-execution" in message, message
    assert "denied by the host's policy" in message, message
    assert broker.requests[before:] == []


@pytest.mark.parametrize(
    "plugin, expected",
    [
        ("hostile-py", "boom failed: RuntimeError: hostile plugin raised on purpose"),
        ("hostile-js", "boom failed: TypeError: hostile plugin threw on purpose"),
    ],
)
async def test_an_uncaught_exception_is_a_clean_tool_error(hostile_host, plugin, expected):
    root, host = hostile_host
    message = await attempt(host, plugin, "boom", {})
    assert message == expected

    # Formatting no traceback, the SDK reads no source file: nothing refused.
    def refused_for_boom(record):
        return record["event"] == "denied" and record["target"] == f"{plugin}__boom"

    assert not any(refused_for_boom(r) for r in audit_records(root))
