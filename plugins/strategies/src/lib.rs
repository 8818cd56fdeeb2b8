//! Strategy definitions for research, stored as JSON files in a folder the
//! policy grants read-write, mounted at `/data/strategies`.

use plugin_sdk::prelude::*;
use std::path::PathBuf;

const ROOT: &str = "/data/strategies";
const NAME_PATTERN: &str = r"^[a-z0-9_]{1,64}$";

/// Arguments of `create_strategy`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateArgs {
    /// Strategy name: 1-64 characters of lower-case letters, digits and `_`.
    #[schemars(regex(pattern = r"^[a-z0-9_]{1,64}$"))]
    name: String,
    /// The strategy itself: symbols, timeframe, indicators, entry and exit
    /// rules. (Not called `config`: LangChain reserves that argument name,
    /// so no LangChain agent could call a tool taking it.)
    definition: StrategyConfig,
    /// Replace an existing strategy of the same name (default false).
    #[serde(default)]
    overwrite: bool,
}

/// Arguments of `get_strategy`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GetArgs {
    /// Strategy name.
    #[schemars(regex(pattern = r"^[a-z0-9_]{1,64}$"))]
    name: String,
}

/// A rule-based strategy: which markets, which indicators, when to enter
/// and exit, and how much to risk.
#[derive(Serialize, Deserialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields)]
struct StrategyConfig {
    /// What the strategy tries to exploit (the hypothesis).
    #[schemars(length(max = 2000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// Symbols it trades, e.g. ["AAPL", "SPY"].
    #[schemars(length(min = 1, max = 50))]
    symbols: Vec<Symbol>,
    /// Bar size it runs on: 1m, 5m, 15m, 30m, 1h, 4h or 1d.
    #[schemars(regex(pattern = r"^(1m|5m|15m|30m|1h|4h|1d)$"))]
    timeframe: String,
    /// Indicators it computes, referenced by `id` in the rules.
    #[schemars(length(max = 20))]
    indicators: Vec<IndicatorRef>,
    /// When to open a position, e.g. "sma_fast crosses_above sma_slow".
    #[schemars(length(min = 1, max = 500))]
    entry: String,
    /// When to close it, e.g. "sma_fast crosses_below sma_slow or rsi > 75".
    #[schemars(length(min = 1, max = 500))]
    exit: String,
    /// Position sizing and protective exits.
    risk: Risk,
}

/// A ticker symbol, upper case.
#[derive(Serialize, Deserialize, JsonSchema, Clone)]
struct Symbol(#[schemars(regex(pattern = r"^[A-Z0-9][A-Z0-9._-]{0,9}$"))] String);

/// An indicator a strategy uses.
#[derive(Serialize, Deserialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields)]
struct IndicatorRef {
    /// Name the rules use for it, e.g. `sma_fast`.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]{0,31}$"))]
    id: String,
    /// sma, ema, rsi, macd or bollinger.
    #[schemars(regex(pattern = r"^(sma|ema|rsi|macd|bollinger)$"))]
    kind: String,
    /// Its parameters, e.g. {"period": 20}.
    #[serde(default)]
    params: serde_json::Map<String, serde_json::Value>,
}

/// Risk settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields)]
struct Risk {
    /// Share of equity per position, in percent (0 < x <= 100).
    #[schemars(range(min = 0.01, max = 100.0))]
    position_size_pct: f64,
    /// Stop loss below entry, in percent.
    #[schemars(range(min = 0.01, max = 100.0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop_loss_pct: Option<f64>,
    /// Take profit above entry, in percent.
    #[schemars(range(min = 0.01, max = 1000.0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    take_profit_pct: Option<f64>,
}

/// A stored strategy.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Strategy {
    name: String,
    config: StrategyConfig,
}

/// The stored strategies' names.
#[derive(Serialize, JsonSchema)]
struct StrategyList {
    strategies: Vec<String>,
}

