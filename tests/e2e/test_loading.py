"""Broken plugins and policies are reported loudly and skipped; the rest load.
`host check` says what is wrong and exits non-zero."""

import shutil

import pytest
from mcp import Client

from harness import EXAMPLES, LANGUAGE_EXAMPLES, REPO, host_args, make_root, run_host, stdio_params

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def broken_root(tmp_path_factory):
    """The examples, plus every way a plugin file can be wrong."""
    root = make_root(tmp_path_factory.mktemp("broken"), fixtures=("collide",))
    plugins = root / "plugins"
    (plugins / "garbage.wasm").write_bytes(b"this is not WebAssembly at all")
    # A valid core module, but not a component.
    (plugins / "core-module.wasm").write_bytes(b"\x00asm\x01\x00\x00\x00")
    (plugins / "empty.wasm").write_bytes(b"")
    shutil.copy(plugins / "indicators.wasm", plugins / "Bad_Name.wasm")
    (plugins / "README.txt").write_text("not a plugin, and not a .wasm: ignored")
    return root


def test_check_passes_on_the_shipped_examples():
    result = run_host("check", "--plugins", str(REPO / "plugins"), "--policies", str(REPO / "policies"))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for name in (*EXAMPLES, *LANGUAGE_EXAMPLES):
        assert f"\n{name} 0.1.0 (" in "\n" + out
    assert "folder /data/market = " in out and "(read-only)" in out
    assert 'network: reads of the broker "paper"' in out
    assert "env BROKER_URL" in out
    assert "tool market-data__get_quote [read-only]" in out
    assert "tool strategies__create_strategy [writes]" in out
    assert "tool broker__place_order NOT SERVED: denied by guardrail no-order-execution" in out
    assert "policy: none: nothing granted" in out  # indicators has no policy
    assert "tool risk__value_at_risk [read-only]" in out
    assert f"{len(EXAMPLES) + len(LANGUAGE_EXAMPLES)} plugin(s) loaded, 0 failed" in out


def test_check_reports_every_broken_plugin_and_fails(broken_root):
    result = run_host("check", *host_args(broken_root))
    assert result.returncode == 1
    out = result.stdout
    failures = {line.split(": ", 1)[0]: line for line in out.splitlines() if line.startswith("FAILED")}
    assert len(failures) == 5, out

    def reason(file: str) -> str:
        return next(line for key, line in failures.items() if key.endswith(file))

    assert "not a WebAssembly component" in reason("garbage.wasm")
    assert "not a WebAssembly component" in reason("core-module.wasm")
    assert "not a WebAssembly component" in reason("empty.wasm")
    assert 'two tools are named "same"' in reason("collide.wasm")
    assert "not a valid plugin name" in reason("Bad_Name.wasm")
    assert f"{len(EXAMPLES)} plugin(s) loaded, 5 failed" in out


def test_check_can_name_single_plugins(broken_root):
    good = run_host("check", *host_args(broken_root), "indicators", "market-data")
    assert good.returncode == 0, good.stdout
    assert "2 plugin(s) loaded" in good.stdout
    bad = run_host("check", *host_args(broken_root), "collide")
    assert bad.returncode == 1
    missing = run_host("check", *host_args(broken_root), "no-such-plugin")
    assert missing.returncode == 1
    assert "cannot read it" in missing.stdout


async def test_serve_skips_broken_plugins_and_serves_the_rest(broken_root):
    async with Client(stdio_params(broken_root)) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
    plugins = {name.split("__")[0] for name in tools}
    assert plugins == set(EXAMPLES)


BLOATED = {
    "bloated-tools": "offers 100000 tools; at most 256 are served",
    "bloated-text": "a tool description (\"dddd",
    "bloated-total": "bytes of text and schemas; at most 2097152 are served",
}


@pytest.fixture(scope="module")
def bloated_root(tmp_path_factory):
    """The examples, plus plugins whose manifests no client should be sent."""
    return make_root(tmp_path_factory.mktemp("bloated"), fixtures=tuple(BLOATED))


def test_a_manifest_too_large_to_serve_is_refused_with_the_limit_it_passed(bloated_root):
    result = run_host("check", *host_args(bloated_root))
    assert result.returncode == 1
    out = result.stdout
    for name, reason in BLOATED.items():
        line = next(line for line in out.splitlines() if line.startswith("FAILED") and f"{name}.wasm" in line)
        assert reason in line, line
        # The refusal quotes a little of the offending text, never all of it.
        assert len(line) < 1000, len(line)
    assert "is 20971520 bytes; at most 16384 are served" in out
    assert f"{len(EXAMPLES)} plugin(s) loaded, 3 failed" in out


async def test_serve_skips_bloated_plugins_and_serves_the_rest(bloated_root):
    async with Client(stdio_params(bloated_root)) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
    assert {name.split("__")[0] for name in tools} == set(EXAMPLES)


def test_a_broken_policy_is_reported_with_its_position_and_the_plugin_skipped(tmp_path):
    root = make_root(tmp_path)
    (root / "policies" / "market-data.toml").write_text('version = 1\n\n[network]\nalow = ["GET https://x/"]\n')
    result = run_host("check", *host_args(root))
    assert result.returncode == 1
    report = next(block for block in result.stdout.split("\n\n") if "market-data.toml" in block)
    assert report.startswith("FAILED plugin")
    assert "line 4, column 1" in report and "unknown field `alow`" in report, report
    assert f"{len(EXAMPLES) - 1} plugin(s) loaded, 1 failed" in result.stdout


