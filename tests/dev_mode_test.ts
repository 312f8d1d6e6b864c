/**
 * Dev mode across restarts (README "Quick start"): `main.ts` without `TETHER_API_KEYS` on a
 * local KV file prints the same api key at every start, and that key keeps working.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url).pathname;

/** Starts `main.ts` in dev mode; resolves with the printed key once it listens. */
async function startDev(kvPath: string, port: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts"],
    cwd: ROOT,
    env: { TETHER_API_KEYS: "", TETHER_KV_PATH: kvPath, PORT: String(port) },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes('"listening"')) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`exited early: ${text}`);
    text += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  const key = /generated api key: (\S+)/.exec(text)?.[1];
  assert.ok(key, text);
  return { child, key };
}

Deno.test("dev mode prints the same working api key at every start", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tether-dev-" });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  try {
    const keys: string[] = [];
    for (let start = 0; start < 2; start++) {
      const { child, key } = await startDev(`${dir}/tether.kv`, port);
      try {
        keys.push(key);
        const res = await fetch(`http://127.0.0.1:${port}/v1/sessions/none`, {
          headers: { authorization: `Bearer ${key}` },
        });
        await res.body?.cancel();
        assert.equal(res.status, 404, "the key is accepted (the session does not exist)");
      } finally {
        child.kill("SIGTERM");
        await child.status;
      }
    }
    assert.equal(keys[0], keys[1]);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
