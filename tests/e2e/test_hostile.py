"""A plugin that misbehaves is stopped at the sandbox boundary, the client
gets a clear error, and the host and every other plugin keep serving."""

import math
import os
import pathlib
import time

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import PromptReference

from harness import HOST, audit_records, make_root, stdio_params, text_of, wait_for_tools

pytestmark = pytest.mark.anyio


async def indicators_still_work(client) -> None:
    result = await client.call_tool(
        "indicators__compute_indicator", {"indicator": "sma", "closes": [1, 2, 3], "params": {"period": 2}}
    )
    assert not result.is_error, text_of(result)
    assert result.structured_content["series"]["sma"] == [None, 1.5, 2.5]


async def test_a_panic_becomes_a_tool_error_with_the_panic_message(http_host):
    async with Client(http_host.url) as client:
        result = await client.call_tool("hostile__panic", {})
        assert result.is_error
        message = text_of(result)
        assert message.startswith("hostile__panic failed: the plugin crashed: wasm trap: wasm `unreachable`")
        assert "hostile plugin panicked on purpose" in message
        await indicators_still_work(client)
        # A fresh sandbox per call: the same tool works again after a crash.
        assert (await client.call_tool("hostile__log", {})).is_error is False


async def test_an_endless_loop_is_stopped_at_its_cpu_budget(http_host, root):
    async with Client(http_host.url) as client:
        result = await client.call_tool("hostile__spin", {})
        assert result.is_error
        assert "used up its CPU budget of 400 ms" in text_of(result)
        await indicators_still_work(client)

    def stopped(record):
        return record["event"] == "call" and record["target"] == "hostile__spin" and record["outcome"] == "cpu-limit"

    assert any(stopped(r) for r in audit_records(root, until=stopped))


async def test_a_call_waiting_without_cpu_is_stopped_at_its_time_limit(http_host):
    async with Client(http_host.url) as client:
        result = await client.call_tool("hostile__sleep", {})
        assert result.is_error
        assert "did not finish within its time limit of 1000 ms" in text_of(result)
        await indicators_still_work(client)


async def test_other_calls_are_served_while_a_plugin_spins(http_host):
    spin_finished = anyio.Event()

    async def spin(client) -> None:
        await client.call_tool("hostile__spin", {})
        spin_finished.set()

    async with Client(http_host.url) as spinner, Client(http_host.url) as other:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(spin, spinner)
            await anyio.sleep(0.2)
            await indicators_still_work(other)
            # Served while the spinning call was still running.
            assert not spin_finished.is_set()


async def test_unbounded_allocation_hits_the_memory_limit(http_host):
    async with Client(http_host.url) as client:
        result = await client.call_tool("hostile__hog", {})
        assert result.is_error
        assert "ran out of memory" in text_of(result)
        assert "32 MiB" in text_of(result)
        # One clean line for the user: no wasm backtrace, and not the
        # allocator's complaint on stderr (that reached the client's log).
        assert "\n" not in text_of(result), text_of(result)
        assert "backtrace" not in text_of(result) and "stderr" not in text_of(result), text_of(result)
        await indicators_still_work(client)


@pytest.mark.parametrize("keep_resident_kib", [4, 1024, 16384])
async def test_no_call_sees_what_an_earlier_call_left_in_memory(tmp_path, keep_resident_kib):
    """Every call starts from the plugin's image, whatever the call before it
    in the same sandbox slot wrote: its initial memory or memory it grew, in
    one run or in hundreds of separate pages (as a JS or Python heap dirties
    it), within or past what the host keeps resident between calls."""
    root = make_root(tmp_path, fixtures=("hostile",))
    config = root / "host.toml"
    # One sandbox slot: every call reuses the memory of the one before.
    config.write_text(
        f'plugins = "plugins"\npolicies = "policies"\n[engine]\nmax_sandboxes = 1\n'
        f"keep_resident_kib = {keep_resident_kib}\n"
    )
    params = StdioServerParameters(command=str(HOST), args=["serve", "--config", str(config)], env=dict(os.environ))
    async with Client(params) as client:
        await wait_for_tools(client, "hostile__residue")
        for kib, stride in [(4096, 2), (4096, 1), (64, 3), (2048, 5), (4096, 2)]:
            for _ in range(2):
                result = await client.call_tool("hostile__residue", {"kib": kib, "stride": stride})
                assert not result.is_error, text_of(result)
                assert text_of(result).startswith("stale pages: initial 0, grown 0; scribbled on"), (
                    kib,
                    stride,
                    text_of(result),
                )


async def test_printed_output_reaches_the_client_as_log_messages_only(root):
    messages = []

    async def on_log(params) -> None:
        messages.append(params)

    async with Client(stdio_params(root), mode="legacy", logging_callback=on_log) as client:
        result = await client.call_tool("hostile__chatty", {"lines": 3})
        assert not result.is_error
        assert text_of(result) == "printed 3 lines"
        logged = await client.call_tool("hostile__log", {})
        assert not logged.is_error
    texts = [str(m.data) for m in messages]
    assert any(t.startswith("[stdout]") and "stdout line 2" in t for t in texts), texts
    assert any(t.startswith("[stderr]") and "stderr line 2" in t for t in texts), texts
    assert "hello from the hostile plugin" in texts
    assert {m.logger for m in messages} == {"hostile"}


