/**
 * A fake agent for the input channel's end-to-end tests: copies everything it reads on
 * stdin to a record file (appending, as it arrives), prints one JSON line per chunk read
 * (so output keeps flowing while inputs arrive), and exits 0 when its stdin is closed.
 *
 * `deno run -A tests/helpers/input_agent.ts <record file>`
 *
 * @module
 */
const [recordPath] = Deno.args;
const file = await Deno.open(recordPath, { append: true, create: true });
let chunks = 0;
for await (const chunk of Deno.stdin.readable) {
  for (let written = 0; written < chunk.length;) {
    written += await file.write(chunk.subarray(written));
  }
  console.log(JSON.stringify({ type: "read", chunk: ++chunks, bytes: chunk.length }));
}
file.close();
console.log(JSON.stringify({ type: "stdin_closed", chunks }));