def test_a_policy_for_no_plugin_is_reported(tmp_path):
    root = make_root(tmp_path)
    shutil.copy(root / "policies" / "broker.toml", root / "policies" / "brokre.toml")
    result = run_host("check", *host_args(root))
    assert result.returncode == 1
    assert "FAILED policy" in result.stdout and "brokre.toml" in result.stdout
    assert "host.toml" not in result.stdout  # the host-wide policy is no plugin's


def test_a_mount_outside_the_root_is_refused(tmp_path):
    root = make_root(tmp_path / "root")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "policies" / "indicators.toml").write_text(
        f'version = 1\n[[mounts]]\nhost = "{outside}"\nguest = "/x"\naccess = "read-only"\n'
    )
    result = run_host("check", *host_args(root))
    assert result.returncode == 1
    assert "outside the root folder" in result.stdout


def test_an_empty_plugins_folder_is_reported(tmp_path):
    (tmp_path / "plugins").mkdir()
    result = run_host("check", "--plugins", str(tmp_path / "plugins"), "--policies", str(tmp_path))
    assert result.returncode == 1
    assert "no plugins (*.wasm)" in result.stdout


def test_a_missing_plugins_folder_is_a_clear_error(tmp_path):
    result = run_host("serve", "--plugins", str(tmp_path / "nope"), "--policies", str(tmp_path))
    assert result.returncode == 1
    assert "cannot read the plugins folder" in result.stderr


@pytest.mark.parametrize(
    "command, expected",
    [
        ([], ["serve", "check", "--log-level", "--log-format"]),
        (["serve"], ["--http", "--plugins", "--policies", "--root", "--config", "--allow-origin"]),
        (["check"], ["--plugins", "--policies", "[PLUGIN]..."]),
    ],
)
def test_help_is_complete(command, expected):
    result = run_host(*command, "--help")
    assert result.returncode == 0
    for word in expected:
        assert word in result.stdout, word


def test_a_config_file_sets_the_folders(tmp_path):
    root = make_root(tmp_path)
    config = root / "host.toml"
    config.write_text('plugins = "plugins"\npolicies = "policies"\n[engine]\nmax_sandboxes = 16\nkeep_resident_kib = 64\n')
    result = run_host("check", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    config.write_text('plugins = "plugins"\n[engine]\nmax_sandboxes = 0\n')
    zero = run_host("check", "--config", str(config))
    assert zero.returncode == 1 and "max_sandboxes must be 1 to 10000" in zero.stderr
    config.write_text('plugins = "plugins"\nplugin_dir = "x"\n')
    bad = run_host("check", "--config", str(config))
    assert bad.returncode == 1
    assert "plugin_dir" in bad.stderr


def test_explain_says_what_a_plugin_may_do_and_what_was_refused():
    result = run_host("policy", "explain", "broker", "--plugins", str(REPO / "plugins"), "--policies", str(REPO / "policies"))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert 'no-order-execution: on; the broker "paper" at 127.0.0.1:8787 (every spelling of those addresses) takes only GET/HEAD of /v2/account' in out
    assert "on other hosts, a write whose path has one of the words order orders trade" in out
    assert 'allowed: the read routes of the broker "paper"' in out
    assert "BROKER_URL (granted; its value is not shown)" in out
    assert "broker__place_order — NOT SERVED: denied by guardrail no-order-execution" in out
    assert "name lookup: refused" in out


def test_a_policy_writing_market_data_is_refused_and_explained(tmp_path):
    root = make_root(tmp_path)
    policy = root / "policies" / "market-data.toml"
    policy.write_text(policy.read_text().replace('access = "read-only"', 'access = "read-write"'))
    check = run_host("check", *host_args(root))
    assert check.returncode == 1
    assert "denied by guardrail market-data-read-only" in check.stdout
    explain = run_host("policy", "explain", "market-data", *host_args(root))
    assert explain.returncode == 1
    assert "REFUSED plugin" in explain.stdout
    assert "denied by guardrail market-data-read-only" in explain.stdout
    assert "mount it read-only" in explain.stdout


def test_the_hosts_own_files_cannot_be_mounted(tmp_path):
    root = make_root(tmp_path)
    (root / "policies" / "indicators.toml").write_text(
        'version = 1\n[[mounts]]\nhost = "policies"\nguest = "/p"\naccess = "read-only"\n'
    )
    (root / "policies" / "strategies.toml").write_text(
        'version = 1\n[[mounts]]\nhost = "plugins"\nguest = "/p"\naccess = "read-write"\n'
    )
    result = run_host("check", *host_args(root))
    assert result.returncode == 1
    assert "would give the plugin access to the policies folder" in result.stdout
    assert "would give the plugin access to the plugins folder" in result.stdout


def test_a_corrupt_cache_entry_is_rebuilt_not_run(tmp_path):
    root = make_root(tmp_path / "root")
    cache = tmp_path / "cache"
    args = ["check", *host_args(root), "--cache-dir", str(cache), "indicators"]
    assert run_host(*args).returncode == 0
    entries = list(cache.iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".cwasm"
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    data = bytearray(entries[0].read_bytes())
    data[-100] ^= 0xFF
    entries[0].write_bytes(bytes(data))
    again = run_host(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "discarding a corrupt or foreign cache entry" in again.stderr
    assert "tool indicators__compute_indicator [read-only]" in again.stdout


def test_a_cache_others_can_write_is_not_used(tmp_path):
    root = make_root(tmp_path / "root")
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)
    result = run_host("check", *host_args(root), "--cache-dir", str(cache), "indicators")
    assert result.returncode == 0
    assert "others can write to it" in result.stderr
    assert list(cache.iterdir()) == []
