// Files under the policy's mounts, through wasi:filesystem (a component
// built by componentize-js has no `fs` module).

import { getDirectories } from "wasi:filesystem/preopens@0.2.12";

type Descriptor = any;

/** The mount holding `path` and the path below it. */
function locate(path: string): [Descriptor, string] {
  let best: [Descriptor, string] | undefined;
  let length = -1;
  for (const [descriptor, guest] of getDirectories()) {
    const prefix = guest.endsWith("/") ? guest : `${guest}/`;
    if ((path === guest || path.startsWith(prefix)) && guest.length > length) {
      best = [descriptor, path === guest ? "." : path.slice(prefix.length)];
      length = guest.length;
    }
  }
  if (!best) throw new Error(`${path}: no mount holds this path`);
  return best;
}

function failure(path: string, caught: unknown): Error {
  const code = (caught as { payload?: unknown })?.payload ?? caught;
  return new Error(`${path}: ${typeof code === "string" ? code : String(code)}`);
}

/** The text of the file at `path` (an absolute guest path such as `/data/market/SPY/1d.csv`). */
export function readTextFile(path: string): string {
  const [dir, relative] = locate(path);
  try {
    const file = dir.openAt({ symlinkFollow: true }, relative, {}, { read: true });
    const chunks: Uint8Array[] = [];
    let offset = 0n;
    for (;;) {
      const [bytes, end] = file.read(65536n, offset);
      chunks.push(bytes);
      offset += BigInt(bytes.length);
      if (end || bytes.length === 0) break;
    }
    const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const chunk of chunks) {
      all.set(chunk, at);
      at += chunk.length;
    }
    return new TextDecoder().decode(all);
  } catch (caught) {
    throw failure(path, caught);
  }
}

/** The names in the folder at `path`, sorted. */
export function listFolder(path: string): string[] {
  const [dir, relative] = locate(path);
  try {
    const folder = relative === "." ? dir : dir.openAt({ symlinkFollow: true }, relative, { directory: true }, { read: true });
    const stream = folder.readDirectory();
    const names: string[] = [];
    for (let entry = stream.readDirectoryEntry(); entry; entry = stream.readDirectoryEntry()) {
      names.push(entry.name);
    }
    return names.sort();
  } catch (caught) {
    throw failure(path, caught);
  }
}

/** Writes `text` to the file at `path`, replacing what it held (the mount must be read-write). */
export function writeTextFile(path: string, text: string): void {
  const [dir, relative] = locate(path);
  try {
    const file = dir.openAt({ symlinkFollow: true }, relative, { create: true, truncate: true }, { write: true });
    const bytes = new TextEncoder().encode(text);
    let offset = 0;
    while (offset < bytes.length) {
      offset += Number(file.write(bytes.subarray(offset), BigInt(offset)));
    }
  } catch (caught) {
    throw failure(path, caught);
  }
}
