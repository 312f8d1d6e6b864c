import assert from "node:assert/strict";
import { delay } from "../async.ts";
import { transact, TransactionConflictError } from "./transact.ts";

async function withKv(fn: (kv: Deno.Kv) => Promise<void>): Promise<void> {
  const kv = await Deno.openKv(":memory:");
  try {
    await fn(kv);
  } finally {
    kv.close();
  }
}

Deno.test("transact commits buffered writes in one commit and returns the result", async () => {
  await withKv(async (kv) => {
    const result = await transact(kv, (tx) => {
      tx.set(["a"], 1);
      tx.set(["b"], 2);
      return Promise.resolve("done");
    });
    assert.equal(result, "done");
    const [a, b] = await kv.getMany<[number, number]>([["a"], ["b"]]);
    assert.equal(a.value, 1);
    assert.equal(b.value, 2);
    // One commit: both writes carry the same versionstamp.
    assert.equal(a.versionstamp, b.versionstamp);
  });
});

Deno.test("transact reads its own writes and deletions", async () => {
  await withKv(async (kv) => {
    await kv.set(["gone"], "old");
    await transact(kv, async (tx) => {
      tx.set(["k"], { n: 1 });
      assert.deepEqual(await tx.get(["k"]), { n: 1 });
      tx.delete(["gone"]);
      assert.equal(await tx.get(["gone"]), null);
      const [k, gone, absent] = await tx.getMany<[unknown, unknown, unknown]>([
        ["k"],
        ["gone"],
        ["absent"],
      ]);
      assert.deepEqual(k, { n: 1 });
      assert.equal(gone, null);
      assert.equal(absent, null);
    });
    assert.equal((await kv.get(["gone"])).value, null);
  });
});

Deno.test("transact reruns the body on a conflict and sees the fresh value", async () => {
  await withKv(async (kv) => {
    await kv.set(["counter"], 0);
    let runs = 0;
    const result = await transact(kv, async (tx) => {
      runs++;
      const n = (await tx.get<number>(["counter"]))!;
      // A concurrent writer changes the key after the first read.
      if (runs === 1) await kv.set(["counter"], 10);
      tx.set(["counter"], n + 1);
      return n + 1;
    });
    assert.equal(runs, 2);
    assert.equal(result, 11);
    assert.equal((await kv.get(["counter"])).value, 11);
  });
});

Deno.test("transact checks the absence of a key it read as missing", async () => {
  await withKv(async (kv) => {
    let runs = 0;
    const created = await transact(kv, async (tx) => {
      runs++;
      if (await tx.get(["slot"])) return false;
      if (runs === 1) await kv.set(["slot"], "someone else");
      tx.set(["slot"], "me");
      return true;
    });
    assert.equal(created, false);
    assert.equal(runs, 2);
    assert.equal((await kv.get(["slot"])).value, "someone else");
  });
});

Deno.test("transact's explicit check guards a key it never read", async () => {
  await withKv(async (kv) => {
    await transact(kv, (tx) => {
      tx.check(["guard"], null);
      tx.set(["x"], 1);
      return Promise.resolve();
    });
    assert.equal((await kv.get(["x"])).value, 1);
    await kv.set(["guard"], "present");
    await assert.rejects(
      transact(kv, (tx) => {
        tx.check(["guard"], null);
        tx.set(["x"], 2);
        return Promise.resolve();
      }, { maxAttempts: 2 }),
      TransactionConflictError,
    );
    assert.equal((await kv.get(["x"])).value, 1);
  });
});

Deno.test("transact gives up with TransactionConflictError after maxAttempts", async () => {
  await withKv(async (kv) => {
    let runs = 0;
    await assert.rejects(
      transact(kv, async (tx) => {
        runs++;
        await tx.get(["hot"]);
        await kv.set(["hot"], runs); // always changed behind the transaction's back
        tx.set(["out"], runs);
      }, { maxAttempts: 3 }),
      TransactionConflictError,
    );
    assert.equal(runs, 3);
    assert.equal((await kv.get(["out"])).value, null);
  });
});

Deno.test("a read-only transaction commits nothing", async () => {
  await withKv(async (kv) => {
    await kv.set(["r"], "v");
    const before = (await kv.get(["r"])).versionstamp;
    assert.equal(await transact(kv, (tx) => tx.get(["r"])), "v");
    assert.equal((await kv.get(["r"])).versionstamp, before);
  });
});

