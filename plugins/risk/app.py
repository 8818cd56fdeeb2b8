"""risk: position sizing, value-at-risk and expected shortfall, from the
read-only market data (``/data/market/<SYMBOL>/<timeframe>.csv``).

Written in Python with the SDK in ``plugins/sdk-python``; built into
``plugins/risk.wasm`` by ``plugins/build``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from typing import Annotated, Literal, Optional

from mcp_plugin import Field, Plugin, ToolError, host

MARKET = os.environ.get("RISK_MARKET_DIR", "/data/market")
TIMEFRAMES = ("1d", "1h")
#: Bars a year, to annualise volatility.
PERIODS_PER_YEAR = {"1d": 252, "1h": 252 * 7}

plugin = Plugin(
    "risk",
    "0.1.0",
    "Position sizing, value-at-risk and expected shortfall from the market data",
)

Symbol = Annotated[str, Field(description="A symbol in the market data, e.g. AAPL", pattern=r"^[A-Za-z0-9._-]{1,20}$")]
Timeframe = Annotated[Literal["1d", "1h"], Field(description="Bar size of the data used")]


# ---- market data -------------------------------------------------------------


def known_symbols() -> list[str]:
    try:
        return sorted(entry for entry in os.listdir(MARKET) if not entry.startswith("."))
    except OSError as error:
        raise ToolError(f"the market data is not readable here ({error.strerror}); is it mounted?") from None


def closes(symbol: str, timeframe: str) -> list[tuple[str, float]]:
    """(timestamp, close) of every bar, oldest first."""
    symbol = symbol.upper()
    if symbol not in known_symbols():
        raise ToolError(f"unknown symbol {symbol}; known: {', '.join(known_symbols())}")
    path = f"{MARKET}/{symbol}/{timeframe}.csv"
    try:
        with open(path, newline="") as file:
            rows = [(row["timestamp"], float(row["close"])) for row in csv.DictReader(file)]
    except FileNotFoundError:
        raise ToolError(f"{symbol} has no {timeframe} bars") from None
    except (KeyError, ValueError) as error:
        raise ToolError(f"{symbol} {timeframe} bars are malformed: {error}") from None
    if len(rows) < 2:
        raise ToolError(f"{symbol} has fewer than two {timeframe} bars")
    return rows


def returns(series: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Simple returns, keyed by the timestamp of the later bar."""
    return [(t1, c1 / c0 - 1.0) for (_, c0), (t1, c1) in zip(series, series[1:]) if c0 > 0]


# ---- position sizing -----------------------------------------------------------


@dataclass
class PositionSize:
    """A position sized to the account's risk.

    Attributes:
        symbol: The symbol sized.
        method: How it was sized.
        price: The last close, the price the size assumes.
        shares: Whole units to hold.
        notional: What the position is worth at that price.
        risk_amount: What a move to the stop loses (fixed-fractional), or one
            standard deviation of a day's move (volatility-scaled).
        stop_price: The stop the size assumes (fixed-fractional only).
        annualised_volatility_pct: The symbol's volatility over the window.
        capped_by_equity: Whether the size was cut to what the equity buys.
    """

    symbol: str
    method: str
    price: float
    shares: int
    notional: float
    risk_amount: float
    annualised_volatility_pct: float
    capped_by_equity: bool
    stop_price: Optional[float] = None


