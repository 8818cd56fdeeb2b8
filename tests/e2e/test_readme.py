"""The README's example plugin is real: identical to a fixture that the test
suite builds, loads and calls."""

import os
import re
import subprocess


import pytest
from mcp import Client, StdioServerParameters

from harness import HOST, REPO, make_root, stdio_params, wait_for_tools

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "marker, fence",
    [("readme-example", "rust"), ("readme-example-python", "python"), ("readme-example-typescript", "typescript")],
)
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


@pytest.mark.parametrize("language", ["rust", "python", "typescript"])
async def test_the_readme_commands_start_build_and_serve_a_plugin(tmp_path, language):
    """The guide's commands, run as written in a checkout-like folder (the
    binary under test instead of `cargo run`): `host new` writes the
    README's example, the build makes a component, `host serve` with its
    defaults serves it."""
    readme = (REPO / "README.md").read_text()
    block = re.search(rf"<!-- readme-commands-{language} -->\n```sh\n(.*?)```", readme, re.S)
    assert block, f"the README lost its {language} commands marker"
    *build, serve = block.group(1).strip().splitlines()
    assert serve == "cargo run --release -p host -- serve"
    (tmp_path / "plugins").mkdir()
    for sdk in ("sdk", "sdk-python", "sdk-js"):
        os.symlink(REPO / "plugins" / sdk, tmp_path / "plugins" / sdk)
    script = "\n".join(build).replace("cargo run --release -p host --", str(HOST))
    # The Rust build shares the example plugins' compiled dependencies.
    env = {**os.environ, "CARGO_TARGET_DIR": str(REPO / "plugins" / "target")} if language == "rust" else None
    if env:
        script = script.replace("hello/target/", f"{env['CARGO_TARGET_DIR']}/")
    subprocess.run(["bash", "-euc", script], cwd=tmp_path, check=True, timeout=900, env=env)
    written = {"rust": ("hello/src/lib.rs", "tests/fixtures/hello/src/lib.rs"),
               "python": ("hello/app.py", "tests/fixtures/python/hello-py/app.py"),
               "typescript": ("hello/index.ts", "tests/fixtures/js/hello-js/index.ts")}[language]
    assert (tmp_path / written[0]).read_text() == (REPO / written[1]).read_text()
    assert (tmp_path / "plugins" / "hello.wasm").stat().st_size > 100_000
    server = StdioServerParameters(command=str(HOST), args=["serve"], cwd=str(tmp_path))
    # A new Python or JavaScript component takes seconds to compile (longer in a debug
    # build): the host answers the handshake at once, and the plugin joins
    # when it is compiled, announced by tools/list_changed.
    async with Client(server) as client:
        tools = await wait_for_tools(client, "hello__greet")
        assert tools["hello__greet"].input_schema["properties"]["name"]["description"] == "Who to greet."
        result = await client.call_tool("hello__greet", {"name": "Ada"})
    assert result.content[0].text == "Hello, Ada!"


async def test_host_new_refuses_bad_names_and_never_overwrites(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "app.py").write_text("mine")
    for name, why in [("Bad_Name", "is not a plugin name"), ("taken", "exists already: nothing was written")]:
        result = subprocess.run([str(HOST), "new", name, "--language", "python", "--dir", str(tmp_path)],
                                cwd=REPO, capture_output=True, text=True)
        assert result.returncode != 0 and why in result.stderr, result.stderr
    assert (tmp_path / "taken" / "app.py").read_text() == "mine"
    elsewhere = subprocess.run([str(HOST), "new", "x", "--language", "rust"], cwd=tmp_path, capture_output=True, text=True)
    assert elsewhere.returncode != 0 and "pass --repo DIR" in elsewhere.stderr
    assert not (tmp_path / "x").exists()
