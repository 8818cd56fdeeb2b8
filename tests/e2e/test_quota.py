"""A read-write mount holds at most its quota, in bytes and in entries,
however a plugin tries to fill it: big files, many files, appends, sparse
files, folders, across calls. Each refusal is named and audited, and
deleting makes room again."""

import time

import anyio
import pytest
from mcp import Client

from harness import HttpHost, audit_records, make_root, text_of

pytestmark = pytest.mark.anyio

QUOTA = "limit (the quota of /quota: max_mib = 1, max_entries = 20)"


@pytest.fixture
def quota(tmp_path, broker):
    root = make_root(tmp_path, fixtures=("intruder",))
    (root / "intruder" / "ro").mkdir(parents=True)
    (root / "intruder" / "rw").mkdir()
    policy = root / "policies" / "intruder.toml"
    policy.write_text(
        policy.read_text()
        + '\n[[mounts]]\nhost = "intruder/quota"\nguest = "/quota"\naccess = "read-write"\nmax_mib = 1\nmax_entries = 20\n'
    )
    host = HttpHost(root, {"BROKER_URL": broker.url})
    yield root, host
    host.stop()


def on_disk(root) -> tuple[int, int]:
    """Bytes (apparent sizes) and entries under the quota'd folder."""
    folder = root / "intruder" / "quota"
    paths = list(folder.rglob("*"))
    return sum(p.stat().st_size for p in paths if p.is_file()), len(paths)


async def fill(host, **arguments) -> tuple[bool, str]:
    async with Client(host.url) as client:
        result = await client.call_tool("intruder__fill", {"dir": "/quota"} | arguments)
    return result.is_error, text_of(result)


def assert_refused_and_audited(root, message: str) -> None:
    assert f"host: denied by {QUOTA}" in message, message

    def quota_refusal(record):
        return record["event"] == "denied" and record["rule"] == QUOTA

    assert any(quota_refusal(r) for r in audit_records(root, until=quota_refusal))


@pytest.mark.parametrize(
    "how, files, bytes_each",
    [
        ("write", 1, 5 << 20),  # one file far past the quota
        ("write", 10, 200 << 10),  # files each within it, together past it
        ("append", 40, 100 << 10),  # one file appended to past it
        ("grow", 1, 10 << 30),  # a sparse 10 GiB file: its size counts
        ("retruncate", 4, 900 << 10),  # rewritten through a stream opened before a truncate
    ],
)
async def test_bytes_past_the_quota_are_refused(quota, how, files, bytes_each):
    root, host = quota
    failed, message = await fill(host, how=how, files=files, bytes=bytes_each)
    assert failed, message
    assert_refused_and_audited(root, message)
    total, _ = on_disk(root)
    assert total <= 1 << 20, total


@pytest.mark.parametrize("how", ["write", "mkdir"])
async def test_entries_past_the_quota_are_refused(quota, how):
    root, host = quota
    failed, message = await fill(host, how=how, files=100, bytes=1)
    assert failed, message
    assert "after 20" in message, message
    assert_refused_and_audited(root, message)
    assert on_disk(root)[1] == 20


async def test_the_quota_holds_across_calls_and_deleting_makes_room(quota):
    root, host = quota
    failed, message = await fill(host, how="write", files=4, bytes=200 << 10)
    assert not failed, message
    async with Client(host.url) as client:
        made = await client.call_tool("intruder__fs", {"op": "mkdir", "path": "/quota/more"})
        assert not made.is_error, text_of(made)
    # A second call does not start from an empty quota: 800 KiB are used.
    failed, message = await fill(host, dir="/quota/more", how="write", files=4, bytes=200 << 10)
    assert failed and "after 1" in message, message
    async with Client(host.url) as client:
        for i in range(4):
            deleted = await client.call_tool("intruder__fs", {"op": "delete", "path": f"/quota/{i}"})
            assert not deleted.is_error, text_of(deleted)
    # Overwriting a file frees what it held; the room deleting freed takes new files.
    failed, message = await fill(host, dir="/quota/more", how="write", files=4, bytes=200 << 10)
    assert not failed, message
    assert on_disk(root) == (800 << 10, 5)


