//! Technical indicators computed from a series of closing prices. Pure
//! computation: this plugin needs no grants at all.

use plugin_sdk::prelude::*;
use std::collections::BTreeMap;

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

fn sma(closes: &[f64], period: usize) -> Vec<Option<f64>> {
    (0..closes.len())
        .map(|i| {
            (i + 1 >= period)
                .then(|| closes[i + 1 - period..=i].iter().sum::<f64>() / period as f64)
        })
        .collect()
}

/// EMA seeded with the SMA of the first `period` values; `None` before that.
fn ema(values: &[f64], period: usize) -> Vec<Option<f64>> {
    let alpha = 2.0 / (period as f64 + 1.0);
    let mut out = vec![None; values.len()];
    if values.len() < period {
        return out;
    }
    let mut current = values[..period].iter().sum::<f64>() / period as f64;
    out[period - 1] = Some(current);
    for i in period..values.len() {
        current += alpha * (values[i] - current);
        out[i] = Some(current);
    }
    out
}

/// Wilder's RSI.
fn rsi(closes: &[f64], period: usize) -> Vec<Option<f64>> {
    let mut out = vec![None; closes.len()];
    if closes.len() <= period {
        return out;
    }
    let change = |i: usize| closes[i] - closes[i - 1];
    let (mut gain, mut loss) = (1..=period).fold((0.0, 0.0), |(g, l), i| {
        let c = change(i);
        (g + c.max(0.0), l + (-c).max(0.0))
    });
    gain /= period as f64;
    loss /= period as f64;
    let value = |gain: f64, loss: f64| {
        if loss == 0.0 {
            100.0
        } else {
            100.0 - 100.0 / (1.0 + gain / loss)
        }
    };
    out[period] = Some(value(gain, loss));
    for (i, slot) in out.iter_mut().enumerate().skip(period + 1) {
        let c = change(i);
        gain = (gain * (period as f64 - 1.0) + c.max(0.0)) / period as f64;
        loss = (loss * (period as f64 - 1.0) + (-c).max(0.0)) / period as f64;
        *slot = Some(value(gain, loss));
    }
    out
}

type Three = (Vec<Option<f64>>, Vec<Option<f64>>, Vec<Option<f64>>);

fn macd(closes: &[f64], fast: usize, slow: usize, signal: usize) -> Three {
    let line: Vec<Option<f64>> = ema(closes, fast)
        .into_iter()
        .zip(ema(closes, slow))
        .map(|(f, s)| Some(f? - s?))
        .collect();
    // The signal line is an EMA over the defined part of the MACD line.
    let start = line.iter().position(Option::is_some).unwrap_or(line.len());
    let defined: Vec<f64> = line[start..].iter().flatten().copied().collect();
    let mut signal_line = vec![None; start];
    signal_line.extend(ema(&defined, signal));
    let histogram = line
        .iter()
        .zip(&signal_line)
        .map(|(m, s)| Some((*m)? - (*s)?))
        .collect();
    (line, signal_line, histogram)
}

fn bollinger(closes: &[f64], period: usize, width: f64) -> Three {
    let middle = sma(closes, period);
    let deviation: Vec<Option<f64>> = (0..closes.len())
        .map(|i| {
            let mean = middle[i]?;
            let window = &closes[i + 1 - period..=i];
            Some((window.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / period as f64).sqrt())
        })
        .collect();
    let band = |sign: f64| {
        middle
            .iter()
            .zip(&deviation)
            .map(|(m, d)| Some((*m)? + sign * width * (*d)?))
            .collect()
    };
    (band(1.0), middle.clone(), band(-1.0))
}
