// Write MCP plugins for `host` in JavaScript or TypeScript.
//
// A plugin is one module: declare its tools, resources and prompts on a
// `Plugin`, with zod schemas for arguments and results, and export
// `handler = plugin.handler()`. `plugins/sdk-js/componentize` bundles it
// with esbuild and builds the component with componentize-js.

import { z } from "zod";
import * as host from "mcp-host:plugin/host@0.3.0";

// zod compiles a fast path for each object schema with `new Function` on its
// first parse; every call is a fresh instance, so that would be every call.
z.config({ jitless: true });

export { z };
export { host };
export { listFolder, readTextFile, writeTextFile } from "./files.js";
export * as http from "./http.js";
export { Bucket, StateError } from "./state.js";

/** What a tool says it does (declarations, not grants). */
export type Effect = "read-files" | "write-files" | "network-read" | "network-write" | "trade" | "write-state";

/** A failure the model should read and act on: the tool error's text. */
export class ToolError extends Error {}
/** Nothing by that URI or name. */
export class NotFound extends Error {}
/** The request's arguments are wrong; the message says how. */
export class InvalidArguments extends Error {}

type Hints = { readOnly?: boolean; destructive?: boolean; idempotent?: boolean; openWorld?: boolean };

export interface ToolOptions<I extends z.ZodObject, O extends z.ZodObject | undefined> extends Hints {
  name: string;
  title?: string;
  /** What the tool does, when to use it: clients show it to the model. */
  description: string;
  input: I;
  /** Structured output: the result must match it. */
  output?: O;
  effects?: Effect[];
  taskSupport?: "forbidden" | "optional" | "required";
}

type ToolResult<O> = O extends z.ZodObject ? z.infer<O> : string | unknown;

interface ToolSpec {
  options: ToolOptions<z.ZodObject, z.ZodObject | undefined>;
  run: (args: any) => unknown;
}

interface ResourceSpec {
  uri: string;
  name: string;
  title?: string;
  description?: string;
  mimeType?: string;
  pattern?: RegExp;
  read: (vars: Record<string, string>) => string | Uint8Array;
}

interface PromptSpec {
  name: string;
  title?: string;
  description?: string;
  arguments: { name: string; description?: string; required: boolean }[];
  render: (args: Record<string, string>) => string | [("user" | "assistant"), string][];
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** One line, no stack: what a failure was. */
export function describeFailure(error: unknown): string {
  if (error instanceof Error) {
    return error.message ? `${error.name}: ${error.message}` : error.name;
  }
  return String(error);
}

export class Plugin {
  private tools = new Map<string, ToolSpec>();
  private resources = new Map<string, ResourceSpec>();
  private templates: ResourceSpec[] = [];
  private prompts = new Map<string, PromptSpec>();
  private completions = new Map<string, (value: string, context: Record<string, string>) => string[]>();

  constructor(
    readonly name: string,
    readonly version: string,
    readonly description?: string,
  ) {}

  /** A tool; `run` gets the arguments parsed by `input`. */
  tool<I extends z.ZodObject, O extends z.ZodObject | undefined = undefined>(
    options: ToolOptions<I, O>,
    run: (args: z.infer<I>) => ToolResult<O>,
  ): this {
    if (!NAME.test(options.name)) {
      throw new Error(`tool name ${JSON.stringify(options.name)}: 1 to 64 of letters, digits, _ and -`);
    }
    this.tools.set(options.name, { options: options as any, run });
    return this;
  }

  /** A resource at a fixed URI. */
  resource(uri: string, options: { name: string; title?: string; description?: string; mimeType?: string }, read: () => string | Uint8Array): this {
    this.resources.set(uri, { uri, mimeType: "text/plain", ...options, read: () => read() });
    return this;
  }

