/**
 * The service runs with exactly the permissions Deno Deploy grants (`--allow-net
 * --allow-env --allow-read`, no file writes) on `:memory:` KV, and refuses to start on
 * Deploy (no local KV path) without `TETHER_API_KEYS`.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;
const PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read"];

/** Starts `main.ts` with Deploy's permissions and exactly `env` (plus PATH/HOME). */
function startMain(env: Record<string, string>): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...PERMISSIONS, "main.ts"],
    cwd: ROOT,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      DENO_DIR: Deno.env.get("DENO_DIR") ?? "",
      ...env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** A free TCP port on the loopback interface. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Reads lines from a stream until one matches; fails after `timeoutMs`. */
async function waitForLine(
  stream: ReadableStream<Uint8Array>,
  match: (line: string) => boolean,
  timeoutMs: number,
): Promise<string> {
  const lines = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const timer = setTimeout(() => lines.cancel("timeout"), timeoutMs);
  try {
    for (;;) {
      const { done, value } = await lines.read();
      if (done) throw new Error(`stream ended before a matching line; saw:\n${buffer}`);
      buffer += value;
      const line = buffer.split("\n").find(match);
      if (line) return line;
    }
  } finally {
    clearTimeout(timer);
    lines.releaseLock();
  }
}

Deno.test("deploy permissions: serves /healthz with --allow-net --allow-env --allow-read and :memory: KV", async () => {
  const port = freePort();
  const child = startMain({
    TETHER_KV_PATH: ":memory:",
    TETHER_API_KEYS: "deploy-key",
    PORT: String(port),
  });
  try {
    await waitForLine(child.stdout, (line) => line.includes('"msg":"listening"'), 30_000);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "ok" });
    // The api key works and the viewer page (read from static/) is served.
    const created = await fetch(`http://127.0.0.1:${port}/v1/sessions`, {
      method: "POST",
      headers: { authorization: "Bearer deploy-key", "content-type": "application/json" },
      body: JSON.stringify({ sessionId: "deploy-check" }),
    });
    assert.equal(created.status, 201);
    await created.body?.cancel();
    const page = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /Tether/);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await child.stdout.cancel().catch(() => {});
    const stderr = await new Response(child.stderr).text();
    assert.doesNotMatch(stderr, /PermissionDenied|NotCapable|Requires .* access/);
  }
});

Deno.test("deploy permissions: without a local KV path and without TETHER_API_KEYS it refuses to start", async () => {
  const child = startMain({ DENO_DEPLOYMENT_ID: "test-deployment", PORT: String(freePort()) });
  const [status, stdout, stderr] = await Promise.all([
    child.status,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  assert.notEqual(status.code, 0);
  assert.match(stderr, /TETHER_API_KEYS is required/);
  assert.doesNotMatch(stdout, /listening/);
});