@plugin.tool(title="Size a position", effects=["read-files"], read_only=True, idempotent=True)
def position_size(
    symbol: Symbol,
    equity: Annotated[float, Field(gt=0, description="Account equity in the symbol's currency")],
    method: Literal["fixed-fractional", "volatility-scaled"] = "fixed-fractional",
    risk_fraction: Annotated[float, Field(gt=0, le=0.1, description="Share of equity to risk on the trade (fixed-fractional), e.g. 0.01")] = 0.01,
    stop_distance_pct: Annotated[Optional[float], Field(gt=0, lt=100, description="Distance from the last close to the stop, in per cent (fixed-fractional)")] = None,
    target_volatility_pct: Annotated[float, Field(gt=0, le=100, description="Annualised volatility the position should carry, in per cent of equity (volatility-scaled)")] = 10.0,
    window: Annotated[int, Field(ge=5, le=2000, description="Bars of history for volatility")] = 20,
    timeframe: Timeframe = "1d",
) -> PositionSize:
    """Sizes a position in one symbol so that it risks a set share of the
    account: fixed-fractional (lose `risk_fraction` of equity if the stop at
    `stop_distance_pct` below the last close is hit) or volatility-scaled
    (hold as much as carries `target_volatility_pct` annualised volatility).
    Never more than the equity buys (no leverage). Reads the market data.
    """
    series = closes(symbol, timeframe)
    price = series[-1][1]
    recent = [r for _, r in returns(series)][-window:]
    if len(recent) < window:
        raise ToolError(f"{symbol.upper()} has only {len(recent)} {timeframe} returns; ask for a window of at most {len(recent)}")
    volatility = statistics.stdev(recent) * math.sqrt(PERIODS_PER_YEAR[timeframe])
    affordable = math.floor(equity / price)
    stop_price = None
    if method == "fixed-fractional":
        if stop_distance_pct is None:
            raise ToolError("fixed-fractional sizing needs stop_distance_pct: how far below the last close the stop is")
        risk_amount = equity * risk_fraction
        per_share = price * stop_distance_pct / 100.0
        shares = math.floor(risk_amount / per_share)
        stop_price = round(price - per_share, 6)
    else:
        if volatility == 0:
            raise ToolError(f"{symbol.upper()} did not move over the window; volatility sizing needs movement")
        shares = math.floor(equity * (target_volatility_pct / 100.0) / volatility / price)
    capped = shares > affordable
    shares = min(shares, affordable)
    if method == "fixed-fractional":
        risk_amount = shares * price * stop_distance_pct / 100.0
    else:
        risk_amount = shares * price * volatility / math.sqrt(PERIODS_PER_YEAR[timeframe])
    return PositionSize(
        symbol=symbol.upper(),
        method=method,
        price=price,
        shares=shares,
        notional=round(shares * price, 2),
        risk_amount=round(risk_amount, 2),
        annualised_volatility_pct=round(volatility * 100, 4),
        capped_by_equity=capped,
        stop_price=stop_price,
    )


# ---- value at risk -------------------------------------------------------------


@dataclass
class Holding:
    """One line of a portfolio.

    Attributes:
        symbol: A symbol in the market data.
        quantity: Units held; negative for a short position.
    """

    symbol: Symbol
    quantity: float


@dataclass
class HoldingValue:
    """A holding at the last close.

    Attributes:
        symbol: The symbol.
        quantity: Units held.
        price: The last close.
        value: quantity × price.
    """

    symbol: str
    quantity: float
    price: float
    value: float


@dataclass
class RiskReport:
    """What the portfolio could lose over the horizon.

    Attributes:
        method: historical (the window's own returns) or parametric (normal).
        confidence: The confidence level, e.g. 0.95.
        horizon_days: Bars ahead the loss is scaled to (square-root of time).
        value: What the portfolio is worth at the last closes.
        var: Value-at-risk: the loss not exceeded at the confidence level.
        expected_shortfall: The average loss beyond the value-at-risk.
        var_pct: var as a per cent of the gross value.
        observations: Returns the estimate rests on (common to all symbols).
        holdings: Each holding at the last close.
    """

    method: str
    confidence: float
    horizon_days: int
    value: float
    var: float
    expected_shortfall: float
    var_pct: float
    observations: int
    holdings: list[HoldingValue] = field(default_factory=list)


@plugin.tool(title="Value-at-risk", effects=["read-files"], read_only=True, idempotent=True)
def value_at_risk(
    positions: Annotated[list[Holding], Field(min_length=1, max_length=20, description="The portfolio: one symbol for a single position")],
    confidence: Annotated[float, Field(ge=0.5, le=0.999, description="Confidence level")] = 0.95,
    window: Annotated[int, Field(ge=20, le=2000, description="Returns of history to use (the last ones the symbols share)")] = 120,
    horizon_days: Annotated[int, Field(ge=1, le=30, description="Days ahead")] = 1,
    method: Literal["historical", "parametric"] = "historical",
    timeframe: Timeframe = "1d",
) -> RiskReport:
    """Value-at-risk and expected shortfall of a symbol or a small portfolio
    (up to 20 holdings; short positions as negative quantities), from the
    last `window` returns the symbols have in common: historical (the
    returns as they were) or parametric (a normal fit). Reports progress per
    symbol. Reads the market data.
    """
    merged: dict[str, float] = {}
    for holding in positions:
        merged[holding.symbol.upper()] = merged.get(holding.symbol.upper(), 0.0) + holding.quantity
    series: dict[str, dict[str, float]] = {}
    holdings: list[HoldingValue] = []
    for done, (symbol, quantity) in enumerate(merged.items()):
        if host.cancelled():
            raise ToolError("cancelled")
        bars = closes(symbol, timeframe)
        price = bars[-1][1]
        series[symbol] = dict(returns(bars))
        holdings.append(HoldingValue(symbol, quantity, price, round(quantity * price, 2)))
        host.progress(done + 1, len(merged), f"loaded {symbol}")
    common = sorted(set.intersection(*(set(s) for s in series.values())))[-window:]
    if len(common) < window:
        raise ToolError(
            f"the symbols have only {len(common)} {timeframe} returns in common; ask for a window of at most {len(common)}"
            if common
            else f"the symbols have no {timeframe} bars in common (different trading calendars?)"
        )
    value = sum(h.value for h in holdings)
    gross = sum(abs(h.value) for h in holdings)
    if gross == 0:
        raise ToolError("the portfolio is worth nothing at the last closes: every quantity is zero")
    pnl = [sum(h.quantity * h.price * series[h.symbol][t] for h in holdings) for t in common]
    var, shortfall = (historical if method == "historical" else parametric)(pnl, confidence)
    scale = math.sqrt(horizon_days)
    host.info(f"{method} VaR over {len(pnl)} returns of {len(holdings)} holdings")
    return RiskReport(
        method=method,
        confidence=confidence,
        horizon_days=horizon_days,
        value=round(value, 2),
        var=round(var * scale, 2),
        expected_shortfall=round(shortfall * scale, 2),
        var_pct=round(var * scale / gross * 100, 4),
        observations=len(pnl),
        holdings=holdings,
    )


