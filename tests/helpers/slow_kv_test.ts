import assert from "node:assert/strict";
import { slowKv } from "./slow_kv.ts";

Deno.test("slow KV: every read, list batch and commit pays the delay; results unchanged", async () => {
  const inner = await Deno.openKv(":memory:");
  const kv = slowKv(inner, { delayMs: 40 });
  try {
    const timed = async <T>(op: () => Promise<T>) => {
      const start = performance.now();
      const value = await op();
      return { value, ms: performance.now() - start };
    };
    const committed = await timed(() =>
      kv.atomic().check({ key: ["a"], versionstamp: null })
        .set(["a"], 1).set(["b"], 2).commit()
    );
    assert.equal(committed.value.ok, true);
    assert.ok(committed.ms >= 38, `commit took ${committed.ms} ms`);
    const read = await timed(() => kv.get<number>(["a"]));
    assert.equal(read.value.value, 1);
    assert.ok(read.ms >= 38, `get took ${read.ms} ms`);
    const many = await timed(() => kv.getMany<[number, number]>([["a"], ["b"]]));
    assert.deepEqual(many.value.map((e) => e.value), [1, 2]);
    assert.ok(many.ms >= 38, `getMany took ${many.ms} ms`);
    const listed = await timed(() => Array.fromAsync(kv.list<number>({ prefix: [] })));
    assert.deepEqual(listed.value.map((e) => e.value), [1, 2]);
    assert.ok(listed.ms >= 38, `list took ${listed.ms} ms`);
    const set = await timed(() => kv.set(["c"], 3));
    assert.ok(set.ms >= 38, `set took ${set.ms} ms`);
    assert.equal((await inner.get(["c"])).value, 3);
    // A failed check still reports failure through the wrapper.
    const conflict = await kv.atomic().check({ key: ["a"], versionstamp: null }).set(["a"], 9)
      .commit();
    assert.equal(conflict.ok, false);
  } finally {
    inner.close();
  }
});
