/**
 * Many quiet runs (issue 13): N running executions, each with its own ingest socket, sending
 * little (400 events/s in all by default) plus a heartbeat every 20 s as a wrapper does. The
 * clients are spread over several processes (`bench/many_client.ts`). For each N the service
 * process's RSS and CPU (% of one core, from `/proc/<pid>/stat`), the ack latency (send →
 * ack) p50/p99, acked events/s and KV commits per event are printed, and the same sockets on
 * a raw WebSocket relay (`bench/many_relay.ts`, same run) give the baseline. The "kv floor"
 * row is a bare process committing the same commits (rate, mutations, value sizes) to its
 * own KV file (`bench/kv_floor.ts`): relay + floor is what the sockets and KV alone cost, the
 * least any service storing those events could use. A second table
 * runs the service on a slow KV (every read and commit delayed, as on a remote KV).
 *
 * Usage: `deno task bench:many [--steps 500,1000,2000,5000] [--rate 400] [--seconds 10]
 * [--clients 4] [--slow-kv-ms 20] [--slow-steps 500,2000] [--storm 2000] [--cpu-prof DIR]
 * [--commits]` (`--steps none`, `--slow-kv-ms 0` and `--storm 0` skip a part; `--commits`
 * prints the commits of each window by the key families they wrote).
 *
 * The restart storm: N wrappers (the real `IngestConnection`, default backoff) on a service
 * that is SIGKILLed and restarted on the same KV file; all must be back within their grace.
 *
 * Targets at 2,000 runs / 400 events/s: service RSS ≤ 256 MB, ack p99 ≤ 25 ms, CPU ≤ 10 %.
 * On the slow KV an ack should cost about one transaction (one read and one commit round
 * trip), not a queue of them: p99 ≤ 2 × delay + 25 ms.
 *
 * @module
 */
import { type ChildService, freePort, startChildService } from "../tests/helpers/child_service.ts";
import type { ClientCommand, ClientTarget, RunReport } from "./many_client.ts";
import type { KvCounts } from "./kv_count.ts";
import { restartStorm } from "../tests/helpers/restart_storm.ts";

const ROOT = new URL("../", import.meta.url).pathname;
/** Sessions and executions created at once while growing N. */
const CREATE_CONCURRENCY = 16;
/** The slow-KV entry point of the deploy-readiness work (delays every KV call). */
const SLOW_ENTRY = "tests/helpers/slow_main.ts";

/** Options of one bench run. */
export interface ManyOptions {
  /** The numbers of runs N to measure, one table row each (`--steps`). */
  steps: number[];
  /** Events per second across all runs (`--rate`). */
  rate: number;
  /** Length of each measured window (`--seconds`). */
  seconds: number;
  /** Client processes the sockets are spread over (`--clients`). */
  clients: number;
  /** Heartbeat interval of every socket (`--heartbeat-ms`). */
  heartbeatMs: number;
  /** Delay of every KV read and commit in the slow-KV table; 0 skips it (`--slow-kv-ms`). */
  slowKvMs: number;
  /** The numbers of runs of the slow-KV table (`--slow-steps`). */
  slowSteps: number[];
  /** Wrappers of the restart storm (0: none). */
  storm: number;
  /** Where the service writes a CPU profile (`--cpu-prof`); none when absent. */
  cpuProfDir?: string;
}

/** One row of the table. */
interface Row {
  n: number;
  target: "tether" | "relay" | "kv floor";
  rssMb: number;
  cpuPct: number;
  p50: number;
  p99: number;
  perSec: number;
  lost: number;
  commitsPerEvent?: number;
  readsPerEvent?: number;
  /** Commits in the window by the key families they wrote. */
  byKeys?: Record<string, number>;
  /** The commit shape seen in the window (for the KV floor). */
  shape?: { commitsPerSec: number; mutationsPerCommit: number; bytesPerValue: number };
}

/** A client process and its JSON-lines channel. */
class ClientProcess {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: AsyncIterator<string>;

