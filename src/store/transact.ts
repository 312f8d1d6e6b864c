/**
 * `transact(kv, fn)`: an optimistic transaction over Deno KV in the style of FoundationDB.
 * Every read inside `fn` records the versionstamp it saw; every write is buffered; at the
 * end one `kv.atomic()` commits the writes with a `check` per read. On a conflict `fn`
 * runs again on fresh data. So a transition cannot forget a check, and no step of it is
 * ever a separate write.
 *
 * Keep `fn` free of side effects outside the transaction: it may run several times.
 *
 * @module
 */
import { delay } from "../async.ts";
import type { KnownEntries } from "./known_entries.ts";

/** The view of KV that a transaction body gets. */
export interface Tx {
  /** Reads a key (seeing this transaction's own writes) and checks it at commit. */
  get<T>(key: Deno.KvKey): Promise<T | null>;
  /** Reads several keys at once; each is checked at commit. */
  getMany<T extends unknown[]>(
    keys: { [K in keyof T]: Deno.KvKey },
  ): Promise<{ [K in keyof T]: T[K] | null }>;
  /** Buffers a write. */
  set(key: Deno.KvKey, value: unknown, options?: { expireIn?: number }): void;
  /** Buffers a deletion. */
  delete(key: Deno.KvKey): void;
  /** Buffers a queue message, sent by the same commit. */
  enqueue(message: unknown, options?: { delay?: number }): void;
  /** Registers a check that `key` is still absent / at `versionstamp` without reading it. */
  check(key: Deno.KvKey, versionstamp: string | null): void;
  /**
   * Reads keys ahead in one round trip (10 keys per KV call) without checking them: a later
   * `get` of one of them answers from this read and checks it from then on, one never asked
   * for is never checked. So a body can fetch everything it may need at once and still
   * conflict only on what it used.
   */
  prefetch(keys: readonly Deno.KvKey[]): Promise<void>;
  /**
   * Takes an entry read elsewhere (a sweep's listing) as read ahead: like `prefetch`, it is
   * checked at its versionstamp only once the body reads the key.
   */
  know(entry: Deno.KvEntryMaybe<unknown>): void;
  /**
   * Reads a key without checking it at commit (a snapshot read, as in FoundationDB): for a
   * decision that stays right whatever a concurrent writer does to that key. A later `get`
   * of the key answers with the same value and checks it from then on.
   */
  snapshot<T>(key: Deno.KvKey): Promise<T | null>;
}

/** Options of {@link transact}. */
export interface TransactOptions {
  /** Whether `enqueue` sends queue messages; off where KV queues do not work. Default true. */
  queues?: boolean;
  /** Attempts before giving up with {@link TransactionConflictError}. Default 100. */
  maxAttempts?: number;
  signal?: AbortSignal;
  /**
   * Entries the first attempt takes as read (still checked at commit); what a committed
   * attempt read and wrote is remembered there, and a conflict or error forgets it all.
   * Default: none, every read goes to KV.
   */
  known?: KnownEntries;
}

/**
 * Raised when a transaction kept conflicting for `maxAttempts` runs. Nothing of it was
 * committed.
 *
 * @example
 * ```ts
 * try {
 *   await transact(kv, body, { maxAttempts: 5 });
 * } catch (err) {
 *   if (err instanceof TransactionConflictError) console.warn("too busy, try later");
 * }
 * ```
 */
export class TransactionConflictError extends Error {
  override name = "TransactionConflictError";
}

type Write =
  | { key: Deno.KvKey; kind: "set"; value: unknown; expireIn?: number }
  | { key: Deno.KvKey; kind: "delete" };

/** Most keys one `kv.getMany` call takes. */
const KV_GET_MANY_LIMIT = 10;

/**
 * Reads any number of keys in as few KV calls as `kv.getMany` allows (10 keys each), the
 * calls side by side. Entries are in the order of `keys`.
 *
 * @example
 * ```ts
 * const entries = await getManyChunked(kv, [["a"], ["b"]]);
 * ```
 */
