"""No order reaches a broker by any route.

A plugin granted every method on every spelling of the broker's host tries
order-placing and liquidating requests by other names, other spellings of
the host, and second meanings (override headers, bodies on GETs). With the
broker declared (default-deny), each is refused before a byte reaches it;
on a host not declared as a broker, the word guardrail and the one-meaning
rules still refuse every one that names an order action."""

import pytest
from mcp import Client

from harness import HttpHost, audit_records, make_root, text_of

pytestmark = pytest.mark.anyio

# Every spelling of the stand-in's host (it listens on 127.0.0.1): names,
# other loopback addresses, IPv6 forms, the unspecified address and the
# decimal form of 127.0.0.1.
SPELLINGS = ["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]", "0.0.0.0", "127.0.0.2", "2130706433"]

WIDE_POLICY = """
version = 1
[network]
allow = [{rules}]
[limits]
timeout_ms = 5000
"""

DECLARED = """
version = 1
[guardrails.no-order-execution]
[[guardrails.no-order-execution.brokers]]
name = "paper"
from_env = "BROKER_URL"
preset = "alpaca"
"""

UNDECLARED = """
version = 1
[guardrails.no-order-execution]
"""


def make_orders_root(path, host_toml: str):
    root = make_root(path, fixtures=("intruder",))
    (root / "intruder" / "ro").mkdir(parents=True)
    (root / "intruder" / "rw").mkdir()
    rules = ", ".join(f'"* http://{host}:*/*"' for host in SPELLINGS)
    (root / "policies" / "intruder.toml").write_text(WIDE_POLICY.format(rules=rules))
    (root / "policies" / "host.toml").write_text(host_toml)
    return root


@pytest.fixture(scope="module")
def declared(tmp_path_factory, broker):
    root = make_orders_root(tmp_path_factory.mktemp("declared"), DECLARED)
    host = HttpHost(root, {"BROKER_URL": broker.url})
    yield root, host, broker
    host.stop()


@pytest.fixture(scope="module")
def undeclared(tmp_path_factory, broker):
    root = make_orders_root(tmp_path_factory.mktemp("undeclared"), UNDECLARED)
    host = HttpHost(root, {"BROKER_URL": broker.url})
    yield root, host, broker
    host.stop()


def port_of(broker) -> str:
    return broker.url.rsplit(":", 1)[1]


GRAPHQL = '{"query":"mutation { placeOrder(symbol: \\"AAPL\\", side: BUY, qty: 100) { id } }"}'
JSONRPC = '{"jsonrpc":"2.0","id":1,"method":"order.place","params":{"symbol":"AAPL","qty":100}}'
BATCH = '[{"method":"POST","path":"/v2/orders","body":{"symbol":"AAPL","qty":100,"side":"buy"}}]'
CONFIRM = '{"confirmed":true}'
ORDER = '{"symbol":"AAPL","qty":"100","side":"buy","type":"market"}'
PIPELINED = "POST /v2/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}"

# (case, method, path, headers, body): each places, changes, cancels or
# confirms an order or closes a position, on a broker whose API is shaped so.
ORDER_ROUTES = [
    ("close every position", "DELETE", "/v2/positions", [], None),
    ("close one position", "DELETE", "/v2/positions/AAPL", [], None),
    ("close by POST", "POST", "/v2/positions/AAPL/close", [], None),
    ("liquidate", "POST", "/v1/liquidate", [], None),
    ("an order", "POST", "/v2/orders", [("content-type", "application/json")], ORDER),
    ("replace an order", "PATCH", "/v2/orders/42", [("content-type", "application/json")], ORDER),
    ("cancel every order", "DELETE", "/v2/orders", [], None),
    ("an order confirmation reply", "POST", "/v1/api/iserver/reply/5f1c", [("content-type", "application/json")], CONFIRM),
    ("camelCase AddOrder", "POST", "/0/private/AddOrder", [], "pair=XBTUSD&type=buy&volume=1"),
    ("an order API that is a GET", "GET", "/api/v2/private/buy?symbol=BTC&amount=1", [], None),
    ("sell by GET", "GET", "/api/v2/private/sell", [], None),
    ("a command in the query", "GET", "/tradingApi?command=buy&currencyPair=BTC_ETH", [], None),
    ("/trade", "POST", "/trade", [], ORDER),
    ("/execute", "POST", "/execute", [], ORDER),
    ("exercise an option", "POST", "/v2/options/exercise", [], None),
    ("a GraphQL mutation", "POST", "/graphql", [("content-type", "application/json")], GRAPHQL),
    ("a JSON-RPC call", "POST", "/rpc", [("content-type", "application/json")], JSONRPC),
    ("a batch wrapping an order", "POST", "/batch", [("content-type", "application/json")], BATCH),
    ("ordersV2", "POST", "/ordersV2", [], ORDER),
    ("fullwidth o", "POST", "/%EF%BD%8Frders", [], ORDER),
    ("overlong dots", "POST", "/v2/x/%C0%AE%C0%AE/orders", [], ORDER),
    ("overlong dot and slash", "POST", "/v2/x/%C0%AE%C0%AE%C0%AForders", [], ORDER),
    ("X-HTTP-Method-Override", "GET", "/v2/orders", [("X-HTTP-Method-Override", "POST")], None),
    ("X-HTTP-Method", "GET", "/v2/orders", [("X-HTTP-Method", "POST")], None),
    ("X-Method-Override", "GET", "/v2/positions", [("X-Method-Override", "DELETE")], None),
    ("_method", "GET", "/v2/orders?_method=POST&symbol=AAPL", [], None),
    ("an encoded _method", "GET", "/v2/positions?%5Fmethod=DELETE", [], None),
    ("OPTIONS with an order body", "OPTIONS", "/v2/orders", [("content-type", "application/json")], ORDER),
    ("X-Original-URL", "POST", "/v2/account", [("X-Original-URL", "/v2/orders")], ORDER),
    ("X-Rewrite-URL", "GET", "/v2/account", [("X-Rewrite-URL", "/v2/orders")], None),
    ("X-Forwarded-Prefix", "GET", "/v2/account", [("X-Forwarded-Prefix", "/v2/orders")], None),
    ("a GET whose body is a pipelined POST", "GET", "/v2/positions", [], PIPELINED),
    ("a HEAD with a body", "HEAD", "/v2/positions", [], ORDER),
]


