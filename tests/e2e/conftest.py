"""Shared fixtures: one test root, one broker stand-in and one HTTP host for
the whole session, so plugins are compiled once per process, not per test."""

import contextlib
import pathlib

import pytest
from mcp import Client

from harness import HOST, BrokerStandIn, HttpHost, make_root, stdio_params

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


CONNECTIONS = [("stdio", "auto"), ("stdio", "legacy"), ("http", "auto"), ("http", "legacy")]


@pytest.fixture(params=CONNECTIONS, ids=lambda c: f"{c[0]}-{c[1]}")
def connect(request, root, broker_env, http_host):
    """Opens a Python SDK client to the session's host: over stdio or HTTP,
    auto mode (2026-07-28) or legacy (2025-11-25)."""
    transport, mode = request.param

    @contextlib.asynccontextmanager
    async def open_client(**options):
        server = stdio_params(root, broker_env) if transport == "stdio" else http_host.url
        async with Client(server, mode=mode, **options) as client:
            yield client

    return open_client
