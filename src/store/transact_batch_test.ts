import assert from "node:assert/strict";
import { transactMany } from "./transact_batch.ts";
import type { Tx } from "./transact.ts";

/** A KV whose commits are counted. */
function counting(kv: Deno.Kv): { kv: Deno.Kv; commits: () => number } {
  let commits = 0;
  const wrapped = new Proxy(kv, {
    get(target, prop) {
      if (prop === "atomic") {
        return () => {
          const op = target.atomic();
          const commit = op.commit.bind(op);
          op.commit = () => {
            commits++;
            return commit();
          };
          return op;
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { kv: wrapped, commits: () => commits };
}

const increment = (key: string) => async (tx: Tx) => {
  const n = (await tx.get<number>([key])) ?? 0;
  tx.set([key], n + 1);
  return n + 1;
};

Deno.test("transactMany: disjoint bodies share one commit, each with its checks", async () => {
  const inner = await Deno.openKv(":memory:");
  const { kv, commits } = counting(inner);
  try {
    const results = await transactMany(kv, ["a", "b", "c"].map(increment));
    assert.deepEqual(results, [1, 1, 1].map((value) => ({ ok: true, value })));
    assert.equal(commits(), 1);
  } finally {
    inner.close();
  }
});

Deno.test("transactMany: bodies touching the same key never share a commit, none is lost", async () => {
  const inner = await Deno.openKv(":memory:");
  const { kv } = counting(inner);
  try {
    const results = await transactMany(kv, ["a", "a", "a", "b"].map(increment));
    assert.ok(results.every((r) => r.ok));
    assert.equal((await inner.get(["a"])).value, 3);
    assert.equal((await inner.get(["b"])).value, 1);
  } finally {
    inner.close();
  }
});

Deno.test("transactMany: a failed check of one member reruns it alone; the others commit once", async () => {
  const inner = await Deno.openKv(":memory:");
  try {
    let raced = false;
    const racing = async (tx: Tx) => {
      const n = (await tx.get<number>(["x"])) ?? 0;
      // Another writer changes what this member read before the shared commit.
      if (!raced) {
        raced = true;
        await inner.set(["x"], 100);
      }
      tx.set(["x"], n + 1);
      return n + 1;
    };
    const results = await transactMany(inner, [increment("a"), racing, increment("b")]);
    assert.deepEqual(results.map((r) => r.ok && r.value), [1, 101, 1]);
    assert.equal((await inner.get(["a"])).value, 1);
    assert.equal((await inner.get(["b"])).value, 1);
  } finally {
    inner.close();
  }
});

Deno.test("transactMany: a body that throws, or that KV refuses to store, fails alone", async () => {
  const inner = await Deno.openKv(":memory:");
  try {
    let deep: unknown = {};
    for (let i = 0; i < 20_000; i++) deep = { d: deep };
    const results = await transactMany(inner, [
      increment("a"),
      () => Promise.reject(new Error("boom")),
      (tx: Tx) => {
        tx.set(["deep"], deep);
        return Promise.resolve(0);
      },
      increment("b"),
    ]);
    assert.deepEqual(results.map((r) => r.ok), [true, false, false, true]);
    assert.equal((await inner.get(["a"])).value, 1);
    assert.equal((await inner.get(["b"])).value, 1);
    assert.equal((await inner.get(["deep"])).value, null);
  } finally {
    inner.close();
  }
});

Deno.test("transactMany: a batch over KV's 100-check limit is split across commits", async () => {
  const inner = await Deno.openKv(":memory:");
  const { kv, commits } = counting(inner);
  try {
    const keys = Array.from({ length: 150 }, (_, i) => `k${i}`);
    const results = await transactMany(kv, keys.map(increment));
    assert.ok(results.every((r) => r.ok));
    assert.equal(commits(), 2);
  } finally {
    inner.close();
  }
});
