import { Plugin, z } from "mcp-plugin-sdk";

const plugin = new Plugin("__PLUGIN_NAME__", "0.1.0", "Greets people");

plugin.tool(
  {
    name: "greet",
    description: "Greet someone by name.",
    input: z.object({ name: z.string().max(100).describe("Who to greet.") }),
    readOnly: true,
  },
  ({ name }) => `Hello, ${name}!`,
);

export const handler = plugin.handler();
