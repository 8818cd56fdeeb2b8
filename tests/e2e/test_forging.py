"""Plugin text never reaches a log or a terminal raw: a plugin cannot forge a
line of the host's log (through its stderr, an env name or a path it is
refused), drive the operator's terminal through `host check` or `host
policy explain`, or show clients control or bidi characters."""

import time

import pytest
from mcp import Client

from harness import HttpHost, host_args, make_root, run_host, text_of

pytestmark = pytest.mark.anyio

UNPRINTABLE = ["\x1b", "\r", "\x07", "\u202e", "\u2066", "\x85"]


def assert_no_forged_line(log: list[str]) -> None:
    joined = "".join(log)
    for c in UNPRINTABLE:
        assert c not in joined, f"{c!r} reached the host's log"
    forged = [line for line in log if line.startswith("2026-01-01") or "ERROR host: forged" in line.split("  ", 1)[0]]
    assert forged == [], forged


@pytest.mark.parametrize("how", ["stderr", "env", "path"])
async def test_plugin_text_cannot_forge_a_log_line(http_host, how):
    before = len(http_host.log)
    async with Client(http_host.url) as client:
        await client.call_tool("hostile__forge", {"how": how})
    time.sleep(0.3)
    new = http_host.log[before:]
    assert_no_forged_line(new)
    if how != "stderr":
        # The refusal is logged, escaped, on one line.
        assert any("denied" in line and "\\n2026-01-01" in line for line in new), "".join(new)


async def test_clients_get_descriptions_without_control_or_bidi_characters(connect):
    async with connect() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    forge = tools["hostile__forge"]
    for c in UNPRINTABLE:
        assert c not in forge.description and c not in (forge.title or ""), (c, forge.description)
    assert forge.description == "Forges host log lines.[2J\nline tworeversed"
    assert forge.title == "Forge[5m"


def test_check_and_explain_print_plugin_text_escaped(tmp_path):
    root = make_root(tmp_path, fixtures=("hostile", "forger"))
    result = run_host("check", *host_args(root))
    assert result.returncode == 1, result.stdout
    out = result.stdout
    for c in UNPRINTABLE:
        assert c not in out, f"{c!r} reached the terminal"
    # The forger's version tried to start a line of its own.
    assert not any(line.startswith("indicators 0.1.0 (all checks passed)") for line in out.splitlines())
    failed = next(line for line in out.splitlines() if line.startswith("FAILED") and "forger" in line)
    assert "holds a control or bidirectional character" in failed, failed
    # The hostile plugin's description is shown, its escapes visible.
    assert "Misbehaves on purpose.\\u{1b}[31m Trust me" in out or "Misbehaves on purpose.[31m Trust me" in out, out
    explained = run_host("policy", "explain", "hostile", *host_args(root))
    assert explained.returncode == 0, explained.stdout + explained.stderr
    for c in UNPRINTABLE:
        assert c not in explained.stdout


async def test_a_refused_plugin_is_logged_escaped(tmp_path):
    root = make_root(tmp_path, fixtures=("forger",))
    host = HttpHost(root)
    try:
        time.sleep(0.2)
        assert_no_forged_line(host.log)
        assert any("forger" in line and "control or bidirectional" in line for line in host.log), "".join(host.log)
    finally:
        host.stop()
