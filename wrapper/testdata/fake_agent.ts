/**
 * A scriptable stand-in for a coding agent, for the wrapper's tests. Each argument is one
 * step, run in order:
 *
 * - `out:<text>` / `err:<text>`: a line on stdout / stderr
 * - `lines:<n>`: n JSON lines `{"type":"line","n":i}` on stdout, i = 1…n
 * - `hex:<hex>`: raw bytes on stdout (no newline added)
 * - `file:<path>`: a file's bytes on stdout
 * - `stdin:<path>`: copy stdin to a file as it is read (appending), until stdin is closed
 * - `sleep:<ms>`: wait
 * - `trap:<code>`: from now on, SIGTERM prints `got SIGTERM` and exits with `code`
 * - `ignore-term`: from now on, SIGTERM is ignored
 * - `hang`: wait until killed
 * - `selfkill`: die of SIGKILL sent to itself
 * - `exit:<code>`: exit with that code (default at the end: 0)
 *
 * @module
 */
const encoder = new TextEncoder();

function write(stream: { writeSync(bytes: Uint8Array): number }, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += stream.writeSync(bytes.subarray(offset));
}

for (const step of Deno.args) {
  const colon = step.indexOf(":");
  const [name, arg] = colon < 0 ? [step, ""] : [step.slice(0, colon), step.slice(colon + 1)];
  switch (name) {
    case "out":
      write(Deno.stdout, encoder.encode(arg + "\n"));
      break;
    case "err":
      write(Deno.stderr, encoder.encode(arg + "\n"));
      break;
    case "lines":
      for (let i = 1; i <= Number(arg); i++) {
        write(Deno.stdout, encoder.encode(JSON.stringify({ type: "line", n: i }) + "\n"));
      }
      break;
    case "hex":
      write(Deno.stdout, Uint8Array.from(arg.match(/../g) ?? [], (h) => parseInt(h, 16)));
      break;
    case "file":
      write(Deno.stdout, Deno.readFileSync(arg));
      break;
    case "stdin": {
      const file = Deno.openSync(arg, { append: true, create: true });
      for await (const chunk of Deno.stdin.readable) write(file, chunk);
      file.close();
      break;
    }
    case "sleep":
      await new Promise((resolve) => setTimeout(resolve, Number(arg)));
      break;
    case "trap":
      Deno.addSignalListener("SIGTERM", () => {
        write(Deno.stdout, encoder.encode("got SIGTERM\n"));
        Deno.exit(Number(arg));
      });
      break;
    case "ignore-term":
      Deno.addSignalListener("SIGTERM", () => {});
      break;
    case "hang":
      await new Promise(() => setInterval(() => {}, 60_000));
      break;
    case "selfkill":
      Deno.kill(Deno.pid, "SIGKILL");
      await new Promise(() => {});
      break;
    case "exit":
      Deno.exit(Number(arg));
      break;
    default:
      throw new Error(`unknown step ${step}`);
  }
}
