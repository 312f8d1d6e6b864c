/**
 * A fake coding agent for end-to-end runs: prints `count` numbered stdout lines, odd ones as
 * JSON objects (`{"k":n}`, forwarded as `agent` events) and even ones as text (`line n`,
 * forwarded as `output`), pausing `pauseMs` after every `every` lines, then exits 0.
 *
 * `deno run tests/helpers/line_agent.ts <count> [every=10] [pauseMs=0]`
 *
 * @module
 */
const [count = 100, every = 10, pauseMs = 0] = Deno.args.map(Number);
const encoder = new TextEncoder();
let chunk = "";
for (let k = 1; k <= count; k++) {
  chunk += k % 2 === 1 ? `${JSON.stringify({ k })}\n` : `line ${k}\n`;
  if (k % every === 0 || k === count) {
    const bytes = encoder.encode(chunk);
    for (let written = 0; written < bytes.length;) {
      written += await Deno.stdout.write(bytes.subarray(written));
    }
    chunk = "";
    if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
  }
}
