/**
 * Deno Deploy readiness (issue 11), on the real entry point in child processes:
 * - started as Deploy starts it (DENO_DEPLOYMENT_ID set, no KV path), `main.ts` registers the
 *   deadline cron before it opens KV and before it serves;
 * - SIGINT with open ingest and viewer sockets (one peer never answering the close) exits
 *   within 3 s, everyone told 1012, and every connection is either recorded closed or left
 *   for the restart's grace.
 */
import assert from "node:assert/strict";
import { CloseCode } from "../src/protocol.ts";
import { DEADLINE_CRON } from "../src/start.ts";
import { records, transact } from "../src/store/mod.ts";
import { freePort, startChildService } from "./helpers/child_service.ts";
import { IngestClient, rawUpgrade } from "./helpers/ingest_client.ts";
import { API_KEY, tempKvPath } from "./helpers/server.ts";
import { WsViewer } from "./helpers/viewer.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** The log line with the queue delivery probe's verdict and the wake-ups in use. */
const isProbeVerdict = (line: Record<string, unknown>) =>
  typeof line.msg === "string" && line.msg.startsWith("KV queues ");

/** Reads JSON lines from `stream` until `done(lines)` holds; fails after `timeoutMs`. */
async function readLines(
  stream: ReadableStream<Uint8Array>,
  done: (lines: Record<string, unknown>[]) => boolean,
  timeoutMs: number,
): Promise<Record<string, unknown>[]> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  const lines: Record<string, unknown>[] = [];
  let buffer = "";
  const timer = setTimeout(() => reader.cancel("timeout"), timeoutMs);
  try {
    while (!done(lines)) {
      const { done: ended, value } = await reader.read();
      if (ended) throw new Error(`output ended; saw ${JSON.stringify(lines)}`);
      buffer += value;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        try {
          lines.push(JSON.parse(line));
        } catch {
          // not JSON
        }
      }
    }
    return lines;
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}

Deno.test("started as on Deno Deploy, main.ts registers the cron before opening KV and serving", async () => {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--preload", "tests/helpers/deploy_observer.ts", "main.ts"],
    cwd: ROOT,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      DENO_DIR: Deno.env.get("DENO_DIR") ?? "",
      DENO_DEPLOYMENT_ID: "test-deployment",
      TETHER_API_KEYS: API_KEY,
      PORT: String(port),
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const lines = await readLines(
      child.stdout,
      (ls) => ls.some((l) => l.msg === "listening") && ls.some(isProbeVerdict),
      20_000,
    );
    const observed = lines.filter((l) => typeof l.observed === "string");
    const order = observed.map((l) => l.observed);
    assert.deepEqual(order, ["cron", "openKv", "serve"]);
    assert.equal(observed[0].name, DEADLINE_CRON.name);
    assert.equal(observed[1].path, null, "no KV path: the platform's KV");
    const chosen = lines.find(isProbeVerdict);
    assert.ok((chosen?.wakeups as string[]).includes("cron"));
    // The KV here is a fresh local one: the platform-KV check says so, loudly.
    const warning = lines.find((l) => String(l.msg).startsWith("KV looks like temporary"));
    assert.equal(warning?.level, "error");
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.deepEqual(await health.json(), { status: "ok" });
  } finally {
    child.kill("SIGINT");
    await child.status;
    await child.stderr.cancel();
    await child.stdout.cancel().catch(() => {});
  }
});

Deno.test({
  name:
    "SIGINT with open ingest and viewer sockets stops within 3 s; connections closed or left for grace",
  async fn() {
    const temp = await tempKvPath();
    const port = freePort();
    const env = { TETHER_DISCONNECT_GRACE_MS: "600000", TETHER_TIMER_WAKEUPS: "sweep" };
    const service = await startChildService({ kvPath: temp.path, port, env });
    const stuckConns: Deno.Conn[] = [];
    try {
      const create = async (sid: string) => {
        await service.call("/v1/sessions", { method: "POST", json: { sessionId: sid } });
        const exec = await service.call<
          { executionId: string; ingestUrl: string; ingestToken: string }
        >(
          `/v1/sessions/${sid}/executions`,
          { method: "POST", json: {} },
        );
        return exec.body;
      };
      const polite = await create("s_polite");
      const wrapper = await IngestClient.connect(polite.ingestUrl, { token: polite.ingestToken });
      // A wrapper that never reads: it never answers the close handshake.
      const deaf = await create("s_deaf");
      stuckConns.push(
        await rawUpgrade({ hostname: "127.0.0.1", port }, new URL(deaf.ingestUrl).pathname, {
          authorization: `Bearer ${deaf.ingestToken}`,
        }),
      );
      const viewers = await Promise.all(
        ["s_polite", "s_deaf"].map((sid) => WsViewer.open(service.wsUrl, sid)),
      );
      await viewers[0].until((events) => events.length > 0, "replay");
      const started = Date.now();
      const status = await service.kill("SIGINT");
      const took = Date.now() - started;
      assert.ok(took < 3000, `shutdown took ${took} ms`);
      assert.equal(status.code, 0);
      assert.equal((await wrapper.closed).code, CloseCode.restart);
      for (const viewer of viewers) assert.equal((await viewer.closed).code, CloseCode.restart);

      const kv = await Deno.openKv(temp.path);
      try {
        for (const run of [polite, deaf]) {
          const [conn, exec] = await transact(
            kv,
            (tx) =>
              Promise.all([
                records.conn(run.executionId).get(tx),
                records.execution(run.executionId).get(tx),
              ]),
          );
          const grace = exec && await transact(kv, (tx) => records.grace(exec.sessionId).get(tx));
          // Closed (its grace started) or still recorded (the next start gives it a grace).
          assert.ok(
            (conn === null && grace?.executionId === run.executionId) || conn !== null,
            `${run.executionId}: conn ${JSON.stringify(conn)}, grace ${JSON.stringify(grace)}`,
          );
        }
      } finally {
        kv.close();
      }
      // The restart gives every connection still recorded its grace.
      await using again = await startChildService({ kvPath: temp.path, port: freePort(), env });
      for (const sid of ["s_polite", "s_deaf"]) {
        const list = await again.call<{ executions: { health: string }[] }>(
          `/v1/sessions/${sid}/executions`,
        );
        assert.equal(list.body.executions[0].health, "disconnected", sid);
      }
    } finally {
      for (const conn of stuckConns) conn.close();
      await service.kill("SIGKILL");
      await temp.cleanup();
    }
  },
});
