import assert from "node:assert/strict";
import { type Line, splitLines } from "./lines.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

async function lines(chunks: (string | Uint8Array)[], maxBytes?: number): Promise<Line[]> {
  const stream = ReadableStream.from(chunks.map((c) => typeof c === "string" ? bytes(c) : c));
  const out: Line[] = [];
  for await (const line of splitLines(stream, { maxBytes: () => maxBytes ?? Infinity })) {
    out.push(line);
  }
  return out;
}
const texts = async (...chunks: (string | Uint8Array)[]) =>
  (await lines(chunks)).map((l) => l.text);

Deno.test("splits on \\n, removes a trailing \\r, keeps a last line without newline", async () => {
  assert.deepEqual(await texts("a\r\nb\n", "c\rd\n", "tail"), ["a", "b", "c\rd", "tail"]);
});

Deno.test("blank and whitespace-only lines are skipped", async () => {
  assert.deepEqual(await texts("\n\r\n  \t\n", "x\n", "\n", "   "), ["x"]);
});

Deno.test("lines and \\r\\n split across chunks, multi-byte characters too", async () => {
  const euro = bytes("€"); // 3 bytes
  assert.deepEqual(
    await texts("ab", "c\r", "\nd", euro.subarray(0, 1), euro.subarray(1), "\n"),
    ["abc", "d€"],
  );
});

Deno.test("invalid UTF-8 becomes U+FFFD", async () => {
  assert.deepEqual(await texts(new Uint8Array([0x61, 0xff, 0xc3, 0x0a, 0xe2, 0x82])), [
    "a\ufffd\ufffd",
    "\ufffd",
  ]);
});

Deno.test("sizes are the bytes as read, without the terminator", async () => {
  const [a, b] = await lines(["héllo\r\n", "x\n"]);
  assert.deepEqual([a.bytes, b.bytes], [6, 1]);
  assert.deepEqual([a.cut, b.cut], [false, false]);
});

Deno.test("a line longer than maxBytes keeps only its start, whole characters, and its full size", async () => {
  const long = "é".repeat(10) + "\r\n"; // 20 bytes + CRLF
  const [line, next] = await lines([long.slice(0, 4), long.slice(4), "ok\n"], 7);
  assert.deepEqual(line, { text: "ééé", bytes: 20, cut: true });
  assert.deepEqual(next, { text: "ok", bytes: 2, cut: false });
  const [exact] = await lines(["1234567\n"], 7);
  assert.deepEqual(exact, { text: "1234567", bytes: 7, cut: false });
});

Deno.test("5,000 lines in odd chunk sizes come out whole and in order", async () => {
  const text = Array.from({ length: 5000 }, (_, i) => `{"n":${i}}`).join("\n") + "\n";
  const all = bytes(text);
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < all.length; i += 777) chunks.push(all.subarray(i, i + 777));
  const out = await lines(chunks);
  assert.equal(out.length, 5000);
  assert.ok(out.every((line, i) => JSON.parse(line.text).n === i));
});
