/**
 * Splits an agent's output into lines by the rules of PROTOCOL.md 9.1: on `\n`, a trailing
 * `\r` removed, invalid UTF-8 replaced by U+FFFD, a last line without newline kept, blank
 * lines skipped. Memory stays bounded: of a line longer than `maxBytes` only the start is
 * kept (its full size is still counted), as it could not be forwarded whole anyway.
 *
 * @module
 */
import { concatBytes } from "../src/bytes.ts";

/** One line of output. */
export interface Line {
  /** The decoded line without its terminator; only its start when `cut`. */
  text: string;
  /** The line's size in bytes as read, without its `\n` or `\r\n` terminator. */
  bytes: number;
  /** True when the line was longer than `maxBytes` and `text` holds only its start. */
  cut: boolean;
}

/** Options of {@link splitLines}. */
export interface SplitLinesOptions {
  /** Longest line kept whole; read again at the start of every line. Default: unbounded. */
  maxBytes?: () => number;
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * Yields the non-blank lines of a byte stream.
 *
 * @example
 * ```ts
 * const stream = ReadableStream.from([new TextEncoder().encode("a\r\n\nb")]);
 * for await (const line of splitLines(stream)) console.log(line.text); // "a", then "b"
 * ```
 */
export async function* splitLines(
  stream: ReadableStream<Uint8Array>,
  options: SplitLinesOptions = {},
): AsyncGenerator<Line> {
  const maxBytes = options.maxBytes ?? (() => Infinity);
  let parts: Uint8Array[] = [];
  let kept = 0;
  let size = 0;
  let limit = maxBytes();
  let endsWithCr = false;

  const append = (piece: Uint8Array) => {
    if (piece.length === 0) return;
    size += piece.length;
    endsWithCr = piece[piece.length - 1] === CR;
    // Keep one byte beyond the limit, so a cut line is always known to be too long.
    const room = limit + 1 - kept;
    if (room > 0) {
      const taken = piece.subarray(0, Math.min(room, piece.length)).slice();
      parts.push(taken);
      kept += taken.length;
    }
  };
  const take = (): Line | undefined => {
    const bytes = endsWithCr ? size - 1 : size;
    const cut = bytes > limit;
    const joined = concatBytes(parts, cut ? limit : bytes);
    parts = [];
    kept = size = 0;
    endsWithCr = false;
    limit = maxBytes();
    // A cut line decodes in stream mode, so a character split by the cut is left out.
    const text = new TextDecoder().decode(joined, { stream: cut });
    return text.trim() === "" ? undefined : { text, bytes, cut };
  };

  for await (const chunk of stream) {
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(LF, start);
      append(chunk.subarray(start, newline < 0 ? chunk.length : newline));
      if (newline < 0) break;
      const line = take();
      if (line) yield line;
      start = newline + 1;
    }
  }
  if (size > 0) {
    const line = take();
    if (line) yield line;
  }
}