fn plugin() -> Plugin {
    Plugin::new("strategies", env!("CARGO_PKG_VERSION"))
        .description("Trading strategy definitions, stored in the research workspace.")
        .tool(
            Tool::new(
                "create_strategy",
                "Save a new rule-based trading strategy under a name.\n\n\
                 Use it once a hypothesis is clear enough to test: name the symbols and \
                 timeframe, the indicators (each with an id the rules refer to), the entry and \
                 exit rules, and the risk settings. Names are lower-case letters, digits and \
                 underscores (e.g. `sma_cross_spy_1d`). An existing strategy is not replaced \
                 unless overwrite is true, so earlier experiments are never lost by accident. \
                 Every rule must only mention indicator ids that the strategy defines.",
            )
            .title("Create strategy")
            .destructive(false)
            .effects(Effects::WRITE_FILES | Effects::READ_FILES),
            |args: CreateArgs| create(args).map(Structured),
        )
        .tool(
            Tool::new(
                "list_strategies",
                "List the names of all saved strategies, alphabetically. Use get_strategy to \
                 read one.",
            )
            .title("List strategies")
            .read_only()
            .idempotent()
            .effects(Effects::READ_FILES),
            |_: NoArgs| list().map(|strategies| Structured(StrategyList { strategies })),
        )
        .tool(
            Tool::new(
                "get_strategy",
                "Read a saved strategy's full definition by name.",
            )
            .title("Get strategy")
            .read_only()
            .idempotent()
            .effects(Effects::READ_FILES),
            |args: GetArgs| read(&args.name).map(Structured),
        )
        .resource(
            Resource::new("strategies://list", "strategies")
                .description("The names of all saved strategies.")
                .mime_type("application/json"),
            |uri| {
                let names = list().map_err(|e| Error::Failed(e.0))?;
                Ok(vec![ResourceContents::json(uri, &names)?])
            },
        )
}

plugin_sdk::export_plugin!(plugin);

fn create(args: CreateArgs) -> Result<Strategy, ToolError> {
    check_name(&args.name)?;
    check_rules(&args.definition)?;
    let path = path_of(&args.name);
    if path.exists() && !args.overwrite {
        return Err(ToolError::new(format!(
            "a strategy named {} exists already; pass overwrite: true to replace it",
            args.name
        )));
    }
    let strategy = Strategy {
        name: args.name,
        config: args.definition,
    };
    let json = serde_json::to_string_pretty(&strategy)?;
    // Write beside the target, then rename: a reader never sees half a file.
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, json).map_err(|e| storage_error("write", e))?;
    std::fs::rename(&temporary, &path).map_err(|e| storage_error("write", e))?;
    Ok(strategy)
}

fn list() -> Result<Vec<String>, ToolError> {
    let entries = std::fs::read_dir(ROOT).map_err(|e| storage_error("list", e))?;
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|file| file.strip_suffix(".json").map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

fn read(name: &str) -> Result<Strategy, ToolError> {
    check_name(name)?;
    match std::fs::read_to_string(path_of(name)) {
        Ok(json) => Ok(serde_json::from_str(&json)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let known = list().unwrap_or_default();
            Err(ToolError::new(format!(
                "no strategy named {name}; saved strategies: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )))
        }
        Err(e) => Err(storage_error("read", e)),
    }
}

/// Names reach the file system, so they are checked here too, not only by
/// the host's schema validation.
fn check_name(name: &str) -> Result<(), ToolError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ToolError::new(format!(
            "strategy names must match {NAME_PATTERN}"
        )))
    }
}

/// Rules may only mention the indicators the strategy defines.
fn check_rules(config: &StrategyConfig) -> Result<(), ToolError> {
    let ids: Vec<&str> = config.indicators.iter().map(|i| i.id.as_str()).collect();
    for (i, indicator) in ids.iter().enumerate() {
        if ids[..i].contains(indicator) {
            return Err(ToolError::new(format!(
                "indicator id {indicator} is defined twice"
            )));
        }
    }
    for (which, rule) in [("entry", &config.entry), ("exit", &config.exit)] {
        let unknown = rule
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.contains('_') || ids.contains(word))
            .find(|word| !ids.contains(word) && !OPERATORS.contains(word));
        if let Some(word) = unknown {
            return Err(ToolError::new(format!(
                "the {which} rule mentions {word}, which is not an indicator of this strategy \
                 (defined: {})",
                ids.join(", ")
            )));
        }
    }
    Ok(())
}

/// Words with an underscore that rules may use without defining them.
const OPERATORS: [&str; 2] = ["crosses_above", "crosses_below"];

fn path_of(name: &str) -> PathBuf {
    PathBuf::from(ROOT).join(format!("{name}.json"))
}

fn storage_error(action: &str, e: std::io::Error) -> ToolError {
    ToolError::new(format!(
        "cannot {action} strategies in {ROOT} ({e}): the plugin's policy must grant that folder \
         read-write"
    ))
}