  /** A family of resources, `screener://universe/{symbol}`: each `{variable}` is one path segment. */
  resourceTemplate(
    template: string,
    options: { name: string; title?: string; description?: string; mimeType?: string },
    read: (vars: Record<string, string>) => string | Uint8Array,
  ): this {
    const source = template
      .split(/(\{[A-Za-z_][A-Za-z0-9_]*\})/)
      .map((part) => (part.startsWith("{") ? `(?<${part.slice(1, -1)}>[^/]+)` : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
      .join("");
    this.templates.push({ uri: template, mimeType: "text/plain", ...options, pattern: new RegExp(`^${source}$`), read });
    return this;
  }

  /** A prompt; its arguments are strings. */
  prompt(
    name: string,
    options: { title?: string; description?: string; arguments?: { name: string; description?: string; required?: boolean }[] },
    render: (args: Record<string, string>) => string | [("user" | "assistant"), string][],
  ): this {
    const args = (options.arguments ?? []).map((a) => ({ ...a, required: a.required ?? true }));
    this.prompts.set(name, { name, title: options.title, description: options.description, arguments: args, render });
    return this;
  }

  /** Suggestions for `argument` of a prompt or resource template. */
  completion(target: { prompt?: string; template?: string }, argument: string, suggest: (value: string, context: Record<string, string>) => string[]): this {
    const key = target.prompt !== undefined ? `prompt:${target.prompt}` : `template:${target.template}`;
    this.completions.set(`${key}:${argument}`, suggest);
    return this;
  }

  /** The object componentize-js exports as the plugin's handler. */
  handler() {
    const plugin = this;
    const manifest = {
      name: this.name,
      version: this.version,
      description: this.description,
      tools: [...this.tools.values()].map(({ options }) => ({
        name: options.name,
        title: options.title,
        description: options.description,
        inputSchema: JSON.stringify(schemaOf(options.input, "input")),
        outputSchema: options.output ? JSON.stringify(schemaOf(options.output, "output")) : undefined,
        hints: { readOnly: options.readOnly, destructive: options.destructive, idempotent: options.idempotent, openWorld: options.openWorld },
        effects: effectFlags(options.effects ?? []),
        taskSupport: options.taskSupport ?? "forbidden",
      })),
      resources: [...this.resources.values()].map((r) => ({ uri: r.uri, name: r.name, title: r.title, description: r.description, mimeType: r.mimeType })),
      resourceTemplates: this.templates.map((r) => ({ uriTemplate: r.uri, name: r.name, title: r.title, description: r.description, mimeType: r.mimeType })),
      prompts: [...this.prompts.values()].map((p) => ({
        name: p.name,
        title: p.title,
        description: p.description,
        arguments: p.arguments.map((a) => ({ name: a.name, title: undefined, description: a.description, required: a.required })),
      })),
    };
    // The build runs this module's top level once and snapshots the memory;
    // every call starts from that snapshot. zod builds much of a schema's
    // parser lazily, on its first parse: parsing once here puts that work
    // in the snapshot instead of in every call. The results are ignored,
    // and so is anything a refinement throws here, at build time.
    for (const spec of this.tools.values()) {
      for (const schema of [spec.options.input, spec.options.output]) {
        try {
          schema?.safeParse({});
        } catch {
          // A refinement that needs the host: it runs again on each call.
        }
      }
    }
    return {
      describe: () => manifest,
      callTool: (name: string, args: string) => plugin.call(name, args),
      readResource: (uri: string) => guarded(() => plugin.read(uri)),
      getPrompt: (name: string, args: [string, string][]) => guarded(() => plugin.render(name, Object.fromEntries(args))),
      complete: (target: { tag: string; val: string }, argument: string, value: string, context: [string, string][]) =>
        guarded(() => {
          const kind = target.tag === "prompt" ? "prompt" : "template";
          const suggest = plugin.completions.get(`${kind}:${target.val}:${argument}`);
          const values = suggest ? suggest(value, Object.fromEntries(context)).map(String) : [];
          return { values: values.slice(0, 100), total: values.length, hasMore: values.length > 100 };
        }),
    };
  }

  private call(name: string, args: string) {
    const spec = this.tools.get(name);
    const error = (text: string) => ({ content: [{ tag: "text", val: text }], structured: undefined, isError: true });
    if (!spec) return error(`unknown tool \`${name}\``);
    try {
      const parsed = spec.options.input.parse(JSON.parse(args || "{}"));
      const result = spec.run(parsed);
      if (spec.options.output) {
        const structured = spec.options.output.parse(result);
        const json = JSON.stringify(structured, null, 2);
        return { content: [{ tag: "text", val: json }], structured: JSON.stringify(structured), isError: false };
      }
      const text = typeof result === "string" ? result : result === undefined ? "done" : JSON.stringify(result, null, 2);
      return { content: [{ tag: "text", val: text }], structured: undefined, isError: false };
    } catch (caught) {
      if (caught instanceof ToolError) return error(caught.message || "the tool failed");
      stopIfOutOfMemory(caught);
      return error(`${name} failed: ${describeFailure(caught)}`);
    }
  }

  private read(uri: string) {
    let spec = this.resources.get(uri);
    let vars: Record<string, string> = {};
    if (!spec) {
      for (const template of this.templates) {
        const match = template.pattern!.exec(uri);
        if (match) {
          spec = template;
          vars = Object.fromEntries(Object.entries(match.groups ?? {}).map(([k, v]) => [k, decodeURIComponent(v)]));
          break;
        }
      }
    }
    if (!spec) throw new NotFound(`no resource at ${uri}`);
    const body = spec.read(vars);
    return [{ uri, mimeType: spec.mimeType, body: typeof body === "string" ? { tag: "text", val: body } : { tag: "blob", val: body } }];
  }

  private render(name: string, args: Record<string, string>) {
    const spec = this.prompts.get(name);
    if (!spec) throw new NotFound(`no prompt named ${name}`);
    const missing = spec.arguments.filter((a) => a.required && !(a.name in args)).map((a) => a.name);
    if (missing.length) throw new InvalidArguments(`prompt ${name} needs ${missing.join(", ")}`);
    const unknown = Object.keys(args).filter((k) => !spec.arguments.some((a) => a.name === k));
    if (unknown.length) throw new InvalidArguments(`prompt ${name} takes no ${unknown.join(", ")}`);
    const rendered = spec.render(args);
    const messages = typeof rendered === "string" ? [["user", rendered] as const] : rendered;
    return {
      description: spec.description,
      messages: messages.map(([role, text]) => ({ role, content: { tag: "text", val: text } })),
    };
  }
}

/** Runs `work`, turning any failure into the WIT `error` variant. */
function guarded<T>(work: () => T): T {
  try {
    return work();
  } catch (caught) {
    stopIfOutOfMemory(caught);
    if (caught instanceof NotFound) throw { tag: "not-found", val: caught.message };
    if (caught instanceof InvalidArguments) throw { tag: "invalid-arguments", val: caught.message };
    throw { tag: "failed", val: describeFailure(caught) };
  }
}

/**
 * Lets an out-of-memory error end the instance: the host then reports the
 * memory limit that was hit, as for a plugin in any language. (The engine
 * may be short of memory now; nothing more is attempted.)
 */
function stopIfOutOfMemory(caught: unknown): void {
  if (caught === "out of memory" || (caught instanceof Error && caught.message === "out of memory")) {
    throw caught;
  }
}

function effectFlags(effects: Effect[]) {
  const has = (e: Effect) => effects.includes(e);
  return {
    readFiles: has("read-files"),
    writeFiles: has("write-files"),
    networkRead: has("network-read"),
    networkWrite: has("network-write"),
    trade: has("trade"),
    writeState: has("write-state"),
  };
}

/** The JSON Schema of a zod object, as the host wants it (draft 2020-12, no `$schema`). */
export function schemaOf(schema: z.ZodType, io: "input" | "output"): Record<string, unknown> {
  const json = z.toJSONSchema(schema, { io, target: "draft-2020-12" }) as Record<string, unknown>;
  delete json.$schema;
  return json;
}