async def call(host, arguments: dict) -> str:
    async with Client(host.url) as client:
        result = await client.call_tool("intruder__http", arguments)
    return text_of(result) if not result.is_error else "ERROR " + text_of(result)


def request_args(host_spelling: str, port: str, method: str, path: str, headers, body) -> dict:
    arguments = {"method": method, "url": f"http://{host_spelling}:{port}{path}", "headers": headers}
    if body is not None:
        arguments["body"] = body
    return arguments


@pytest.mark.parametrize("case, method, path, headers, body", ORDER_ROUTES, ids=[c[0] for c in ORDER_ROUTES])
async def test_no_order_reaches_a_declared_broker(declared, case, method, path, headers, body):
    root, host, broker = declared
    before = len(broker.requests)
    message = await call(host, request_args("127.0.0.1", port_of(broker), method, path, headers, body))
    assert message.startswith("ERROR") and "host: denied by " in message, message
    assert broker.requests[before:] == [], f"{case} reached the broker"

    def refused(record):
        return record["event"] in ("denied", "denied-more") and record["target"] == "intruder__http"

    assert any(refused(r) for r in audit_records(root, until=refused))


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_every_spelling_of_the_brokers_host_is_the_broker(declared, spelling):
    """Writes and unlisted reads are refused by the broker rule however the
    host is spelled; its read routes are still served."""
    _, host, broker = declared
    port = port_of(broker)
    before = len(broker.requests)
    for method, path in [("POST", "/v2/watchlists"), ("PUT", "/v2/account"), ("GET", "/v2/orders"), ("HEAD", "/v2/orders"), ("GET", "/secret")]:
        message = await call(host, request_args(spelling, port, method, path, [], None))
        assert "denied by guardrail no-order-execution (the destination is the broker \"paper\"" in message, message
    assert broker.requests[before:] == []


@pytest.mark.parametrize("spelling", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433"])
async def test_the_brokers_read_routes_are_served_in_any_spelling(declared, spelling):
    _, host, broker = declared
    before = len(broker.requests)
    message = await call(host, request_args(spelling, port_of(broker), "GET", "/v2/positions", [], None))
    assert message.startswith("200 "), message
    assert broker.requests[before:] == [("GET", "/v2/positions")]
    # Sent to the address that was checked, under the name that was checked.
    host_header = spelling if spelling != "2130706433" else "2130706433"
    assert broker.hosts[-1] == f"{host_header}:{port_of(broker)}"


async def test_a_tool_declaring_only_network_read_cannot_smuggle_a_write(declared):
    root, host, broker = declared
    before = len(broker.requests)
    async with Client(host.url) as client:
        result = await client.call_tool(
            "intruder__reader", {"op": "smuggle", "path": f"{broker.url}/v2/positions", "to": "127.0.0.1"}
        )
    assert result.is_error
    assert "a GET request carries a body" in text_of(result), text_of(result)
    assert broker.requests[before:] == []


# On a host not declared as a broker, the word guardrail and the one-meaning
# rules are the second line: every case above but the ones whose order is
# only in the body (GraphQL, JSON-RPC, batch, confirmation reply on a path
# of plain words), which only a broker declaration stops.
ONLY_A_DECLARATION_STOPS = {"a GraphQL mutation", "a JSON-RPC call", "a batch wrapping an order", "an order confirmation reply"}


@pytest.mark.parametrize(
    "case, method, path, headers, body",
    [c for c in ORDER_ROUTES if c[0] not in ONLY_A_DECLARATION_STOPS],
    ids=[c[0] for c in ORDER_ROUTES if c[0] not in ONLY_A_DECLARATION_STOPS],
)
async def test_the_word_guardrail_holds_on_undeclared_hosts(undeclared, case, method, path, headers, body):
    _, host, broker = undeclared
    before = len(broker.requests)
    message = await call(host, request_args("127.0.0.1", port_of(broker), method, path, headers, body))
    assert message.startswith("ERROR") and "host: denied by " in message, message
    assert broker.requests[before:] == [], f"{case} reached the broker"


async def test_plain_requests_still_reach_undeclared_hosts(undeclared):
    _, host, broker = undeclared
    before = len(broker.requests)
    posted = await call(host, request_args("127.0.0.1", port_of(broker), "POST", "/v2/backtests", [("content-type", "application/json")], "{}"))
    assert posted.startswith("201 "), posted
    read = await call(host, request_args("localhost", port_of(broker), "GET", "/v2/orders", [("accept", "application/json")], None))
    assert not read.startswith("ERROR"), read
    assert broker.requests[before:] == [("POST", "/v2/backtests"), ("GET", "/v2/orders")]
