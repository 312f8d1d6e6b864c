/**
 * Test harness: real service instances on ephemeral ports, each with its own KV handle
 * (`:memory:` by default, or a shared temporary file to stand in for two Deno Deploy
 * isolates), plus small clients for the REST API and WebSockets.
 *
 * @module
 */
import { type Config, testConfig } from "../../src/config.ts";
import { createService, type Service, type ServiceOptions } from "../../src/service.ts";
import { TetherClient } from "../../client/mod.ts";
import { slowKv } from "./slow_kv.ts";

/**
 * The api key of `testConfig()` (`apiKeys: ["test-key"]`), sent by `api` and `call`.
 */
export const API_KEY = "test-key";

/** A running instance. */
export interface TestServer {
  /** The service under test. */
  service: Service;
  /** Its KV handle. */
  kv: Deno.Kv;
  /** The configuration it runs with. */
  config: Config;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `ws://127.0.0.1:<port>` */
  wsUrl: string;
  /** The official client with the api key (no retries: tests see every answer). */
  client: TetherClient;
  /** Calls the REST API with the api key (unless `headers` overrides it). */
  api(path: string, init?: RequestInit & { json?: unknown }): Promise<Response>;
  /** Same as `api`, then parses JSON and returns `{status, body}`. */
  call<T = Record<string, unknown>>(
    path: string,
    init?: RequestInit & { json?: unknown },
  ): Promise<{ status: number; body: T }>;
  /** Stops the instance (closing its ingest sockets with 1012) and its KV handle. */
  close(): Promise<void>;
  /** Stops serving abruptly, as a crash would: sockets drop, no graceful close. */
  crash(): Promise<void>;
}

/** Options of {@link startServer}. */
export interface StartOptions extends ServiceOptions {
  /** Overrides of the test configuration. */
  config?: Partial<Config>;
  /** A KV file to share between instances; default `:memory:`. */
  kvPath?: string;
  /**
   * Round trip added to every KV read and commit (ms), as on a remote KV
   * (`tests/helpers/slow_kv.ts`). Default 0: the local KV as it is.
   */
  kvDelayMs?: number;
  /** An open KV handle to serve from instead (e.g. one that delays commits); closed with the instance. */
  kv?: Deno.Kv;
}

/**
 * Starts one instance with test defaults: `:memory:` KV, api key `test-key`, silent logs,
 * sweep-only deadlines every 50 ms (override with `config`).
 *
 * @example
 * ```ts
 * const server = await startServer({ config: { maxFrameBytes: 16_384 } });
 * try {
 *   const res = await server.call("/v1/sessions", { method: "POST", json: { sessionId: "s1" } });
 * } finally {
 *   await server.close();
 * }
 * ```
 */
export async function startServer(options: StartOptions = {}): Promise<TestServer> {
  const kvPath = options.kvPath ?? ":memory:";
  const config = testConfig({
    kvPath,
    timerWakeups: ["sweep"],
    sweepMs: 50,
    ...options.config,
  });
  const local = options.kv ?? await Deno.openKv(kvPath);
  const kv = options.kvDelayMs ? slowKv(local, { delayMs: options.kvDelayMs }) : local;
  const service = await createService(config, kv, options);
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, service.fetch);
  const port = server.addr.port;
  const url = `http://127.0.0.1:${port}`;
  const api = (path: string, init: RequestInit & { json?: unknown } = {}) => {
    const headers = new Headers(init.headers);
    if (!headers.has("authorization")) headers.set("authorization", `Bearer ${API_KEY}`);
    let body = init.body;
    if (init.json !== undefined) {
      body = JSON.stringify(init.json);
      headers.set("content-type", "application/json");
    }
    return fetch(url + path, { ...init, headers, body });
  };
  let closed = false;
  const shutdown = async (graceful: boolean) => {
    if (closed) return;
    closed = true;
    if (graceful) await service.stop();
    else {
      service.rt.abort();
      await service.runner.stop();
      await service.rt.hub.stop();
    }
    await server.shutdown();
    local.close();
  };
  return {
    service,
    kv,
    config,
    url,
    wsUrl: url.replace(/^http/, "ws"),
    client: new TetherClient({ url, apiKey: config.apiKeys[0] ?? API_KEY, retries: 0 }),
    api,
    async call(path, init) {
      const res = await api(path, init);
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    close: () => shutdown(true),
    crash: () => shutdown(false),
  };
}

/**
 * A temporary KV file path (removed with its directory by the returned cleanup).
 *
 * @example
 * ```ts
 * const { path, cleanup } = await tempKvPath();
 * const server = await startServer({ kvPath: path });
 * await server.close();
 * await cleanup();
 * ```
 */
export async function tempKvPath(): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "tether-test-" });
  return {
    path: `${dir}/tether.kv`,
    cleanup: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
}

/**
 * Sends one HTTP/1.1 request written by hand (for what `fetch` will not send, such as a
 * malformed or huge `Host` header) and returns the whole answer as text.
 *
 * @example
 * ```ts
 * const answer = await rawRequest(port, ["GET /healthz HTTP/1.1", "Host: a b"]);
 * answer.startsWith("HTTP/1.1 400"); // true
 * ```
 */
export async function rawRequest(port: number, head: string[], body = ""): Promise<string> {
  await using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const length = new TextEncoder().encode(body).length;
  const lines = [...head, `Content-Length: ${length}`, "Connection: close", "", body];
  await conn.write(new TextEncoder().encode(lines.join("\r\n")));
  return await new Response(conn.readable).text();
}
