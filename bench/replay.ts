/**
 * Replay benchmark (issue 13): how fast a fresh viewer reads a long session back, against
 * how fast the same run ingested it. One run, on an on-disk KV file:
 *
 * - ingest: one fake wrapper streams N frames (as fast as the in-flight window allows);
 * - replay from `after=0` by a fresh viewer, one reader at a time: WebSocket, SSE, JSON
 *   pages (`limit=1000`, following `nextAfter`) and Durable Streams catch-up reads
 *   (following `Stream-Next-Offset`);
 * - fan-out: one wrapper, 100 live WebSocket viewers, against a raw WebSocket relay doing
 *   the same fan-out in the same run.
 *
 * The readers only count what they receive (no JSON parsing), so the figures are the
 * service's. Each replay rate is printed as a ratio of the same run's ingest rate, with a
 * verdict against the target (≥ 1.0×; fan-out ≥ 0.9× the relay).
 *
 * Usage: `deno task bench:replay [--events 50000] [--bytes 500] [--viewers 100]
 * [--fanout-frames 2000]` (each flag also as env `BENCH_EVENTS`, …).
 *
 * @module
 */
import { API_KEY, startServer, type TestServer } from "../tests/helpers/server.ts";
import { createRun, IngestClient } from "../tests/helpers/ingest_client.ts";
import { flag } from "./e2e.ts";

/** Sizes of one run (the command line's defaults in brackets). */
export interface ReplayOptions {
  /** Events in the session [50,000]. */
  events: number;
  /** Approximate JSON size of one frame in bytes [500]. */
  bytes: number;
  /** Live viewers of the fan-out measurement [100]. */
  viewers: number;
  /** Frames of the fan-out measurement [2,000]. */
  fanoutFrames: number;
}

/** Rates of one run, in events (or deliveries) per second. */
export interface ReplayResult {
  /** One wrapper streaming the session's frames. */
  ingest: number;
  /** A fresh WebSocket viewer replaying from `after=0`. */
  ws: number;
  /** The same over SSE. */
  sse: number;
  /** JSON pages of 1000 events, following `nextAfter`. */
  json: number;
  /** Durable Streams catch-up reads. */
  ds: number;
  /** Deliveries to the live WebSocket viewers of one wrapper. */
  fanout: number;
  /** The same fan-out through a raw WebSocket relay (the baseline). */
  relayFanout: number;
}

const payload = (bytes: number) => "x".repeat(Math.max(0, bytes - 80));
const auth = { authorization: `Bearer ${API_KEY}` };

/** Streams `events` frames into a new session; returns events per second. */
async function ingest(server: TestServer, sessionId: string, o: ReplayOptions): Promise<number> {
  const run = await createRun(server, sessionId, { graceMs: 600_000 });
  const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
  const window = wrapper.messages[0].maxInFlight as number;
  const pad = payload(o.bytes);
  const started = performance.now();
  for (let n = 1; n <= o.events; n++) {
    if (n - wrapper.acked > window) await wrapper.ackOf(n - window, 60_000);
    wrapper.send({ streamEventType: "output", seq: n, data: { n, pad } });
  }
  await wrapper.ackOf(o.events, 120_000);
  const perSec = o.events / ((performance.now() - started) / 1000);
  await wrapper.close();
  return perSec;
}

/** Times `read` (which returns how many events it got) in events per second. */
async function rate(read: () => Promise<number>): Promise<number> {
  const started = performance.now();
  const count = await read();
  return count / ((performance.now() - started) / 1000);
}

