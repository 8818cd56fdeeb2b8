//! A research journal: insights saved while researching strategies (a
//! pattern seen, what worked, what failed, a hypothesis, a technique),
//! searched later across sessions. Each user has their own journal: the
//! policy grants the `insights` bucket per user, so one user's insights
//! are never another's.

use plugin_sdk::prelude::*;

/// The bucket the policy grants (`[keyvalue.insights]`).
const BUCKET: &str = "insights";
/// The counter insight ids come from.
const NEXT_ID: &str = "next-id";
/// Every insight's key starts with this, then its id, zero-padded so that
/// key order is the order they were saved in.
const PREFIX: &str = "insight/";

/// Kinds of insight.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Category {
    /// A recurring market behaviour noticed in the data.
    Pattern,
    /// Something that worked (a setting, a filter, a strategy).
    Success,
    /// Something that did not, and why.
    Failure,
    /// An idea to test next.
    Hypothesis,
    /// A way of working worth repeating.
    Technique,
}

/// Arguments of `save_insight`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SaveArgs {
    /// The insight itself, in a sentence or a short paragraph.
    #[schemars(length(min = 1, max = 4000))]
    text: String,
    category: Category,
    /// Short lower-case labels to find it again, e.g. ["rsi", "mean-reversion"].
    #[schemars(length(max = 10))]
    #[serde(default)]
    tags: Vec<Tag>,
    /// How much it matters, 1 (a passing note) to 10 (changes how to trade).
    #[schemars(range(min = 1, max = 10))]
    importance: u8,
    /// The symbol it is about, if any.
    #[serde(default)]
    symbol: Option<Symbol>,
    /// The saved strategy it is about, if any.
    #[serde(default)]
    strategy: Option<StrategyName>,
}

