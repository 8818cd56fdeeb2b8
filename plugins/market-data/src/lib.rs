//! Market data for strategy research: quotes and OHLCV bars read from CSV
//! files in a folder the policy grants read-only, mounted at `/data/market`
//! as `<SYMBOL>/<timeframe>.csv`.

use plugin_sdk::prelude::*;
use plugin_sdk::{Completion, CompletionTarget};
use std::path::{Path, PathBuf};

const ROOT: &str = "/data/market";
const TIMEFRAMES: [&str; 7] = ["1m", "5m", "15m", "30m", "1h", "4h", "1d"];

/// Arguments of `get_quote`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct QuoteArgs {
    /// Ticker symbol, upper case, e.g. `AAPL`, `BTC-USD`, `EURUSD`.
    #[schemars(regex(pattern = r"^[A-Z0-9][A-Z0-9._-]{0,9}$"))]
    symbol: String,
}

/// Arguments of `get_bars`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct BarsArgs {
    /// Ticker symbol, upper case, e.g. `AAPL`.
    #[schemars(regex(pattern = r"^[A-Z0-9][A-Z0-9._-]{0,9}$"))]
    symbol: String,
    /// Bar size: one of 1m, 5m, 15m, 30m, 1h, 4h, 1d.
    timeframe: Timeframe,
    /// First bar to include: `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ`.
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}Z)?$"))]
    start: Option<String>,
    /// Last bar to include (a date includes that whole day).
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}Z)?$"))]
    end: Option<String>,
    /// Return at most this many bars, the most recent ones (default 500).
    #[schemars(range(min = 1, max = 5000))]
    limit: Option<usize>,
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
enum Timeframe {
    #[serde(rename = "1m")]
    M1,
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "15m")]
    M15,
    #[serde(rename = "30m")]
    M30,
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "4h")]
    H4,
    #[serde(rename = "1d")]
    D1,
}

impl Timeframe {
    fn as_str(self) -> &'static str {
        TIMEFRAMES[self as usize]
    }
}

/// One OHLCV bar.
#[derive(Serialize, Deserialize, JsonSchema, Clone)]
struct Bar {
    /// Bar open time, RFC 3339 UTC.
    timestamp: String,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
}

/// The latest quote for a symbol.
#[derive(Serialize, JsonSchema)]
struct Quote {
    symbol: String,
    /// Last traded price (close of the latest bar).
    price: f64,
    /// Change since the previous bar's close.
    change: f64,
    /// Change in percent.
    change_percent: f64,
    /// Time of the latest bar.
    as_of: String,
    /// The timeframe the quote was taken from.
    timeframe: String,
}

/// Bars for one symbol and timeframe.
#[derive(Serialize, JsonSchema)]
struct Bars {
    symbol: String,
    timeframe: String,
    /// Number of bars returned.
    count: usize,
    /// First and last timestamps returned, if any.
    range: Option<(String, String)>,
    bars: Vec<Bar>,
}

/// A symbol and the timeframes stored for it.
#[derive(Serialize)]
struct SymbolInfo {
    symbol: String,
    timeframes: Vec<&'static str>,
}