def historical(pnl: list[float], confidence: float) -> tuple[float, float]:
    """The loss at the (1 - confidence) quantile of the P&L, and the mean
    loss at or beyond it."""
    ordered = sorted(pnl)
    # The tail holds ceil(n × (1 - c)) observations; rounded first, so that
    # 120 × (1 - 0.95) is 6, not 6.000000000000005.
    index = max(0, math.ceil(round(len(ordered) * (1 - confidence), 9)) - 1)
    var = -ordered[index]
    tail = ordered[: index + 1]
    return var, -sum(tail) / len(tail)


def parametric(pnl: list[float], confidence: float) -> tuple[float, float]:
    """Value-at-risk and expected shortfall of a normal fit to the P&L."""
    mean = statistics.fmean(pnl)
    deviation = statistics.stdev(pnl)
    normal = statistics.NormalDist()
    z = normal.inv_cdf(confidence)
    var = z * deviation - mean
    shortfall = deviation * normal.pdf(z) / (1 - confidence) - mean
    return var, shortfall


# ---- resources, prompts, completions ----------------------------------------------


@plugin.resource("risk://methods", title="Risk methods", mime_type="text/markdown")
def methods() -> str:
    """How this plugin sizes positions and measures risk."""
    return METHODS


@plugin.resource_template("risk://volatility/{symbol}", title="Volatility of a symbol", mime_type="application/json")
def volatility(symbol: str) -> str:
    """Annualised volatility of a symbol's daily returns over 20, 60 and 250 days."""
    daily = [r for _, r in returns(closes(symbol, "1d"))]
    figures = {
        f"{n}d": round(statistics.stdev(daily[-n:]) * math.sqrt(252) * 100, 4)
        for n in (20, 60, 250)
        if len(daily) >= n
    }
    return json.dumps({"symbol": symbol.upper(), "annualised_volatility_pct": figures})


@plugin.completion(template="risk://volatility/{symbol}", argument="symbol")
def complete_symbol(value: str, context: dict[str, str]) -> list[str]:
    return [s for s in known_symbols() if s.startswith(value.upper())]


@plugin.prompt(title="Review a portfolio's risk")
def risk_review(portfolio: str, equity: str = "") -> str:
    """Asks the model to review a portfolio's risk with this plugin's tools.

    Args:
        portfolio: The holdings, e.g. "100 AAPL, 50 MSFT, -20 SPY".
        equity: The account's equity, if sizing should be checked too.
    """
    ask = (
        f"Review the risk of this portfolio: {portfolio}.\n"
        "1. Call risk__value_at_risk with both methods at 95% and 99%, one day and ten days.\n"
        "2. Explain where historical and parametric disagree and what that says about the tails.\n"
    )
    if equity:
        ask += f"3. With equity {equity}, call risk__position_size for each holding (volatility-scaled, 10%) and say which are oversized.\n"
    return ask


METHODS = """# Risk methods

- **Fixed-fractional sizing**: risk a set share of equity (`risk_fraction`) between the entry (the
  last close) and the stop (`stop_distance_pct` below it): shares = equity × fraction ÷ (price × stop %).
- **Volatility-scaled sizing**: hold what carries `target_volatility_pct` of annualised volatility:
  notional = equity × target ÷ the symbol's annualised volatility over `window` bars.
- Neither uses leverage: a size is cut to what the equity buys.
- **Historical value-at-risk**: the loss at the (1 − confidence) quantile of the portfolio's P&L on
  the last `window` returns its symbols share; **expected shortfall** is the mean loss at or beyond it.
- **Parametric value-at-risk**: a normal fit to the same P&L: z·σ − μ; shortfall σ·φ(z)/(1 − c) − μ.
- Horizons scale by the square root of time.
"""

Handler = plugin.handler()