WIDE = '\n[[mounts]]\nhost = "intruder/{name}"\nguest = "/{name}"\naccess = "read-write"\nmax_mib = 1\nmax_entries = 10000\n'


TALL = '\n[[mounts]]\nhost = "intruder/tall"\nguest = "/tall"\naccess = "read-write"\nmax_mib = 16\n'


@pytest.fixture
def wide(tmp_path, broker):
    """Mounts of 1 MiB that allow many entries, and a big read-write one."""
    root = make_root(tmp_path, fixtures=("intruder",))
    (root / "intruder" / "ro").mkdir(parents=True)
    (root / "intruder" / "rw").mkdir()
    policy = root / "policies" / "intruder.toml"
    policy.write_text(policy.read_text() + WIDE.format(name="links") + WIDE.format(name="deep") + WIDE.format(name="small") + TALL)
    host = HttpHost(root, {"BROKER_URL": broker.url})
    yield root, host
    host.stop()


def refused_by_quota(root, guest: str) -> bool:
    """Whether the audit log names a refusal by the quota of the mount at `guest`."""
    rule = f"limit (the quota of {guest}: "

    def refused(record):
        return record["event"] == "denied" and record["rule"].startswith(rule)

    return any(refused(r) for r in audit_records(root, until=refused))


def disk_bytes(folder) -> int:
    """What the folder really takes on disk: allocated blocks, links and folders included."""
    return sum(p.lstat().st_blocks * 512 for p in folder.rglob("*"))


async def test_symlinks_are_charged_for_the_disk_they_take(wide):
    root, host = wide
    async with Client(host.url) as client:
        result = await client.call_tool("intruder__fill", {"dir": "/links", "how": "symlink", "files": 2000, "bytes": 200})
    assert result.is_error, text_of(result)
    assert refused_by_quota(root, "/links"), audit_records(root)
    made = int(text_of(result).rsplit("after ", 1)[1].split()[0])
    assert made <= 256, made
    assert disk_bytes(root / "intruder" / "links") <= (1 << 20) + (64 << 10)


async def test_a_deep_tree_cannot_escape_the_measure(wide):
    """Data 70 folders deep is measured after a reload like any other."""
    root, host = wide
    async with Client(host.url) as client:
        deep = await client.call_tool("intruder__fill", {"dir": "/deep", "how": "deep", "files": 70, "bytes": 700 << 10})
        assert not deep.is_error, text_of(deep)
    # A policy edit reloads the plugin, and its mounts are measured again.
    policy = root / "policies" / "intruder.toml"
    policy.write_text(policy.read_text() + "\n# re-measure\n")
    deadline = time.monotonic() + 15
    while not any("regranted" in line and "intruder" in line for line in host.log):
        assert time.monotonic() < deadline, "".join(host.log)
        await anyio.sleep(0.1)
    async with Client(host.url) as client:
        more = await client.call_tool("intruder__fill", {"dir": "/deep", "how": "write", "files": 1, "bytes": 700 << 10})
    assert more.is_error, text_of(more)
    assert refused_by_quota(root, "/deep"), audit_records(root)
    assert disk_bytes(root / "intruder" / "deep") <= (1 << 20) + (512 << 10)


def refused_too_deep(root) -> bool:
    def refused(record):
        return (
            record["event"] == "denied"
            and record["rule"] == "limit (folders in /tall lie at most 256 deep, so that its quota can be measured)"
        )

    return any(refused(r) for r in audit_records(root, until=refused))


