//! Technical indicators computed from a series of closing prices. Pure
//! computation: this plugin needs no grants at all.

use plugin_sdk::prelude::*;
use plugin_sdk::{Completion, CompletionTarget};
use std::collections::BTreeMap;
use ta::{bollinger, ema, macd, rsi, sma};

/// Arguments of `compute_indicator`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ComputeArgs {
    /// Which indicator to compute.
    indicator: Indicator,
    /// Closing prices, oldest first.
    #[schemars(length(min = 1, max = 100000))]
    closes: Vec<f64>,
    /// Parameters; each indicator uses its own (see the indicators://list
    /// resource), and missing ones take their defaults.
    #[serde(default)]
    params: Params,
}

#[derive(Deserialize, JsonSchema, Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Indicator {
    Sma,
    Ema,
    Rsi,
    Macd,
    Bollinger,
}

/// Indicator parameters.
#[derive(Deserialize, JsonSchema, Serialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Look-back period (SMA, EMA, RSI, Bollinger).
    #[schemars(range(min = 1, max = 1000))]
    period: Option<usize>,
    /// MACD fast EMA period (default 12).
    #[schemars(range(min = 1, max = 1000))]
    fast: Option<usize>,
    /// MACD slow EMA period (default 26).
    #[schemars(range(min = 1, max = 1000))]
    slow: Option<usize>,
    /// MACD signal EMA period (default 9).
    #[schemars(range(min = 1, max = 1000))]
    signal: Option<usize>,
    /// Bollinger band width in standard deviations (default 2).
    #[schemars(range(min = 0.1, max = 10.0))]
    std_dev: Option<f64>,
}

/// An indicator's output: one or more series aligned with the input closes
/// (`null` where the indicator has not warmed up yet).
#[derive(Serialize, JsonSchema)]
struct Output {
    indicator: Indicator,
    /// The parameters used, defaults filled in.
    params: BTreeMap<String, f64>,
    /// Output series by name, each as long as `closes`.
    series: BTreeMap<String, Vec<Option<f64>>>,
}

struct Spec {
    name: &'static str,
    summary: &'static str,
    params: &'static [(&'static str, f64, &'static str)],
    outputs: &'static [&'static str],
}

const SPECS: [Spec; 5] = [
    Spec {
        name: "sma",
        summary: "Simple moving average: the mean of the last `period` closes.",
        params: &[("period", 20.0, "look-back period")],
        outputs: &["sma"],
    },
    Spec {
        name: "ema",
        summary: "Exponential moving average, smoothing 2/(period+1), seeded with the SMA.",
        params: &[("period", 20.0, "look-back period")],
        outputs: &["ema"],
    },
    Spec {
        name: "rsi",
        summary: "Relative strength index (Wilder), 0-100; above 70 overbought, below 30 oversold.",
        params: &[("period", 14.0, "look-back period")],
        outputs: &["rsi"],
    },
    Spec {
        name: "macd",
        summary: "Moving average convergence/divergence: fast EMA minus slow EMA, its signal EMA and the histogram.",
        params: &[
            ("fast", 12.0, "fast EMA period"),
            ("slow", 26.0, "slow EMA period"),
            ("signal", 9.0, "signal EMA period"),
        ],
        outputs: &["macd", "signal", "histogram"],
    },
    Spec {
        name: "bollinger",
        summary: "Bollinger bands: SMA of `period` closes, plus and minus `std_dev` standard deviations.",
        params: &[
            ("period", 20.0, "look-back period"),
            ("std_dev", 2.0, "band width in standard deviations"),
        ],
        outputs: &["upper", "middle", "lower"],
    },
];

fn plugin() -> Plugin {
    Plugin::new("indicators", env!("CARGO_PKG_VERSION"))
        .description("Technical indicators for strategy research, computed in a sandbox with no grants.")
        .tool(
            Tool::new(
                "compute_indicator",
                "Compute a technical indicator (sma, ema, rsi, macd, bollinger) over closing prices.\n\n\
                 Use it after loading bars with market-data's get_bars: pass the closes, oldest \
                 first. Each output series is as long as the input, with null where the indicator \
                 has not warmed up yet (e.g. the first period-1 values of an SMA). Parameters not \
                 given take their defaults; the indicators://list resource lists every indicator, \
                 its parameters and defaults. Typical uses: trend filters (SMA/EMA crossovers), \
                 momentum (RSI, MACD histogram), volatility bands (Bollinger).",
            )
            .title("Compute indicator")
            .read_only()
            .idempotent(),
            |args: ComputeArgs| compute(&args).map(Structured),
        )
        .resource(
            Resource::new("indicators://list", "indicators")
                .description("Every indicator with its parameters, defaults and output series.")
                .mime_type("application/json"),
            |uri| {
                let list: Vec<serde_json::Value> = SPECS
                    .iter()
                    .map(|spec| {
                        serde_json::json!({
                            "name": spec.name,
                            "summary": spec.summary,
                            "params": spec.params.iter().map(|(name, default, about)| {
                                serde_json::json!({"name": name, "default": default, "description": about})
                            }).collect::<Vec<_>>(),
                            "outputs": spec.outputs,
                        })
                    })
                    .collect();
                Ok(vec![ResourceContents::json(uri, &list)?])
            },
        )
        .prompt(
            Prompt::new(
                "research_session",
                "Start a strategy research session: hypothesis, data, indicators, backtest, \
                 insights.",
            )
            .title("Research session")
            .argument(
                "focus",
                "What to research, e.g. \"mean reversion on SPY daily\"",
                true,
            ),
            |args| {
                Ok(PromptResult {
                    description: Some(format!("Research session: {}", args["focus"])),
                    messages: vec![PromptMessage::user(research_session(&args["focus"]))],
                })
            },
        )
        .prompt(
            Prompt::new(
                "optimise_strategy",
                "Improve a saved strategy one change at a time, checked out of sample.",
            )
            .title("Optimise a strategy")
            .argument("strategy", "The saved strategy to improve", true),
            |args| {
                Ok(PromptResult {
                    description: Some(format!("Optimising {}", args["strategy"])),
                    messages: vec![PromptMessage::user(optimise(&args["strategy"]))],
                })
            },
        )
        .completer(|target, argument, value, _| {
            let candidates: &[&str] = match (target, argument) {
                (CompletionTarget::Prompt(p), "focus") if p == "research_session" => &FOCUSES,
                _ => &[],
            };
            Ok(Completion::matching(candidates, value))
        })
}

