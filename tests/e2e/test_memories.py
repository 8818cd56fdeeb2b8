"""A component with several memories (or big tables) gets one memory budget
per call, not one per memory: the hostile fixture with hand-made core
instances appended, each holding memory of its own."""

import pathlib
import shutil

import pytest
from mcp import Client

from harness import FIXTURE_WASM, host_args, run_host, stdio_params, text_of
from wasmbin import core_module, with_core_instances

pytestmark = pytest.mark.anyio

PAGE = 64 * 1024
MIB_PAGES = (1 << 20) // PAGE

# Each plugin is the hostile fixture plus the core modules named here; every
# one runs under a 16 MiB budget. Each extra memory alone is under 16 MiB.
EXTRA = {
    # 12 MiB held from the start, beside the plugin's own memory.
    "beside": [core_module(memories=[12 * MIB_PAGES])],
    # Three more memories of 4 MiB: 12 MiB before the plugin allocates.
    "three": [core_module(memories=[4 * MIB_PAGES]) for _ in range(3)],
    # A start function that grows its own memory by 15 MiB while the
    # instance is made: the grow is refused, so it traps.
    "grower": [core_module(memories=[1], grow_pages=15 * MIB_PAGES)],
    # 1 MiB beside: under the budget, the plugin works as before.
    "modest": [core_module(memories=[MIB_PAGES])],
}

# Refused when the component loads, with the reason.
REFUSED = {
    "two-in-one": ([core_module(memories=[1, 1])], "defined memories count of 2"),
    "nine": ([core_module(memories=[1]) for _ in range(9)], "linear memories"),
    "huge-table": ([core_module(tables=[3_000_000])], "minimum element size of 3000000"),
}

POLICY = "version = 1\n\n[limits]\nmemory_mib = 16\ntimeout_ms = 5000\n"


@pytest.fixture(scope="module")
def memory_root(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("memories")
    (root / "plugins").mkdir()
    (root / "policies").mkdir()
    hostile = (FIXTURE_WASM / "hostile.wasm").read_bytes()
    shutil.copy(FIXTURE_WASM / "hostile.wasm", root / "plugins" / "plain.wasm")
    (root / "policies" / "plain.toml").write_text(POLICY)
    for name, modules in {**EXTRA, **{n: m for n, (m, _) in REFUSED.items()}}.items():
        (root / "plugins" / f"{name}.wasm").write_bytes(with_core_instances(hostile, modules))
        (root / "policies" / f"{name}.toml").write_text(POLICY)
    return root


async def test_the_budget_spans_every_memory_of_the_call(memory_root):
    async with Client(stdio_params(memory_root)) as client:
        # Alone, 8 MiB fits the 16 MiB budget; so does a 1 MiB memory beside.
        for plugin in ("plain", "modest"):
            result = await client.call_tool(f"{plugin}__allocate", {"mib": 8})
            assert not result.is_error, text_of(result)
            assert text_of(result) == "allocated 8 MiB"
        # Beside 12 MiB, or three memories of 5, the same 8 MiB does not,
        # though each memory alone stays under 16 MiB.
        for plugin in ("beside", "three"):
            result = await client.call_tool(f"{plugin}__allocate", {"mib": 8})
            assert result.is_error, plugin
            assert "ran out of memory" in text_of(result)
            assert "16 MiB" in text_of(result)
            # Small calls still fit: the budget is per call, not spent.
            result = await client.call_tool(f"{plugin}__allocate", {"mib": 0})
            assert not result.is_error, text_of(result)
        # A memory grown while the instance is made counts too.
        result = await client.call_tool("grower__allocate", {"mib": 0})
        assert result.is_error
        assert "ran out of memory" in text_of(result), text_of(result)
        # And the plain plugin is untouched by its neighbours.
        result = await client.call_tool("plain__allocate", {"mib": 12})
        assert not result.is_error, text_of(result)


async def test_more_memories_or_table_slots_than_a_sandbox_holds_are_refused_at_load(memory_root):
    check = run_host("check", *host_args(memory_root))
    assert check.returncode != 0
    for name, (_, reason) in REFUSED.items():
        line = next(line for line in check.stdout.splitlines() if f"plugins/{name}.wasm" in line)
        assert line.startswith("FAILED"), line
        assert reason in line, line
    for name in ("plain", *EXTRA):
        assert f"\n{name} 0.1.0 (" in f"\n{check.stdout}", name
    async with Client(stdio_params(memory_root)) as client:
        names = {tool.name.split("__")[0] for tool in (await client.list_tools()).tools}
        assert names == {"plain", *EXTRA}
