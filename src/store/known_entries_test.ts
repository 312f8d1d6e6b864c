import assert from "node:assert/strict";
import { KnownEntries } from "./known_entries.ts";
import { transact, type Tx } from "./transact.ts";
import { transactMany } from "./transact_batch.ts";

/** A KV whose reads (keys asked for) are counted. */
function countingReads(kv: Deno.Kv): { kv: Deno.Kv; reads: () => number } {
  let reads = 0;
  const wrapped = new Proxy(kv, {
    get(target, prop) {
      if (prop === "getMany") {
        return (keys: Deno.KvKey[]) => {
          reads += keys.length;
          return target.getMany(keys);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { kv: wrapped, reads: () => reads };
}

const increment = (key: string) => async (tx: Tx) => {
  const n = (await tx.get<{ n: number }>([key]))?.n ?? 0;
  tx.set([key], { n: n + 1 });
  return n + 1;
};

Deno.test("KnownEntries: the next transaction skips the read and still commits", async () => {
  const inner = await Deno.openKv(":memory:");
  const { kv, reads } = countingReads(inner);
  const known = new KnownEntries();
  try {
    assert.equal(await transact(kv, increment("a"), { known }), 1);
    assert.equal(reads(), 1);
    assert.equal(await transact(kv, increment("a"), { known }), 2);
    assert.equal(await transact(kv, increment("a"), { known }), 3);
    assert.equal(reads(), 1, "no read after the first commit");
    assert.deepEqual((await inner.get(["a"])).value, { n: 3 });
  } finally {
    inner.close();
  }
});

Deno.test("KnownEntries: a change by another writer fails the check; the rerun reads afresh", async () => {
  const inner = await Deno.openKv(":memory:");
  const { kv, reads } = countingReads(inner);
  const known = new KnownEntries();
  try {
    await transact(kv, increment("a"), { known });
    await inner.set(["a"], { n: 10 }); // another writer, unseen by `known`
    assert.equal(await transact(kv, increment("a"), { known }), 11, "never the stale 2");
    assert.equal(reads(), 2, "one fresh read after the failed check");
    assert.deepEqual((await inner.get(["a"])).value, { n: 11 });
    assert.equal(await transact(kv, increment("a"), { known }), 12);
    assert.equal(reads(), 2, "remembered again after the rerun committed");
  } finally {
    inner.close();
  }
});

Deno.test("KnownEntries: a record deleted by the last commit is remembered as absent", async () => {
  const inner = await Deno.openKv(":memory:");
  const { kv, reads } = countingReads(inner);
  const known = new KnownEntries();
  try {
    await inner.set(["a"], { n: 1 });
    await transact(kv, async (tx) => {
      await tx.get(["a"]);
      tx.delete(["a"]);
    }, { known });
    assert.equal(await transact(kv, increment("a"), { known }), 1);
    assert.equal(reads(), 1);
    // Someone creates it meanwhile: the remembered absence fails its check.
    await inner.set(["a"], { n: 5 });
    assert.equal(
      await transact(kv, async (tx) => {
        const value = await tx.get<{ n: number }>(["a"]);
        tx.delete(["a"]);
        return value?.n;
      }, { known }),
      5,
    );
  } finally {
    inner.close();
  }
});

Deno.test("KnownEntries: only keys read are kept, not keys merely written", async () => {
  const inner = await Deno.openKv(":memory:");
  const { kv, reads } = countingReads(inner);
  const known = new KnownEntries();
  try {
    await transact(kv, async (tx) => {
      await tx.get(["head"]);
      tx.set(["head"], { n: 1 });
      tx.set(["page", 1], "event");
    }, { known });
    assert.equal(known.get(JSON.stringify(["page", 1])), undefined);
    assert.notEqual(known.get(JSON.stringify(["head"])), undefined);
    assert.equal(await transact(kv, (tx) => tx.get(["page", 1]), { known }), "event");
    assert.equal(reads(), 2);
  } finally {
    inner.close();
  }
});

Deno.test("KnownEntries: remembered records are frozen at every depth (a write into one throws)", async () => {
  const kv = await Deno.openKv(":memory:");
  const known = new KnownEntries();
  try {
    await transact(kv, increment("a"), { known });
    const value = await transact(kv, (tx) => tx.get<{ n: number }>(["a"]), { known });
    assert.throws(() => {
      value!.n = 99;
    }, TypeError);
    await kv.set(["queue"], { ids: ["x"] });
    await transact(kv, (tx) => tx.get(["queue"]), { known });
    const queue = await transact(kv, (tx) => tx.get<{ ids: string[] }>(["queue"]), { known });
    assert.throws(() => queue!.ids.push("y"), TypeError);
    assert.deepEqual((await kv.get(["queue"])).value, { ids: ["x"] });
  } finally {
    kv.close();
  }
});

Deno.test("KnownEntries: members of a shared commit learn its versionstamp; a conflict forgets", async () => {
  const inner = await Deno.openKv(":memory:");
  const { kv, reads } = countingReads(inner);
  const known = [new KnownEntries(), new KnownEntries()];
  try {
    await transactMany(kv, [increment("a"), increment("b")], { known });
    assert.equal(reads(), 2);
    const second = await transactMany(kv, [increment("a"), increment("b")], { known });
    assert.deepEqual(second, [2, 2].map((value) => ({ ok: true, value })));
    assert.equal(reads(), 2, "both took their reads from the shared commit");
    await inner.set(["b"], { n: 7 });
    const third = await transactMany(kv, [increment("a"), increment("b")], { known });
    assert.deepEqual(third, [3, 8].map((value) => ({ ok: true, value })));
    assert.deepEqual((await inner.get(["a"])).value, { n: 3 });
    assert.deepEqual((await inner.get(["b"])).value, { n: 8 });
  } finally {
    inner.close();
  }
});

Deno.test("KnownEntries: it keeps exactly what the last transaction read (nothing piles up)", async () => {
  const kv = await Deno.openKv(":memory:");
  const known = new KnownEntries();
  const id = (key: Deno.KvKey) => JSON.stringify(key);
  try {
    await transact(kv, (tx) => tx.getMany([["a"], ["b"], ["c"]]), { known });
    assert.ok([["a"], ["b"], ["c"]].every((key) => known.get(id(key)) !== undefined));
    await transact(kv, increment("a"), { known });
    assert.notEqual(known.get(id(["a"])), undefined);
    assert.equal(known.get(id(["b"])), undefined);
    assert.equal(known.get(id(["c"])), undefined);
  } finally {
    kv.close();
  }
});
