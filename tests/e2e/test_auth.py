"""Remote access over HTTP: the direct (bearer token), gateway (signed
user id) and public (anonymous, read-only) modes, per-principal storage,
rate limits, health and metrics — with real clients."""

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
import uuid

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from harness import EXAMPLES, HOST, HttpHost, audit_records, make_root, run_host, text_of

pytestmark = pytest.mark.anyio

SECRET = "an-hs256-secret-of-at-least-32-bytes!"
GATEWAY_SECRET = "a-gateway-secret-of-at-least-32-bytes"
ISSUER = "https://auth.test"
AUDIENCE = "https://mcp.test/mcp"
ENV = {"TEST_HS256_SECRET": SECRET, "TEST_GATEWAY_SECRET": GATEWAY_SECRET}
WRITE_TOOLS = {"strategies__create_strategy"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims: dict, secret: bytes = SECRET.encode(), alg: str = "HS256", **header) -> str:
    header = {"alg": alg, "typ": "JWT", **header}
    signed = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{b64url(signature)}"


def claims(**changes) -> dict:
    now = int(time.time())
    base = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "nbf": now - 10,
            "scope": "mcp:read mcp:write"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def per_user_strategies(root) -> None:
    """Both plugins that touch strategies keep them per user."""
    for name in ("strategies", "backtest"):
        policy = root / "policies" / f"{name}.toml"
        policy.write_text(policy.read_text().replace('"plugins/strategies/saved"', '"plugins/strategies/users/{user}"'))


def start(tmp_path, auth: str, rate: str = "") -> tuple[HttpHost, object]:
    root = make_root(tmp_path)
    per_user_strategies(root)
    config = root / "host.toml"
    config.write_text(f"[auth]\n{auth}\n[auth.rate_limit]\n{rate}\n")
    return HttpHost(root, ENV, "--config", str(config)), root


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    """An Ed25519 key pair from `host keygen`: (private key file, public key)."""
    key = tmp_path_factory.mktemp("keys") / "signing.key"
    made = run_host("keygen", "--out", str(key))
    assert made.returncode == 0, made.stderr
    return key, made.stdout.strip()


@pytest.fixture(scope="module")
def direct(tmp_path_factory, keypair):
    auth = (f'mode = "direct"\nresource = "{AUDIENCE}"\nissuer = "{ISSUER}"\n'
            f'authorization_servers = ["{ISSUER}"]\nhs256_secret_env = "TEST_HS256_SECRET"\n'
            f'ed25519_public_keys = ["{keypair[1]}"]\n')
    # Many tests here fail authentication on purpose: they are not guessing.
    host, root = start(tmp_path_factory.mktemp("direct"), auth,
                       "tool_calls_per_minute = 1000\nfailed_auth_per_minute = 1000\n")
    host.root = root
    host.config = root / "host.toml"
    yield host
    host.stop()