  constructor() {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}bench/many_client.ts`],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#lines = lines(this.#child.stdout)[Symbol.asyncIterator]();
  }

  async request<T>(command: ClientCommand): Promise<T> {
    await this.#writer.write(new TextEncoder().encode(JSON.stringify(command) + "\n"));
    const { value, done } = await this.#lines.next();
    if (done) throw new Error("client process ended");
    return JSON.parse(value) as T;
  }

  async exit(): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(JSON.stringify({ cmd: "exit" }) + "\n"));
    await this.#child.status;
  }
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffer = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
    }
  }
}

/** CPU seconds (user + system) a process used so far. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After the command name: field 3 is index 0, so utime (14) and stime (15) are 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Resident set size of a process in MB. */
async function rssMb(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Creates `count` sessions with one running-to-be execution each. */
async function createRuns(
  service: ChildService,
  from: number,
  count: number,
): Promise<ClientTarget[]> {
  const out: ClientTarget[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const sessionId = `many-${from + i}`;
      const session = await service.call("/v1/sessions", { method: "POST", json: { sessionId } });
      if (session.status !== 201) throw new Error(`session: ${JSON.stringify(session)}`);
      const exec = await service.call<{ ingestUrl: string; ingestToken: string }>(
        `/v1/sessions/${sessionId}/executions`,
        { method: "POST", json: {} },
      );
      if (exec.status !== 201) throw new Error(`execution: ${JSON.stringify(exec)}`);
      out[i] = { url: exec.body.ingestUrl, token: exec.body.ingestToken };
    }
  };
  await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, worker));
  return out;
}

/** Opens `targets` spread over the client processes. */
async function openOn(
  clients: ClientProcess[],
  target: "tether" | "relay",
  targets: ClientTarget[],
  heartbeatMs: number,
): Promise<void> {
  const answers = await Promise.all(
    clients.map((client, c) =>
      client.request<{ opened: number; failed: number }>({
        cmd: "open",
        target,
        heartbeatMs,
        conns: targets.filter((_, i) => i % clients.length === c),
      })
    ),
  );
  const failed = answers.reduce((n, a) => n + a.failed, 0);
  if (failed > 0) throw new Error(`${failed} ${target} sockets did not open`);
}

/** One measurement window on `target`, reading the process `pid`. */
async function measure(
  clients: ClientProcess[],
  target: "tether" | "relay",
  pid: number,
  n: number,
  o: ManyOptions,
  kvCountFile?: string,
): Promise<Row> {
  const readCounts = async (): Promise<KvCounts | undefined> =>
    kvCountFile ? JSON.parse(await Deno.readTextFile(kvCountFile)) : undefined;
  await new Promise((r) => setTimeout(r, 500)); // let the counts file catch up
  const cpu0 = await cpuSeconds(pid);
  const kv0 = await readCounts();
  const started = performance.now();
  const reports = await Promise.all(clients.map((client) =>
    client.request<RunReport>({
      cmd: "run",
      target,
      rate: o.rate / clients.length,
      seconds: o.seconds,
    })
  ));
  const elapsed = (performance.now() - started) / 1000;
  const cpu1 = await cpuSeconds(pid);
  await new Promise((r) => setTimeout(r, 500));
  const kv1 = await readCounts();
  const latencies = reports.flatMap((r) => r.latencies).sort((a, b) => a - b);
  const sent = reports.reduce((s, r) => s + r.sent, 0);
  const acked = latencies.length;
  return {
    n,
    target,
    rssMb: await rssMb(pid),
    cpuPct: (cpu1 - cpu0) / elapsed * 100,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    perSec: acked / o.seconds,
    lost: sent - acked,
    commitsPerEvent: kv0 && kv1 ? (kv1.commits - kv0.commits) / Math.max(1, acked) : undefined,
    readsPerEvent: kv0 && kv1 ? (kv1.reads - kv0.reads) / Math.max(1, acked) : undefined,
    byKeys: kv0 && kv1 ? difference(kv1.byKeys, kv0.byKeys) : undefined,
    shape: kv0 && kv1 ? commitShape(kv0, kv1, elapsed) : undefined,
  };
}

/** Commits per second, mutations per commit and bytes per value between two counts. */
function commitShape(before: KvCounts, after: KvCounts, seconds: number): Row["shape"] {
  const commits = Math.max(1, after.commits - before.commits);
  const mutations = Math.max(1, after.mutations - before.mutations);
  return {
    commitsPerSec: commits / seconds,
    mutationsPerCommit: mutations / commits,
    bytesPerValue: (after.valueBytes - before.valueBytes) / mutations,
  };
}

/**
 * The storage floor of a measured row: a bare process committing the same shape to its own
 * KV file (`bench/kv_floor.ts`); its CPU is what KV alone costs for that work.
 */
async function kvFloor(row: Row, seconds: number): Promise<Row | undefined> {
  if (!row.shape) return undefined;
  const { commitsPerSec, mutationsPerCommit, bytesPerValue } = row.shape;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${ROOT}bench/kv_floor.ts`,
      ...[commitsPerSec, mutationsPerCommit, bytesPerValue, seconds, row.n].map(String),
    ],
    stderr: "inherit",
  }).output();
  const { cpuPct, commits } = JSON.parse(new TextDecoder().decode(out.stdout));
  return {
    n: row.n,
    target: "kv floor",
    rssMb: NaN,
    cpuPct,
    p50: NaN,
    p99: NaN,
    perSec: NaN,
    lost: 0,
    commitsPerEvent: row.commitsPerEvent !== undefined ? commits / seconds / row.perSec : undefined,
  };
}