export async function getManyChunked(
  kv: Deno.Kv,
  keys: readonly Deno.KvKey[],
): Promise<Deno.KvEntryMaybe<unknown>[]> {
  const calls: Promise<Deno.KvEntryMaybe<unknown>[]>[] = [];
  for (let i = 0; i < keys.length; i += KV_GET_MANY_LIMIT) {
    calls.push(kv.getMany(keys.slice(i, i + KV_GET_MANY_LIMIT)));
  }
  return (await Promise.all(calls)).flat();
}

/** A key's identity in the read and write sets. */
export const keyId = (key: Deno.KvKey): string =>
  key.some((part) => typeof part === "bigint")
    ? JSON.stringify(key, (_k, v) => typeof v === "bigint" ? `${v}n` : v)
    : JSON.stringify(key);

/**
 * One run of a transaction body: its reads (checked at commit), writes and messages. Use
 * {@link transact}, which reruns on conflicts; a run is built directly only to add several
 * runs to one atomic operation (`addTo`, as `transactMany` does).
 *
 * @example
 * ```ts
 * const tx = new Transaction(kv, true);
 * tx.set(["n"], ((await tx.get<number>(["n"])) ?? 0) + 1);
 * const result = await tx.commit(); // result.ok is false when ["n"] changed meanwhile
 * ```
 */
export class Transaction implements Tx {
  readonly reads = new Map<string, { key: Deno.KvKey; versionstamp: string | null }>();
  readonly writes = new Map<string, Write>();
  readonly messages: { message: unknown; delay?: number }[] = [];
  /** Values read in this run, so a repeated read sees the same snapshot. */
  readonly values = new Map<string, unknown>();
  /** Entries read ahead or known from elsewhere: checked only once the body reads them. */
  readonly #ahead = new Map<string, Deno.KvEntryMaybe<unknown>>();
  constructor(
    private readonly kv: Deno.Kv,
    private readonly queues: boolean,
    /** Entries taken as read without a round trip (see {@link KnownEntries}). */
    private readonly known?: KnownEntries,
  ) {}