/// A tag: 1-32 lower-case letters, digits or `-`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, PartialEq, Eq, Debug)]
struct Tag(#[schemars(regex(pattern = r"^[a-z0-9-]{1,32}$"))] String);

/// A ticker symbol, upper case.
#[derive(Serialize, Deserialize, JsonSchema, Clone, PartialEq, Eq, Debug)]
struct Symbol(#[schemars(regex(pattern = r"^[A-Z0-9][A-Z0-9._-]{0,9}$"))] String);

/// A strategy name as the strategies plugin saves it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, PartialEq, Eq, Debug)]
struct StrategyName(#[schemars(regex(pattern = r"^[a-z0-9_]{1,64}$"))] String);

/// A saved insight.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug)]
struct Insight {
    /// Its id, for delete_insight and journal://insights/{id}.
    id: u64,
    text: String,
    category: Category,
    tags: Vec<Tag>,
    importance: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    symbol: Option<Symbol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    strategy: Option<StrategyName>,
    /// When it was saved: seconds since 1970 (UTC).
    saved_at: u64,
}

/// Arguments of `search_insights`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    /// Words the insight's text must contain (all of them, any case).
    #[serde(default)]
    #[schemars(length(max = 200))]
    text: Option<String>,
    #[serde(default)]
    category: Option<Category>,
    /// A tag the insight must carry.
    #[serde(default)]
    tag: Option<Tag>,
    /// Only insights at least this important.
    #[serde(default)]
    #[schemars(range(min = 1, max = 10))]
    min_importance: Option<u8>,
    #[serde(default)]
    symbol: Option<Symbol>,
    /// Most results to return (default 20, at most 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    limit: Option<u32>,
    /// Only insights older than this id: pass the previous page's `next_before`.
    #[serde(default)]
    before: Option<u64>,
}

/// One page of search results, newest first.
#[derive(Serialize, JsonSchema)]
struct Found {
    insights: Vec<Insight>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<u64>,
}

/// Arguments of `delete_insight`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeleteArgs {
    /// The id save_insight or search_insights gave.
    id: u64,
}

/// What a deletion did.
#[derive(Serialize, JsonSchema)]
struct Deleted {
    id: u64,
    /// Whether there was such an insight.
    deleted: bool,
}

fn plugin() -> Plugin {
    Plugin::new("journal", env!("CARGO_PKG_VERSION"))
        .description("A research journal of insights, kept per user across sessions.")
        .tool(
            Tool::new(
                "save_insight",
                "Record an insight from the research in the user's journal, to find it again \
                 in later sessions.\n\n\
                 Use it whenever the research shows something worth remembering: a pattern in \
                 the data (category pattern), a setting or strategy that worked (success) or \
                 did not (failure, with why), an idea to test next (hypothesis), or a way of \
                 working worth repeating (technique). Write the text so it stands on its own \
                 months later: what, on which symbol and timeframe, with which numbers. Tag it \
                 with short lower-case labels (indicator names, regimes such as `trending`), \
                 rate its importance from 1 (a passing note) to 10 (changes how to trade), and \
                 name the symbol or saved strategy it is about. Returns the saved insight and \
                 its id.",
            )
            .title("Save insight")
            .destructive(false)
            .effects(Effects::WRITE_STATE),
            |args: SaveArgs| save(args).map(Structured),
        )
        .tool(
            Tool::new(
                "search_insights",
                "Search the user's journal of insights, newest first.\n\n\
                 Use it at the start of a research session and before testing an idea, to \
                 build on what is known and not repeat a failure. Every filter is optional and \
                 they combine: words the text contains, a category, a tag, a minimum \
                 importance, a symbol. Results come a page at a time (limit, default 20); pass \
                 the answer's next_before as `before` for the next page.",
            )
            .title("Search insights")
            .read_only()
            .idempotent(),
            |args: SearchArgs| search(args).map(Structured),
        )
        .tool(
            Tool::new(
                "delete_insight",
                "Delete one insight from the user's journal by its id, when it turned out to \
                 be wrong or the user asks. Deleting an id that does not exist does nothing.",
            )
            .title("Delete insight")
            .destructive(true)
            .idempotent()
            .effects(Effects::WRITE_STATE),
            |args: DeleteArgs| delete(args.id).map(Structured),
        )
        .resource_template(
            ResourceTemplate::new("journal://insights/{id}", "insight")
                .description("One saved insight of the user's journal, by id, as JSON.")
                .mime_type("application/json"),
            |uri, vars| {
                let not_found = || Error::NotFound(format!("no insight {}", vars["id"]));
                let id: u64 = vars["id"].parse().map_err(|_| not_found())?;
                let insight = load(id)
                    .map_err(|e| Error::Failed(e.to_string()))?
                    .ok_or_else(not_found)?;
                Ok(vec![ResourceContents::json(uri, &insight)?])
            },
        )
}

plugin_sdk::export_plugin!(plugin);

fn key(id: u64) -> String {
    format!("{PREFIX}{id:012}")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn save(args: SaveArgs) -> Result<Insight, ToolError> {
    if args.text.trim().is_empty() {
        return Err(ToolError::new("the insight's text is empty"));
    }
    let journal = Bucket::open(BUCKET)?;
    let id = journal.increment(NEXT_ID, 1)? as u64;
    let mut tags = args.tags;
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    tags.dedup();
    let insight = Insight {
        id,
        text: args.text.trim().to_owned(),
        category: args.category,
        tags,
        importance: args.importance,
        symbol: args.symbol,
        strategy: args.strategy,
        saved_at: now(),
    };
    journal.set_json(&key(id), &insight)?;
    Ok(insight)
}

fn load(id: u64) -> Result<Option<Insight>, StateError> {
    Bucket::open(BUCKET)?.get_json(&key(id))
}

fn matches(insight: &Insight, args: &SearchArgs, words: &[String]) -> bool {
    let text = insight.text.to_lowercase();
    words.iter().all(|word| text.contains(word.as_str()))
        && args.category.is_none_or(|c| c == insight.category)
        && args.tag.as_ref().is_none_or(|t| insight.tags.contains(t))
        && args.min_importance.is_none_or(|m| insight.importance >= m)
        && args
            .symbol
            .as_ref()
            .is_none_or(|s| insight.symbol.as_ref() == Some(s))
}

fn search(args: SearchArgs) -> Result<Found, ToolError> {
    let journal = Bucket::open(BUCKET)?;
    let limit = args.limit.unwrap_or(20).clamp(1, 100) as usize;
    let words: Vec<String> = args
        .text
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    let mut keys: Vec<String> = journal
        .keys()?
        .into_iter()
        .filter(|k| k.starts_with(PREFIX))
        .collect();
    if let Some(before) = args.before {
        keys.retain(|k| k.as_str() < key(before).as_str());
    }
    let mut insights = Vec::new();
    let mut next_before = None;
    // Newest first, read in chunks.
    'chunks: for chunk in keys.rchunks(50) {
        let values = journal.get_many(chunk)?;
        for value in values.into_iter().rev().flatten() {
            let insight: Insight = serde_json::from_slice(&value)?;
            if !matches(&insight, &args, &words) {
                continue;
            }
            if insights.len() == limit {
                next_before = insights.last().map(|i: &Insight| i.id);
                break 'chunks;
            }
            insights.push(insight);
        }
    }
    Ok(Found {
        insights,
        next_before,
    })
}

fn delete(id: u64) -> Result<Deleted, ToolError> {
    let journal = Bucket::open(BUCKET)?;
    let deleted = journal.exists(&key(id))?;
    if deleted {
        journal.delete(&key(id))?;
    }
    Ok(Deleted { id, deleted })
}
