"""Shared fixtures: one test root, one broker stand-in and one HTTP host for
the whole session, so plugins are compiled once per process, not per test."""

import pathlib

import pytest

from harness import HOST, BrokerStandIn, HttpHost, make_root

# Every async test runs on asyncio through anyio's pytest plugin.
pytestmark = pytest.mark.anyio


@pytest.fixture(scope="session")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def host_binary():
    if not HOST.exists():
        pytest.fail(f"{HOST} is missing: run `cargo build -p host` (bash tests/run does)")


@pytest.fixture(scope="session")
def broker():
    standin = BrokerStandIn()
    yield standin
    standin.stop()


@pytest.fixture(scope="session")
def root(tmp_path_factory) -> pathlib.Path:
    """The example plugins plus the hostile fixture, with their policies."""
    return make_root(tmp_path_factory.mktemp("root"), fixtures=("hostile",))


@pytest.fixture(scope="session")
def broker_env(broker) -> dict[str, str]:
    return {"BROKER_URL": broker.url}


@pytest.fixture(scope="session")
def http_host(root, broker_env):
    host = HttpHost(root, broker_env)
    yield host
    host.stop()