def post(url: str, headers: dict, body: bytes | None = None) -> tuple[int, dict, str]:
    body = body or json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "content-type": "application/json", "accept": "application/json, text/event-stream", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize("case", [
    "missing", "malformed", "expired", "not-yet-valid", "wrong-issuer", "wrong-audience",
    "wrong-signature", "alg-none", "algorithm-confusion", "no-sub", "traversing-sub", "reserved-sub",
    "reserved-sub-upper", "reserved-sub-mixed", "reserved-anonymous", "critical-extension",
    "critical-unencoded-payload",
])
def test_bad_tokens_get_401_with_a_challenge(direct, keypair, case):
    public_key = base64.b64decode(keypair[1])
    now = int(time.time())
    tokens = {
        "malformed": "not.a-token",
        "expired": hs256(claims(exp=now - 3600)),
        "not-yet-valid": hs256(claims(nbf=now + 3600)),
        "wrong-issuer": hs256(claims(iss="https://evil.test")),
        "wrong-audience": hs256(claims(aud="https://other.test/mcp")),
        "wrong-signature": hs256(claims(), secret=b"not-the-secret-not-the-secret-00"),
        "alg-none": hs256(claims(), alg="none").rsplit(".", 1)[0] + ".",
        # HS256 "signed" with the server's Ed25519 public key as the secret.
        "algorithm-confusion": hs256(claims(), secret=public_key),
        "no-sub": hs256(claims(sub=None)),
        "traversing-sub": hs256(claims(sub="../bob")),
        # `local` is the operator on stdio: no token may claim it.
        "reserved-sub": hs256(claims(sub="local")),
        # In any case: `LOCAL` would be the operator's folder on a
        # case-insensitive filesystem, and reads as the operator in the log.
        "reserved-sub-upper": hs256(claims(sub="LOCAL")),
        "reserved-sub-mixed": hs256(claims(sub="Local")),
        "reserved-anonymous": hs256(claims(sub="Anonymous")),
        # Validly signed, but naming extensions the host would have to
        # understand to read the token correctly (RFC 7515 §4.1.11).
        "critical-extension": hs256(claims(), crit=["exp"]),
        "critical-unencoded-payload": hs256(claims(), b64=False, crit=["b64"]),
    }
    headers = {} if case == "missing" else bearer(tokens[case])
    status, response_headers, body = post(direct.url, headers)
    assert status == 401, (case, status, body)
    challenge = {k.lower(): v for k, v in response_headers.items()}["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'resource_metadata="https://mcp.test/.well-known/oauth-protected-resource"' in challenge
    if case != "missing":
        assert 'error="invalid_token"' in challenge


def test_a_token_lacking_the_scope_gets_403(direct):
    status, headers, _ = post(direct.url, bearer(hs256(claims(scope="calendar:read"))))
    assert status == 403
    challenge = {k.lower(): v for k, v in headers.items()}["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="mcp:read"' in challenge


@pytest.mark.parametrize("path", [
    "/mcp/", "//mcp", "/mcp/x", "/MCP", "/%6dcp", "/mcp;x", "/./mcp", "/health/", "/metrics/x",
    "/.well-known/oauth-protected-resource/x", "/nowhere",
])
def test_no_spelling_of_a_path_skips_authentication(direct, path):
    """Only the exact public paths are served without credentials; any
    other path, served or not, is authenticated first."""
    base = direct.url.removesuffix("/mcp")
    status, headers, text = post(base + path, {})
    assert status == 401, (path, status, text)
    assert "www-authenticate" in {k.lower() for k in headers}


def test_protected_resource_metadata_points_at_the_authorization_server(direct):
    base = direct.url.removesuffix("/mcp")
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        with urllib.request.urlopen(base + path, timeout=10) as response:
            document = json.loads(response.read())
        assert document["resource"] == AUDIENCE
        assert document["authorization_servers"] == [ISSUER]
        assert "mcp:read" in document["scopes_supported"]


def client_with(url: str, headers: dict | None = None, auth: httpx2.Auth | None = None, mode: str = "legacy"):
    transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers, auth=auth))
    return Client(transport, mode=mode)


