/**
 * A scripted stand-in for a coding agent, for the demo and the browser test: it prints a
 * plausible run (JSON events on stdout as agents with a `stream-json` mode do, plain tool
 * output, a few stderr lines) spread over `--duration-ms`, then exits 0. On SIGTERM it
 * says so on stderr and exits 143, as a real agent stopped by the wrapper would.
 *
 * With `--ask` it stops halfway to ask a question and waits for the answer: one line on its
 * stdin (the wrapper's `--input text` writes an input sent from the page or with curl
 * there, PROTOCOL.md 12); a closed stdin counts as no answer.
 *
 * ```sh
 * deno run demo/agent.ts --duration-ms 20000 --ask
 * ```
 *
 * @module
 */

type Step =
  | { json: Record<string, unknown> }
  | { out: string }
  | { err: string }
  /** With `--ask`: print the question, wait for one line on stdin, acknowledge it. */
  | { ask: string };

/** The run, in order. Plain `out` lines become `output` events, `json` ones `agent` events. */
const SCRIPT: Step[] = [
  { json: { type: "system", subtype: "init", model: "demo-agent-1", cwd: "/work/todo-app" } },
  { json: { type: "assistant", text: "I'll start by running the test suite to see what fails." } },
  { json: { type: "tool_use", tool: "bash", input: { command: "deno task test" } } },
  { out: "running 14 tests from ./src/todo_test.ts" },
  { out: "add a todo ... ok (3ms)" },
  { out: "toggle a todo ... ok (1ms)" },
  { out: "filter completed todos ... FAILED (4ms)" },
  { err: "error: AssertionError: expected 2 completed todos, got 3" },
  { out: "FAILED | 13 passed | 1 failed (212ms)" },
  { json: { type: "tool_result", tool: "bash", exitCode: 1, text: "1 test failed" } },
  { json: { type: "assistant", text: "The filter keeps archived todos. Let me read it." } },
  { json: { type: "tool_use", tool: "read_file", input: { path: "src/filter.ts" } } },
  {
    json: {
      type: "tool_result",
      tool: "read_file",
      text: "export function completed(…) (24 lines)",
    },
  },
  {
    json: {
      type: "assistant",
      text: "Found it: `completed()` ignores the `archived` flag. Patching the predicate.",
    },
  },
  { json: { type: "tool_use", tool: "edit_file", input: { path: "src/filter.ts" } } },
  { out: "--- a/src/filter.ts" },
  { out: "+++ b/src/filter.ts" },
  { out: "-  return todos.filter((t) => t.done);" },
  { out: "+  return todos.filter((t) => t.done && !t.archived);" },
  { json: { type: "tool_result", tool: "edit_file", text: "1 file changed" } },
  { json: { type: "progress", step: 3, of: 5, label: "verifying the fix" } },
  { json: { type: "tool_use", tool: "bash", input: { command: "deno task test" } } },
  { out: "filter completed todos ... ok (2ms)" },
  { out: "ok | 14 passed | 0 failed (198ms)" },
  { json: { type: "tool_result", tool: "bash", exitCode: 0, text: "all tests pass" } },
  {
    ask: "Before I go on: should I also hide archived todos on the page? Answer yes or no " +
      "(send the answer as input: the page's composer, or curl).",
  },
  { json: { type: "assistant", text: "Tests pass. Adding a regression test for archived todos." } },
  { json: { type: "tool_use", tool: "edit_file", input: { path: "src/todo_test.ts" } } },
  { out: '+  assertEquals(completed([archivedDone]).length, 0, "archived stay hidden");' },
  { json: { type: "tool_result", tool: "edit_file", text: "1 file changed" } },
  { json: { type: "progress", step: 4, of: 5, label: "updating the page" } },
  { json: { type: "tool_use", tool: "edit_file", input: { path: "public/index.html" } } },
  { out: '+  <h1 id="injected">Todos <small>(archived hidden)</small></h1>' },
  { json: { type: "tool_result", tool: "edit_file", text: "1 file changed" } },
  { err: "warning: deno fmt would reformat 1 file" },
  { json: { type: "tool_use", tool: "bash", input: { command: "deno fmt && deno lint" } } },
  { out: "Checked 12 files" },
  { json: { type: "tool_result", tool: "bash", exitCode: 0, text: "formatted, lint clean" } },
  { json: { type: "progress", step: 5, of: 5, label: "summarizing" } },
  {
    json: {
      type: "result",
      subtype: "success",
      text: "Fixed the completed-todos filter to skip archived items, added a regression test.",
      usage: { input_tokens: 18231, output_tokens: 1642 },
    },
  },
];

function numberFlag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const value = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} takes a number`);
  return value;
}

/** Reads stdin line by line; `null` once it is closed. */
function stdinLines(): () => Promise<string | null> {
  const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  return async () => {
    while (!buffered.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) {
        const last = buffered;
        buffered = "";
        return last === "" ? null : last;
      }
      buffered += value;
    }
    const end = buffered.indexOf("\n");
    const line = buffered.slice(0, end);
    buffered = buffered.slice(end + 1);
    return line;
  };
}

/** The assistant's words once it got (or did not get) an answer. */
function acknowledge(answer: string | null): Record<string, unknown> {
  if (answer === null) {
    return { type: "assistant", text: "No answer came (stdin closed): leaving the page as it is." };
  }
  const yes = /^\s*y/i.test(answer);
  return {
    type: "assistant",
    text: `You answered "${answer.trim()}": ${
      yes ? "I will hide archived todos on the page too." : "leaving the page as it is."
    }`,
  };
}

/**
 * Runs the script; `--duration-ms` (default 20000) spreads it, `--repeat` loops it, `--ask`
 * makes it wait for an answer on stdin halfway.
 *
 * @example
 * ```ts
 * const code = await runAgent(["--duration-ms", "6000", "--repeat", "2", "--ask"]);
 * Deno.exit(code);
 * ```
 */
export async function runAgent(args: string[]): Promise<number> {
  const durationMs = numberFlag(args, "--duration-ms", 20_000);
  const repeat = numberFlag(args, "--repeat", 1);
  const readLine = args.includes("--ask") ? stdinLines() : undefined;
  const stepMs = durationMs / SCRIPT.length;
  const encoder = new TextEncoder();
  const write = (stream: typeof Deno.stdout, line: string) =>
    stream.writeSync(encoder.encode(line + "\n"));
  const stopped = new Promise<number>((resolve) => {
    Deno.addSignalListener("SIGTERM", () => {
      write(Deno.stderr, "agent: received SIGTERM, stopping");
      resolve(143);
    });
  });
  for (let round = 0; round < repeat; round++) {
    for (const step of SCRIPT) {
      if ("ask" in step) {
        if (!readLine) continue;
        write(
          Deno.stdout,
          JSON.stringify({ type: "assistant", text: step.ask, question: true, round }),
        );
        const answer = await Promise.race([stopped, readLine()]);
        if (typeof answer === "number") return answer;
        write(Deno.stdout, JSON.stringify({ ...acknowledge(answer), round }));
        continue;
      }
      if ("json" in step) write(Deno.stdout, JSON.stringify({ ...step.json, round }));
      else if ("out" in step) write(Deno.stdout, step.out);
      else write(Deno.stderr, step.err);
      const code = await Promise.race([
        stopped,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), stepMs)),
      ]);
      if (code !== undefined) return code;
    }
  }
  return 0;
}

if (import.meta.main) Deno.exit(await runAgent(Deno.args));
