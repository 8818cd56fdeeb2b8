"""A read-write mount holds at most its quota, in bytes and in entries,
however a plugin tries to fill it: big files, many files, appends, sparse
files, folders, across calls. Each refusal is named and audited, and
deleting makes room again."""

import pytest
from mcp import Client

from harness import HttpHost, audit_records, make_root, text_of

pytestmark = pytest.mark.anyio

QUOTA = "limit (the mount's quota: max_mib = 1, max_entries = 20)"


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
