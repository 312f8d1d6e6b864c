/**
 * A TCP proxy on 127.0.0.1 that misbehaves like a bad network, on a seeded schedule: it
 * cuts connections (both sockets closed at once: neither side sees a WebSocket close
 * frame), delays chunks and stalls a direction for a while. The chaos is bounded: it stops
 * after `maxCuts` cuts or `chaosForMs`, after which bytes pass untouched, and the proxy
 * closes itself after `lifetimeMs`. The target can be changed while running (a restarted
 * service listens on a new port), and `cut()` drops everything on demand.
 *
 * The schedule of a connection depends only on the seed and the connection's rank in
 * accept order, so a run can be replayed.
 *
 * @example
 * ```ts
 * await using proxy = startChaosProxy({ targetPort: 8000, seed: 7, cutAfterMs: [50, 400] });
 * const url = proxy.via("ws://127.0.0.1:8000/v1/sessions/s/executions/e/ingest");
 * ```
 *
 * @module
 */
import { delay } from "../../src/async.ts";
import { Random } from "./random.ts";

/** Options of {@link startChaosProxy}. */
export interface ChaosProxyOptions {
  /** Port on 127.0.0.1 to forward to. */
  targetPort: number;
  /** Seed of the schedule. Default 1. */
  seed?: number;
  /** Each connection is cut after a lifetime drawn from this range (ms). Default: never. */
  cutAfterMs?: [number, number];
  /** Probability that a chunk waits `delayMs` before being forwarded. Default 0. */
  delayChance?: number;
  /** Range of a chunk delay (ms). Default [1, 20]. */
  delayMs?: [number, number];
  /** Probability that a chunk stalls its direction for `stallMs`. Default 0. */
  stallChance?: number;
  /** Range of a stall (ms). Default [100, 1000]. */
  stallMs?: [number, number];
  /** Scheduled cuts before the chaos stops. Default 1000. */
  maxCuts?: number;
  /** The chaos stops this long after the start (ms). Default 600000. */
  chaosForMs?: number;
  /** The proxy closes itself this long after the start (ms). Default 900000. */
  lifetimeMs?: number;
}

/** What the proxy did so far. */
export interface ChaosStats {
  /** Connections accepted. */
  connections: number;
  /** Connections cut by the schedule. */
  scheduledCuts: number;
  /** Connections cut by {@link ChaosProxy.cut}. */
  manualCuts: number;
  /** Chunks held back `delayMs` before being forwarded. */
  delays: number;
  /** Stalls of a connection (`stallMs`). */
  stalls: number;
  /** Bytes forwarded, both ways. */
  bytes: number;
  /** The lifetime drawn for each connection, in accept order (`null`: never cut). */
  lifetimes: (number | null)[];
}

/** A running chaos proxy. */
export interface ChaosProxy extends AsyncDisposable {
  /** Port the proxy listens on (127.0.0.1). */
  readonly port: number;
  /** What it did so far; updated live. */
  readonly stats: ChaosStats;
  /** Rewrites a `ws(s)://` or `http(s)://` URL to go through the proxy (plain ws/http). */
  via(url: string): string;
  /** Forwards new connections to another port from now on. */
  retarget(port: number): void;
  /** Cuts every open connection at once; returns how many. */
  cut(): number;
  /** Turns the scheduled chaos off (connections then pass untouched). */
  calm(): void;
  /** Stops listening and drops everything. */
  close(): Promise<void>;
}

interface Link {
  client: Deno.Conn;
  backend?: Deno.Conn;
  random: Random;
  abort: AbortController;
}

/**
 * Starts a chaos proxy on an ephemeral port of 127.0.0.1.
 *
 * @example
 * ```ts
 * const proxy = startChaosProxy({ targetPort: Number(new URL(server.url).port), seed: 42 });
 * const url = proxy.via(run.ingestUrl); // dial this instead of the service
 * await proxy.close();
 * ```
 */
export function startChaosProxy(options: ChaosProxyOptions): ChaosProxy {
  const {
    seed = 1,
    cutAfterMs,
    delayChance = 0,
    delayMs = [1, 20],
    stallChance = 0,
    stallMs = [100, 1000],
    maxCuts = 1000,
    chaosForMs = 600_000,
    lifetimeMs = 900_000,
  } = options;
  let targetPort = options.targetPort;
  const schedule = new Random(seed);
  const startedAt = Date.now();
  const stats: ChaosStats = {
    connections: 0,
    scheduledCuts: 0,
    manualCuts: 0,
    delays: 0,
    stalls: 0,
    bytes: 0,
    lifetimes: [],
  };
  let calm = false;
  const chaotic = () =>
    !calm && stats.scheduledCuts < maxCuts && Date.now() - startedAt < chaosForMs;
  const links = new Set<Link>();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });

  const drop = (link: Link) => {
    if (!links.delete(link)) return;
    link.abort.abort();
    for (const conn of [link.client, link.backend]) {
      try {
        conn?.close();
      } catch {
        // already closed
      }
    }
  };

  const pump = async (link: Link, from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(64 * 1024);
    const signal = link.abort.signal;
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        if (chaotic() && link.random.chance(stallChance)) {
          stats.stalls++;
          await delay(link.random.int(stallMs[0], stallMs[1]), { signal });
        } else if (chaotic() && link.random.chance(delayChance)) {
          stats.delays++;
          await delay(link.random.int(delayMs[0], delayMs[1]), { signal });
        }
        let written = 0;
        while (written < n) written += await to.write(buffer.subarray(written, n));
        stats.bytes += n;
      }
    } catch {
      // a cut, a reset or an abort ends the pump
    }
    drop(link);
  };

  const serve = async (client: Deno.Conn) => {
    stats.connections++;
    // Drawn in accept order, so the schedule of connection k depends on the seed only.
    const link: Link = { client, random: schedule.fork(), abort: new AbortController() };
    const lifetime = cutAfterMs ? link.random.int(cutAfterMs[0], cutAfterMs[1]) : undefined;
    stats.lifetimes.push(lifetime ?? null);
    links.add(link);
    try {
      link.backend = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
    } catch {
      drop(link);
      return;
    }
    if (!links.has(link)) {
      link.backend.close();
      return;
    }
    if (lifetime !== undefined && chaotic()) {
      delay(lifetime, { signal: link.abort.signal }).then(() => {
        if (!chaotic() || !links.has(link)) return;
        stats.scheduledCuts++;
        drop(link);
      }, () => {});
    }
    void pump(link, link.client, link.backend);
    void pump(link, link.backend, link.client);
  };

  const accepting = (async () => {
    for await (const client of listener) void serve(client);
  })().catch(() => {});

  const port = (listener.addr as Deno.NetAddr).port;
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      clearTimeout(lifetimeTimer);
      try {
        listener.close();
      } catch {
        // already closed
      }
      for (const link of [...links]) drop(link);
      await accepting;
    })();
    return closing;
  };
  const lifetimeTimer = setTimeout(() => void close(), lifetimeMs);
  Deno.unrefTimer(lifetimeTimer);

  return {
    port,
    stats,
    via(url) {
      const u = new URL(url);
      u.protocol = u.protocol === "https:" ? "http:" : u.protocol === "wss:" ? "ws:" : u.protocol;
      u.hostname = "127.0.0.1";
      u.port = String(port);
      return u.toString();
    },
    retarget(next) {
      targetPort = next;
    },
    cut() {
      const open = [...links];
      for (const link of open) drop(link);
      stats.manualCuts += open.length;
      return open.length;
    },
    calm() {
      calm = true;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
