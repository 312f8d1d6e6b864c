/**
 * Helpers shared by the wrapper's tests: polling for a condition (the project's one
 * `eventually`), an
 * {@link IngestConnection} or a whole wrapper run with test-sized timers, a gate for
 * reconnects, the fake agent's command line, and a small Server-Sent Events server.
 *
 * @module
 */
import type { FakeService } from "./testdata/fake_service.ts";
import { IngestConnection, type IngestConnectionOptions, type IngestEvent } from "./mod.ts";
import type { WrapperOptions } from "./options.ts";
import { type RunEnvironment, runWrapper, type WrapperSignal } from "./run.ts";

/**
 * Polls `check` (sync or async) until it holds, or rejects naming `what` after `timeoutMs`.
 *
 * @example
 * ```ts
 * await using t = testConnection(service.url);
 * await eventually(() => t.conn.state === "open", "the first hello");
 * ```
 */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  what = check.toString(),
  timeoutMs = 5000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const WRAPPER_MAIN = new URL("./main.ts", import.meta.url).pathname;

/** A wrapper CLI process; `stderr` grows while it runs. */
export interface Cli {
  /** The process; its stdout is discarded. */
  child: Deno.ChildProcess;
  /** Its exit code, once stderr has been read to the end. */
  exit: Promise<number>;
  /** Everything it has written to stderr so far. */
  stderr: () => string;
}

/** CLI options that keep every wait short; a test's own options come after and win. */
export const FAST_CLI_OPTIONS = [
  "--reconnect-base-ms=10",
  "--reconnect-max-ms=40",
  "--connect-timeout-ms=2000",
];

/**
 * Runs the wrapper CLI (`deno run -A wrapper/main.ts`) with `args` as given (no defaults),
 * the environment extended by `env`. A process still running after 20 s is killed, so a
 * probe that hangs fails instead of holding the whole suite.
 *
 * @example
 * ```ts
 * const url = `--ingest-url=${service.url}`;
 * const cli = spawnCli([...FAST_CLI_OPTIONS, url, "--token=tok-1", "--", ...agent("exit:0")]);
 * assertEquals(await cli.exit, 0);
 * ```
 */
export function spawnCli(args: string[], env: Record<string, string> = {}): Cli {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", WRAPPER_MAIN, ...args],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const reading = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (text) => void (stderr += text) }),
  );
  const stdout = child.stdout.cancel();
  const guard = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const exit = child.status.then(async (status) => {
    clearTimeout(guard);
    await Promise.all([reading, stdout]);
    return status.code;
  });
  return { child, exit, stderr: () => stderr };
}

/** Timers small enough for tests; heartbeats and silence are off unless a test asks. */
export const FAST_TIMERS = {
  heartbeatMs: 60_000,
  silenceTimeoutMs: 60_000,
  reconnectBaseMs: 10,
  reconnectMaxMs: 40,
  reconnectAttempts: 5,
  connectTimeoutMs: 1000,
  doneWaitMs: 300,
  random: () => 0.5,
} satisfies Partial<IngestConnectionOptions>;

/** A connected {@link IngestConnection} plus the events it reported; closes on dispose. */
export interface TestConnection extends AsyncDisposable {
  /** The connection, already dialing. */
  conn: IngestConnection;
  /** Every event it reported, in order. */
  events: IngestEvent[];
  /** The events of one type. */
  of<T extends IngestEvent["type"]>(type: T): Extract<IngestEvent, { type: T }>[];
}

/**
 * Connects to `url` with {@link FAST_TIMERS} and `options`, recording every event.
 *
 * @example
 * ```ts
 * await using service = await startFakeService();
 * await using t = testConnection(service.url, { connectTimeoutMs: 100 });
 * await eventually(() => t.of("hello").length === 1);
 * ```
 */
export function testConnection(
  url: string,
  options: Partial<IngestConnectionOptions> = {},
): TestConnection {
  const events: IngestEvent[] = [];
  const conn = new IngestConnection({
    url,
    token: "tok-1",
    wrapperId: "w1",
    ...FAST_TIMERS,
    ...options,
    onEvent: (event) => {
      events.push(event);
      options.onEvent?.(event);
    },
  });
  conn.connect();
  return {
    conn,
    events,
    of: <T extends IngestEvent["type"]>(type: T) =>
      events.filter((e): e is Extract<IngestEvent, { type: T }> => e.type === type),
    async [Symbol.asyncDispose]() {
      conn.close();
      await conn.closed;
      // Let the socket's close handshake finish so no resource outlives the test.
      await new Promise((resolve) => setTimeout(resolve, 20));
    },
  };
}

const FAKE_AGENT = new URL("./testdata/fake_agent.ts", import.meta.url).pathname;

/**
 * The command line of the fake agent (wrapper/testdata/fake_agent.ts) running `steps`.
 *
 * @example
 * ```ts
 * startAgent(agent("out:a", "err:b", "exit:5"), { onLine }); // prints a, then b on stderr, exits 5
 * ```
 */
export function agent(...steps: string[]): string[] {
  return [Deno.execPath(), "run", "--no-config", "-A", FAKE_AGENT, ...steps];
}

