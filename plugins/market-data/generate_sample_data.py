"""Writes the deterministic sample market data shipped with the market-data plugin.

Synthetic OHLCV series (a seeded random walk), not real prices:
data/<SYMBOL>/<timeframe>.csv with columns timestamp,open,high,low,close,volume.
Run it again and the files come out byte for byte the same.
"""
import datetime as dt
import pathlib
import random

SYMBOLS = {"AAPL": 185.0, "MSFT": 370.0, "SPY": 470.0, "BTC-USD": 42000.0, "EURUSD": 1.10}
OUT = pathlib.Path(__file__).parent / "data"


def walk(rng, price, n, volatility):
    for _ in range(n):
        open_ = price
        close = max(0.0001, open_ * (1 + rng.gauss(0.0, volatility)))
        high = max(open_, close) * (1 + abs(rng.gauss(0, 0.004)))
        low = min(open_, close) * (1 - abs(rng.gauss(0, 0.004)))
        yield open_, high, low, close, int(rng.uniform(2e5, 5e6))
        price = close


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.write("timestamp,open,high,low,close,volume\n")
        for t, (o, h, l, c, v) in rows:
            digits = 5 if c < 10 else 2
            f.write(f"{t},{o:.{digits}f},{h:.{digits}f},{l:.{digits}f},{c:.{digits}f},{v}\n")


def weekdays(start, count):
    day = start
    while count:
        if day.weekday() < 5:
            yield day
            count -= 1
        day += dt.timedelta(days=1)


def main():
    for i, (symbol, start_price) in enumerate(SYMBOLS.items()):
        rng = random.Random(1000 + i)
        days = list(weekdays(dt.date(2024, 1, 2), 250))
        stamps = [f"{d.isoformat()}T00:00:00Z" for d in days]
        daily = list(walk(rng, start_price, len(stamps), 0.012))
        write(OUT / symbol / "1d.csv", zip(stamps, daily))
        # The hourly bars cover the last 30 sessions, continuing from the close before them.
        hours = [
            f"{d.isoformat()}T{h:02d}:00:00Z" for d in days[-30:] for h in range(14, 21)
        ]
        hourly = walk(rng, daily[-31][3], len(hours), 0.0045)
        write(OUT / symbol / "1h.csv", zip(hours, hourly))


if __name__ == "__main__":
    main()
