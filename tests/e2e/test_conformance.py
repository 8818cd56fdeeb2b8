"""The official MCP conformance suite against `host serve --http`, with the
conformance fixture plugin: every scenario passes except those listed, with
their reasons, in tests/conformance/."""

import subprocess

import pytest

from harness import NODE, NODE_MODULES, REPO, HttpHost, host_args, make_root, node_env, run_host

BASELINES = REPO / "tests" / "conformance"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    server = HttpHost(make_root(tmp_path_factory.mktemp("conformance"), fixtures=("conformance",)))
    yield server
    server.stop()


def run_suite(package: str, host: HttpHost, tmp_path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(NODE), str(NODE_MODULES / package / "dist" / "index.js"), "server", "--url", host.url,
         "-o", str(tmp_path), *options],
        capture_output=True, text=True, timeout=600, env=node_env(),
    )


def summary(run: subprocess.CompletedProcess) -> str:
    return run.stdout[run.stdout.find("=== SUMMARY"):] + run.stderr[-2000:]


def test_conformance_suite_2025_11_25(host, tmp_path):
    run = run_suite("@modelcontextprotocol/conformance", host, tmp_path, "--suite", "all",
                    "--expected-failures", str(BASELINES / "expected-failures.yaml"))
    assert run.returncode == 0, summary(run)
    assert "Total:" in run.stdout, summary(run)


def test_conformance_suite_next_2026_07_28(host, tmp_path):
    """The 0.2 alpha suite for the stateless revision: its known gaps are
    listed in a baseline of their own (and in the README)."""
    run = run_suite("conformance-next", host, tmp_path, "--suite", "all", "--spec-version", "2026-07-28",
                    "--expected-failures", str(BASELINES / "expected-failures-2026-07-28.yaml"))
    assert run.returncode == 0, summary(run)
    assert "Total:" in run.stdout, summary(run)


TASKS_SCENARIOS = [
    "tasks-lifecycle", "tasks-capability-negotiation", "tasks-wire-fields", "tasks-request-state-removal",
    "tasks-mrtr-input", "tasks-request-headers", "tasks-dispatch-and-envelope", "tasks-status-notifications",
    "tasks-required-task-error", "tasks-mrtr-composition",
]


@pytest.mark.parametrize("scenario", TASKS_SCENARIOS)
def test_conformance_tasks_extension(host, tmp_path, scenario):
    """The tasks extension (SEP-2663): the fixture's greet, slow_compute,
    failing_job and protocol_error_job run as the scenarios expect."""
    run = run_suite("conformance-next", host, tmp_path, "--scenario", scenario,
                    "--expected-failures", str(BASELINES / "expected-failures-2026-07-28.yaml"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


def test_unprefixed_names_are_served_once_and_the_rest_withheld(tmp_path):
    """Two plugins serving the same unprefixed names at start-up: the first
    by name gets each name, the other's items of that name are withheld (and
    shown), and both plugins are served."""
    root = make_root(tmp_path, fixtures=("conformance",))
    (root / "plugins" / "conformance-2.wasm").write_bytes((root / "plugins" / "conformance.wasm").read_bytes())
    (root / "policies" / "conformance-2.toml").write_text((root / "policies" / "conformance.toml").read_text())
    check = run_host("check", *host_args(root))
    assert check.returncode == 0, check.stdout + check.stderr
    out = check.stdout
    assert "conformance-2 0.1.0" in out, out
    assert "tool test_simple_text NOT SERVED: the name is served by plugin conformance, which offered it first" in out
    assert "prompt test_simple_prompt NOT SERVED: the name is served by plugin conformance" in out
