//! Backtests: runs a saved strategy over stored bars and reports how it
//! would have done. Reads market data (`/data/market`) and strategies
//! (`/data/strategies`) from folders its policy grants read-only; reports
//! progress as it goes and stops when the client cancels.

use plugin_sdk::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;
use ta::rules::{Rule, Series};

const MARKET: &str = "/data/market";
const STRATEGIES: &str = "/data/strategies";
const STARTING_EQUITY: f64 = 10_000.0;
/// How often (in bars) progress is reported and cancellation checked.
const REPORTS: usize = 50;

/// Arguments of `run_backtest`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct BacktestArgs {
    /// Name of a saved strategy (see strategies://list).
    #[schemars(regex(pattern = r"^[a-z0-9_]{1,64}$"))]
    strategy: String,
    /// Symbol to test it on, upper case, e.g. `SPY`.
    #[schemars(regex(pattern = r"^[A-Z0-9][A-Z0-9._-]{0,9}$"))]
    symbol: String,
    /// Bar size: 1m, 5m, 15m, 30m, 1h, 4h or 1d.
    #[schemars(regex(pattern = r"^(1m|5m|15m|30m|1h|4h|1d)$"))]
    timeframe: String,
    /// First bar to include: `YYYY-MM-DD`.
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}$"))]
    start: Option<String>,
    /// Last day to include: `YYYY-MM-DD`.
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}$"))]
    end: Option<String>,
}

/// A saved strategy, as the strategies plugin stores it (the fields a
/// backtest needs).
#[derive(Deserialize)]
struct Saved {
    config: Config,
}

#[derive(Deserialize)]
struct Config {
    indicators: Vec<IndicatorRef>,
    entry: String,
    exit: String,
    risk: Risk,
}

#[derive(Deserialize)]
struct IndicatorRef {
    id: String,
    kind: String,
    #[serde(default)]
    params: HashMap<String, f64>,
}

#[derive(Deserialize)]
struct Risk {
    position_size_pct: f64,
    stop_loss_pct: Option<f64>,
    take_profit_pct: Option<f64>,
}

#[derive(Deserialize)]
struct Bar {
    timestamp: String,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
}

/// How a strategy did.
#[derive(Serialize, JsonSchema)]
struct Report {
    strategy: String,
    symbol: String,
    timeframe: String,
    /// Bars tested.
    bars: usize,
    /// First and last bar tested.
    period: Option<(String, String)>,
    /// Return on the starting equity over the period, in percent.
    total_return_pct: f64,
    /// Return of buying at the first close and holding, for comparison.
    buy_and_hold_return_pct: f64,
    /// Largest fall of equity from a previous peak, in percent.
    max_drawdown_pct: f64,
    /// Annualised Sharpe ratio of per-bar returns (risk-free rate 0);
    /// null when equity never moved.
    sharpe: Option<f64>,
    /// Closed trades.
    trade_count: usize,
    /// Share of closed trades that made money, in percent.
    win_rate_pct: Option<f64>,
    /// Equity at the end, from 10,000.
    final_equity: f64,
    /// The last closed trades (at most 20).
    recent_trades: Vec<Trade>,
}

#[derive(Serialize, JsonSchema, Clone)]
struct Trade {
    entry_time: String,
    exit_time: String,
    entry_price: f64,
    exit_price: f64,
    return_pct: f64,
    /// `rule`, `stop-loss`, `take-profit` or `end-of-data`.
    exit_reason: String,
}

fn plugin() -> Plugin {
    Plugin::new("backtest", env!("CARGO_PKG_VERSION"))
        .description("Backtests saved strategies on stored market data.")
        .tool(
            Tool::new(
                "run_backtest",
                "Backtest a saved strategy on one symbol's stored bars and report return, \
                 maximum drawdown, Sharpe ratio and trades.\n\n\
                 Use it after saving a strategy with strategies' create_strategy: name the \
                 strategy, the symbol and the timeframe (and optionally a start and end date). \
                 The simulation is long-only, one position at a time: it buys at the close when \
                 the entry rule holds, sells at the close when the exit rule holds, and honours \
                 the stop loss and take profit intrabar. No fees or slippage are modelled. \
                 Long tests report progress and can be cancelled.",
            )
            .title("Run backtest")
            .read_only()
            .idempotent()
            .long_running()
            .effects(Effects::READ_FILES),
            |args: BacktestArgs| run(args).map(Structured),
        )
}

plugin_sdk::export_plugin!(plugin);

fn run(args: BacktestArgs) -> Result<Report, ToolError> {
    let strategy = load_strategy(&args.strategy)?;
    let bars = load_bars(&args)?;
    if bars.is_empty() {
        return Err(ToolError::new(format!(
            "no {} bars for {} in the period asked for",
            args.timeframe, args.symbol
        )));
    }
    let series = series(&strategy.config, &bars)?;
    let entry = Rule::parse(&strategy.config.entry, &series)
        .map_err(|e| ToolError::new(format!("the entry rule: {e}")))?;
    let exit = Rule::parse(&strategy.config.exit, &series)
        .map_err(|e| ToolError::new(format!("the exit rule: {e}")))?;
    let simulation = simulate(&bars, &series, &entry, &exit, &strategy.config.risk)?;
    Ok(report(args, &bars, simulation))
}

