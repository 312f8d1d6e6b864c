/**
 * Helpers shared by the wrapper's tests: polling for a condition, and an
 * {@link IngestConnection} with test-sized timers that records its events.
 *
 * @module
 */
import { IngestConnection, type IngestConnectionOptions, type IngestEvent } from "./mod.ts";

/** Resolves once `predicate` holds (polled every 5 ms), or rejects after `timeoutMs`. */
export async function eventually(
  predicate: () => boolean,
  what = predicate.toString(),
  timeoutMs = 5000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
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
  conn: IngestConnection;
  events: IngestEvent[];
  /** The events of one type. */
  of<T extends IngestEvent["type"]>(type: T): Extract<IngestEvent, { type: T }>[];
}

/** Connects to `url` with {@link FAST_TIMERS} and `options`, recording every event. */
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