function difference(
  after: Record<string, number>,
  before: Record<string, number>,
): Record<string, number> {
  return Object.fromEntries(
    Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => v !== 0),
  );
}

async function startRelay(): Promise<{ child: Deno.ChildProcess; port: number }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}bench/many_relay.ts`],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const first = await lines(child.stdout)[Symbol.asyncIterator]().next();
  return { child, port: (JSON.parse(first.value) as { port: number }).port };
}

/** Runs one table: a service (on a fast or slow KV) and optionally the relay, growing N. */
async function runTable(
  o: ManyOptions,
  steps: number[],
  kvDelayMs: number,
  withRelay: boolean,
): Promise<Row[]> {
  const dir = await Deno.makeTempDir({ prefix: "tether-many-" });
  const kvCountFile = `${dir}/kv-counts.json`;
  const zero: KvCounts = { commits: 0, reads: 0, mutations: 0, valueBytes: 0, byKeys: {} };
  await Deno.writeTextFile(kvCountFile, JSON.stringify(zero));
  const service = await startChildService({
    kvPath: `${dir}/tether.kv`,
    port: freePort(),
    entry: kvDelayMs > 0 ? SLOW_ENTRY : "main.ts",
    runFlags: [
      "--preload",
      "bench/kv_count.ts",
      ...(o.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${o.cpuProfDir}`] : []),
    ],
    env: {
      BENCH_KV_COUNT_FILE: kvCountFile,
      TETHER_LOG_LEVEL: "info",
      ...(kvDelayMs > 0 ? { TETHER_TEST_KV_DELAY_MS: String(kvDelayMs) } : {}),
    },
    startTimeoutMs: 60_000,
  });
  const relay = withRelay ? await startRelay() : undefined;
  const clients = Array.from({ length: o.clients }, () => new ClientProcess());
  const rows: Row[] = [];
  try {
    let have = 0;
    for (const n of steps) {
      const targets = await createRuns(service, have, n - have);
      await openOn(clients, "tether", targets, o.heartbeatMs);
      if (relay) {
        const relayTargets = targets.map((_, i) => ({
          url: `ws://127.0.0.1:${relay.port}/ingest/${have + i}`,
          token: "relay",
        }));
        await openOn(clients, "relay", relayTargets, o.heartbeatMs);
      }
      have = n;
      if (relay) {
        rows.push(await measure(clients, "relay", relay.child.pid, n, o));
        printRow(rows.at(-1)!);
      }
      rows.push(await measure(clients, "tether", service.pid, n, o, kvCountFile));
      printRow(rows.at(-1)!);
      const floor = kvDelayMs === 0 ? await kvFloor(rows.at(-1)!, o.seconds) : undefined;
      if (floor) printRow(rows[rows.push(floor) - 1]);
    }
  } finally {
    await Promise.all(clients.map((c) => c.exit()));
    relay?.child.kill("SIGKILL");
    await relay?.child.status;
    await service.kill(o.cpuProfDir ? "SIGINT" : "SIGKILL");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return rows;
}

const HEADER =
  "     N  target    RSS MB   CPU %   ack p50   ack p99   events/s  lost  commits/ev  reads/ev";

function printRow(r: Row): void {
  const f = (x: number | undefined, d = 1, w = 8) =>
    (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(d)).padStart(w);
  console.log(
    `${String(r.n).padStart(6)}  ${r.target.padEnd(8)}${f(r.rssMb, 0)} ${f(r.cpuPct, 1, 7)} ${
      f(r.p50, 1, 6)
    } ms ${f(r.p99, 1, 6)} ms ${f(r.perSec, 0, 10)} ${String(r.lost).padStart(5)} ${
      f(r.commitsPerEvent, 2, 11)
    } ${f(r.readsPerEvent, 2, 9)}`,
  );
  if (r.byKeys && Deno.args.includes("--commits")) console.log("        commits:", r.byKeys);
}

const verdict = (ok: boolean) => ok ? "PASS" : "FAIL";

