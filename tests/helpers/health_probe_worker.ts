/**
 * A worker that probes `/healthz` one request after another and reports the slowest answer,
 * so the measurement does not wait on the event loop of a test busy sending floods. Each
 * probe is paired with one to a trivial server inside this worker: the slowest of those is
 * what the machine itself (its scheduler, its other load) added, the baseline of the run.
 *
 * Messages in: `{url, timeoutMs, pauseMs}` to start, `"stop"` to stop. Out: `"ready"` after the
 * first answer (not counted: it pays for the worker's start), then `{worstMs, baselineMs,
 * probes}` on stop.
 *
 * @module
 */
/// <reference lib="deno.worker" />

let running = true;
let ready = false;

/** Milliseconds one GET took, or `timeoutMs` when it failed. */
async function timeGet(url: string, timeoutMs: number): Promise<number> {
  const started = performance.now();
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    return res.status === 200 ? performance.now() - started : timeoutMs;
  } catch {
    return timeoutMs;
  }
}

self.onmessage = async (ev: MessageEvent) => {
  if (ev.data === "stop") {
    running = false;
    return;
  }
  const { url, timeoutMs, pauseMs } = ev.data as {
    url: string;
    timeoutMs: number;
    pauseMs: number;
  };
  const control = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    () => new Response("ok"),
  );
  const controlUrl = `http://127.0.0.1:${control.addr.port}/`;
  let worstMs = 0;
  let baselineMs = 0;
  let probes = 0;
  while (running) {
    const ms = await timeGet(`${url}/healthz`, timeoutMs);
    if (!ready) {
      ready = ms < timeoutMs;
      if (ready) self.postMessage("ready");
    } else {
      worstMs = Math.max(worstMs, ms);
      baselineMs = Math.max(baselineMs, await timeGet(controlUrl, timeoutMs));
      probes++;
    }
    await new Promise((r) => setTimeout(r, pauseMs));
  }
  await control.shutdown();
  self.postMessage({ worstMs, baselineMs, probes });
};
