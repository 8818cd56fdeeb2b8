// screener: filters the market-data universe by rules (price, volume,
// returns over a window, RSI) and ranks the matches; one tool screens a
// watch list read over HTTP under the policy's grant.
//
// Written in TypeScript with the SDK in plugins/sdk-js; built into
// plugins/screener.wasm by plugins/build.

import { Plugin, ToolError, host, http, listFolder, readTextFile, z } from "mcp-plugin-sdk";

const MARKET = "/data/market";

const plugin = new Plugin("screener", "0.1.0", "Screens the market-data universe by price, volume, returns and RSI, and ranks the matches");

interface Bar {
  close: number;
  volume: number;
}

function universe(): string[] {
  try {
    return listFolder(MARKET).filter((name) => !name.startsWith("."));
  } catch (caught) {
    throw new ToolError(`the market data is not readable here (${(caught as Error).message}); is it mounted?`);
  }
}

function bars(symbol: string): Bar[] {
  let text: string;
  try {
    text = readTextFile(`${MARKET}/${symbol}/1d.csv`);
  } catch {
    throw new ToolError(`${symbol} has no daily bars`);
  }
  const [header, ...rows] = text.trim().split("\n");
  const columns = header.split(",");
  const close = columns.indexOf("close");
  const volume = columns.indexOf("volume");
  if (close < 0 || volume < 0) throw new ToolError(`${symbol} daily bars are malformed: no close or volume column`);
  return rows.map((row) => {
    const cells = row.split(",");
    return { close: Number(cells[close]), volume: Number(cells[volume]) };
  });
}

/** Wilder's RSI of the closes, over `period` bars. */
function rsi(closes: number[], period = 14): number | undefined {
  if (closes.length <= period) return undefined;
  let gain = 0;
  let loss = 0;
  for (let i = 1; i <= period; i++) {
    const change = closes[i] - closes[i - 1];
    if (change > 0) gain += change;
    else loss -= change;
  }
  gain /= period;
  loss /= period;
  for (let i = period + 1; i < closes.length; i++) {
    const change = closes[i] - closes[i - 1];
    gain = (gain * (period - 1) + Math.max(change, 0)) / period;
    loss = (loss * (period - 1) + Math.max(-change, 0)) / period;
  }
  return loss === 0 ? 100 : 100 - 100 / (1 + gain / loss);
}

const round = (value: number, places: number) => Math.round(value * 10 ** places) / 10 ** places;

const Symbol = z.string().regex(/^[A-Za-z0-9._-]{1,20}$/).describe("A symbol in the market data, e.g. AAPL");

const Rules = z.object({
  min_price: z.number().positive().optional().describe("Last close at least this"),
  max_price: z.number().positive().optional().describe("Last close at most this"),
  min_avg_volume: z.number().nonnegative().optional().describe("Average daily volume over the window at least this"),
  min_return_pct: z.number().optional().describe("Return over the window at least this, in per cent"),
  max_return_pct: z.number().optional().describe("Return over the window at most this, in per cent"),
  rsi_below: z.number().min(0).max(100).optional().describe("14-day RSI below this (oversold screens)"),
  rsi_above: z.number().min(0).max(100).optional().describe("14-day RSI above this (momentum screens)"),
  window: z.number().int().min(2).max(250).default(20).describe("Bars the return and average volume are taken over"),
  rank_by: z.enum(["return", "volume", "rsi", "price"]).default("return").describe("What matches are ranked by, highest first"),
  limit: z.number().int().min(1).max(50).default(10).describe("Most matches returned"),
});

const Match = z.object({
  symbol: z.string(),
  price: z.number(),
  return_pct: z.number().describe("Return over the window, per cent"),
  avg_volume: z.number(),
  rsi: z.number().nullable().describe("14-day RSI; null with too little history"),
});

const Screened = z.object({
  matches: z.array(Match).describe("The symbols that passed every rule, ranked"),
  screened: z.number().int().describe("How many symbols were screened"),
  rules: z.array(z.string()).describe("The rules applied, in words"),
});

type RulesT = z.infer<typeof Rules>;