  know(entry: Deno.KvEntryMaybe<unknown>): void {
    const id = keyId(entry.key);
    if (!this.#known(id)) this.#ahead.set(id, entry);
  }

  prefetch(keyList: readonly Deno.KvKey[]): Promise<void> {
    return this.#fetch(keyList, keyList.map(keyId));
  }

  /** Reads the keys (of identities `ids`) this run knows nothing of yet, 10 per KV call. */
  async #fetch(keyList: readonly Deno.KvKey[], ids: readonly string[]): Promise<void> {
    const missing = keyList.flatMap((key, i) => this.#known(ids[i]) ? [] : [{ key, id: ids[i] }]);
    if (missing.length === 0) return;
    const entries = await getManyChunked(this.kv, missing.map((m) => m.key));
    entries.forEach((entry, i) => {
      if (!this.#known(missing[i].id)) this.#ahead.set(missing[i].id, entry);
    });
  }

  async snapshot<T>(key: Deno.KvKey): Promise<T | null> {
    const id = keyId(key);
    await this.#fetch([key], [id]);
    const write = this.writes.get(id);
    if (write) return (write.kind === "set" ? write.value : null) as T | null;
    if (this.reads.has(id)) return (this.values.get(id) ?? null) as T | null;
    return ((this.#ahead.get(id) ?? this.known?.get(id))?.value ?? null) as T | null;
  }

  #known(id: string): boolean {
    return this.writes.has(id) || this.reads.has(id) || this.#ahead.has(id) ||
      this.known?.get(id) !== undefined;
  }

  /** Moves a read-ahead entry into the checked reads. */
  #use(id: string, entry: { key: Deno.KvKey; value: unknown; versionstamp: string | null }): void {
    this.#ahead.delete(id);
    this.reads.set(id, { key: entry.key, versionstamp: entry.versionstamp });
    this.values.set(id, entry.value);
  }

  async get<T>(key: Deno.KvKey): Promise<T | null> {
    const [value] = await this.getMany<[T]>([key]);
    return value;
  }

  async getMany<T extends unknown[]>(
    keyList: { [K in keyof T]: Deno.KvKey },
  ): Promise<{ [K in keyof T]: T[K] | null }> {
    const ids = (keyList as Deno.KvKey[]).map(keyId);
    await this.#fetch(keyList as Deno.KvKey[], ids);
    for (const id of ids) {
      // A key written since it was read ahead answers with the write, unchecked as before.
      if (this.writes.has(id) || this.reads.has(id)) continue;
      const entry = this.#ahead.get(id) ?? this.known?.get(id);
      if (entry) this.#use(id, entry);
    }
    return ids.map((id) => {
      const write = this.writes.get(id);
      if (write) return write.kind === "set" ? write.value : null;
      return this.values.get(id) ?? null;
    }) as { [K in keyof T]: T[K] | null };
  }

  set(key: Deno.KvKey, value: unknown, options?: { expireIn?: number }): void {
    this.writes.set(keyId(key), { key, kind: "set", value, expireIn: options?.expireIn });
  }

  delete(key: Deno.KvKey): void {
    this.writes.set(keyId(key), { key, kind: "delete" });
  }

  enqueue(message: unknown, options?: { delay?: number }): void {
    if (this.queues) this.messages.push({ message, delay: options?.delay });
  }

  check(key: Deno.KvKey, versionstamp: string | null): void {
    if (!this.reads.has(keyId(key))) this.reads.set(keyId(key), { key, versionstamp });
  }

  /** Whether committing would change anything. */
  get writing(): boolean {
    return this.writes.size > 0 || this.messages.length > 0;
  }

  /** Adds this run's checks, writes and messages to `op` (several runs may share one op). */
  addTo(op: Deno.AtomicOperation): Deno.AtomicOperation {
    for (const read of this.reads.values()) op.check(read);
    for (const write of this.writes.values()) {
      if (write.kind === "set") op.set(write.key, write.value, { expireIn: write.expireIn });
      else op.delete(write.key);
    }
    for (const m of this.messages) op.enqueue(m.message, { delay: m.delay });
    return op;
  }

  commit(): Promise<Deno.KvCommitResult | Deno.KvCommitError> {
    return this.addTo(this.kv.atomic()).commit();
  }
}

/**
 * Runs `fn` as one optimistic transaction and returns its result once committed.
 *
 * @example
 * ```ts
 * const kv = await Deno.openKv(":memory:");
 * const next = await transact(kv, async (tx) => {
 *   const n = (await tx.get<number>(["counter"])) ?? 0;
 *   tx.set(["counter"], n + 1);
 *   return n + 1;
 * });
 * ```
 */
export async function transact<T>(
  kv: Deno.Kv,
  fn: (tx: Tx) => Promise<T>,
  options: TransactOptions = {},
): Promise<T> {
  const { maxAttempts = 100, signal, queues = true } = options;
  const { known } = options;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    signal?.throwIfAborted();
    const tx = new Transaction(kv, queues, known);
    let committed: Deno.KvCommitResult | Deno.KvCommitError;
    let result: T;
    try {
      result = await fn(tx);
      if (!tx.writing) {
        known?.learn(tx);
        return result;
      }
      committed = await tx.commit();
    } catch (err) {
      known?.forget();
      // A local KV file written through another handle (a second instance or process) is
      // briefly locked; nothing was committed, so this is a conflict like any other.
      if (!isLocked(err)) throw err;
      committed = { ok: false };
    }
    if (committed.ok) {
      known?.learn(tx, committed.versionstamp);
      return result!;
    }
    known?.forget();
    // Conflict: back off a little (with jitter so racing writers spread out), then rerun.
    await delay(Math.random() * Math.min(50, 2 ** attempt), { signal });
  }
  throw new TransactionConflictError(`transaction conflicted ${maxAttempts} times`);
}

/**
 * Whether `err` is SQLite's busy error, as a local KV file reports it while another handle
 * writes. Nothing was committed then, so {@link transact} treats it as a conflict.
 *
 * @example
 * ```ts
 * isLocked(new Error("database is locked")); // true
 * ```
 */
export function isLocked(err: unknown): boolean {
  return err instanceof Error && /database is locked/.test(err.message);
}
