// A small blocking HTTP client over wasi:http/outgoing-handler. Every
// request passes the host's policy before any byte leaves: one the plugin
// was not granted throws an HttpError with `denied` set, and the client is
// told which rule refused it.

import { handle } from "wasi:http/outgoing-handler@0.2.12";
import { Fields, OutgoingBody, OutgoingRequest } from "wasi:http/types@0.2.12";

export class HttpError extends Error {
  constructor(
    message: string,
    readonly denied = false,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

export interface Response {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
  text(): string;
  json(): unknown;
}

const METHODS = ["get", "head", "post", "put", "delete", "patch", "options"] as const;
type Verb = (typeof METHODS)[number];

function failure(code: unknown, url: string): HttpError {
  const tag = (code as { tag?: string })?.tag ?? String(code);
  if (tag === "HTTP-request-denied" || tag === "http-request-denied") {
    return new HttpError(`${url}: the request was denied by the host's policy`, true);
  }
  return new HttpError(`${url}: ${tag}`);
}

/** Sends one request and reads the whole response (at most `maxBytes` of body). */
export function request(method: string, url: string, options: { headers?: Record<string, string>; body?: string | Uint8Array; maxBytes?: number } = {}): Response {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new HttpError(`${url}: not a URL`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new HttpError(`${url}: not an http:// or https:// URL`);
  const verb = method.toLowerCase() as Verb;
  if (!METHODS.includes(verb)) throw new HttpError(`${url}: method ${method} is not one of ${METHODS.join(", ")}`);
  const encoder = new TextEncoder();
  const fields = Fields.fromList(Object.entries(options.headers ?? {}).map(([k, v]) => [k, encoder.encode(v)]));
  const outgoing = new OutgoingRequest(fields);
  outgoing.setMethod({ tag: verb });
  outgoing.setScheme({ tag: parsed.protocol === "https:" ? "HTTPS" : "HTTP" });
  outgoing.setAuthority(parsed.host);
  outgoing.setPathWithQuery(`${parsed.pathname}${parsed.search}`);
  const body = outgoing.body();
  let future;
  try {
    future = handle(outgoing, undefined);
  } catch (caught) {
    throw failure((caught as { payload?: unknown }).payload ?? caught, url);
  }
  let bodyFailed = false;
  try {
    const payload = typeof options.body === "string" ? encoder.encode(options.body) : options.body;
    if (payload && payload.length) {
      const stream = body.write();
      for (let at = 0; at < payload.length; at += 4096) stream.blockingWriteAndFlush(payload.subarray(at, at + 4096));
      // The stream must be dropped before the body is finished; the engine
      // gives resource handles `Symbol.dispose`, which jco's types omit.
      (stream as Partial<Disposable>)[Symbol.dispose]?.();
    }
    OutgoingBody.finish(body, undefined);
  } catch {
    bodyFailed = true;
  }
  future.subscribe().block();
  const answer = future.get();
  if (!answer || answer.tag === "err") throw new HttpError(`${url}: no response`);
  const inner = answer.val;
  if (inner.tag === "err") throw failure(inner.val, url);
  if (bodyFailed) throw new HttpError(`${url}: sending the request body failed`);
  const response = inner.val;
  const status = response.status();
  const decoder = new TextDecoder();
  const headers: [string, string][] = response.headers().entries().map(([k, v]: [string, Uint8Array]) => [k, decoder.decode(v)]);
  const incoming = response.consume();
  const stream = incoming.stream();
  const maxBytes = options.maxBytes ?? 16 * 1024 * 1024;
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    let chunk: Uint8Array;
    try {
      chunk = stream.blockingRead(65536n);
    } catch (caught) {
      const payload = (caught as { payload?: { tag?: string } }).payload;
      if (payload?.tag === "closed") break;
      throw new HttpError(`${url}: the response was cut short`);
    }
    size += chunk.length;
    if (size > maxBytes) throw new HttpError(`${url}: the response is larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  return {
    status,
    headers,
    body: all,
    text: () => decoder.decode(all),
    json: () => JSON.parse(decoder.decode(all)),
  };
}

export function get(url: string, options: { headers?: Record<string, string>; maxBytes?: number } = {}): Response {
  return request("GET", url, options);
}
