// The official TypeScript SDK as an MCP client, for the end-to-end tests.
//
//   node ts_client.mjs http <url>
//   node ts_client.mjs stdio <command> [args…]
//
// Connects, exercises the basics and prints what it saw as one JSON object.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [mode, ...target] = process.argv.slice(2);
const transport =
  mode === "http"
    ? new StreamableHTTPClientTransport(new URL(target[0]))
    : new StdioClientTransport({ command: target[0], args: target.slice(1), env: process.env, stderr: "ignore" });
const client = new Client({ name: "ts-sdk-e2e", version: "0" });
await client.connect(transport);

const failure = async (call) => {
  try {
    return { answered: await call() };
  } catch (error) {
    return { code: error.code, message: error.message };
  }
};
const seen = {
  server: client.getServerVersion(),
  tools: (await client.listTools()).tools,
  quote: await client.callTool({ name: "market-data__get_quote", arguments: { symbol: "SPY" } }),
  invalid: await client.callTool({ name: "market-data__get_quote", arguments: { symbol: 7 } }),
  unknown: await failure(() => client.callTool({ name: "nope__nope", arguments: {} })),
  backtest: await client.callTool({
    name: "backtest__run_backtest",
    arguments: { strategy: "sma_cross", symbol: "SPY", timeframe: "1d" },
  }),
  symbols: await client.readResource({ uri: "market://symbols" }),
  prompt: await client.getPrompt({ name: "indicators__research_session", arguments: { focus: "momentum" } }),
};
console.log(JSON.stringify(seen));
await client.close();