async def test_printing_past_the_capture_limit_loses_the_excess_not_the_call(root):
    messages = []

    async def on_log(params) -> None:
        messages.append(str(params.data))

    async with Client(stdio_params(root), mode="legacy", logging_callback=on_log) as client:
        result = await client.call_tool("hostile__chatty", {"lines": 5000})
        assert not result.is_error, text_of(result)
        assert text_of(result) == "printed 5000 lines"
    stdout = next(m for m in messages if m.startswith("[stdout]"))
    assert "stdout line 0" in stdout
    assert stdout.endswith("more bytes dropped")


async def test_a_progress_flood_reaches_the_client_as_a_trickle_of_finite_values(root):
    reports = []

    async def on_progress(progress, total, message) -> None:
        reports.append((progress, total))

    async with Client(stdio_params(root), mode="legacy") as client:
        result = await client.call_tool("hostile__flood", {}, progress_callback=on_progress)
        assert not result.is_error, text_of(result)
        await indicators_still_work(client)
    # 200,000 reports in a second or so: a burst of 100, then 20 a second.
    assert 0 < len(reports) < 200, len(reports)
    assert all(isinstance(p, (int, float)) and math.isfinite(p) and total is None for p, total in reports), reports
    assert [p for p, _ in reports] == sorted({p for p, _ in reports})


async def test_printed_newlines_cannot_forge_a_line_of_the_hosts_log(http_host):
    async with Client(http_host.url) as client:
        result = await client.call_tool("hostile__chatty", {"lines": 3})
        assert not result.is_error
    time.sleep(0.2)
    forged = [line for line in http_host.log if line.lstrip().startswith(('{"jsonrpc"', "stderr line"))]
    assert forged == [], forged
    assert any("stdout line 2" in line for line in http_host.log), "the output is logged, escaped"


async def test_validating_against_a_plugins_own_pattern_takes_linear_time(http_host):
    """`^(a+)+$` against forty a's and a `!` takes a backtracking engine 2^40
    steps; patterns run on a linear-time engine, so the mismatch is reported
    at once and other calls are never stalled behind it."""
    async with Client(http_host.url) as client:
        with anyio.fail_after(30):
            result = await client.call_tool("hostile__backtrack", {})
        assert result.is_error
        assert "does not match its output schema" in text_of(result), text_of(result)
        await indicators_still_work(client)


async def test_every_entry_point_answers_within_the_output_cap(root):
    """Resources, prompts and completions are capped like tools, on what the
    client would receive; the host and the plugin's other entries go on."""
    async with Client(stdio_params(root), mode="legacy") as client:
        with pytest.raises(Exception, match="over its limit of 1024 KiB"):
            await client.read_resource("hostile://big")
        with pytest.raises(Exception, match="over its limit of 1024 KiB"):
            await client.get_prompt("hostile__big", {"topic": "x"})
        with pytest.raises(Exception, match="over its limit of 1024 KiB"):
            await client.complete(PromptReference(type="ref/prompt", name="hostile__big"), {"name": "topic", "value": ""})
        await indicators_still_work(client)


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time each named thread of `pid` has used, summed by name."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return used


def host_pid_serving(root: pathlib.Path) -> int:
    for proc in pathlib.Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except (FileNotFoundError, PermissionError, ProcessLookupError):
                continue
            if cmdline[:2] == [str(HOST).encode(), b"serve"] and str(root).encode() + b"/plugins" in cmdline:
                return int(proc.name)
    raise AssertionError(f"no host serving {root}")


async def test_a_stdio_clients_calls_run_on_its_thread_and_overlapping_ones_on_other_cores(tmp_path):
    # One call at a time runs on the thread that reads the client (no other
    # core woken for it); a call that overlaps a running one goes to the
    # worker pool, so two spinning calls use two cores, not one in turns.
    root = make_root(tmp_path / "root", fixtures=("hostile",))
    async with Client(stdio_params(root)) as client:
        await wait_for_tools(client, "hostile__spin")
        pid = host_pid_serving(root)

        before = thread_cpu_seconds(pid)
        for _ in range(2):
            result = await client.call_tool("hostile__spin", {})
            assert "used up its CPU budget of 400 ms" in text_of(result)
        after = thread_cpu_seconds(pid)
        on_stdio = after.get("stdio", 0) - before.get("stdio", 0)
        on_workers = after.get("tokio-rt-worker", 0) - before.get("tokio-rt-worker", 0)
        assert on_stdio >= 0.7, (on_stdio, on_workers)
        assert on_workers < 0.2, (on_stdio, on_workers)

        before = after
        results = []

        async def spin() -> None:
            results.append(await client.call_tool("hostile__spin", {}))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(spin)
            tasks.start_soon(spin)
        assert len(results) == 2
        for result in results:
            assert "used up its CPU budget of 400 ms" in text_of(result)
        after = thread_cpu_seconds(pid)
        on_stdio = after.get("stdio", 0) - before.get("stdio", 0)
        on_workers = after.get("tokio-rt-worker", 0) - before.get("tokio-rt-worker", 0)
        assert on_stdio >= 0.3, (on_stdio, on_workers)
        assert on_workers >= 0.3, (on_stdio, on_workers)
        await indicators_still_work(client)
