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
