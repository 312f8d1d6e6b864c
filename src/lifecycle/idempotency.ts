/**
 * `Idempotency-Key` (PROTOCOL.md 4 and 12): a request with a key stores its success body in
 * the commit that acts on it; a retry with the same key and the same body (compared as
 * canonical JSON, so key order does not matter) within 24 h gets that body back and changes
 * nothing; the same key with another body is refused. Used inside a transition, so
 * concurrent retries are decided by the transaction's checks.
 *
 * @example
 * ```ts
 * const hash = await requestHash(body);
 * // inside change(ctx, sid, async (tx, p) => { … }):
 * const seen = await recallIdempotent(tx, entry, hash);
 * if (seen === "reused") return { ok: false, reason: "IDEMPOTENCY_KEY_REUSED" };
 * if (seen) return { ok: true, body: seen.body };
 * // … act, then:
 * rememberIdempotent(tx, entry, { requestHash: hash, executionId, body });
 * ```
 *
 * @module
 */
import { sha256Hex } from "../ids.ts";
import { type Entry, IDEMPOTENCY_TTL_MS, type IdempotencyRecord, type Tx } from "../store/mod.ts";

/**
 * JSON with object keys sorted at every depth, so a retry that sends the same body with its
 * keys in another order counts as the same body.
 */
function canonicalJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) =>
      v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
        : v,
  );
}

/**
 * The hash a request body is remembered by: SHA-256 of its canonical JSON, so key order does
 * not matter.
 *
 * @example
 * ```ts
 * (await requestHash({ a: 1, b: 2 })) === (await requestHash({ b: 2, a: 1 })); // true
 * ```
 */
export function requestHash(body: unknown): Promise<string> {
  return sha256Hex(canonicalJson(body));
}

/**
 * The response stored under the key when the body matches, `"reused"` when the key was
 * used with another body, `null` when the key is new (or expired). The read is checked at
 * commit, so of two concurrent first uses of a key only one commits.
 *
 * @example
 * ```ts
 * const previous = await recallIdempotent(tx, records.idempotency(sid, key), hash);
 * if (previous === "reused") return refuse({ code: ErrorCode.idempotencyKeyReused });
 * ```
 */
export async function recallIdempotent(
  tx: Tx,
  entry: Entry<IdempotencyRecord>,
  hash: string,
): Promise<IdempotencyRecord | "reused" | null> {
  const previous = await entry.get(tx);
  if (!previous) return null;
  return previous.requestHash === hash ? previous : "reused";
}

/**
 * Stores the response under the key, for 24 h, in the commit that acts on the request.
 *
 * @example
 * ```ts
 * rememberIdempotent(tx, records.idempotency(sid, key), { requestHash: hash, executionId, body });
 * ```
 */
export function rememberIdempotent(
  tx: Tx,
  entry: Entry<IdempotencyRecord>,
  record: IdempotencyRecord,
): void {
  entry.set(tx, record, { expireIn: IDEMPOTENCY_TTL_MS });
}