/// Research directions offered when completing `focus`.
const FOCUSES: [&str; 6] = [
    "mean reversion",
    "momentum",
    "trend following",
    "volatility breakout",
    "overbought and oversold (rsi)",
    "moving average crossovers",
];

fn research_session(focus: &str) -> String {
    format!(
        "Let's run a strategy research session on: {focus}.\n\n\
         Work through these steps, saying what you find at each:\n\
         1. Hypothesis: state one testable idea about {focus} — what market behaviour it \
         exploits, and what would prove it wrong.\n\
         2. Data: read market://symbols, then load bars with market-data__get_bars (or read \
         market://bars/{{symbol}}/{{timeframe}}) for the symbols and timeframe that fit. Note the \
         bar count and the range actually covered.\n\
         3. Indicators: read indicators://list and compute the ones the hypothesis needs with \
         indicators__compute_indicator. Check they say what you expect on a few bars.\n\
         4. Strategy: save it with strategies__create_strategy — indicators with ids, entry and \
         exit rules over them (e.g. `sma_fast crosses_above sma_slow`), position size and a stop \
         loss.\n\
         5. Backtest: run backtest__run_backtest on an in-sample period first, then on a later \
         period it has not seen. Compare with buy-and-hold.\n\
         6. Insights: record what worked, what failed and why, and the next hypothesis. A \
         failed idea, clearly explained, is a result.\n\n\
         This is research only: nothing here places orders."
    )
}

fn optimise(strategy: &str) -> String {
    format!(
        "Let's improve the saved strategy {strategy}.\n\n\
         1. Baseline: read it (strategies__get_strategy) and backtest it unchanged \
         (backtest__run_backtest); write down return, maximum drawdown, Sharpe and trade count.\n\
         2. Change one thing at a time — one indicator period, one rule, or the stop loss — and \
         save each variant under its own name.\n\
         3. Test every variant in a trending period and in a ranging one.\n\
         4. Keep a change only if it helps out of sample (a period not used to choose it) and \
         does not just add trades.\n\
         5. Summarise what moved the metrics and what did not."
    )
}

plugin_sdk::export_plugin!(plugin);

fn compute(args: &ComputeArgs) -> Result<Output, ToolError> {
    let p = args.params;
    let closes = &args.closes;
    if let Some(bad) = closes.iter().find(|c| !c.is_finite()) {
        return Err(ToolError::new(format!(
            "closes must be finite numbers, got {bad}"
        )));
    }
    let mut params = BTreeMap::new();
    let mut param = |name: &str, value: Option<usize>, default: usize| {
        let value = value.unwrap_or(default);
        params.insert(name.to_owned(), value as f64);
        value
    };
    let series: Vec<(&str, Vec<Option<f64>>)> = match args.indicator {
        Indicator::Sma => vec![("sma", sma(closes, param("period", p.period, 20)))],
        Indicator::Ema => vec![("ema", ema(closes, param("period", p.period, 20)))],
        Indicator::Rsi => vec![("rsi", rsi(closes, param("period", p.period, 14)))],
        Indicator::Macd => {
            let fast = param("fast", p.fast, 12);
            let slow = param("slow", p.slow, 26);
            let signal = param("signal", p.signal, 9);
            if fast >= slow {
                return Err(ToolError::new(format!(
                    "macd needs fast < slow, got fast={fast} slow={slow}"
                )));
            }
            let (line, signal, histogram) = macd(closes, fast, slow, signal);
            vec![("macd", line), ("signal", signal), ("histogram", histogram)]
        }
        Indicator::Bollinger => {
            let period = param("period", p.period, 20);
            let width = p.std_dev.unwrap_or(2.0);
            params.insert("std_dev".to_owned(), width);
            let (upper, middle, lower) = bollinger(closes, period, width);
            vec![("upper", upper), ("middle", middle), ("lower", lower)]
        }
    };
    Ok(Output {
        indicator: args.indicator,
        params,
        series: series
            .into_iter()
            .map(|(name, s)| (name.to_owned(), s))
            .collect(),
    })
}