async def test_no_folder_is_made_deeper_than_a_measure_reaches(wide):
    """Creating the 257th level is refused, however the path is spelled:
    directly, through a link that points deep, or by moving a tall folder
    under a deep one. A shallower move still works."""
    root, host = wide
    async with Client(host.url) as client:
        for folder in ("/tall/a", "/tall/b"):
            made = await client.call_tool("intruder__fs", {"op": "mkdir", "path": folder})
            assert not made.is_error, text_of(made)
        direct = await client.call_tool("intruder__fill", {"dir": "/tall/a", "how": "deep", "files": 300, "bytes": 1})
        assert direct.is_error and "after 255" in text_of(direct), text_of(direct)
        assert refused_too_deep(root), audit_records(root)

        # A link at the top pointing at the deepest folder: the new folder's
        # depth is where it lands, not how the path reads.
        deepest = "a/" + "d/" * 255
        linked = await client.call_tool("intruder__fs", {"op": "symlink", "path": deepest, "to": "/tall/s"})
        assert not linked.is_error, text_of(linked)
        via_link = await client.call_tool("intruder__fs", {"op": "mkdir", "path": "/tall/s/x"})
        assert via_link.is_error, text_of(via_link)
        dotted = await client.call_tool("intruder__fs", {"op": "mkdir", "path": f"/tall/b/../{deepest}x"})
        assert dotted.is_error, text_of(dotted)

        # A 101-level folder moved 200 levels down is 301 deep: refused.
        tall = await client.call_tool("intruder__fill", {"dir": "/tall/b", "how": "deep", "files": 100, "bytes": 1})
        assert not tall.is_error, text_of(tall)
        under = "/tall/a/" + "d/" * 200 + "b"
        moved = await client.call_tool("intruder__fs", {"op": "rename", "path": "/tall/b", "to": under})
        assert moved.is_error, text_of(moved)
        assert (root / "intruder" / "tall" / "b").is_dir()
        # The same folder moved 100 levels down fits, and is allowed.
        fits = "/tall/a/" + "d/" * 100 + "b"
        moved = await client.call_tool("intruder__fs", {"op": "rename", "path": "/tall/b", "to": fits})
        assert not moved.is_error, text_of(moved)
    deepest_on_disk = max(len(p.relative_to(root / "intruder" / "tall").parts) for p in (root / "intruder" / "tall").rglob("*") if p.is_dir() and not p.is_symlink())
    assert deepest_on_disk <= 256, deepest_on_disk


@pytest.mark.parametrize("op", ["rename", "hardlink"])
async def test_nothing_moves_into_a_quota_uncharged(wide, op):
    """A 3 MiB folder renamed, or a file hard-linked, from a big mount into
    a 1 MiB one is refused, not charged as one entry."""
    root, host = wide
    async with Client(host.url) as client:
        filled = await client.call_tool("intruder__fill", {"dir": "/rw", "how": "write", "files": 3, "bytes": 1 << 20})
        assert not filled.is_error, text_of(filled)
        await client.call_tool("intruder__fs", {"op": "mkdir", "path": "/rw/big"})
        for i in range(3):
            await client.call_tool("intruder__fs", {"op": "rename", "path": f"/rw/{i}", "to": f"/rw/big/{i}"})
        source = "/rw/big" if op == "rename" else "/rw/big/0"
        moved = await client.call_tool("intruder__fs", {"op": op, "path": source, "to": "/small/in"})
        assert moved.is_error, text_of(moved)
    assert disk_bytes(root / "intruder" / "small") <= (1 << 20)

    assert refused_by_quota(root, "/small"), audit_records(root)


async def test_a_link_from_outside_any_quota_is_charged_in_full(wide):
    """/rw has no quota: a 3 MiB file linked from it into a 1 MiB mount is
    charged its 3 MiB, and refused."""
    root, host = wide
    async with Client(host.url) as client:
        filled = await client.call_tool("intruder__fill", {"dir": "/rw", "how": "grow", "files": 1, "bytes": 3 << 20})
        assert not filled.is_error, text_of(filled)
        linked = await client.call_tool("intruder__fs", {"op": "hardlink", "path": "/rw/0", "to": "/small/in"})
        assert linked.is_error, text_of(linked)
    assert not (root / "intruder" / "small" / "in").exists()
    assert refused_by_quota(root, "/small"), audit_records(root)