/**
 * Wrapper options with test-sized timers against `service`.
 *
 * @example
 * ```ts
 * const options = wrapperOptions(service, { input: "jsonl", command: agent("exit:0") });
 * await runWrapper(options);
 * ```
 */
export function wrapperOptions(
  service: FakeService,
  overrides: Partial<WrapperOptions> = {},
): WrapperOptions {
  return {
    ingestUrl: service.url,
    token: "tok-1",
    heartbeatMs: 60_000,
    silenceTimeoutMs: 60_000,
    reconnectBaseMs: 10,
    reconnectMaxMs: 40,
    reconnectAttempts: 5,
    connectTimeoutMs: 1000,
    bufferLimit: 10_000,
    bufferBytes: 64 * 1024 * 1024,
    killGraceMs: 2000,
    maxFrameBytes: 524_288,
    sse: undefined,
    doneEvent: "session.idle",
    idleTimeoutMs: 0,
    input: "none",
    acp: false,
    command: agent("exit:0"),
    ...overrides,
  };
}

/** A wrapper run in this process: its exit code, its log, and a way to signal it. */
export interface TestRun {
  /** The wrapper's exit code (PROTOCOL.md 9.2). */
  exit: Promise<number>;
  /** Its progress messages, in order. */
  logs: string[];
  /** Delivers SIGINT or SIGTERM to the run, as the process would receive it. */
  signal(signal: WrapperSignal): void;
  /** True once a log line starts with `prefix`. */
  logged(prefix: string): boolean;
}

/**
 * Starts {@link runWrapper} against `service` with {@link wrapperOptions}.
 *
 * @example
 * ```ts
 * await using service = await startFakeService();
 * const run = startRun(service, { command: agent("out:hi", "exit:0") });
 * assertEquals(await run.exit, ExitCode.completed);
 * ```
 */
export function startRun(
  service: FakeService,
  overrides: Partial<WrapperOptions> = {},
  environment: RunEnvironment = {},
): TestRun {
  const logs: string[] = [];
  let listener: ((signal: WrapperSignal) => void) | undefined;
  const exit = runWrapper(wrapperOptions(service, overrides), {
    log: (message) => logs.push(message),
    onSignal: (l) => (listener = l, () => listener = undefined),
    signalAckTimeoutMs: 1000,
    ...environment,
    connection: { wrapperId: "w1", random: () => 0.5, doneWaitMs: 300, ...environment.connection },
  });
  return {
    exit,
    logs,
    signal: (signal) => listener?.(signal),
    logged: (prefix) => logs.some((line) => line.startsWith(prefix)),
  };
}

/** A Server-Sent Events endpoint that answers the n-th request with the n-th body. */
export interface SseServer extends AsyncDisposable {
  /** `http://127.0.0.1:<port>/event`. */
  url: string;
  /** The `Last-Event-ID` header of every request. */
  lastEventIds: (string | null)[];
}

/**
 * Serves `bodies[n]` to the n-th request (the last one again beyond them); a body that
 * ends in `"…"` stays open after its text, as a live stream does.
 *
 * @example
 * ```ts
 * await using sse = startSseServer(['data: {"type":"session.idle"}\n\n…']);
 * const run = startRun(service, { sse: sse.url, command: [] });
 * ```
 */
export function startSseServer(bodies: string[]): SseServer {
  const lastEventIds: (string | null)[] = [];
  const open = new Set<ReadableStreamDefaultController>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    lastEventIds.push(request.headers.get("last-event-id"));
    const body = bodies[Math.min(lastEventIds.length, bodies.length) - 1];
    const stays = body.endsWith("…");
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(stays ? body.slice(0, -1) : body));
        if (stays) open.add(controller);
        else controller.close();
      },
      cancel() {},
    });
    return new Response(stream, { headers: { "content-type": "text/event-stream" } });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/event`,
    lastEventIds,
    async [Symbol.asyncDispose]() {
      for (const controller of open) {
        try {
          controller.close();
        } catch {
          // Cancelled by the reader already.
        }
      }
      await server.shutdown();
    },
  };
}

/** Holds every reconnect wait until {@link ReconnectGate.open}; counts the waits. */
export interface ReconnectGate {
  /** Pass as {@link IngestConnectionOptions.delay}. */
  delay: NonNullable<IngestConnectionOptions["delay"]>;
  /** Ends the current wait (the dial follows). */
  open(): void;
  /** The delay asked for by each wait. */
  waits: number[];
}

/**
 * A {@link ReconnectGate}: the test decides when a reconnect happens.
 *
 * @example
 * ```ts
 * const gate = reconnectGate();
 * await using t = testConnection(service.url, { delay: gate.delay });
 * service.cut(); // the connection now waits in gate.delay
 * gate.open(); // …until the test lets it dial again
 * ```
 */
export function reconnectGate(): ReconnectGate {
  let release = () => {};
  const waits: number[] = [];
  return {
    waits,
    delay: (ms) => {
      waits.push(ms);
      return new Promise<void>((resolve) => release = resolve);
    },
    open: () => release(),
  };
}