fn plugin() -> Plugin {
    Plugin::new("market-data", env!("CARGO_PKG_VERSION"))
        .description("Read-only market data: quotes and OHLCV bars for research and backtests.")
        .tool(
            Tool::new(
                "get_quote",
                "Get the latest price of a symbol, with its change since the previous bar.\n\n\
                 Use it for a quick look at where a market stands now. For history (charts, \
                 indicators, backtests) use get_bars instead. Symbols are upper case (AAPL, \
                 SPY, BTC-USD, EURUSD); read the market://symbols resource for the full list.",
            )
            .title("Get quote")
            .read_only()
            .idempotent()
            .effects(Effects::READ_FILES),
            |args: QuoteArgs| get_quote(&args.symbol).map(Structured),
        )
        .tool(
            Tool::new(
                "get_bars",
                "Load OHLCV bars (open, high, low, close, volume) for a symbol and timeframe.\n\n\
                 Use it to fetch the history that indicators and backtests run on. Give a \
                 start and end (YYYY-MM-DD) to select a period; without them the most recent \
                 bars are returned, at most `limit` (default 500). The result says how many \
                 bars came back and the actual range covered, which can be shorter than \
                 asked for when data is missing.",
            )
            .title("Get bars")
            .read_only()
            .idempotent()
            .effects(Effects::READ_FILES),
            |args: BarsArgs| get_bars(args).map(Structured),
        )
        .resource(
            Resource::new("market://symbols", "symbols")
                .description("The symbols with stored data, and their timeframes.")
                .mime_type("application/json"),
            |uri| {
                let symbols = list_symbols().map_err(|e| Error::Failed(e.0))?;
                Ok(vec![ResourceContents::json(uri, &symbols)?])
            },
        )
        .resource_template(
            ResourceTemplate::new(BARS_TEMPLATE, "bars")
                .description(
                    "Every stored OHLCV bar of one symbol and timeframe, as CSV \
                     (timestamp,open,high,low,close,volume), e.g. market://bars/SPY/1d.",
                )
                .mime_type("text/csv"),
            |uri, vars| read_series(uri, &vars["symbol"], &vars["timeframe"]),
        )
        .completer(complete)
}

const BARS_TEMPLATE: &str = "market://bars/{symbol}/{timeframe}";

/// The stored CSV of one series.
fn read_series(uri: &str, symbol: &str, timeframe: &str) -> Result<Vec<ResourceContents>, Error> {
    if !TIMEFRAMES.contains(&timeframe) {
        return Err(Error::NotFound(format!(
            "no timeframe {timeframe}; timeframes are {}",
            TIMEFRAMES.join(", ")
        )));
    }
    if !valid_symbol(symbol) || !symbol_dir(symbol).is_dir() {
        return Err(Error::NotFound(unknown_symbol(symbol).0));
    }
    let path = series_path(symbol, timeframe);
    let csv = std::fs::read_to_string(&path).map_err(|_| {
        Error::NotFound(format!(
            "no {timeframe} bars for {symbol}; stored timeframes: {}",
            stored_timeframes(symbol).join(", ")
        ))
    })?;
    Ok(vec![ResourceContents::text(uri, "text/csv", csv)])
}

/// Suggests symbols and timeframes for the bars template: the symbols
/// stored, and for a symbol already chosen, the timeframes stored for it.
fn complete(
    target: &CompletionTarget,
    argument: &str,
    value: &str,
    context: &Vars,
) -> Result<Completion, Error> {
    let candidates: Vec<String> = match (target, argument) {
        (CompletionTarget::ResourceTemplate(t), "symbol") if t == BARS_TEMPLATE => list_symbols()
            .map_err(|e| Error::Failed(e.0))?
            .into_iter()
            .map(|info| info.symbol)
            .collect(),
        (CompletionTarget::ResourceTemplate(t), "timeframe") if t == BARS_TEMPLATE => {
            match context.get("symbol").filter(|s| valid_symbol(s)) {
                Some(symbol) => stored_timeframes(symbol),
                None => TIMEFRAMES.to_vec(),
            }
            .into_iter()
            .map(str::to_owned)
            .collect()
        }
        _ => Vec::new(),
    };
    Ok(Completion::matching(candidates, value))
}

