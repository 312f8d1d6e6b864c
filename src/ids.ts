/**
 * Identifiers and secrets: monotonic ULIDs for session and execution ids, random secrets,
 * the shape of ingest tokens (which carry their execution id, so admission needs one KV
 * read), SHA-256 hashes and constant-time comparison.
 *
 * @module
 */

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
let lastTime = 0;
let lastRandom: number[] = [];

/**
 * A 26-character ULID. Ids made in the same millisecond increase, so ids sort by creation.
 *
 * @example
 * ```ts
 * ulid() < ulid(); // true
 * ```
 */
export function ulid(now: number = Date.now()): string {
  if (now <= lastTime) {
    // Same millisecond (or a clock step back): increment the random part instead, and on
    // the (astronomically rare) overflow of all 80 bits borrow the next millisecond.
    let i = lastRandom.length - 1;
    while (i >= 0 && lastRandom[i] === 31) lastRandom[i--] = 0;
    if (i >= 0) lastRandom[i]++;
    else lastTime++;
    now = lastTime;
  } else {
    lastTime = now;
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    lastRandom = Array.from(bytes, (b) => b & 31);
  }
  let time = "";
  for (let t = now, i = 0; i < 10; i++, t = Math.floor(t / 32)) time = CROCKFORD[t % 32] + time;
  return time + lastRandom.map((d) => CROCKFORD[d]).join("");
}

/** `ses_` + ULID. */
export const newSessionId = (): string => `ses_${ulid()}`;
/** `exc_` + ULID. */
export const newExecutionId = (): string => `exc_${ulid()}`;

/**
 * Unpadded base64url of bytes.
 *
 * @example
 * ```ts
 * base64url(new Uint8Array([255, 254, 253])); // "__79"
 * ```
 */
export function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}

/**
 * Random URL-safe text with `bytes` bytes of entropy (default 32: 43 characters).
 *
 * @example
 * ```ts
 * const created = randomSecret(32);
 * ```
 */
export function randomSecret(bytes = 32): string {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/**
 * The execution id an ingest token (`tok.<executionId>.<43 base64url characters>`, see
 * `Credentials.ingestToken`) names, or `undefined` when the text is not shaped like one.
 * Only the shape is checked; the signature is not.
 *
 * @example
 * ```ts
 * const token = await credentials.ingestToken("exc_01JABCDEFGHJKMNPQRSTVWXYZ0");
 * tokenExecutionId(token); // "exc_01JABCDEFGHJKMNPQRSTVWXYZ0"
 * tokenExecutionId("not-a-token"); // undefined
 * ```
 */
export function tokenExecutionId(token: string): string | undefined {
  const m = /^tok\.(exc_[0-9A-Z]{26})\.[A-Za-z0-9_-]{43}$/.exec(token);
  return m?.[1];
}

/**
 * Lower-case hex SHA-256 of a text.
 *
 * @example
 * ```ts
 * await sha256Hex("abc"); // "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
 * ```
 */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return toHex(new Uint8Array(digest));
}

/**
 * Lower-case hex of bytes.
 *
 * @example
 * ```ts
 * toHex(new Uint8Array([0, 255])); // "00ff"
 * ```
 */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Compares two texts in time that depends only on their lengths, for secrets such as api
 * keys and token MACs.
 *
 * @example
 * ```ts
 * timingSafeEqual(expected, mac); // true only when the texts are equal
 * ```
 */
export function timingSafeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}
