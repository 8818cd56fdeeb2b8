"""Tool and prompt names are owned like URI schemes: a plugin dropped in
later never takes over names another plugin serves, even one that sorts
first by name; its conflicting items are withheld, logged and audited, and
the rest of it is served."""

import time

import pytest
from mcp import Client

from harness import HttpHost, audit_records, make_root, text_of

pytestmark = pytest.mark.anyio


def wait_for(predicate, log, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "".join(log)
        time.sleep(0.1)


async def test_a_newcomer_never_takes_over_an_incumbents_names(tmp_path):
    root = make_root(tmp_path, fixtures=("conformance",))
    host = HttpHost(root)
    try:
        async with Client(host.url) as client:
            before = {t.name for t in (await client.list_tools()).tools}
        assert "test_simple_text" in before
        # "aaa" sorts before "conformance": by load order alone it would win.
        (root / "policies" / "aaa.toml").write_text((root / "policies" / "conformance.toml").read_text())
        (root / "plugins" / "aaa.wasm").write_bytes((root / "plugins" / "conformance.wasm").read_bytes())

        def withheld(record):
            return record["event"] == "name-withheld" and record["plugin"] == "aaa" and record["name"] == "test_simple_text"

        records = audit_records(root, until=withheld, timeout=20)
        assert any(withheld(r) for r in records), "no audit record of the withheld name"
        named = [r for r in records if r["event"] == "name-withheld" and r["plugin"] == "aaa"]
        assert {r["kind"] for r in named} == {"tool", "prompt"}
        assert all("served by plugin conformance" in r["rule"] for r in named)
        assert not any(r["event"] == "name-withheld" and r["plugin"] == "conformance" for r in records)
        wait_for(lambda: any("aaa" in line and "test_simple_text not served" in line for line in host.log), host.log)

        async with Client(host.url) as client:
            after = [t.name for t in (await client.list_tools()).tools]
            assert sorted(after) == sorted(before), "the names changed hands or were listed twice"
            prompts = [p.name for p in (await client.list_prompts()).prompts]
            assert len(prompts) == len(set(prompts))
            result = await client.call_tool("test_simple_text", {})
            assert not result.is_error, text_of(result)

        def served_by_incumbent(record):
            return record["event"] == "call" and record["target"] == "test_simple_text" and record["outcome"] == "ok"

        calls = [r for r in audit_records(root, until=served_by_incumbent) if served_by_incumbent(r)]
        assert calls and calls[-1]["plugin"] == "conformance", calls[-1:]

        # The incumbent removed, the newcomer takes its names over.
        (root / "plugins" / "conformance.wasm").unlink()
        deadline = time.monotonic() + 15
        while True:
            async with Client(host.url) as client:
                result = await client.call_tool("test_simple_text", {})
            if not result.is_error:
                last = [r for r in audit_records(root) if served_by_incumbent(r)][-1:]
                if last and last[0]["plugin"] == "aaa":
                    break
            assert time.monotonic() < deadline, "".join(host.log)
            time.sleep(0.2)
    finally:
        host.stop()
