"""Resource URIs are namespaced by scheme: the hostile fixture declares the
example plugins' fixed URIs, their templates, wider templates over their
schemes and case variants. None of that is served, the owners keep serving,
and `host check` says why."""

import anyio
import pytest
from mcp import Client

from harness import HttpHost, audit_records, host_args, make_root, run_host

pytestmark = pytest.mark.anyio

FORGED = "forged by the hostile plugin"


async def read(client, uri: str) -> str:
    result = await client.read_resource(uri)
    return "\n".join(getattr(c, "text", "") for c in result.contents)


async def assert_owners_serve(client) -> None:
    symbols = await read(client, "market://symbols")
    assert "AAPL" in symbols and FORGED not in symbols, symbols
    bars = await read(client, "market://bars/AAPL/1d")
    assert bars.startswith("timestamp,open,high,low,close,volume"), bars[:200]
    strategies = await read(client, "strategies://list")
    assert FORGED not in strategies
    indicators = await read(client, "indicators://list")
    assert FORGED not in indicators and "sma" in indicators


async def test_a_plugin_cannot_take_or_shadow_another_plugins_resources(connect):
    async with connect() as client:
        await assert_owners_serve(client)
        listed = (await client.list_resources()).resources
        uris = [str(r.uri) for r in listed]
        # Each URI once, and the hostile plugin's only under its own scheme.
        assert len(uris) == len(set(uris)), uris
        assert "hostile://big" in uris
        assert not any(u.lower() == "market://symbols" and u != "market://symbols" for u in uris), uris
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        assert templates.count("market://bars/{symbol}/{timeframe}") == 1, templates
        assert "market://{anything}" not in templates and "indicators://{name}" not in templates
        # A URI only the hostile plugin's wide template matches is not served at all.
        with pytest.raises(Exception) as unknown:
            await read(client, "market://anything-else")
        assert FORGED not in str(unknown.value)
        with pytest.raises(Exception):
            await read(client, "MARKET://Symbols")


def test_check_explains_every_resource_not_served(root):
    result = run_host("check", *host_args(root))
    out = result.stdout
    assert "market-data" in out and "FAILED" not in out, out + result.stderr
    hostile = out[out.index("\nhostile ") :]
    hostile = hostile[: hostile.index("\n\n")]
    for uri in ["market://symbols", "strategies://list", "market://bars/{symbol}/{timeframe}", "market://{anything}"]:
        assert f"resource {uri} NOT SERVED: its URI scheme " in hostile, hostile
    assert "its URI scheme market: is served by plugin market-data" in hostile, hostile
    assert "its URI scheme indicators: is served by plugin indicators" in hostile, hostile
    # The upper-case variant is the same scheme.
    assert "resource MARKET://Symbols NOT SERVED: its URI scheme market: is served by plugin market-data" in hostile
    assert "resource hostile://big\n" in hostile + "\n"


async def test_a_policy_newly_claiming_a_scheme_never_displaces_its_incumbent(tmp_path, broker):
    root = make_root(tmp_path, fixtures=("hostile",))
    host = HttpHost(root, {"BROKER_URL": broker.url})
    try:
        async with Client(host.url) as client:
            await assert_owners_serve(client)
            # The operator (by mistake) lists the owners' schemes in the hostile policy.
            policy = root / "policies" / "hostile.toml"
            policy.write_text(policy.read_text() + '\n[resources]\nschemes = ["market", "strategies", "indicators"]\n')
            # Wait for the reload to take effect: the host logs it.
            with anyio.fail_after(15):
                while not any("reloaded in" in line for line in host.log):
                    await anyio.sleep(0.05)
            await assert_owners_serve(client)
    finally:
        host.stop()
    # At start-up there is no incumbent: a scheme two policies list goes to the
    # plugin named after it, and one no plugin is named after goes to nobody.
    result = run_host("check", *host_args(root))
    out = result.stdout
    assert "resource indicators://{name} NOT SERVED: its URI scheme indicators: is served by plugin indicators" in out, out
    assert "resource market://symbols NOT SERVED: its URI scheme market: is also listed by the policy of plugin hostile" in out, out
    assert "market: is also listed by the policy of plugin" in out, out


async def test_resource_claims_are_audited_at_start_up(tmp_path, broker):
    root = make_root(tmp_path, fixtures=("hostile",))
    host = HttpHost(root, {"BROKER_URL": broker.url})
    try:

        def withheld(record):
            return (
                record["event"] == "resource-withheld"
                and record["plugin"] == "hostile"
                and record["uri"] == "market://symbols"
                and "market-data" in record["rule"]
            )

        assert any(withheld(r) for r in audit_records(root, until=withheld))
    finally:
        host.stop()
