// Type-checks a plugin, and the SDK it imports, against the plugin
// interface: the TypeScript declarations `jco types` generates from wit/.
//   node typecheck.mjs <types folder> <plugin entry .ts>
// A plugin in plain JavaScript is checked only where TypeScript can infer
// (`checkJs` off): its mistakes in calling the SDK still show.
//
// The module names a plugin imports (`mcp-host:plugin/host@0.3.0`,
// `wasi:filesystem/types@0.2.12`, ...) are read from the declarations'
// own `@module` headers, so a new interface or version in wit/ needs no
// edit here. The same mapping is written to `<types folder>/tsconfig.json`
// for editors (the README's "In TypeScript" section).

import fs from "node:fs";
import path from "node:path";
import ts from "typescript";

const [typesFolder, entry] = process.argv.slice(2);
if (!typesFolder || !entry) {
  console.error("usage: node typecheck.mjs <types folder> <plugin entry .ts>");
  process.exit(2);
}
const sdk = path.dirname(new URL(import.meta.url).pathname);

/** `{"mcp-host:plugin/host@0.3.0": ["<types>/interfaces/mcp-host-plugin-host.d.ts"], ...}` */
function modulePaths(types) {
  const paths = { "mcp-plugin-sdk": [path.join(sdk, "src/index.ts")] };
  const interfaces = path.join(types, "interfaces");
  for (const file of fs.readdirSync(interfaces).sort()) {
    const header = fs.readFileSync(path.join(interfaces, file), "utf8").split("\n", 1)[0];
    const name = /^\/\*\* @module Interface (\S+) \*\*\/$/.exec(header)?.[1];
    if (!name) throw new Error(`${file}: no "@module Interface" header (has jco types changed its output?)`);
    paths[name] = [path.join(interfaces, file)];
  }
  return paths;
}

const options = {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  // What StarlingMonkey, componentize-js's engine, gives a plugin beside
  // the language: the web platform's TextEncoder, URL, console, ...; and
  // `Symbol.dispose`, which jco's resource handles implement.
  lib: ["lib.es2022.d.ts", "lib.esnext.disposable.d.ts", "lib.dom.d.ts"],
  types: [],
  allowJs: true,
  skipLibCheck: true,
  paths: modulePaths(typesFolder),
};

const editorConfig = path.join(typesFolder, "tsconfig.json");
if (!fs.existsSync(editorConfig)) {
  const { lib, target, module, moduleResolution, ...rest } = options;
  fs.writeFileSync(
    editorConfig,
    JSON.stringify(
      { compilerOptions: { ...rest, target: "es2022", module: "esnext", moduleResolution: "bundler", lib: ["es2022", "esnext.disposable", "dom"] } },
      null,
      2,
    ) + "\n",
  );
}

const program = ts.createProgram([path.resolve(entry)], options);
const diagnostics = ts.getPreEmitDiagnostics(program);
if (diagnostics.length > 0) {
  const host = {
    getCanonicalFileName: (name) => name,
    getCurrentDirectory: () => process.cwd(),
    getNewLine: () => "\n",
  };
  const format = process.stderr.isTTY ? ts.formatDiagnosticsWithColorAndContext : ts.formatDiagnostics;
  console.error(format(diagnostics, host));
  console.error(`${entry}: ${diagnostics.length} type error(s) against the plugin interface; the plugin was not built`);
  process.exit(1);
}
