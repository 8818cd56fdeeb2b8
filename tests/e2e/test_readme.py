"""The README's example plugin is real: identical to a fixture that the test
suite builds, loads and calls."""

import re

import pytest
from mcp import Client

from harness import REPO, make_root, stdio_params

pytestmark = pytest.mark.anyio


def test_the_readme_example_is_the_fixture_source():
    readme = (REPO / "README.md").read_text()
    marker = re.search(r"<!-- readme-example: (\S+) -->\n```rust\n(.*?)```", readme, re.S)
    assert marker, "the README lost its example marker"
    path, code = marker.groups()
    assert (REPO / path).read_text() == code


async def test_the_readme_example_serves_its_tool(tmp_path):
    root = make_root(tmp_path, fixtures=("hello",))
    async with Client(stdio_params(root)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        greet = tools["hello__greet"]
        assert greet.input_schema["properties"]["name"]["description"] == "Who to greet."
        result = await client.call_tool("hello__greet", {"name": "Ada"})
    assert result.content[0].text == "Hello, Ada!"