fn load_strategy(name: &str) -> Result<Saved, ToolError> {
    // Names reach the file system: checked here, not only by the host.
    if !(1..=64).contains(&name.len())
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ToolError::new("strategy names are 1-64 of a-z, 0-9 and _"));
    }
    let path = PathBuf::from(STRATEGIES).join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ToolError::new(format!(
            "cannot read strategy {name} ({e}); strategies://list names the saved ones"
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| ToolError::new(format!("strategy {name} is not a valid strategy: {e}")))
}

fn load_bars(args: &BacktestArgs) -> Result<Vec<Bar>, ToolError> {
    let symbol = &args.symbol;
    let valid = !symbol.is_empty()
        && symbol
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && !symbol.starts_with('.');
    if !valid {
        return Err(ToolError::new(format!("{symbol:?} is not a symbol")));
    }
    let path = PathBuf::from(MARKET)
        .join(symbol)
        .join(format!("{}.csv", args.timeframe));
    let mut reader = csv::Reader::from_path(&path).map_err(|e| {
        ToolError::new(format!(
            "no {} data for {symbol} ({e}); market://symbols lists what is stored",
            args.timeframe
        ))
    })?;
    let mut bars = Vec::new();
    for (i, bar) in reader.deserialize::<Bar>().enumerate() {
        if i % 10_000 == 0 && host::is_cancelled() {
            return Err(ToolError::new("cancelled"));
        }
        let bar =
            bar.map_err(|e| ToolError::new(format!("{} is not OHLCV CSV: {e}", path.display())))?;
        let day = &bar.timestamp[..bar.timestamp.len().min(10)];
        let after_start = args.start.as_deref().is_none_or(|s| day >= s);
        let before_end = args.end.as_deref().is_none_or(|e| day <= e);
        if after_start && before_end {
            bars.push(bar);
        }
    }
    Ok(bars)
}

/// The price fields and every indicator output, by the names rules use.
fn series(config: &Config, bars: &[Bar]) -> Result<Series, ToolError> {
    let field = |f: fn(&Bar) -> f64| bars.iter().map(|b| Some(f(b))).collect::<Vec<_>>();
    let mut series = Series::new();
    series.insert("open".into(), field(|b| b.open));
    series.insert("high".into(), field(|b| b.high));
    series.insert("low".into(), field(|b| b.low));
    series.insert("close".into(), field(|b| b.close));
    series.insert("volume".into(), field(|b| b.volume));
    let closes: Vec<f64> = bars.iter().map(|b| b.close).collect();
    for indicator in &config.indicators {
        let param = |name: &str, default: f64| {
            let value = indicator.params.get(name).copied().unwrap_or(default);
            if (1.0..=1000.0).contains(&value) {
                Ok(value as usize)
            } else {
                Err(ToolError::new(format!(
                    "indicator {}: {name} must be 1 to 1000, got {value}",
                    indicator.id
                )))
            }
        };
        let id = &indicator.id;
        let mut outputs = match indicator.kind.as_str() {
            "sma" => vec![(id.clone(), ta::sma(&closes, param("period", 20.0)?))],
            "ema" => vec![(id.clone(), ta::ema(&closes, param("period", 20.0)?))],
            "rsi" => vec![(id.clone(), ta::rsi(&closes, param("period", 14.0)?))],
            "macd" => {
                let (line, signal, histogram) = ta::macd(
                    &closes,
                    param("fast", 12.0)?,
                    param("slow", 26.0)?,
                    param("signal", 9.0)?,
                );
                vec![
                    (id.clone(), line.clone()),
                    (format!("{id}.macd"), line),
                    (format!("{id}.signal"), signal),
                    (format!("{id}.histogram"), histogram),
                ]
            }
            "bollinger" => {
                let width = indicator.params.get("std_dev").copied().unwrap_or(2.0);
                let (upper, middle, lower) = ta::bollinger(&closes, param("period", 20.0)?, width);
                vec![
                    (id.clone(), middle.clone()),
                    (format!("{id}.upper"), upper),
                    (format!("{id}.middle"), middle),
                    (format!("{id}.lower"), lower),
                ]
            }
            other => {
                return Err(ToolError::new(format!(
                    "indicator {id}: unknown kind {other}"
                )));
            }
        };
        for (name, values) in outputs.drain(..) {
            series.insert(name, values);
        }
    }
    Ok(series)
}

struct Simulation {
    equity: Vec<f64>,
    trades: Vec<Trade>,
}

struct Position {
    entry_index: usize,
    entry_price: f64,
    units: f64,
}

