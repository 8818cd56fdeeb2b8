//! Per-user context, as an agent gateway reads it before each turn: the
//! user's profile (preferences, trading style), the workspace's current
//! state (chart, watched symbols, indicators, active strategy), a summary
//! of the conversation so far, and the user's own agent instructions. Each
//! is a resource; tools update them; clients subscribed to one hear
//! `notifications/resources/updated` when it changes. Kept per user in a
//! key-value bucket, so no user reads another's.

use plugin_sdk::prelude::*;

/// The bucket the policy grants (`[keyvalue.context]`, per user).
const BUCKET: &str = "context";

/// How the user likes to trade and be answered.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Default, Debug)]
#[serde(deny_unknown_fields)]
struct Profile {
    /// What to call the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    name: Option<String>,
    /// Trading style, e.g. "swing", "intraday", "position", "options income".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    trading_style: Option<String>,
    /// Risk tolerance: low, medium or high.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(low|medium|high)$"))]
    risk_tolerance: Option<String>,
    /// Markets of interest, e.g. ["US equities", "FX majors"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    markets: Vec<String>,
    /// Free-form preferences: answer length, charts or tables, units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    preferences: Option<String>,
}

/// What the user's workspace shows now.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Default, Debug)]
#[serde(deny_unknown_fields)]
struct WorkspaceState {
    /// The chart open now, e.g. {"symbol": "SPY", "timeframe": "1d"}.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chart: Option<Chart>,
    /// Symbols on the watch list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    watched_symbols: Vec<Symbol>,
    /// Indicators on the chart, e.g. ["sma(50)", "rsi(14)"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    indicators: Vec<String>,
    /// The saved strategy being worked on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9_]{1,64}$"))]
    active_strategy: Option<String>,
}

/// A chart: a symbol and its bar size.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct Chart {
    symbol: Symbol,
    /// 1m, 5m, 15m, 30m, 1h, 4h or 1d.
    #[schemars(regex(pattern = r"^(1m|5m|15m|30m|1h|4h|1d)$"))]
    timeframe: String,
}

/// A ticker symbol, upper case.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
struct Symbol(#[schemars(regex(pattern = r"^[A-Z0-9][A-Z0-9._-]{0,9}$"))] String);

/// Arguments of the tools that set a text.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Text {
    /// The new text; empty clears it.
    #[schemars(length(max = 8000))]
    text: String,
}

/// What an update left in place.
#[derive(Serialize, JsonSchema)]
struct Updated<T> {
    /// The resource that changed.
    uri: String,
    /// What it holds now.
    now: T,
}

/// The resources: URI, key in the bucket, name, description.
const RESOURCES: [(&str, &str, &str, &str); 4] = [
    (
        "context://user-profile",
        "user-profile",
        "user-profile",
        "The user's profile: name, trading style, risk tolerance, markets and preferences. \
         Read it before answering to match how the user trades and likes to be answered.",
    ),
    (
        "context://workspace-state",
        "workspace-state",
        "workspace-state",
        "What the user's workspace shows now: the open chart, watched symbols, indicators on the \
         chart and the active strategy.",
    ),
    (
        "context://conversation-summary",
        "conversation-summary",
        "conversation-summary",
        "A summary of the conversation so far, kept across sessions: what was tried, decided and \
         left open.",
    ),
    (
        "context://system-prompt",
        "system-prompt",
        "system-prompt",
        "The user's own instructions for their agent, to follow in every turn.",
    ),
];

