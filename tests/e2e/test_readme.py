"""The README's example plugin is real: identical to a fixture that the test
suite builds, loads and calls."""

import os
import re
import subprocess


import pytest
from mcp import Client, StdioServerParameters

from harness import HOST, REPO, make_root, stdio_params, wait_for_tools

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("marker, fence", [("readme-example", "rust"), ("readme-example-python", "python")])
def test_the_readme_examples_are_the_fixture_sources(marker, fence):
    readme = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- {marker}: (\S+) -->\n```{fence}\n(.*?)```", readme, re.S)
    assert found, f"the README lost its {marker} marker"
    path, code = found.groups()
    assert (REPO / path).read_text() == code


async def test_the_readme_example_serves_its_tool(tmp_path):
    root = make_root(tmp_path, fixtures=("hello",))
    async with Client(stdio_params(root)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        greet = tools["hello__greet"]
        assert greet.input_schema["properties"]["name"]["description"] == "Who to greet."
        result = await client.call_tool("hello__greet", {"name": "Ada"})
    assert result.content[0].text == "Hello, Ada!"


async def test_the_readme_python_commands_build_and_serve_the_example(tmp_path):
    """The guide's commands, run as written in a checkout-like folder: the
    build, then `host serve` with its defaults (the binary under test
    instead of `cargo run`)."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- readme-commands-python -->\n```sh\n(.*?)```", readme, re.S)
    assert block, "the README lost its Python commands marker"
    *build, serve = block.group(1).strip().splitlines()
    assert serve == "cargo run --release -p host -- serve"
    (tmp_path / "plugins").mkdir()
    os.symlink(REPO / "plugins" / "sdk-python", tmp_path / "plugins" / "sdk-python")
    os.symlink(REPO / "tests", tmp_path / "tests")
    subprocess.run(["bash", "-euc", "\n".join(build)], cwd=tmp_path, check=True, timeout=600)
    assert (tmp_path / "plugins" / "hello.wasm").stat().st_size > 1_000_000
    server = StdioServerParameters(command=str(HOST), args=["serve"], cwd=str(tmp_path))
    # A new Python component takes seconds to compile (longer in a debug
    # build): the host answers the handshake at once, and the plugin joins
    # when it is compiled, announced by tools/list_changed.
    async with Client(server) as client:
        tools = await wait_for_tools(client, "hello__greet")
        assert tools["hello__greet"].input_schema["properties"]["name"]["maxLength"] == 100
        result = await client.call_tool("hello__greet", {"name": "Ada"})
    assert result.content[0].text == "Hello, Ada!"