def issued(direct, sub: str, *scopes: str, key=None) -> str:
    args = ["token", "issue", "--config", str(direct.config), "--sub", sub]
    for scope in scopes:
        args += ["--scope", scope]
    if key:
        args += ["--key", str(key)]
    made = run_host(*args, env=ENV)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_issued_tokens_work_and_scopes_decide_what_is_served(direct, keypair, mode):
    writer = issued(direct, "alice", key=keypair[0])  # EdDSA, mcp:read and mcp:write
    reader = issued(direct, "carol", "mcp:read")      # HS256, read only
    async with client_with(direct.url, bearer(writer), mode=mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert WRITE_TOOLS <= tools
    async with client_with(direct.url, bearer(reader), mode=mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert "market-data__get_quote" in tools and not (WRITE_TOOLS & tools)
        quote = await client.call_tool("market-data__get_quote", {"symbol": "SPY"})
        assert not quote.is_error
        with pytest.raises(Exception) as refused:
            await client.call_tool("strategies__create_strategy", {"name": "x", "definition": {}})
        assert "not available to carol" in str(refused.value)


STRATEGY = {"symbols": ["SPY"], "timeframe": "1d", "indicators": [], "entry": "close > 1",
            "exit": "close < 1", "risk": {"position_size_pct": 10}}


async def test_two_users_keep_separate_strategies(direct, keypair):
    name = f"mine_{uuid.uuid4().hex[:6]}"
    async with client_with(direct.url, bearer(issued(direct, "alice", key=keypair[0]))) as alice:
        created = await alice.call_tool("strategies__create_strategy", {"name": name, "definition": STRATEGY})
        assert not created.is_error, text_of(created)
        listed = await alice.call_tool("strategies__list_strategies", {})
        assert name in listed.structured_content["strategies"]
        backtest = await alice.call_tool("backtest__run_backtest",
                                         {"strategy": name, "symbol": "SPY", "timeframe": "1d"})
        assert not backtest.is_error, text_of(backtest)
    async with client_with(direct.url, bearer(issued(direct, "bob"))) as bob:
        listed = await bob.call_tool("strategies__list_strategies", {})
        assert name not in listed.structured_content["strategies"]
        missing = await bob.call_tool("strategies__get_strategy", {"name": name})
        assert missing.is_error
    users = direct.root / "plugins" / "strategies" / "users"
    assert (users / "alice" / f"{name}.json").is_file()
    assert not (users / "bob" / f"{name}.json").exists()
    records = audit_records(direct.root, until=lambda r: r.get("client", {}).get("principal") == "bob")
    calls = [r for r in records if r.get("event") == "call" and r.get("target") == "strategies__create_strategy"]
    assert calls and all(r["client"]["principal"] == "alice" for r in calls)


class GatewaySigner(httpx2.Auth):
    """What a trusted front does: sign the request's method, target,
    session, the user id, the time, a fresh nonce and the body's digest.
    `signed` overrides what is signed (to sign one request and send another)."""

    requires_request_body = True

    def __init__(self, user: str, secret: str = GATEWAY_SECRET, skew: int = 0, tamper: bool = False,
                 **signed):
        self.user, self.secret, self.skew, self.tamper, self.signed = user, secret.encode(), skew, tamper, signed

    def headers(self, method: str, target: str, session: str | None, body: bytes) -> dict:
        timestamp = str(int(time.time()) + self.skew)
        nonce = uuid.uuid4().hex
        parts = {"method": method, "target": target, "session": session or "", **self.signed}
        body = body + (b" " if self.tamper else b"")
        digest = hashlib.sha256(body).hexdigest()
        message = "\n".join(["mcp-gateway-v2", parts["method"], parts["target"], parts["session"], self.user,
                             timestamp, nonce, digest])
        signature = hmac.new(self.secret, message.encode(), hashlib.sha256).hexdigest()
        return {"x-mcp-user": self.user, "x-mcp-timestamp": timestamp, "x-mcp-nonce": nonce,
                "x-mcp-signature": signature, "x-mcp-body-sha256": digest}

    def auth_flow(self, request):
        target = request.url.raw_path.decode()
        request.headers.update(self.headers(request.method, target, request.headers.get("mcp-session-id"),
                                            request.content))
        yield request


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    host, root = start(tmp_path_factory.mktemp("gateway"), 'mode = "gateway"\ngateway_secret_env = "TEST_GATEWAY_SECRET"\n',
                       "tool_calls_per_minute = 2\nfailed_auth_per_minute = 1000\n")
    yield host
    host.stop()


async def test_gateway_signed_requests_run_as_their_user(gateway):
    async with client_with(gateway.url, auth=GatewaySigner("dana")) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert WRITE_TOOLS <= tools


async def test_a_tool_called_past_its_budget_says_when_to_retry(gateway):
    async with client_with(gateway.url, auth=GatewaySigner("frank")) as client:
        for _ in range(2):
            assert not (await client.call_tool("market-data__get_quote", {"symbol": "SPY"})).is_error
        limited = await client.call_tool("market-data__get_quote", {"symbol": "SPY"})
        assert limited.is_error
        assert "rate limit" in text_of(limited) and "retry after" in text_of(limited)
        # The budget is per principal and tool: another tool still answers.
        assert not (await client.call_tool("market-data__get_bars", {"symbol": "SPY", "timeframe": "1d",
                                                                      "limit": 1})).is_error


PING = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).encode()


@pytest.mark.parametrize("signer", [
    GatewaySigner("dana", secret="a-wrong-secret-of-at-least-32-bytes!!"),
    GatewaySigner("dana", tamper=True),
    GatewaySigner("dana", skew=-3600),
    GatewaySigner("dana", skew=60),
    GatewaySigner("dana", method="GET"),
    GatewaySigner("dana", target="/mcp?other"),
    GatewaySigner("dana", session="someone-elses-session"),
    None,
], ids=["bad-signature", "altered-body", "stale", "future", "other-method", "other-target", "other-session",
        "unsigned"])
def test_gateway_refuses_bad_altered_stale_moved_and_unsigned_requests(gateway, signer):
    headers = signer.headers("POST", "/mcp", None, PING) if signer else {}
    status, response_headers, _ = post(gateway.url, headers, PING)
    assert status == 401
    assert "www-authenticate" in {k.lower() for k in response_headers}


def test_a_gateway_signature_is_accepted_once(gateway):
    headers = GatewaySigner("dana").headers("POST", "/mcp", None, INITIALIZE)
    assert post(gateway.url, headers, INITIALIZE)[0] == 200
    status, _, body = post(gateway.url, headers, INITIALIZE)
    assert status == 401 and "already used" in body
    # Another spelling of the same signature is not another signature.
    upper = {**headers, "x-mcp-signature": headers["x-mcp-signature"].upper()}
    assert post(gateway.url, upper, INITIALIZE)[0] == 401


@pytest.fixture(scope="module")
def public(tmp_path_factory):
    host, root = start(tmp_path_factory.mktemp("public"), 'mode = "public"\n', "requests_per_minute = 30\n")
    yield host
    host.stop()


async def test_a_public_client_never_sees_or_calls_a_write_tool(public):
    async with Client(public.url, mode="legacy") as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert "market-data__get_quote" in tools
        assert not (WRITE_TOOLS & tools)
        resources = {r.uri for r in (await client.list_resources()).resources}
        assert "market://symbols" in resources
        with pytest.raises(Exception) as refused:
            await client.call_tool("strategies__create_strategy", {"name": "x", "definition": STRATEGY})
        assert "read-only" in str(refused.value)


def test_the_rate_limit_answers_429_then_recovers(public):
    ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    statuses = []
    for _ in range(40):
        status, headers, _ = post(public.url, {}, ping)
        statuses.append(status)
        if status == 429:
            break
    assert statuses[-1] == 429, statuses
    retry = int({k.lower(): v for k, v in headers.items()}["retry-after"])
    assert 1 <= retry <= 3
    time.sleep(retry)
    status, _, _ = post(public.url, {}, ping)
    assert status != 429


async def test_health_and_metrics(direct, public, keypair):
    base = public.url.removesuffix("/mcp")
    with urllib.request.urlopen(base + "/health", timeout=10) as response:
        health = json.loads(response.read())
    assert health["status"] == "ok" and "market-data" in health["plugins"] and health["failed"] == []
    # Traffic worth counting: a call, and a refused token.
    async with client_with(direct.url, bearer(issued(direct, "erin", key=keypair[0]))) as client:
        assert not (await client.call_tool("market-data__get_quote", {"symbol": "AAPL"})).is_error
    post(direct.url, bearer("not.a-token"))
    with urllib.request.urlopen(direct.url.removesuffix("/mcp") + "/metrics", timeout=10) as response:
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        text = response.read().decode()
    # The OpenMetrics text format (Prometheus scrapes it), read by the
    # Prometheus project's own parser.
    families = {family.name: family for family in text_string_to_metric_families(text)}
    failures = {s.labels["reason"]: s.value for s in families["mcp_host_auth_failures"].samples}
    assert failures.get("malformed", 0) >= 1
    calls = families["mcp_host_calls"].samples
    assert any(s.labels["target"] == "market-data__get_quote" and s.labels["outcome"] == "ok" for s in calls)
    latency = families["mcp_host_call_duration_seconds"]
    assert latency.type == "histogram"
    assert any(s.name.endswith("_count") and s.labels["target"] == "market-data__get_quote" for s in latency.samples)
    assert families["mcp_host_plugins_loaded"].samples[0].value == len(EXAMPLES)
    assert families["mcp_host_sandboxes_in_use"].samples[0].value == 0


def test_only_an_authenticated_host_listens_beyond_loopback(tmp_path):
    root = make_root(tmp_path)
    refused = run_host("serve", "--http", "0.0.0.0:0", "--plugins", str(root / "plugins"),
                       "--policies", str(root / "policies"), timeout=60)
    assert refused.returncode != 0 and "loopback" in refused.stderr


@pytest.mark.parametrize("headers", [
    {"x-mcp-user": "dana"},  # unsigned
    {"x-mcp-user": "dana", "x-mcp-timestamp": "1000", "x-mcp-nonce": "0" * 32, "x-mcp-signature": "0" * 64},  # stale
    {"x-mcp-user": "dana", "x-mcp-timestamp": "1e9", "x-mcp-nonce": "0" * 32, "x-mcp-signature": "0" * 64},
    "wrong-signature",
    "no-digest",
], ids=["unsigned", "stale", "malformed", "wrong-signature", "no-digest"])
def test_a_gateway_request_with_bad_headers_is_refused_before_its_body_is_read(gateway, headers):
    if headers == "wrong-signature":
        headers = GatewaySigner("dana", secret="a-wrong-secret-of-at-least-32-bytes!!").headers(
            "POST", "/mcp", None, b"x" * 1_000_000)
    elif headers == "no-digest":
        headers = GatewaySigner("dana").headers("POST", "/mcp", None, b"x" * 1_000_000)
        del headers["x-mcp-body-sha256"]
    # A body announced but never sent: the answer must not wait for it.
    answer = gateway.post_unfinished(headers, 1_000_000)
    assert answer.startswith("HTTP/1.1 401"), answer


def test_wrong_gateway_signatures_with_large_bodies_cost_no_memory(gateway):
    from test_front_door import resident_mb

    before = resident_mb(gateway.process.pid)
    body = b"x" * 3_000_000
    signer = GatewaySigner("dana", secret="a-wrong-secret-of-at-least-32-bytes!!")
    outcomes = []

    def attempt() -> None:
        # The host answers 401 from the headers and closes without reading
        # the body: the client may see its answer or a broken pipe.
        try:
            outcomes.append(post(gateway.url, signer.headers("POST", "/mcp", None, body), body)[0])
        except (urllib.error.URLError, ConnectionError):
            outcomes.append("closed while sending")

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(outcomes) <= {401, "closed while sending"} and len(outcomes) == 40, outcomes
    assert resident_mb(gateway.process.pid) - before < 40


# Fair limits: one client's failures do not lock out others behind its address.

@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """Five failed authentications a minute; this machine's loopback is a
    trusted proxy, so X-Forwarded-For names each client's address."""
    root = make_root(tmp_path_factory.mktemp("strict"))
    config = root / "host.toml"
    config.write_text(f'[http]\ntrusted_proxies = ["127.0.0.1/32"]\n[auth]\nmode = "direct"\n'
                      f'resource = "{AUDIENCE}"\nissuer = "{ISSUER}"\nhs256_secret_env = "TEST_HS256_SECRET"\n'
                      "[auth.rate_limit]\nfailed_auth_per_minute = 5\n")
    host = HttpHost(root, ENV, "--config", str(config))
    yield host
    host.stop()


def from_address(address: str | None) -> dict:
    return {"x-forwarded-for": address} if address else {}


def test_a_guesser_behind_a_shared_address_locks_out_only_itself(strict):
    alice = bearer(hs256(claims(sub="alice")))
    assert post(strict.url, alice)[0] == 200
    # Asking without a token (how clients discover auth) is not a guess.
    for _ in range(10):
        assert post(strict.url, {})[0] == 401
    # A guesser at the proxy's own address (no forwarded address).
    guesses = [post(strict.url, bearer(hs256(claims(sub="mallory"), secret=b"x" * 32 + bytes([n]))))[0]
               for n in range(10)]
    assert guesses[:5] == [401] * 5 and set(guesses[5:]) == {429}, guesses
    # A user whose credential worked before still gets in from there; a
    # new one from that address waits; every other address is untouched.
    assert post(strict.url, alice)[0] == 200
    status, headers, body = post(strict.url, bearer(hs256(claims(sub="bob"))))
    assert status == 429 and "still accepted" in body and "retry-after" in {k.lower() for k in headers}
    assert post(strict.url, {**bearer(hs256(claims(sub="bob"))), **from_address("203.0.113.7")})[0] == 200


def test_one_bad_token_is_limited_wherever_it_comes_from(strict):
    stolen = bearer(hs256(claims(sub="carol"), secret=b"y" * 33))
    statuses = [post(strict.url, {**stolen, **from_address(f"198.51.100.{n}")})[0] for n in range(8)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses
    assert post(strict.url, {**bearer(hs256(claims(sub="dave"))), **from_address("198.51.100.1")})[0] == 200


def test_a_client_cannot_pick_its_address_without_a_trusted_proxy(public):
    """Public mode trusts no proxy: X-Forwarded-For is ignored, so a client
    cannot spread its budget over made-up addresses."""
    statuses = [post(public.url, {"x-forwarded-for": f"192.0.2.{n}"}, PING)[0] for n in range(40)]
    assert 429 in statuses, statuses