fn plugin() -> Plugin {
    let mut plugin = Plugin::new("workspace", env!("CARGO_PKG_VERSION"))
        .description("Per-user context for agents: profile, workspace state, conversation summary, system prompt.")
        .tool(
            Tool::new(
                "update_profile",
                "Update the user's profile (context://user-profile) with what they said about \
                 themselves: name, trading style, risk tolerance, markets of interest, \
                 preferences. Only the fields given change; the rest stay. Use it when the \
                 user states a lasting preference, not for one-off requests.",
            )
            .title("Update profile")
            .destructive(false)
            .idempotent()
            .effects(Effects::WRITE_STATE),
            |changes: Profile| update_profile(changes).map(Structured),
        )
        .tool(
            Tool::new(
                "update_workspace_state",
                "Record what the user's workspace shows now (context://workspace-state): the \
                 open chart, the watch list, the indicators on the chart, the active strategy. \
                 Only the fields given change. Call it when the user opens a chart, changes \
                 the watch list or switches strategy, so later turns start from there.",
            )
            .title("Update workspace state")
            .destructive(false)
            .idempotent()
            .effects(Effects::WRITE_STATE),
            |changes: WorkspaceState| update_workspace(changes).map(Structured),
        )
        .tool(
            Tool::new(
                "set_conversation_summary",
                "Replace the conversation summary (context://conversation-summary): a few \
                 lines on what was tried, decided and left open, written so the next session \
                 can pick up. An empty text clears it.",
            )
            .title("Set conversation summary")
            .idempotent()
            .effects(Effects::WRITE_STATE),
            |args: Text| set_text("conversation-summary", args.text).map(Structured),
        )
        .tool(
            Tool::new(
                "set_system_prompt",
                "Replace the user's own agent instructions (context://system-prompt), only \
                 when the user asks for it in so many words. An empty text clears them.",
            )
            .title("Set system prompt")
            .idempotent()
            .effects(Effects::WRITE_STATE),
            |args: Text| set_text("system-prompt", args.text).map(Structured),
        );
    for (uri, key, name, description) in RESOURCES {
        let mime = if key.ends_with("state") || key.ends_with("profile") {
            "application/json"
        } else {
            "text/plain"
        };
        plugin = plugin.resource(
            Resource::new(uri, name)
                .description(description)
                .mime_type(mime),
            move |uri| read(uri, key, mime),
        );
    }
    plugin
}

plugin_sdk::export_plugin!(plugin);

fn failed(error: StateError) -> Error {
    Error::Failed(error.to_string())
}

/// A resource: JSON documents as stored (`{}` before the first update),
/// texts as written (empty before).
fn read(uri: &str, key: &str, mime: &str) -> Result<Vec<ResourceContents>, Error> {
    let stored = Bucket::open(BUCKET)
        .and_then(|b| b.get(key))
        .map_err(failed)?;
    let text = match stored {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None if mime == "application/json" => "{}".to_owned(),
        None => String::new(),
    };
    Ok(vec![ResourceContents::text(uri, mime, text)])
}

fn uri_of(key: &str) -> String {
    format!("context://{key}")
}

/// `changes` laid over what `key` holds: fields given replace, the rest
/// stay (compare-and-swap, so concurrent updates both land).
fn merge<T: Serialize + serde::de::DeserializeOwned + Default>(
    key: &str,
    changes: &T,
) -> Result<T, ToolError> {
    let changes = serde_json::to_value(changes)?;
    let bucket = Bucket::open(BUCKET)?;
    let now = bucket.update_json(key, |current: Option<serde_json::Value>| {
        let mut merged = current.unwrap_or_else(|| serde_json::json!({}));
        if let (Some(merged), Some(changes)) = (merged.as_object_mut(), changes.as_object()) {
            for (field, value) in changes {
                merged.insert(field.clone(), value.clone());
            }
        }
        Ok(merged)
    })?;
    Ok(serde_json::from_value(now)?)
}

fn update_profile(changes: Profile) -> Result<Updated<Profile>, ToolError> {
    let now = merge("user-profile", &changes)?;
    Ok(Updated {
        uri: uri_of("user-profile"),
        now,
    })
}

fn update_workspace(changes: WorkspaceState) -> Result<Updated<WorkspaceState>, ToolError> {
    let now = merge("workspace-state", &changes)?;
    Ok(Updated {
        uri: uri_of("workspace-state"),
        now,
    })
}

fn set_text(key: &str, text: String) -> Result<Updated<String>, ToolError> {
    let bucket = Bucket::open(BUCKET)?;
    if text.is_empty() {
        bucket.delete(key)?;
    } else {
        bucket.set(key, text.as_bytes())?;
    }
    Ok(Updated {
        uri: uri_of(key),
        now: text,
    })
}
