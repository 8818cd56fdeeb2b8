"""Mounts are held folders, not paths: what was checked when a policy loaded
is what every call gets, whatever is renamed or planted on disk between
calls, by another plugin or anyone else. `host check` and `host policy
explain` create nothing and follow no link."""

import os
import shutil

import pytest
from mcp import Client

from harness import FIXTURE_WASM, HttpHost, host_args, make_root, run_host, text_of

pytestmark = pytest.mark.anyio


READER_POLICY = """version = 1
# Sees a folder inside the intruder's read-write one, and a folder of its own
# per user.
[[mounts]]
host = "intruder/rw/share"
guest = "/share"
access = "read-only"

[[mounts]]
host = "intruder/users/{user}"
guest = "/mine"
access = "read-write"
"""


@pytest.fixture
def planted(tmp_path):
    """A host serving the intruder (read-write `intruder/rw`) and `reader`
    (read-only `intruder/rw/share`, per-user `intruder/users/{user}`), and a
    folder outside the root holding a secret."""
    root = make_root(tmp_path / "root", fixtures=("intruder",))
    rw = root / "intruder" / "rw"
    (rw / "share").mkdir(parents=True)
    (root / "intruder" / "ro").mkdir()
    (rw / "share" / "data.txt").write_text("shared data")
    shutil.copy(FIXTURE_WASM / "intruder.wasm", root / "plugins" / "reader.wasm")
    (root / "policies" / "reader.toml").write_text(READER_POLICY)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("OUTSIDE SECRET")
    host = HttpHost(root)
    yield root, outside, host
    host.stop()


async def call(client, tool: str, arguments: dict) -> tuple[bool, str]:
    result = await client.call_tool(tool, arguments)
    return result.is_error, text_of(result)


async def test_another_plugin_swapping_a_mounted_folder_for_a_link_changes_nothing(planted):
    root, outside, host = planted
    rw = root / "intruder" / "rw"
    async with Client(host.url) as client:
        assert await call(client, "reader__fs", {"op": "read", "path": "/share/data.txt"}) == (False, "shared data")
        # The intruder moves the folder away from inside its own mount...
        moved = await call(client, "intruder__fs", {"op": "rename", "path": "/rw/share", "to": "/rw/old"})
        assert moved == (False, "renamed")
        # ...and a link out of the root takes its place.
        os.symlink(outside, rw / "share")
        for _ in range(3):
            is_error, text = await call(client, "reader__fs", {"op": "read", "path": "/share/data.txt"})
            assert (is_error, text) == (False, "shared data")
        assert await call(client, "reader__fs", {"op": "list", "path": "/share"}) == (False, "data.txt")


async def test_a_renamed_parent_and_a_planted_link_change_nothing(planted):
    root, outside, host = planted
    intruder = root / "intruder"
    async with Client(host.url) as client:
        assert not (await call(client, "intruder__fs", {"op": "write", "path": "/rw/before.txt"}))[0]
        os.rename(intruder / "rw", intruder / "rw-moved")
        os.symlink(outside, intruder / "rw")
        assert await call(client, "intruder__fs", {"op": "write", "path": "/rw/after.txt"}) == (False, "written")
        assert await call(client, "reader__fs", {"op": "read", "path": "/share/data.txt"}) == (False, "shared data")
    assert (intruder / "rw-moved" / "after.txt").read_text() == "pwned"
    assert sorted(p.name for p in outside.iterdir()) == ["data.txt"]


async def test_a_swapped_parent_of_per_user_folders_changes_nothing(planted):
    root, outside, host = planted
    intruder = root / "intruder"
    async with Client(host.url) as client:
        assert await call(client, "reader__fs", {"op": "write", "path": "/mine/first.txt"}) == (False, "written")
        os.rename(intruder / "users", intruder / "users-moved")
        os.symlink(outside, intruder / "users")
        assert await call(client, "reader__fs", {"op": "write", "path": "/mine/second.txt"}) == (False, "written")
    users = list((intruder / "users-moved").iterdir())
    assert len(users) == 1 and sorted(p.name for p in users[0].iterdir()) == ["first.txt", "second.txt"]
    assert sorted(p.name for p in outside.iterdir()) == ["data.txt"]


async def test_a_user_folder_planted_as_a_link_is_refused(planted):
    root, outside, host = planted
    async with Client(host.url) as client:
        assert not (await call(client, "reader__fs", {"op": "list", "path": "/mine"}))[0]
        users = root / "intruder" / "users"
        (user,) = list(users.iterdir())
        shutil.rmtree(user)
        os.symlink(outside, user)
        is_error, text = await call(client, "reader__fs", {"op": "list", "path": "/mine"})
    assert is_error and "symlink" in text, text
    assert "OUTSIDE" not in text


def test_a_policy_reaching_through_a_link_fails_to_load(tmp_path):
    root = make_root(tmp_path / "root")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    os.symlink(root / "plugins" / "market-data" / "data", root / "inner-link")
    for host, access in [("link", "read-only"), ("link/new", "read-write"), ("inner-link", "read-only"),
                         ("link/{user}", "read-write")]:
        (root / "policies" / "indicators.toml").write_text(
            f'version = 1\n[[mounts]]\nhost = "{host}"\nguest = "/x"\naccess = "{access}"\n')
        result = run_host("check", *host_args(root), "indicators")
        assert result.returncode == 1, host
        assert "mounts never follow links" in result.stdout, result.stdout
    assert list(outside.iterdir()) == []


def test_check_and_explain_create_nothing_and_follow_no_link(tmp_path):
    root = make_root(tmp_path / "root")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "planted")
    policies = {
        # Missing folders that serving would create.
        "strategies": 'version = 1\n[[mounts]]\nhost = "fresh/deep"\nguest = "/s"\naccess = "read-write"\n',
        "backtest": 'version = 1\n[[mounts]]\nhost = "per/{user}"\nguest = "/u"\naccess = "read-write"\n',
        # A missing folder behind a planted link.
        "indicators": 'version = 1\n[[mounts]]\nhost = "planted/new"\nguest = "/x"\naccess = "read-write"\n',
        # A valid mount next to a refused one: nothing of the valid one is made either.
        "market-data": 'version = 1\n[[mounts]]\nhost = "made-before-refusal"\nguest = "/a"\naccess = "read-write"\n'
                       '[[mounts]]\nhost = "plugins/market-data/data"\nguest = "/b"\naccess = "read-write"\n',
    }
    for name, text in policies.items():
        (root / "policies" / f"{name}.toml").write_text(text)
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    check = run_host("check", *host_args(root))
    assert "(missing: `host serve` will create it)" in check.stdout, check.stdout
    for name in policies:
        run_host("policy", "explain", name, *host_args(root))
    after = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert after == before
    assert list(outside.iterdir()) == []

    # Serving creates what loads, and only once every check has passed.
    HttpHost(root).stop()
    assert (root / "fresh" / "deep").is_dir() and (root / "per").is_dir()
    assert not (root / "made-before-refusal").exists()
    assert list(outside.iterdir()) == []