Deno.test("transact sends queue messages only when queues are on", async () => {
  const kv = await Deno.openKv(":memory:");
  const received: unknown[] = [];
  const listening = kv.listenQueue((m) => {
    received.push(m);
  });
  await transact(kv, (tx) => Promise.resolve(tx.enqueue({ n: 1 })), { queues: false });
  await transact(kv, (tx) => Promise.resolve(tx.enqueue({ n: 2 })));
  const deadline = Date.now() + 5000;
  while (received.length < 1 && Date.now() < deadline) await delay(10);
  await delay(50);
  kv.close();
  await listening;
  assert.deepEqual(received, [{ n: 2 }]);
});

Deno.test("concurrent transactions serialize: 50 increments give 50", async () => {
  await withKv(async (kv) => {
    await Promise.all(Array.from({ length: 50 }, () =>
      transact(kv, async (tx) => {
        const n = (await tx.get<number>(["n"])) ?? 0;
        tx.set(["n"], n + 1);
      })));
    assert.equal((await kv.get(["n"])).value, 50);
  });
});

Deno.test("transact stops when its signal is aborted", async () => {
  await withKv(async (kv) => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(
      transact(kv, (tx) => Promise.resolve(tx.set(["x"], 1)), { signal: controller.signal }),
    );
    assert.equal((await kv.get(["x"])).value, null);
  });
});

Deno.test("prefetch reads ahead without checking: only the keys the body used can conflict", async () => {
  await withKv(async (kv) => {
    await kv.set(["used"], 1);
    await kv.set(["unused"], 1);
    let runs = 0;
    let reads = 0;
    const counting = new Proxy(kv, {
      get(target, prop) {
        if (prop === "getMany") {
          return (keys: Deno.KvKey[]) => {
            reads++;
            return target.getMany(keys);
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    await transact(counting, async (tx) => {
      runs++;
      await tx.prefetch([["used"], ["unused"], ["absent"]]);
      const used = await tx.get<number>(["used"]);
      // Another writer changes a key read ahead but never used: no conflict.
      if (runs === 1) await kv.set(["unused"], 2);
      tx.set(["out"], used);
    });
    assert.equal(runs, 1);
    assert.equal(reads, 1, "one KV call for the prefetch, none for the get");
    await transact(kv, async (tx) => {
      runs++;
      await tx.prefetch([["used"], ["unused"]]);
      const used = await tx.get<number>(["used"]);
      // A key read ahead and used is checked at the versionstamp the prefetch saw.
      if (runs === 2) await kv.set(["used"], 5);
      tx.set(["out"], used);
    });
    assert.equal(runs, 3);
    assert.equal((await kv.get(["out"])).value, 5);
  });
});

Deno.test("know: an entry read before the transaction is checked at its versionstamp", async () => {
  await withKv(async (kv) => {
    await kv.set(["timer"], "armed");
    const listed = await kv.get(["timer"]);
    await kv.set(["timer"], "re-armed"); // changed after the listing
    let runs = 0;
    const seen: unknown[] = [];
    await transact(kv, async (tx) => {
      if (runs++ === 0) tx.know(listed);
      seen.push(await tx.get(["timer"]));
      tx.delete(["timer"]);
    });
    // The stale listed copy fails its check; the rerun reads afresh.
    assert.deepEqual(seen, ["armed", "re-armed"]);
    assert.equal((await kv.get(["timer"])).value, null);
  });
});

Deno.test("snapshot reads a key without checking it; a later get of it checks it", async () => {
  await withKv(async (kv) => {
    await kv.set(["seen"], 1);
    let runs = 0;
    await transact(kv, async (tx) => {
      runs++;
      const seen = await tx.snapshot<number>(["seen"]);
      if (runs === 1) await kv.set(["seen"], 2); // a concurrent writer: no conflict
      tx.set(["out"], seen);
    });
    assert.equal(runs, 1);
    assert.equal((await kv.get(["out"])).value, 1);
    await transact(kv, async (tx) => {
      runs++;
      const seen = await tx.snapshot<number>(["seen"]);
      assert.equal(await tx.get<number>(["seen"]), seen, "the get answers with the same value");
      if (runs === 2) await kv.set(["seen"], 3); // now it was used: checked
      tx.set(["out"], seen);
    });
    assert.equal(runs, 3);
    assert.equal((await kv.get(["out"])).value, 3);
  });
});
