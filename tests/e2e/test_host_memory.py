"""What a plugin hands the host costs the host no more than the call's
limits allow: one buffer referenced many times is counted each time as it
is lifted out of the guest, and a million empty blocks are refused before
they are converted. The host stays up and the refusal is audited."""

import pathlib

import pytest
from mcp import Client

from harness import HttpHost, audit_records, make_root, text_of

pytestmark = pytest.mark.anyio


def peak_rss_mib(pid: int) -> int:
    """The process's peak resident memory, in MiB."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) >> 10
    raise AssertionError("no VmHWM")


def host_with(tmp_path, limits: str) -> tuple[pathlib.Path, HttpHost]:
    root = make_root(tmp_path, fixtures=("hostile",))
    policy = root / "policies" / "hostile.toml"
    text = policy.read_text()
    assert "memory_mib = 32" in text and "cpu_ms = 400" in text
    # Room to build a million blocks; the memory limit as the test needs.
    text = text.replace("cpu_ms = 400", "cpu_ms = 5000").replace("timeout_ms = 1000", "timeout_ms = 10000")
    policy.write_text(text.replace("memory_mib = 32", limits))
    return root, HttpHost(root)


def outcome_of(root, tool: str) -> str:
    def done(record):
        return record["event"] == "call" and record["target"] == tool

    return next(r["outcome"] for r in audit_records(root, until=done) if done(r))


@pytest.mark.parametrize("how", ["text", "embedded", "image"])
async def test_one_buffer_referenced_many_times_is_counted_each_time(tmp_path, how):
    """A 32 MiB plugin lends one 64 KiB buffer to 1900 blocks (119 MiB if
    copied): refused at 32 MiB, before the host holds the copies."""
    root, host = host_with(tmp_path, "memory_mib = 32")
    try:
        before = peak_rss_mib(host.process.pid)
        async with Client(host.url) as client:
            result = await client.call_tool("hostile__amplify", {"how": how, "times": 1900, "kib": 64})
            message = text_of(result)
            assert result.is_error, message
            assert "more than 32 MiB in one transfer" in message, message
            # The host is unharmed: the same tool, answering within bounds, works.
            small = await client.call_tool("hostile__amplify", {"how": "blocks", "times": 3, "kib": 0})
            assert not small.is_error, text_of(small)
        assert peak_rss_mib(host.process.pid) - before < 100
        assert outcome_of(root, "hostile__amplify") == "transfer-limit"
    finally:
        host.stop()


@pytest.mark.parametrize("times", [10_001, 1_000_000])
async def test_empty_blocks_past_the_cap_are_refused_before_conversion(tmp_path, times):
    """Empty blocks take no bytes of text but cost the host in bookkeeping:
    past 10000 of them the answer is refused, and a million of them never
    reach the conversion that cost +352 MiB."""
    root, host = host_with(tmp_path, "memory_mib = 256")
    try:
        before = peak_rss_mib(host.process.pid)
        async with Client(host.url) as client:
            result = await client.call_tool("hostile__amplify", {"how": "blocks", "times": times, "kib": 0})
        message = text_of(result)
        assert result.is_error, message
        assert f"holds {times} content blocks; at most 10000 are accepted" in message, message
        # The guest's own memory and the lifted list are within its 256 MiB;
        # converting the blocks, as before, cost hundreds more.
        assert peak_rss_mib(host.process.pid) - before < 300
    finally:
        host.stop()


async def test_blocks_are_counted_against_the_output_limit(tmp_path):
    """9000 empty blocks are under the item cap but not under a 64 KiB output
    limit once each block's own cost on the wire is counted."""
    root, host = host_with(tmp_path, "memory_mib = 32\nmax_output_kib = 64")
    try:
        async with Client(host.url) as client:
            result = await client.call_tool("hostile__amplify", {"how": "blocks", "times": 9000, "kib": 0})
        message = text_of(result)
        assert result.is_error and "over its limit of 64 KiB" in message, message
    finally:
        host.stop()
