/**
 * `transactMany(kv, bodies)`: several independent transactions that share KV commits. Each
 * body runs on its own {@link Transaction} (its own snapshot reads, each checked); bodies
 * whose reads and writes do not overlap are committed together, as many per commit as Deno
 * KV's limits allow. When a shared commit fails a check, nobody can tell whose check it was,
 * so each of its members runs again alone through {@link transact}: one member's conflict
 * never loses or fails another's work, it only costs a second commit.
 *
 * @module
 */
import type { KnownEntries } from "./known_entries.ts";
import { transact, Transaction, type TransactOptions, type Tx } from "./transact.ts";

/** Deno KV's limits on one atomic commit (checks, mutations incl. enqueues, bytes). */
export const KV_COMMIT_LIMITS = { checks: 100, mutations: 1000, bytes: 800 * 1024 } as const;

/** What became of one body of {@link transactMany}. */
export type BatchResult<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** Options of {@link transactMany}. */
export interface TransactManyOptions extends Omit<TransactOptions, "known"> {
  /** Each body's known entries (see `TransactOptions.known`), by index. Default: none. */
  known?: readonly (KnownEntries | undefined)[];
}

interface Run<T> {
  tx: Transaction;
  outcome: BatchResult<T>;
}

/**
 * Runs every body as its own transaction and commits them in as few commits as their key
 * sets and KV's limits permit. Results come back in the order of `bodies`; a body that throws
 * (or whose lone commit throws) gets `{ok: false}`, the others are unaffected.
 *
 * @example
 * ```ts
 * const kv = await Deno.openKv(":memory:");
 * const results = await transactMany(kv, ["a", "b"].map((k) => async (tx: Tx) => {
 *   tx.set([k], ((await tx.get<number>([k])) ?? 0) + 1);
 *   return k;
 * })); // one commit for both
 * ```
 */
export async function transactMany<T>(
  kv: Deno.Kv,
  bodies: readonly ((tx: Tx) => Promise<T>)[],
  options: TransactManyOptions = {},
): Promise<BatchResult<T>[]> {
  const { queues = true, known = [], ...rest } = options;
  const runs = await Promise.all(bodies.map(async (body, i): Promise<Run<T>> => {
    const tx = new Transaction(kv, queues, known[i]);
    try {
      const value = await body(tx);
      if (!tx.writing) known[i]?.learn(tx);
      return { tx, outcome: { ok: true, value } };
    } catch (error) {
      known[i]?.forget();
      return { tx, outcome: { ok: false, error } };
    }
  }));
  const results: BatchResult<T>[] = runs.map((run) => run.outcome);
  const writing = runs.flatMap((run, i) => run.outcome.ok && run.tx.writing ? [i] : []);
  await Promise.all(
    groupDisjoint(writing.map((i) => runs[i].tx)).map(async (group) => {
      const members = group.map((g) => writing[g]);
      const versionstamp = await commitTogether(kv, members.map((i) => runs[i].tx));
      if (versionstamp !== null) {
        for (const i of members) known[i]?.learn(runs[i].tx, versionstamp);
        return;
      }
      // Someone's check failed (or the commit was refused): each member again, alone, on
      // fresh reads (whose remembered entry was stale is unknown).
      await Promise.all(members.map(async (i) => {
        known[i]?.forget();
        try {
          const alone = { ...rest, queues, known: known[i] };
          results[i] = { ok: true, value: await transact(kv, bodies[i], alone) };
        } catch (error) {
          results[i] = { ok: false, error };
        }
      }));
    }),
  );
  return results;
}

/** Commits several runs as one atomic operation: its versionstamp, `null` when it did not. */
async function commitTogether(kv: Deno.Kv, txs: Transaction[]): Promise<string | null> {
  try {
    const op = kv.atomic();
    // KV serializes values as they are added: a value it cannot store throws here already.
    for (const tx of txs) tx.addTo(op);
    const result = await op.commit();
    return result.ok ? result.versionstamp : null;
  } catch {
    // Locked, over a limit, or a value KV cannot store: the members' retries alone tell
    // which, and only that one fails.
    return null;
  }
}

/**
 * Splits runs into groups that may share a commit: within a group no run writes a key another
 * reads or writes, and the group stays within {@link KV_COMMIT_LIMITS}. Returns indexes.
 */
function groupDisjoint(txs: Transaction[]): number[][] {
  interface Group {
    members: number[];
    read: Set<string>;
    written: Set<string>;
    checks: number;
    mutations: number;
    bytes: number;
  }
  const groups: Group[] = [];
  txs.forEach((tx, i) => {
    const cost = { checks: tx.reads.size, mutations: tx.writes.size + tx.messages.length };
    const bytes = approxBytes(tx);
    const fits = (g: Group) =>
      g.checks + cost.checks <= KV_COMMIT_LIMITS.checks &&
      g.mutations + cost.mutations <= KV_COMMIT_LIMITS.mutations &&
      g.bytes + bytes <= KV_COMMIT_LIMITS.bytes &&
      ![...tx.writes.keys()].some((k) => g.read.has(k) || g.written.has(k)) &&
      ![...tx.reads.keys()].some((k) => g.written.has(k));
    let group = groups.find(fits);
    if (!group) {
      group = {
        members: [],
        read: new Set(),
        written: new Set(),
        checks: 0,
        mutations: 0,
        bytes: 0,
      };
      groups.push(group);
    }
    group.members.push(i);
    for (const k of tx.reads.keys()) group.read.add(k);
    for (const k of tx.writes.keys()) group.written.add(k);
    group.checks += cost.checks;
    group.mutations += cost.mutations;
    group.bytes += bytes;
  });
  return groups.map((g) => g.members);
}

/** A generous estimate of a run's commit size (keys and values). */
function approxBytes(tx: Transaction): number {
  let bytes = 0;
  for (const [id, write] of tx.writes) {
    bytes += id.length;
    if (write.kind === "set") bytes += valueBytes(write.value);
  }
  for (const id of tx.reads.keys()) bytes += id.length;
  for (const m of tx.messages) bytes += valueBytes(m.message);
  return bytes;
}

function valueBytes(value: unknown): number {
  if (value instanceof Uint8Array) return value.byteLength;
  if (typeof value === "string") return value.length * 3;
  try {
    return (JSON.stringify(
      value,
      (_k, v) =>
        v instanceof Uint8Array ? "x".repeat(v.byteLength) : typeof v === "bigint" ? String(v) : v,
    ) ??
      "").length * 3;
  } catch {
    return KV_COMMIT_LIMITS.bytes; // unmeasurable: commit it alone
  }
}
