/**
 * The real service as a child process (`deno run -A main.ts`), for restart tests: start it
 * on a KV file and a port, kill it with any signal, start it again on the same file and
 * port. Its JSON log lines are collected; readiness is its `listening` line.
 *
 * @module
 */
import { API_KEY } from "./server.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** A running service process. */
export interface ChildService extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** `ws://127.0.0.1:<port>`. */
  readonly wsUrl: string;
  /** The process id (to sample its memory from `/proc`). */
  readonly pid: number;
  /** `Date.now()` when the process reported it was listening. */
  readonly readyAt: number;
  /** Parsed JSON log lines so far. */
  readonly logs: Record<string, unknown>[];
  /** REST call with the api key; parses the JSON body. */
  call<T = Record<string, unknown>>(
    path: string,
    init?: RequestInit & { json?: unknown },
  ): Promise<{ status: number; body: T }>;
  /** Sends a signal and waits for the process to exit. */
  kill(signal: Deno.Signal): Promise<Deno.CommandStatus>;
}

/** Options of {@link startChildService}. */
export interface ChildServiceOptions {
  /** The KV file (kept across restarts of the same path). */
  kvPath: string;
  /** Port on 127.0.0.1 (see {@link freePort}). */
  port: number;
  /** The entry point, relative to the repository root. Default `main.ts`. */
  entry?: string;
  /** Extra `deno run` flags before the entry point (e.g. `--cpu-prof`). */
  runFlags?: string[];
  /** Extra environment (short timers). `TETHER_TIMER_WAKEUPS` is passed through when set. */
  env?: Record<string, string>;
  /** How long to wait for the `listening` line. Default 20000. */
  startTimeoutMs?: number;
}

/**
 * A port that was free a moment ago (the restart reuses it, as a real service would).
 *
 * @example
 * ```ts
 * const port = freePort();
 * const service = await startChildService({ kvPath: `${dir}/tether.kv`, port });
 * ```
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/**
 * Starts `main.ts` and resolves once it listens.
 *
 * @example
 * ```ts
 * const service = await startChildService({
 *   kvPath: `${dir}/tether.kv`,
 *   port: freePort(),
 *   env: { TETHER_DISCONNECT_GRACE_MS: "2000" },
 * });
 * ```
 */
export async function startChildService(options: ChildServiceOptions): Promise<ChildService> {
  const wakeups = Deno.env.get("TETHER_TIMER_WAKEUPS");
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...(options.runFlags ?? []), options.entry ?? "main.ts"],
    cwd: ROOT,
    env: {
      TETHER_KV_PATH: options.kvPath,
      PORT: String(options.port),
      TETHER_API_KEYS: API_KEY,
      TETHER_LOG_LEVEL: "info",
      ...(wakeups ? { TETHER_TIMER_WAKEUPS: wakeups } : {}),
      ...options.env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const process = command.spawn();
  const logs: Record<string, unknown>[] = [];
  let stderr = "";
  const listening = Promise.withResolvers<void>();
  const readingOut = (async () => {
    let buffer = "";
    for await (const chunk of process.stdout.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        try {
          const entry = JSON.parse(line);
          logs.push(entry);
          if (entry.msg === "listening") listening.resolve();
        } catch {
          // not a log line
        }
      }
    }
  })();
  const readingErr = (async () => {
    for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
      stderr += chunk;
    }
  })();
  const exited = process.status;
  const timeout = options.startTimeoutMs ?? 20_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const started = await Promise.race([
    listening.promise.then(() => "ready" as const),
    exited.then(() => "exited" as const),
    new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), timeout)),
  ]);
  clearTimeout(timer);
  if (started !== "ready") {
    if (started === "timeout") process.kill("SIGKILL");
    await exited;
    await Promise.all([readingOut, readingErr]);
    throw new Error(`service did not start (${started}): ${stderr}`);
  }
  const readyAt = Date.now();
  const url = `http://127.0.0.1:${options.port}`;
  let done: Promise<Deno.CommandStatus> | undefined;
  const kill = (signal: Deno.Signal) => {
    if (!done) {
      try {
        process.kill(signal);
      } catch {
        // already gone
      }
      done = exited.then(async (status) => {
        await Promise.all([readingOut, readingErr]);
        return status;
      });
    }
    return done;
  };
  return {
    url,
    wsUrl: url.replace(/^http/, "ws"),
    pid: process.pid,
    readyAt,
    logs,
    async call(path, init = {}) {
      const headers = new Headers(init.headers);
      headers.set("authorization", `Bearer ${API_KEY}`);
      let body = init.body;
      if (init.json !== undefined) {
        body = JSON.stringify(init.json);
        headers.set("content-type", "application/json");
      }
      const res = await fetch(url + path, { ...init, headers, body });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    kill,
    async [Symbol.asyncDispose]() {
      await kill("SIGKILL");
    },
  };
}