function screen(symbols: string[], rules: RulesT): z.infer<typeof Screened> {
  const { window } = rules;
  if (rules.min_price !== undefined && rules.max_price !== undefined && rules.min_price > rules.max_price) {
    throw new ToolError(`min_price ${rules.min_price} is above max_price ${rules.max_price}: nothing could match`);
  }
  const matches: z.infer<typeof Match>[] = [];
  symbols.forEach((symbol, done) => {
    if (host.isCancelled()) throw new ToolError("cancelled");
    const history = bars(symbol);
    if (history.length <= window) {
      throw new ToolError(`${symbol} has only ${history.length} daily bars; ask for a window below ${history.length}`);
    }
    const closes = history.map((b) => b.close);
    const price = closes[closes.length - 1];
    const start = closes[closes.length - 1 - window];
    const recent = history.slice(-window);
    const metrics = {
      symbol,
      price,
      return_pct: round((price / start - 1) * 100, 4),
      avg_volume: round(recent.reduce((sum, b) => sum + b.volume, 0) / window, 2),
      rsi: ((value) => (value === undefined ? null : round(value, 4)))(rsi(closes)),
    };
    host.progress(done + 1, symbols.length, `screened ${symbol}`);
    const passes =
      (rules.min_price === undefined || price >= rules.min_price) &&
      (rules.max_price === undefined || price <= rules.max_price) &&
      (rules.min_avg_volume === undefined || metrics.avg_volume >= rules.min_avg_volume) &&
      (rules.min_return_pct === undefined || metrics.return_pct >= rules.min_return_pct) &&
      (rules.max_return_pct === undefined || metrics.return_pct <= rules.max_return_pct) &&
      (rules.rsi_below === undefined || (metrics.rsi !== null && metrics.rsi < rules.rsi_below)) &&
      (rules.rsi_above === undefined || (metrics.rsi !== null && metrics.rsi > rules.rsi_above));
    if (passes) matches.push(metrics);
  });
  const key = { return: "return_pct", volume: "avg_volume", rsi: "rsi", price: "price" }[rules.rank_by] as keyof z.infer<typeof Match>;
  matches.sort((a, b) => Number(b[key] ?? -Infinity) - Number(a[key] ?? -Infinity) || a.symbol.localeCompare(b.symbol));
  return { matches: matches.slice(0, rules.limit), screened: symbols.length, rules: describeRules(rules) };
}

function describeRules(rules: RulesT): string[] {
  const words: string[] = [];
  if (rules.min_price !== undefined) words.push(`price >= ${rules.min_price}`);
  if (rules.max_price !== undefined) words.push(`price <= ${rules.max_price}`);
  if (rules.min_avg_volume !== undefined) words.push(`average volume over ${rules.window} bars >= ${rules.min_avg_volume}`);
  if (rules.min_return_pct !== undefined) words.push(`return over ${rules.window} bars >= ${rules.min_return_pct} %`);
  if (rules.max_return_pct !== undefined) words.push(`return over ${rules.window} bars <= ${rules.max_return_pct} %`);
  if (rules.rsi_below !== undefined) words.push(`RSI(14) < ${rules.rsi_below}`);
  if (rules.rsi_above !== undefined) words.push(`RSI(14) > ${rules.rsi_above}`);
  words.push(`ranked by ${rules.rank_by}, at most ${rules.limit}`);
  return words;
}

plugin.tool(
  {
    name: "screen",
    title: "Screen the market",
    description:
      "Filters every symbol in the market data by the rules given (price, average volume and return over a window, 14-day RSI) and ranks the matches. Reports progress per symbol. Reads the market data.",
    input: Rules,
    output: Screened,
    effects: ["read-files"],
    readOnly: true,
    idempotent: true,
  },
  (rules) => screen(universe(), rules),
);

plugin.tool(
  {
    name: "screen_watchlist",
    title: "Screen a watch list",
    description:
      "Reads a watch list over HTTP (JSON: {\"symbols\": [...]}, or one symbol a line) and screens its symbols by the rules given, like `screen`. The policy decides which URLs it may read.",
    input: Rules.extend({ url: z.string().url().describe("Where the watch list is, e.g. http://127.0.0.1:8700/watchlist") }),
    output: Screened,
    effects: ["read-files", "network-read"],
    readOnly: true,
  },
  ({ url, ...rules }) => {
    let response;
    try {
      response = http.get(url, { maxBytes: 64 * 1024 });
    } catch (caught) {
      throw new ToolError((caught as Error).message);
    }
    if (response.status !== 200) throw new ToolError(`${url}: the watch list answered ${response.status}`);
    const text = response.text();
    let listed: unknown[];
    try {
      const parsed = JSON.parse(text) as { symbols?: unknown };
      listed = Array.isArray(parsed.symbols) ? parsed.symbols : [];
    } catch {
      listed = text.split("\n").map((line) => line.trim()).filter(Boolean);
    }
    const known = new Set(universe());
    const symbols = [...new Set(listed.map((s) => String(s).toUpperCase()))];
    const unknown = symbols.filter((s) => !known.has(s));
    if (unknown.length) throw new ToolError(`the watch list names unknown symbols: ${unknown.join(", ")}; known: ${[...known].join(", ")}`);
    if (!symbols.length) throw new ToolError(`${url}: the watch list is empty`);
    return screen(symbols, rules);
  },
);

plugin.resource("screener://universe", { name: "universe", title: "Symbols screened", mimeType: "application/json" }, () =>
  JSON.stringify({ symbols: universe() }),
);

plugin.prompt(
  "find_setups",
  {
    title: "Find trade setups",
    description: "Asks the model to screen for a style of setup and explain the matches.",
    arguments: [{ name: "style", description: "momentum, mean reversion or breakout" }],
  },
  ({ style }) =>
    `Find ${style} setups in the market data. Call screener__screen with rules suited to ${style} ` +
    `(for mean reversion, rsi_below 30; for momentum, rsi_above 60 and a positive return), ` +
    `then explain each match and what would invalidate it.`,
);

plugin.completion({ prompt: "find_setups" }, "style", (value) =>
  ["breakout", "mean reversion", "momentum"].filter((s) => s.startsWith(value.toLowerCase())),
);

export const handler = plugin.handler();