/// Symbols reach the file system: one plain path segment only.
fn valid_symbol(symbol: &str) -> bool {
    (1..=10).contains(&symbol.len())
        && symbol.as_bytes()[0].is_ascii_alphanumeric()
        && symbol
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

plugin_sdk::export_plugin!(plugin);

fn get_quote(symbol: &str) -> Result<Quote, ToolError> {
    let timeframe = TIMEFRAMES
        .into_iter()
        .find(|tf| series_path(symbol, tf).is_file())
        .ok_or_else(|| unknown_symbol(symbol))?;
    let bars = read_bars(symbol, timeframe)?;
    let (last, previous) = match bars.as_slice() {
        [.., previous, last] => (last, previous.close),
        [last] => (last, last.open),
        [] => return Err(ToolError::new(format!("no bars stored for {symbol}"))),
    };
    let change = last.close - previous;
    Ok(Quote {
        symbol: symbol.to_owned(),
        price: last.close,
        change,
        change_percent: change / previous * 100.0,
        as_of: last.timestamp.clone(),
        timeframe: timeframe.to_owned(),
    })
}

fn get_bars(args: BarsArgs) -> Result<Bars, ToolError> {
    let timeframe = args.timeframe.as_str();
    if !symbol_dir(&args.symbol).is_dir() {
        return Err(unknown_symbol(&args.symbol));
    }
    if !series_path(&args.symbol, timeframe).is_file() {
        let stored = stored_timeframes(&args.symbol);
        return Err(ToolError::new(format!(
            "no {timeframe} bars for {}; stored timeframes: {}",
            args.symbol,
            stored.join(", ")
        )));
    }
    let mut bars: Vec<Bar> = read_bars(&args.symbol, timeframe)?
        .into_iter()
        .filter(|bar| {
            args.start
                .as_deref()
                .is_none_or(|start| bar.timestamp.as_str() >= start)
        })
        .filter(|bar| {
            args.end
                .as_deref()
                .is_none_or(|end| at_or_before(&bar.timestamp, end))
        })
        .collect();
    let limit = args.limit.unwrap_or(500);
    if bars.len() > limit {
        bars.drain(..bars.len() - limit);
    }
    Ok(Bars {
        symbol: args.symbol,
        timeframe: timeframe.to_owned(),
        count: bars.len(),
        range: bars
            .first()
            .zip(bars.last())
            .map(|(first, last)| (first.timestamp.clone(), last.timestamp.clone())),
        bars,
    })
}

/// Whether `timestamp` is at or before `end`; a bare date includes its whole day.
fn at_or_before(timestamp: &str, end: &str) -> bool {
    if end.len() == 10 {
        &timestamp[..timestamp.len().min(10)] <= end
    } else {
        timestamp <= end
    }
}

fn read_bars(symbol: &str, timeframe: &str) -> Result<Vec<Bar>, ToolError> {
    let path = series_path(symbol, timeframe);
    let mut reader = csv::Reader::from_path(&path)
        .map_err(|e| ToolError::new(format!("cannot read {}: {e}", path.display())))?;
    reader
        .deserialize()
        .collect::<Result<Vec<Bar>, _>>()
        .map_err(|e| ToolError::new(format!("{} is not valid OHLCV CSV: {e}", path.display())))
}

fn list_symbols() -> Result<Vec<SymbolInfo>, ToolError> {
    let entries = std::fs::read_dir(ROOT).map_err(|e| {
        ToolError::new(format!(
            "no market data folder at {ROOT} ({e}): grant one read-only in this plugin's policy"
        ))
    })?;
    let mut symbols: Vec<SymbolInfo> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .map(|symbol| SymbolInfo {
            timeframes: stored_timeframes(&symbol),
            symbol,
        })
        .filter(|info| !info.timeframes.is_empty())
        .collect();
    symbols.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    Ok(symbols)
}

fn unknown_symbol(symbol: &str) -> ToolError {
    match list_symbols() {
        Ok(known) => {
            let names: Vec<&str> = known.iter().map(|s| s.symbol.as_str()).collect();
            ToolError::new(format!(
                "unknown symbol {symbol}; known symbols: {}",
                names.join(", ")
            ))
        }
        Err(e) => e,
    }
}

fn stored_timeframes(symbol: &str) -> Vec<&'static str> {
    TIMEFRAMES
        .into_iter()
        .filter(|tf| series_path(symbol, tf).is_file())
        .collect()
}

fn symbol_dir(symbol: &str) -> PathBuf {
    Path::new(ROOT).join(symbol)
}

fn series_path(symbol: &str, timeframe: &str) -> PathBuf {
    symbol_dir(symbol).join(format!("{timeframe}.csv"))
}
