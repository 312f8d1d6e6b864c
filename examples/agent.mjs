#!/usr/bin/env node
/**
 * A small example coding agent for trying Tether without a real one: it prints a short run
 * as JSON lines in the shape of Claude Code's `--output-format stream-json` (an init line,
 * assistant messages with text and tool calls, tool results, a result line) with a pause
 * between lines, then exits 0. Plain JavaScript, so it runs under `node` and `deno run`.
 *
 * ```sh
 * node examples/agent.mjs --delay-ms 200          # what the wrapper would run
 * node examples/agent.mjs --exit-code 1           # a run that fails
 * ```
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    "delay-ms": { type: "string", default: "300" },
    "exit-code": { type: "string", default: "0" },
    repeat: { type: "string", default: "1" },
  },
});
const delayMs = Number(values["delay-ms"]);
const session = "example-session";

const text = (t) => ({
  type: "assistant",
  session_id: session,
  message: { role: "assistant", content: [{ type: "text", text: t }] },
});
const tool = (id, name, input) => ({
  type: "assistant",
  session_id: session,
  message: { role: "assistant", content: [{ type: "tool_use", id, name, input }] },
});
const result = (id, content) => ({
  type: "user",
  session_id: session,
  message: { role: "user", content: [{ type: "tool_result", tool_use_id: id, content }] },
});

const script = [
  {
    type: "system",
    subtype: "init",
    session_id: session,
    model: "example-agent",
    cwd: process.cwd(),
  },
  text("I'll run the tests first."),
  tool("t1", "Bash", { command: "npm test" }),
  result("t1", "1 failing: sum() adds 2 + 2 = 5"),
  text("sum() has an off-by-one. Fixing it."),
  tool("t2", "Edit", { file_path: "src/sum.js", old_string: "a + b + 1", new_string: "a + b" }),
  result("t2", "edited src/sum.js"),
  tool("t3", "Bash", { command: "npm test" }),
  result("t3", "all tests pass"),
  text("Fixed: sum() no longer adds 1."),
];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
for (let round = 0; round < Number(values.repeat); round++) {
  for (const line of script) {
    process.stdout.write(`${JSON.stringify(line)}\n`);
    await sleep(delayMs);
  }
}
process.stderr.write("example agent: done\n");
const exitCode = Number(values["exit-code"]);
process.stdout.write(
  `${
    JSON.stringify({
      type: "result",
      subtype: exitCode === 0 ? "success" : "error",
      session_id: session,
      result: exitCode === 0 ? "done" : "failed",
    })
  }\n`,
);
process.exit(exitCode);
