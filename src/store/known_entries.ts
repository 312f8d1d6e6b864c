/**
 * Entries a transaction may take as read without reading them. A writer that keeps
 * committing to the same few records (an ingest connection storing frames: its execution,
 * its connection record, its session's head) remembers what its last commit left there,
 * with the versionstamps; its next transaction takes those as its reads and still checks
 * every one of them at commit. So correctness never rests on the cache: when another writer
 * changed a record meanwhile, the check fails and the transaction runs again on fresh reads.
 * In the steady state a commit then costs no read round trip at all.
 *
 * @module
 */

/** A key's value and versionstamp as a transaction saw or left it (`null`: absent). */
export interface KnownEntry {
  key: Deno.KvKey;
  value: unknown;
  versionstamp: string | null;
}

/** What a committed transaction read and wrote, by key identity. */
export interface CommittedView {
  reads: ReadonlyMap<string, { key: Deno.KvKey; versionstamp: string | null }>;
  values: ReadonlyMap<string, unknown>;
  writes: ReadonlyMap<
    string,
    { key: Deno.KvKey; kind: "set"; value: unknown } | { key: Deno.KvKey; kind: "delete" }
  >;
}

/**
 * The records one writer last committed, offered to its next transaction as reads.
 *
 * @example
 * ```ts
 * import { transact, type Tx } from "./transact.ts";
 * const kv = await Deno.openKv(":memory:");
 * const known = new KnownEntries();
 * const bump = (tx: Tx) => tx.get<number>(["n"]).then((n) => tx.set(["n"], (n ?? 0) + 1));
 * await transact(kv, bump, { known }); // reads ["n"], then remembers what it wrote
 * await transact(kv, bump, { known }); // no read: checks ["n"] at the remembered versionstamp
 * ```
 */
export class KnownEntries {
  #entries = new Map<string, KnownEntry>();

  /** The remembered entry of a key (by its identity), if any. */
  get(id: string): KnownEntry | undefined {
    return this.#entries.get(id);
  }

  /**
   * Remembers exactly the keys `tx` read, as it left them once it committed at
   * `versionstamp` (`undefined`: it wrote nothing, so its reads are still what KV holds as
   * far as it knows). What it did not read is dropped: keys only written (event pages) are
   * never read next, and records an earlier transaction needed (admission reads a few more)
   * would only hold memory for as long as the connection lives.
   */
  learn(tx: CommittedView, versionstamp?: string): void {
    const next = new Map<string, KnownEntry>();
    for (const [id, read] of tx.reads) {
      next.set(id, {
        key: read.key,
        value: tx.values.get(id) ?? null,
        versionstamp: read.versionstamp,
      });
    }
    if (versionstamp !== undefined) {
      for (const [id, write] of tx.writes) {
        const read = tx.reads.get(id);
        if (!read) continue;
        next.set(
          id,
          write.kind === "set"
            ? { key: read.key, value: write.value, versionstamp }
            : { key: read.key, value: null, versionstamp: null },
        );
      }
    }
    for (const entry of next.values()) freeze(entry.value);
    this.#entries = next;
  }

  /** Drops everything: after a conflict or an error, the next transaction reads afresh. */
  forget(): void {
    this.#entries.clear();
  }
}

/**
 * Remembered records are shared between transactions: a write into one, at any depth, must
 * fail loudly instead of changing what the next transaction takes as read.
 */
function freeze(value: unknown): unknown {
  const pending = [value];
  while (pending.length > 0) {
    const node = pending.pop();
    if (typeof node !== "object" || node === null || ArrayBuffer.isView(node)) continue;
    if (Object.isFrozen(node)) continue;
    Object.freeze(node);
    pending.push(...Object.values(node));
  }
  return value;
}
