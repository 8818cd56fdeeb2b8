// State a plugin keeps between calls: the key-value buckets its policy
// grants (`[keyvalue.NAME]` in `policies/<plugin>.toml`), over
// wasi:keyvalue. A tool writes only when it declares the `write-state`
// effect and the policy grants the bucket read-write; otherwise a write
// throws a StateError carrying the host's refusal.

import { open } from "wasi:keyvalue/store@0.2.0-draft2";
import { Cas, increment, swap } from "wasi:keyvalue/atomics@0.2.0-draft2";
import { getMany, setMany } from "wasi:keyvalue/batch@0.2.0-draft2";

/** A bucket operation that failed, in the host's words. */
export class StateError extends Error {}

type StoreError = { tag: "no-such-store" | "access-denied" } | { tag: "other"; val: string };

const cut = (name: string) => (name.length <= 64 ? name : `${name.slice(0, 64)}…`);

function described(name: string, caught: unknown): StateError {
  const error = ((caught as { payload?: unknown })?.payload ?? caught) as StoreError;
  switch (error?.tag) {
    case "no-such-store":
      return new StateError(`no bucket "${cut(name)}" is granted to this plugin (add [keyvalue.${cut(name)}] to its policy)`);
    case "access-denied":
      return new StateError(
        `the bucket ${cut(name)} refused this: it is read-only here (granted read-only, or the tool does not declare write-state), or per user with no user calling`,
      );
    case "other":
      return new StateError(error.val);
    default:
      return new StateError(String(caught));
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An open bucket. */
export class Bucket {
  private constructor(
    readonly name: string,
    private readonly inner: any,
  ) {}

  /** The bucket the policy grants as `name`. */
  static open(name: string): Bucket {
    try {
      return new Bucket(name, open(name));
    } catch (caught) {
      throw described(name, caught);
    }
  }

  private call<T>(operation: () => T): T {
    try {
      return operation();
    } catch (caught) {
      throw described(this.name, caught);
    }
  }

  get(key: string): Uint8Array | undefined {
    return this.call(() => this.inner.get(key)) ?? undefined;
  }

  /** Sets `key`; durable when it returns. */
  set(key: string, value: Uint8Array | string): void {
    const bytes = typeof value === "string" ? encoder.encode(value) : value;
    this.call(() => this.inner.set(key, bytes));
  }

  delete(key: string): void {
    this.call(() => this.inner.delete(key));
  }

  exists(key: string): boolean {
    return this.call(() => this.inner.exists(key));
  }

  /** Every key, in key order. */
  keys(): string[] {
    const keys: string[] = [];
    let cursor: string | undefined = undefined;
    for (;;) {
      const page: { keys: string[]; cursor?: string } = this.call(() => this.inner.listKeys(cursor));
      keys.push(...page.keys);
      if (page.cursor === undefined || page.cursor === null) return keys;
      cursor = page.cursor;
    }
  }

  /** The JSON value of `key`, or undefined. */
  getJson<T = unknown>(key: string): T | undefined {
    const raw = this.get(key);
    return raw === undefined ? undefined : (JSON.parse(decoder.decode(raw)) as T);
  }

  setJson(key: string, value: unknown): void {
    this.set(key, JSON.stringify(value));
  }

  getMany(keys: string[]): (Uint8Array | undefined)[] {
    const found: ([string, Uint8Array] | undefined)[] = this.call(() => getMany(this.inner, keys));
    return found.map((pair) => pair?.[1]);
  }

  /** Sets every key of `pairs` together: all or none. */
  setMany(pairs: Record<string, Uint8Array | string>): void {
    const items = Object.entries(pairs).map(([k, v]): [string, Uint8Array] => [k, typeof v === "string" ? encoder.encode(v) : v]);
    this.call(() => setMany(this.inner, items));
  }

  /** Adds `delta` to the integer `key` holds (0 when absent); the sum. */
  increment(key: string, delta = 1): number {
    return Number(this.call(() => increment(this.inner, key, BigInt(delta))));
  }

  /** Changes the JSON value of `key` with `change` (given undefined when
   * absent), retrying when another call changed it in between. */
  updateJson<T>(key: string, change: (current: T | undefined) => T): T {
    let cas = this.call(() => Cas.new(this.inner, key));
    for (let attempt = 0; attempt < 100; attempt++) {
      const raw: Uint8Array | undefined = this.call(() => cas.current()) ?? undefined;
      const next = change(raw === undefined ? undefined : (JSON.parse(decoder.decode(raw)) as T));
      try {
        swap(cas, encoder.encode(JSON.stringify(next)));
        return next;
      } catch (caught) {
        const error = (caught as { payload?: { tag: string; val: any } }).payload;
        if (error?.tag === "cas-failed") {
          cas = error.val;
          continue;
        }
        throw described(this.name, error?.tag === "store-error" ? error.val : caught);
      }
    }
    throw new StateError(`"${key}" kept changing under 100 attempts to update it`);
  }
}