/** A fresh WebSocket viewer from `after=0` until it holds `total` messages. */
function replayWs(server: TestServer, sid: string, total: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${server.wsUrl}/v1/sessions/${sid}/stream?after=0`, {
      headers: auth,
    });
    let received = 0;
    socket.onmessage = () => {
      if (++received === total) {
        socket.close();
        resolve(received);
      }
    };
    socket.onclose = () => received < total && reject(new Error(`ws got ${received}/${total}`));
  });
}

/** A fresh SSE viewer until it has `total` events (counted by their `data:` lines). */
async function replaySse(server: TestServer, sid: string, total: number): Promise<number> {
  const abort = new AbortController();
  const res = await fetch(`${server.url}/v1/sessions/${sid}/events?after=0`, {
    headers: { ...auth, accept: "text/event-stream" },
    signal: abort.signal,
  });
  const marker = "\ndata: ";
  let received = 0;
  let carry = "";
  const decoder = new TextDecoder();
  for await (const chunk of res.body!) {
    const text = carry + decoder.decode(chunk, { stream: true });
    for (let i = text.indexOf(marker); i >= 0; i = text.indexOf(marker, i + 1)) received++;
    carry = text.slice(-(marker.length - 1));
    if (received >= total) break;
  }
  abort.abort();
  return received;
}

/** JSON pages of 1,000 from `after=0`, following `nextAfter` to the end. */
async function replayJson(server: TestServer, sid: string): Promise<number> {
  let after = 0;
  let events = 0;
  for (;;) {
    const res = await fetch(`${server.url}/v1/sessions/${sid}/events?after=${after}&limit=1000`, {
      headers: auth,
    });
    const text = await res.text();
    const tail = /"lastEventId":(\d+),"nextAfter":(\d+)\}$/.exec(text);
    if (!tail) throw new Error(`unexpected page: ${text.slice(-200)}`);
    events += Number(tail[2]) - after;
    after = Number(tail[2]);
    if (after >= Number(tail[1])) return events;
  }
}

/** Durable Streams catch-up reads from the start, following `Stream-Next-Offset`. */
async function replayDs(server: TestServer, sid: string): Promise<number> {
  let offset = "-1";
  let events = 0;
  for (;;) {
    const res = await fetch(`${server.url}/v1/sessions/${sid}/ds?offset=${offset}`, {
      headers: auth,
    });
    await res.arrayBuffer();
    const next = res.headers.get("stream-next-offset")!;
    events += Number(next) - Math.max(0, Number(offset));
    offset = next;
    if (res.headers.get("stream-up-to-date") === "true") return events;
  }
}

/** One wrapper, `viewers` live WebSocket viewers: deliveries per second. */
async function fanout(server: TestServer, o: ReplayOptions): Promise<number> {
  const run = await createRun(server, "fanout", { graceMs: 600_000 });
  const wrapper = await IngestClient.connect(run.ingestUrl, { token: run.ingestToken });
  const url = `${server.wsUrl}/v1/sessions/fanout/stream?eventTypes=output`;
  const sockets = await Promise.all(
    Array.from({ length: o.viewers }, () => openSocket(url, { headers: auth })),
  );
  const deliveries = o.viewers * o.fanoutFrames;
  const done = countMessages(sockets, deliveries);
  const pad = payload(o.bytes);
  const started = performance.now();
  for (let n = 1; n <= o.fanoutFrames; n++) {
    if (n - wrapper.acked > 500) await wrapper.ackOf(n - 500, 60_000);
    wrapper.send({ streamEventType: "output", seq: n, data: { n, pad } });
  }
  await done;
  const perSec = deliveries / ((performance.now() - started) / 1000);
  for (const socket of sockets) socket.close();
  await wrapper.close();
  return perSec;
}

/** The same fan-out through a bare relay (no storage): deliveries per second. */
async function relayFanout(o: ReplayOptions): Promise<number> {
  const viewers: WebSocket[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    if (new URL(req.url).pathname === "/view") viewers.push(socket);
    else socket.onmessage = (ev) => viewers.forEach((v) => v.send(ev.data));
    return response;
  });
  const base = `ws://127.0.0.1:${server.addr.port}`;
  const sinks = await Promise.all(
    Array.from({ length: o.viewers }, () => openSocket(`${base}/view`)),
  );
  const source = await openSocket(`${base}/ingest`);
  const deliveries = o.viewers * o.fanoutFrames;
  const done = countMessages(sinks, deliveries);
  const pad = payload(o.bytes);
  const started = performance.now();
  for (let n = 1; n <= o.fanoutFrames; n++) {
    source.send(JSON.stringify({ streamEventType: "output", seq: n, data: { n, pad } }));
  }
  await done;
  const perSec = deliveries / ((performance.now() - started) / 1000);
  for (const socket of [...sinks, source]) socket.close();
  await server.shutdown();
  return perSec;
}

function openSocket(url: string, init?: { headers: Record<string, string> }): Promise<WebSocket> {
  const socket = new WebSocket(url, init);
  return new Promise((resolve, reject) => {
    socket.onopen = () => resolve(socket);
    socket.onerror = () => reject(new Error(`cannot open ${url}`));
  });
}

function countMessages(sockets: WebSocket[], total: number): Promise<void> {
  const done = Promise.withResolvers<void>();
  let received = 0;
  for (const socket of sockets) {
    socket.onmessage = () => {
      if (++received === total) done.resolve();
    };
  }
  return done.promise;
}

/**
 * Runs every measurement once.
 *
 * @example
 * ```ts
 * const rates = await runReplay({ events: 50_000, bytes: 500, viewers: 100, fanoutFrames: 2000 });
 * console.log(`SSE replay ${Math.round(rates.sse)} events/s`);
 * ```
 */
export async function runReplay(o: ReplayOptions): Promise<ReplayResult> {
  const dir = await Deno.makeTempDir({ prefix: "tether-bench-" });
  const server = await startServer({
    kvPath: `${dir}/tether.kv`,
    config: { maxFramesPerSec: 1_000_000, heartbeatTimeoutMs: 3_600_000 },
  });
  try {
    const ingestRate = await ingest(server, "replay", o);
    const total = o.events + 1; // the frames and the execution's creation event
    const ws = await rate(() => replayWs(server, "replay", total));
    const sse = await rate(() => replaySse(server, "replay", total));
    const json = await rate(() => replayJson(server, "replay"));
    const ds = await rate(() => replayDs(server, "replay"));
    const fan = await fanout(server, o);
    return {
      ingest: ingestRate,
      ws,
      sse,
      json,
      ds,
      fanout: fan,
      relayFanout: await relayFanout(o),
    };
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const args = Deno.args;
  const o: ReplayOptions = {
    events: flag(args, "events", 50_000),
    bytes: flag(args, "bytes", 500),
    viewers: flag(args, "viewers", 100),
    fanoutFrames: flag(args, "fanout-frames", 2000),
  };
  const r = await runReplay(o);
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US").padStart(10);
  const verdict = (ratio: number, target: number) =>
    `${ratio.toFixed(2)}× (target ≥ ${target.toFixed(1)}×) ${ratio >= target ? "ok" : "MISSED"}`;
  console.log(`replay benchmark: ${o.events} events of ~${o.bytes} B, on-disk KV`);
  console.log(`  ingest (one wrapper)     ${fmt(r.ingest)} events/s`);
  for (
    const [name, perSec] of [["WebSocket", r.ws], ["SSE", r.sse], ["JSON pages", r.json], [
      "Durable Streams",
      r.ds,
    ]] as const
  ) {
    console.log(
      `  replay ${name.padEnd(17)} ${fmt(perSec)} events/s  ${verdict(perSec / r.ingest, 1)}`,
    );
  }
  console.log(
    `  fan-out 1 → ${o.viewers}          ${fmt(r.fanout)} deliveries/s vs relay ${
      fmt(r.relayFanout)
    }  ${verdict(r.fanout / r.relayFanout, 0.9)}`,
  );
}
