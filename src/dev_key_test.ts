import assert from "node:assert/strict";
import { loadDevApiKey } from "./dev_key.ts";

Deno.test("the dev api key is created once and kept in KV", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/tether.kv`;
    let kv = await Deno.openKv(path);
    const [a, b] = await Promise.all([loadDevApiKey(kv), loadDevApiKey(kv)]);
    assert.equal(a, b, "concurrent first uses agree");
    assert.match(a, /^dev_[A-Za-z0-9_-]{32}$/);
    kv.close();
    kv = await Deno.openKv(path);
    assert.equal(await loadDevApiKey(kv), a, "the same key after a restart");
    kv.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
