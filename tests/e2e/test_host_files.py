"""No mount reaches what the host itself reads or writes: its config file and
the folder holding it, its policies, its audit log, its compile cache. The
check compares identities, not spellings: a hard link, a symlink or a `..`
does not get a plugin there, at load, on reload or in `host check`."""

import os
import time

import pytest
from mcp import Client

from harness import HttpHost, make_root, run_host, text_of

pytestmark = pytest.mark.anyio

CONFIG = """
plugins = "../plugins"
policies = "../policies"
root = ".."
[audit]
path = "../logs/audit.jsonl"
"""

POLICY = """
version = 1
[[mounts]]
host = "{host}"
guest = "/m"
access = "{access}"
"""


@pytest.fixture
def config_root(tmp_path):
    """A root whose config file sits in `etc/`, with the audit log in `logs/`."""
    root = make_root(tmp_path, fixtures=("intruder",))
    (root / "etc").mkdir()
    (root / "etc" / "sub").mkdir()
    (root / "logs").mkdir()
    (root / "data").mkdir()
    config = root / "etc" / "host.toml"
    config.write_text(CONFIG)
    return root, config


def check(config, policy: str):
    (config.parent.parent / "policies" / "intruder.toml").write_text(policy)
    return run_host("check", "--config", str(config), "intruder")


REFUSED = [
    ("the config folder, read-write", "etc", "read-write", "the folder of the host's config file"),
    ("the config folder, read-only", "etc", "read-only", "the host's config file"),
    ("the config folder with ./", "./etc/.", "read-write", "the folder of the host's config file"),
    ("the root, read-only", ".", "read-only", "the policies folder"),
    ("the audit log's folder, read-only", "logs", "read-only", "the audit log"),
    ("the audit log's folder, read-write", "logs", "read-write", "the audit log"),
    ("the policies folder", "policies", "read-only", "the policies folder"),
    ("the plugins folder, read-write", "plugins", "read-write", "the plugins folder"),
]


@pytest.mark.parametrize("case, host, access, what", REFUSED, ids=[c[0] for c in REFUSED])
def test_check_refuses_mounts_reaching_the_hosts_own_files(config_root, case, host, access, what):
    _, config = config_root
    result = check(config, POLICY.format(host=host, access=access))
    assert result.returncode == 1, result.stdout
    assert f"would give the plugin access to {what}" in result.stdout, result.stdout


def test_other_spellings_are_refused_too(config_root):
    root, config = config_root
    os.symlink("etc", root / "etc-link")
    linked = check(config, POLICY.format(host="etc-link", access="read-write"))
    assert linked.returncode == 1 and "symlink" in linked.stdout.lower(), linked.stdout
    dotted = check(config, POLICY.format(host="data/../etc", access="read-write"))
    assert dotted.returncode == 1 and "`..`" in dotted.stdout, dotted.stdout


def test_a_second_hard_link_to_the_config_is_refused(config_root):
    root, config = config_root
    os.link(config, root / "data" / "innocent.toml")
    result = check(config, POLICY.format(host="data", access="read-write"))
    assert result.returncode == 1
    assert "the host's config file" in result.stdout and "hard links" in result.stdout, result.stdout


def test_folders_beside_the_hosts_own_are_still_mountable(config_root):
    _, config = config_root
    for host in ("etc/sub", "data"):
        result = check(config, POLICY.format(host=host, access="read-write"))
        assert result.returncode == 0, result.stdout + result.stderr


async def test_a_policy_edit_reaching_the_config_is_refused_on_reload(config_root):
    """The attack the issue names: a plugin whose policy mounts the config's
    folder read-write could rewrite the config. The edit is refused, the old
    grants keep serving, and the config is untouched."""
    root, config = config_root
    (root / "policies" / "intruder.toml").write_text(POLICY.format(host="data", access="read-write"))
    host = HttpHost(root, {}, "--config", str(config))
    try:
        async with Client(host.url) as client:
            written = await client.call_tool("intruder__fs", {"op": "write", "path": "/m/ok.txt"})
            assert not written.is_error, text_of(written)
        (root / "policies" / "intruder.toml").write_text(POLICY.format(host="etc", access="read-write"))
        deadline = time.monotonic() + 10
        while not any("the folder of the host's config file" in line for line in host.log):
            assert time.monotonic() < deadline, "".join(host.log)
            time.sleep(0.1)
        async with Client(host.url) as client:
            attempt = await client.call_tool("intruder__fs", {"op": "write", "path": "/m/host.toml"})
        assert (root / "data" / "host.toml").exists(), "the old grant (data/) should still serve"
        assert not attempt.is_error
        assert config.read_text() == CONFIG
    finally:
        host.stop()