fn simulate(
    bars: &[Bar],
    series: &Series,
    entry: &Rule,
    exit: &Rule,
    risk: &Risk,
) -> Result<Simulation, ToolError> {
    let mut cash = STARTING_EQUITY;
    let mut position: Option<Position> = None;
    let mut equity = Vec::with_capacity(bars.len());
    let mut trades = Vec::new();
    let every = (bars.len() / REPORTS).max(1);
    let fraction = (risk.position_size_pct / 100.0).clamp(0.0, 1.0);

    for (i, bar) in bars.iter().enumerate() {
        if i % every == 0 {
            if host::is_cancelled() {
                return Err(ToolError::new("cancelled"));
            }
            host::progress(i as f64, Some(bars.len() as f64), Some("simulating"));
        }
        if let Some(open) = &position {
            let stop = risk
                .stop_loss_pct
                .map(|p| open.entry_price * (1.0 - p / 100.0));
            let target = risk
                .take_profit_pct
                .map(|p| open.entry_price * (1.0 + p / 100.0));
            let closing = match (stop, target) {
                (Some(stop), _) if bar.low <= stop => Some((stop.min(bar.open), "stop-loss")),
                (_, Some(target)) if bar.high >= target => {
                    Some((target.max(bar.open), "take-profit"))
                }
                _ if exit.holds(series, i) => Some((bar.close, "rule")),
                _ => None,
            };
            if let Some((price, reason)) = closing {
                cash += open.units * price;
                trades.push(trade(bars, open, i, price, reason));
                position = None;
            }
        } else if entry.holds(series, i) {
            let units = cash * fraction / bar.close;
            cash -= units * bar.close;
            position = Some(Position {
                entry_index: i,
                entry_price: bar.close,
                units,
            });
        }
        let held = position.as_ref().map_or(0.0, |p| p.units * bar.close);
        equity.push(cash + held);
    }
    if let Some(open) = position {
        let last = bars.len() - 1;
        trades.push(trade(bars, &open, last, bars[last].close, "end-of-data"));
    }
    host::progress(bars.len() as f64, Some(bars.len() as f64), Some("done"));
    Ok(Simulation { equity, trades })
}

fn trade(bars: &[Bar], open: &Position, exit: usize, price: f64, reason: &str) -> Trade {
    Trade {
        entry_time: bars[open.entry_index].timestamp.clone(),
        exit_time: bars[exit].timestamp.clone(),
        entry_price: open.entry_price,
        exit_price: price,
        return_pct: (price / open.entry_price - 1.0) * 100.0,
        exit_reason: reason.to_owned(),
    }
}

fn report(args: BacktestArgs, bars: &[Bar], simulation: Simulation) -> Report {
    let equity = &simulation.equity;
    let last = *equity.last().unwrap_or(&STARTING_EQUITY);
    let mut peak = STARTING_EQUITY;
    let mut max_drawdown = 0.0_f64;
    for &value in equity {
        peak = peak.max(value);
        max_drawdown = max_drawdown.max((peak - value) / peak);
    }
    let returns: Vec<f64> = equity.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    let wins = simulation
        .trades
        .iter()
        .filter(|t| t.return_pct > 0.0)
        .count();
    let trade_count = simulation.trades.len();
    let first = &bars[0];
    let final_bar = &bars[bars.len() - 1];
    let recent = simulation.trades[trade_count.saturating_sub(20)..].to_vec();
    Report {
        period: Some((first.timestamp.clone(), final_bar.timestamp.clone())),
        bars: bars.len(),
        total_return_pct: round((last / STARTING_EQUITY - 1.0) * 100.0),
        buy_and_hold_return_pct: round((final_bar.close / first.close - 1.0) * 100.0),
        max_drawdown_pct: round(max_drawdown * 100.0),
        sharpe: sharpe(&returns, &args.timeframe).map(round),
        trade_count,
        win_rate_pct: (trade_count > 0).then(|| round(wins as f64 / trade_count as f64 * 100.0)),
        final_equity: round(last),
        recent_trades: recent,
        strategy: args.strategy,
        symbol: args.symbol,
        timeframe: args.timeframe,
    }
}

/// Mean over standard deviation of per-bar returns, annualised assuming
/// 252 trading days of 6.5 hours.
fn sharpe(returns: &[f64], timeframe: &str) -> Option<f64> {
    let n = returns.len() as f64;
    if returns.len() < 2 {
        return None;
    }
    let mean = returns.iter().sum::<f64>() / n;
    let variance = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let bars_per_day: f64 = match timeframe {
        "1m" => 390.0,
        "5m" => 78.0,
        "15m" => 26.0,
        "30m" => 13.0,
        "1h" => 6.5,
        "4h" => 1.625,
        _ => 1.0,
    };
    (variance > 0.0).then(|| mean / variance.sqrt() * (252.0 * bars_per_day).sqrt())
}

fn round(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}
