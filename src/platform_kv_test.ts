import assert from "node:assert/strict";
import { Logger } from "./log.ts";
import { checkPlatformKv } from "./platform_kv.ts";
import { slowKv } from "../tests/helpers/slow_kv.ts";

Deno.test("checkPlatformKv: a fresh local KV is reported loudly; a remote-like one passes", async () => {
  const lines: Record<string, unknown>[] = [];
  const log = new Logger("info", (line) => lines.push(JSON.parse(line)));
  const kv = await Deno.openKv(":memory:");
  try {
    const local = await checkPlatformKv(kv, log);
    assert.equal(local.looksLocal, true);
    assert.equal(lines.at(-1)?.level, "error");
    assert.match(String(lines.at(-1)?.msg), /temporary local storage/);
    const remote = await checkPlatformKv(slowKv(kv, { delayMs: 10 }), log);
    assert.equal(remote.looksLocal, false);
    assert.ok(remote.medianCommitMs >= 9);
    assert.equal(lines.at(-1)?.level, "info");
  } finally {
    kv.close();
  }
});
