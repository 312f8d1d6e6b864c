import assert from "node:assert/strict";
import { lockKvFile } from "./kv_file_lock.ts";

Deno.test({
  name: "lockKvFile: the first taker owns the file, a second one is told it is not alone",
  // The second lock keeps waiting in the background (taken if the first is dropped).
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      assert.equal(await lockKvFile(`${dir}/tether.kv`), true);
      assert.equal(await lockKvFile(`${dir}/tether.kv`, 50), false);
      assert.equal(await lockKvFile(`${dir}/other.kv`, 50), true);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