function printVerdicts(rows: Row[], o: ManyOptions): void {
  const at = rows.filter((r) => r.target === "tether").find((r) => r.n === 2000) ??
    rows.filter((r) => r.target === "tether").at(-1)!;
  const relay = rows.find((r) => r.target === "relay" && r.n === at.n);
  const floor = rows.find((r) => r.target === "kv floor" && r.n === at.n);
  const vs = (t: number, b: number | undefined) =>
    b === undefined || b === 0 ? "" : ` (${(t / b).toFixed(1)}× relay)`;
  const floorNote = floor && relay
    ? `; relay + KV floor at the same commits: ${(relay.cpuPct + floor.cpuPct).toFixed(1)} %`
    : "";
  console.log(`\nverdicts at N = ${at.n}, ${o.rate} events/s in all:`);
  console.log(
    `  RSS     ${at.rssMb.toFixed(0)} MB${vs(at.rssMb, relay?.rssMb)}  target ≤ 256 MB  ${
      verdict(at.rssMb <= 256)
    }`,
  );
  console.log(
    `  ack p99 ${at.p99.toFixed(1)} ms${vs(at.p99, relay?.p99)}  target ≤ 25 ms  ${
      verdict(at.p99 <= 25)
    }`,
  );
  console.log(
    `  CPU     ${at.cpuPct.toFixed(1)} %${
      vs(at.cpuPct, relay?.cpuPct)
    }${floorNote}  target ≤ 10 %  ${verdict(at.cpuPct <= 10)}`,
  );
  console.log(
    `  lost    ${at.lost} frames unacked after the window + 3 s  target 0  ${
      verdict(at.lost === 0)
    }`,
  );
}

function printSlowVerdicts(rows: Row[], delayMs: number): void {
  const bound = 2 * delayMs + 25;
  console.log(`\nslow KV (${delayMs} ms per call): one transaction is ~${2 * delayMs} ms`);
  for (const r of rows) {
    console.log(
      `  N = ${r.n}: ack p50 ${r.p50.toFixed(1)} ms, p99 ${
        r.p99.toFixed(1)
      } ms  target p99 ≤ ${bound} ms  ${verdict(r.p99 <= bound && r.lost === 0)}`,
    );
  }
}

function numbers(args: string[], name: string, fallback: number[]): number[] {
  const i = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return fallback;
  const text = args[i].includes("=") ? args[i].split("=")[1] : args[i + 1];
  const values = (text ?? "").split(",").map(Number);
  if (values.some((v) => !Number.isFinite(v) || v < 0)) {
    throw new Error(`--${name} takes non-negative numbers, comma-separated`);
  }
  return values;
}

function text(args: string[], name: string): string | undefined {
  const i = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return undefined;
  return args[i].includes("=") ? args[i].split("=")[1] : args[i + 1];
}

if (import.meta.main) {
  const args = Deno.args;
  const o: ManyOptions = {
    steps: text(args, "steps") === "none" ? [] : numbers(args, "steps", [500, 1000, 2000, 5000]),
    rate: numbers(args, "rate", [400])[0],
    seconds: numbers(args, "seconds", [10])[0],
    clients: numbers(args, "clients", [4])[0],
    heartbeatMs: numbers(args, "heartbeat-ms", [20_000])[0],
    slowKvMs: numbers(args, "slow-kv-ms", [20])[0],
    slowSteps: numbers(args, "slow-steps", [500, 2000]),
    storm: numbers(args, "storm", [2000])[0],
    cpuProfDir: text(args, "cpu-prof"),
  };
  console.log(
    `bench:many — ${o.rate} events/s in all over N runs, ${o.seconds} s per window, ${o.clients} client processes, ${Deno.osRelease()} ${navigator.hardwareConcurrency} cores (shared machine: other work may run)`,
  );
  console.log(HEADER);
  if (o.steps.length > 0) {
    const rows = await runTable(o, o.steps, 0, true);
    printVerdicts(rows, o);
  }
  if (o.slowKvMs > 0) await slowTable(o);
  if (o.storm > 0) await stormReport(o.storm);
}

async function slowTable(o: ManyOptions): Promise<void> {
  try {
    await Deno.stat(`${ROOT}${SLOW_ENTRY}`);
  } catch {
    console.log(`\nslow-KV table skipped: ${SLOW_ENTRY} is missing`);
    return;
  }
  console.log(`\nslow KV: every KV read and commit delayed ${o.slowKvMs} ms`);
  console.log(HEADER);
  const slow = await runTable(o, o.slowSteps, o.slowKvMs, false);
  printSlowVerdicts(slow, o.slowKvMs);
}

/** The restart storm with the wrapper's default backoff and the default grace (10 s). */
async function stormReport(n: number): Promise<void> {
  console.log(`\nrestart storm: ${n} wrappers (real IngestConnection), SIGKILL, restart`);
  const r = await restartStorm({ n, graceMs: 10_000, reconnectBaseMs: 1000, reconnectMaxMs: 5000 });
  console.log(
    `  restart ${r.restartMs} ms; all back ${r.allBackMs} ms after listening; ${
      Math.round(r.admissionsPerSec)
    } admissions/s; back ${r.back}/${n}, gave up ${r.ended}, executions not running ${r.notRunning}`,
  );
  const ok = r.back === n && r.ended === 0 && r.notRunning === 0 && r.allBackMs < 10_000;
  console.log(`  target: all back within the grace (10 s), none fails  ${verdict(ok)}`);
}
