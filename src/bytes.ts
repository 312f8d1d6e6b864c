/**
 * Byte helpers (JSR's `@std/bytes` is not reachable from our machines): joining chunks
 * read from a stream, a KV list or a pipe into one buffer.
 *
 * @module
 */

/**
 * The bytes of `parts` one after another, at most `maxLength` of them (the rest is left
 * out). A single part that fits is returned as it is, without a copy.
 *
 * @example
 * ```ts
 * concatBytes([new Uint8Array([1, 2]), new Uint8Array([3])]); // Uint8Array [1, 2, 3]
 * concatBytes([new Uint8Array([1, 2]), new Uint8Array([3])], 2); // Uint8Array [1, 2]
 * ```
 */
export function concatBytes(parts: readonly Uint8Array[], maxLength = Infinity): Uint8Array {
  const total = parts.reduce((n, part) => n + part.length, 0);
  const length = Math.min(total, maxLength);
  if (parts.length === 1) return parts[0].subarray(0, length);
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    if (offset >= length) break;
    const piece = part.subarray(0, length - offset);
    out.set(piece, offset);
    offset += piece.length;
  }
  return out;
}

const encoder = new TextEncoder();

/**
 * UTF-8 size of `text`. A text with no character beyond ASCII is its length, found without
 * encoding it (the common case, short or long).
 *
 * @example
 * ```ts
 * utf8Bytes("abc"); // 3
 * utf8Bytes("héllo"); // 6
 * ```
 */
export function utf8Bytes(text: string): number {
  return /[\u0080-\uffff]/.test(text) ? encoder.encode(text).length : text.length;
}
