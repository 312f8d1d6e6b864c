import assert from "node:assert/strict";
import {
  Conversation,
  diffLines,
  type Envelope,
  eventItem,
  formatUsage,
  inputText,
  isLong,
  type Item,
  renderText,
  summarizeEvent,
} from "./conversation.js";

const FIXTURES = new URL("../wrapper/fixtures/", import.meta.url);
const PAGE_FIXTURES = new URL("../tests/fixtures/page/", import.meta.url);
const EID = "exc_01JTEST0000000000000000000";

/** A frame as a wrapper sends it, before the service numbers and stamps it. */
type Frame = { streamEventType: string; data?: unknown; executionId?: string };

let nextId = 1;
function envelopes(frames: Frame[]): Envelope[] {
  return frames.map((f) => ({
    eventId: nextId++,
    executionId: f.executionId ?? EID,
    sessionId: "ses-test",
    streamEventType: f.streamEventType,
    timestamp: "2026-12-06T20:00:00.000Z",
    data: f.data,
  }));
}

function jsonl(name: string): Frame[] {
  return Deno.readTextFileSync(new URL(name, FIXTURES)).trimEnd().split("\n")
    .map((line) => ({ streamEventType: "agent", data: JSON.parse(line) }));
}

/** The SSE fixture as the wrapper forwards it (PROTOCOL.md 9.1, `--sse`). */
function kiloFrames(): Frame[] {
  const text = Deno.readTextFileSync(new URL("kilocode_events.sse", FIXTURES));
  const frames: Frame[] = [];
  for (const block of text.split("\n\n")) {
    const lines = block.split("\n");
    const event = lines.find((l) => l.startsWith("event: "))?.slice(7);
    const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
    if (!data) continue;
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(data);
    } catch {
      parsed = { raw: data };
    }
    const name = event ?? (parsed.type as string);
    if (name === "server.connected" || name === "server.heartbeat") continue;
    frames.push({ streamEventType: "kilocode", data: { ...parsed, event: name } });
  }
  return frames;
}

function fold(frames: Frame[]): { conversation: Conversation; items: Item[]; envs: Envelope[] } {
  const conversation = new Conversation();
  const envs = envelopes(frames);
  for (const env of envs) conversation.add(env);
  return { conversation, items: conversation.items, envs };
}

const answerOf = (item: Item) => item.answer;
const kinds = (items: Item[]) => items.map((i) => i.kind);
const ofKind = (items: Item[], kind: string) => items.filter((i) => i.kind === kind);

/** Every envelope is reachable from exactly one item (its raw JSON one click away). */
function assertEveryEventShown(items: Item[], envs: Envelope[]): void {
  const shown = items.flatMap((i) => i.kind === "execution" ? [] : i.events.map((e) => e.eventId));
  assert.deepEqual(shown.toSorted((a, b) => a - b), envs.map((e) => e.eventId));
}

Deno.test("Claude Code stream-json: messages, a tool call with its result, the result whole", () => {
  const { conversation, items, envs } = fold(jsonl("claude_code_stream_json.jsonl"));
  assert.deepEqual(kinds(items), [
    "execution",
    "status",
    "message",
    "tool",
    "message",
    "result",
  ]);
  assert.equal(items[1].text, "session started · model claude-sonnet-4-5 · /workspace/app");
  assert.equal(items[2].text, "I'll run the test suite first.");
  const tool = items[3];
  assert.equal(tool.name, "Bash");
  assert.deepEqual(tool.args, { command: "deno test -A", description: "Run tests" });
  assert.equal(tool.output, "running 3 tests\nok | 3 passed | 0 failed (41ms)");
  assert.equal(tool.status, "completed");
  assert.equal(tool.isError, false);
  assert.equal(tool.events.length, 2, "the call and its result");
  assert.equal(items[5].text, "All 3 tests pass — nothing to fix. ✅");
  assert.equal(items[5].isError, false);
  assert.deepEqual(conversation.usage(EID), {
    inputTokens: 2500,
    outputTokens: 67,
    cacheReadTokens: 1700,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    costUsd: 0.0123,
  });
  assert.equal(
    renderText(items[5]),
    "✔ result: All 3 tests pass — nothing to fix. ✅\n  2,500 in · 67 out · 1,700 cache read · $0.0123",
  );
  assertEveryEventShown(items, envs);
});

Deno.test("Codex exec --json: reasoning, a failed command, changed files, usage per turn", () => {
  const { conversation, items, envs } = fold(jsonl("codex_exec_json.jsonl"));
  assert.deepEqual(kinds(items), [
    "execution",
    "status",
    "message",
    "tool",
    "files",
    "message",
    "turn",
  ]);
  assert.equal(items[2].role, "thought");
  const tool = items[3];
  assert.equal(tool.name, "shell");
  assert.deepEqual(tool.args, { command: "bash -lc 'npm test'" });
  assert.equal(tool.status, "failed");
  assert.equal(tool.isError, true);
  assert.equal(tool.output, "FAIL src/sum.test.js\n  expected 3, got 4\n");
  assert.equal(tool.events.length, 2, "started and completed are one tool call");
  assert.deepEqual(items[4].files, [{ path: "src/sum.js", kind: "update" }]);
  assert.equal(items[5].text, "Fixed the off-by-one in `sum` and the test passes now.");
  assert.deepEqual(conversation.usage(EID), {
    inputTokens: 24763,
    outputTokens: 122,
    cacheReadTokens: 24448,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    costUsd: null,
  });
  assertEveryEventShown(items, envs);
});

Deno.test("Gemini CLI stream-json: delta chunks joined, tool result attached, stats", () => {
  const { conversation, items, envs } = fold(jsonl("gemini_cli_stream_json.jsonl"));
  assert.deepEqual(kinds(items), ["execution", "status", "message", "tool", "message", "result"]);
  assert.equal(items[2].role, "user");
  assert.equal(items[2].text, "List the files in src");
  assert.equal(items[3].name, "list_directory");
  assert.equal(items[3].output, "Listed 3 item(s).");
  assert.equal(items[4].text, "`src` holds three files: main.ts, app.ts and util.ts.");
  assert.equal(items[4].events.length, 2);
  assert.equal(conversation.usage(EID)?.inputTokens, 8000);
  assert.equal(conversation.usage(EID)?.outputTokens, 123);
  assertEveryEventShown(items, envs);
});

Deno.test("opencode run --format json: tool part, text part, step usage and cost", () => {
  const { conversation, items, envs } = fold(jsonl("opencode_run_json.jsonl"));
  assert.deepEqual(kinds(items), ["execution", "status", "tool", "message", "turn"]);
  assert.equal(items[2].name, "bash");
  assert.equal(items[2].output, "README.md\nsrc\n");
  assert.equal(items[3].text, "The project has a README and a src directory.");
  assert.equal(items[4].text, "step finished · stop · 9,120 in · 48 out · $0.0000");
  assert.equal(conversation.usage(EID)?.costUsd, 0);
  assertEveryEventShown(items, envs);
});

Deno.test("Kilo server events: text part, permission notice, raw data, idle", () => {
  const { items, envs } = fold(kiloFrames());
  assert.deepEqual(kinds(items), [
    "execution",
    "status",
    "message",
    "output",
    "status",
    "turn",
  ]);
  assert.equal(items[1].text, "session busy");
  assert.equal(items[2].text, "Looking at the repository…");
  assert.deepEqual(items[3].lines, ["not json at all"]);
  assert.equal(items[3].stream, "custom.note");
  assert.equal(items[4].text, "permission.asked: bash · git status");
  assert.equal(items[5].text, "session idle");
  assertEveryEventShown(items, envs);
});

Deno.test("ACP: chunks joined, plan updated in place, tool call with diff, permission answered", () => {
  const acp = JSON.parse(Deno.readTextFileSync(new URL("acp_run.json", PAGE_FIXTURES)));
  const conversation = new Conversation();
  const add = (frames: Frame[]) => envelopes(frames).map((e) => conversation.add(e));
  add([{ streamEventType: "input", data: { inputId: 1, data: acp.prompt } }]);
  add([{ streamEventType: "input_delivered", data: { inputId: 1 } }]);
  add(acp.beforeAnswer);
  const permission = conversation.items.find((i) => i.kind === "permission")!;
  assert.equal(permission.title, "Edit src/sum.ts");
  assert.deepEqual(permission.options?.map((o) => o.name), [
    "Allow once",
    "Always allow",
    "Reject",
  ]);
  assert.equal(permission.answer, null);
  assert.equal(permission.closed, false);

  add([{ streamEventType: "input", data: { inputId: 2, data: acp.answer } }]);
  assert.deepEqual(answerOf(permission), {
    inputId: 2,
    optionId: "allow_once",
    cancelled: false,
    delivered: false,
  });
  const [delivered] = add([{ streamEventType: "input_delivered", data: { inputId: 2 } }]);
  assert.ok(delivered.includes(permission), "the permission item is redrawn");
  assert.equal(answerOf(permission)?.delivered, true);
  add(acp.afterAnswer);

  const items = conversation.items;
  assert.deepEqual(kinds(items), [
    "execution",
    "input",
    "message",
    "message",
    "plan",
    "tool",
    "permission",
    "input",
    "message",
    "turn",
  ]);
  assert.equal(items[1].text, acp.prompt);
  assert.equal(items[1].delivered, true);
  assert.equal(items[2].role, "thought");
  assert.equal(items[3].text, "I'll fix the off-by-one in `sum`.");
  assert.deepEqual(items[4].entries?.map((e) => e.status), ["completed", "completed", "completed"]);
  const tool = items[5];
  assert.equal(tool.status, "completed");
  assert.equal(tool.toolKind, "edit");
  assert.deepEqual(tool.locations, ["src/sum.ts:1"]);
  assert.equal(tool.output, "Edited 1 line.");
  assert.deepEqual(tool.diffs?.[0].lines.filter((l) => l.op !== " "), [
    { op: "-", text: "export const sum = (a, b) => a + b + 1;" },
    { op: "+", text: "export const sum = (a, b) => a + b;" },
  ]);
  assert.equal(items[7].text, "permission #1: allow_once");
  assert.equal(items[9].text, "turn ended · end_turn");
  assert.equal(
    renderText(permission),
    "? permission #1: Edit src/sum.ts — Allow once [allow_once] | Always allow [allow_always] | Reject [reject_once]\n  answer: Allow once · delivered",
  );
});

Deno.test("ACP: an answer already delivered by the execution's count is shown delivered", () => {
  // The page's refresh can read `deliveredInputId` before the stream brings the answer's
  // `input` event (a loaded machine): the answer is born delivered, and stays so.
  const acp = JSON.parse(Deno.readTextFileSync(new URL("acp_run.json", PAGE_FIXTURES)));
  const conversation = new Conversation();
  const add = (frames: Frame[]) => envelopes(frames).map((e) => conversation.add(e));
  add([{ streamEventType: "input", data: { inputId: 1, data: acp.prompt } }]);
  add(acp.beforeAnswer);
  conversation.markDelivered(EID, 2);
  add([{ streamEventType: "input", data: { inputId: 2, data: acp.answer } }]);
  const permission = conversation.items.find((i) => i.kind === "permission")!;
  assert.equal(answerOf(permission)?.delivered, true);
  add([{ streamEventType: "input_delivered", data: { inputId: 2 } }]);
  add(acp.afterAnswer);
  assert.equal(answerOf(permission)?.delivered, true);
  assert.equal(permission.closed, false, "a delivered answer is not closed by the turn end");
  assert.match(renderText(permission), /answer: Allow once · delivered$/);
});

Deno.test("ACP: a turn end closes a request that was never answered", () => {
  const acp = JSON.parse(Deno.readTextFileSync(new URL("acp_run.json", PAGE_FIXTURES)));
  const { items } = fold([...acp.beforeAnswer, acp.afterAnswer.at(-1)]);
  const permission = ofKind(items, "permission")[0];
  assert.equal(permission.closed, true);
  assert.match(renderText(permission), /closed without an answer/);
});

Deno.test("inputs go from sent to delivered; the execution's deliveredInputId counts too", () => {
  const conversation = new Conversation();
  for (
    const env of envelopes([
      { streamEventType: "input", data: { inputId: 1, data: "first" } },
      { streamEventType: "input", data: { inputId: 2, data: { any: "json" } } },
      { streamEventType: "input", data: { inputId: 3, endOfInput: true } },
    ])
  ) conversation.add(env);
  const inputs = ofKind(conversation.items, "input");
  assert.deepEqual(inputs.map((i) => i.delivered), [false, false, false]);
  assert.equal(renderText(inputs[0]), "» input #1: first · sent");
  const [env] = envelopes([{ streamEventType: "input_delivered", data: { inputId: 2 } }]);
  conversation.add(env);
  assert.deepEqual(inputs.map((i) => i.delivered), [true, true, false]);
  assert.equal(inputs[1].text, '{"any":"json"}');
  assert.deepEqual(conversation.markDelivered(EID, 3), [inputs[2]]);
  assert.equal(renderText(inputs[2]), "» input #3 (end of input):  · delivered");
  assert.deepEqual(conversation.markDelivered(EID, 3), [], "nothing left to change");
});

Deno.test("service events: stderr labelled, lines of one stream joined, errors, statuses", () => {
  const { items, envs } = fold([
    { streamEventType: "execution_status", data: { status: "running", previousStatus: "pending" } },
    { streamEventType: "output", data: { stream: "stdout", text: "hello" } },
    { streamEventType: "output", data: { stream: "stdout", text: "world" } },
    { streamEventType: "output", data: { stream: "stderr", text: "warning: deprecated" } },
    { streamEventType: "output", data: { stream: "stdout", text: "x", truncated: true, bytes: 9 } },
    {
      streamEventType: "error",
      data: { error: "agent exited with code 2", fatal: true, code: "AGENT_EXIT" },
    },
    {
      streamEventType: "execution_status",
      data: { status: "failed", previousStatus: "running", error: "agent exited with code 2" },
    },
  ]);
  assert.deepEqual(kinds(items), [
    "execution",
    "status",
    "output",
    "output",
    "output",
    "error",
    "status",
  ]);
  assert.deepEqual(items[2].lines, ["hello", "world"]);
  assert.equal(renderText(items[3]), "[stderr] warning: deprecated");
  assert.equal(items[4].lines?.[0], "x [truncated]");
  assert.equal(renderText(items[5]), "✖ AGENT_EXIT: agent exited with code 2 (fatal)");
  assert.equal(items[6].tone, "error");
  assertEveryEventShown(items, envs);
});

Deno.test("unknown shapes become event items with a summary; repeated events are ignored", () => {
  const conversation = new Conversation();
  const [a, b] = envelopes([
    { streamEventType: "progress", data: { percent: 40 } },
    { streamEventType: "agent", data: { type: "brand_new", text: "hi" } },
  ]);
  conversation.add(a);
  conversation.add(b);
  assert.deepEqual(conversation.add(b), []);
  assert.deepEqual(kinds(conversation.items), ["execution", "event", "event"]);
  assert.equal(conversation.items[1].text, '{"percent":40}');
  assert.equal(conversation.items[2].text, "brand_new · hi");
  assert.equal(eventItem(a).text, '{"percent":40}');
});

Deno.test("executions each get a header item", () => {
  const { items } = fold([
    { streamEventType: "output", data: { stream: "stdout", text: "a" }, executionId: "exc_A" },
    { streamEventType: "output", data: { stream: "stdout", text: "b" }, executionId: "exc_B" },
  ]);
  assert.deepEqual(items.map((i) => `${i.kind}:${i.executionId}`), [
    "execution:exc_A",
    "output:exc_A",
    "execution:exc_B",
    "output:exc_B",
  ]);
  assert.equal(renderText(items[2]), "━━ execution exc_B");
});

Deno.test("file edits in tool arguments become diffs (Claude Edit, Write)", () => {
  const { items } = fold([
    {
      streamEventType: "agent",
      data: {
        type: "assistant",
        message: {
          content: [
            {
              type: "tool_use",
              id: "t1",
              name: "Edit",
              input: { file_path: "a.ts", old_string: "x\ny", new_string: "x\nz" },
            },
            {
              type: "tool_use",
              id: "t2",
              name: "Write",
              input: { file_path: "b.ts", content: "new\n" },
            },
          ],
        },
      },
    },
  ]);
  const [edit, write] = ofKind(items, "tool");
  assert.deepEqual(edit.diffs, [{
    path: "a.ts",
    lines: [{ op: " ", text: "x" }, { op: "-", text: "y" }, { op: "+", text: "z" }],
  }]);
  assert.deepEqual(write.diffs?.[0].lines, [{ op: "+", text: "new" }]);
  assert.equal(renderText(edit), "▸ Edit a.ts\n  a.ts\n   x\n  -y\n  +z");
});

Deno.test("diffLines, isLong, inputText, formatUsage, summarizeEvent", () => {
  assert.deepEqual(diffLines("a\nb\nc", "a\nc\nd"), [
    { op: " ", text: "a" },
    { op: "-", text: "b" },
    { op: " ", text: "c" },
    { op: "+", text: "d" },
  ]);
  const big = Array.from({ length: 1000 }, (_, i) => `line ${i}`).join("\n");
  const huge = diffLines(big, big.replaceAll("line", "row"));
  assert.equal(huge.length, 2000, "a very large change is all removed, then all added");
  assert.equal(isLong("a\n".repeat(5)), false);
  assert.equal(isLong("a\n".repeat(20)), true);
  assert.equal(isLong("x".repeat(601)), true);
  assert.equal(inputText({ prompt: [{ type: "text", text: "hi" }] }), "hi");
  assert.equal(
    inputText({ type: "user", message: { role: "user", content: [{ type: "text", text: "yo" }] } }),
    "yo",
  );
  assert.equal(
    inputText({ permission: { requestId: 4, cancelled: true } }),
    "permission #4: cancelled",
  );
  assert.equal(
    formatUsage({
      inputTokens: 1,
      outputTokens: 2,
      cacheReadTokens: 0,
      cacheWriteTokens: 3,
      reasoningTokens: 4,
      costUsd: 1.5,
    }),
    "1 in · 2 out · 3 cache write · 4 reasoning · $1.5000",
  );
  assert.equal(
    summarizeEvent({ streamEventType: "input", data: { inputId: 2, endOfInput: true } }),
    "input #2 · end of input",
  );
});

Deno.test("hostile text is kept verbatim as text: the model never builds markup", () => {
  const frames = Deno.readTextFileSync(new URL("hostile.jsonl", PAGE_FIXTURES)).trimEnd()
    .split("\n").map((line) => ({ streamEventType: "agent", data: JSON.parse(line) }));
  const { items, envs } = fold(frames);
  assert.match(items[1].text!, /^<script>window.__pwned = 'script'<\/script>/);
  assert.equal(ofKind(items, "tool")[0].name, `<svg onload="window.__pwned='svg'">`);
  assert.equal(ofKind(items, "event").length, 1, "the unknown shape falls back to JSON");
  for (const item of items) assert.equal(typeof renderText(item), "string");
  assertEveryEventShown(items, envs);
});

Deno.test("garbage never throws: every envelope becomes some item", () => {
  const garbage: unknown[] = [
    null,
    42,
    "text",
    [],
    { type: 7 },
    { type: "assistant" },
    { type: "assistant", message: { content: [null, 3, { type: "tool_use" }] } },
    { type: "user", message: { content: [{ type: "tool_result" }] } },
    { type: "item.completed" },
    { type: "item.completed", item: { type: "command_execution", exit_code: "x" } },
    { type: "tool_use", part: null },
    { type: "text", part: { type: "tool", state: null } },
    { type: "result", usage: "no" },
    { sessionUpdate: "tool_call_update", content: [null, { type: "diff" }] },
  ];
  const conversation = new Conversation();
  const types = [
    "agent",
    "acp",
    "kilocode",
    "permission_request",
    "input",
    "input_delivered",
    "acp_turn",
    "output",
  ];
  for (const data of garbage) {
    for (const type of types) {
      for (const env of envelopes([{ streamEventType: type, data }])) {
        conversation.add(env);
      }
    }
  }
  for (const item of conversation.items) assert.equal(typeof renderText(item), "string");
  assert.ok(conversation.items.length >= garbage.length * types.length / 2);
});

Deno.test("ACP: a failed turn, an ignored input and a truncated update stay readable", () => {
  const { items } = fold([
    { streamEventType: "acp_input_ignored", data: { inputId: 3, reason: "not a prompt" } },
    {
      streamEventType: "acp",
      data: {
        sessionUpdate: "tool_call",
        toolCallId: "t",
        title: "Big",
        truncated: true,
        bytes: 900000,
      },
    },
    { streamEventType: "acp_turn", data: { inputId: 2, stopReason: "error", error: "boom" } },
  ]);
  assert.deepEqual(items.slice(1).map((i) => renderText(i)), [
    "· input #3 ignored · not a prompt",
    "▸ Big\n  [update too large to store: 900000 bytes]",
    "── turn ended · error",
    "✖ boom",
  ]);
});

Deno.test("plain shapes (the demo agent's): text, tool_use and tool_result by tool name", () => {
  const { items } = fold([
    { streamEventType: "agent", data: { type: "assistant", text: "Let me check." } },
    {
      streamEventType: "agent",
      data: { type: "tool_use", tool: "bash", input: { command: "ls" } },
    },
    {
      streamEventType: "agent",
      data: { type: "tool_result", tool: "bash", exitCode: 1, text: "no" },
    },
  ]);
  assert.deepEqual(kinds(items), ["execution", "message", "tool"]);
  assert.equal(items[2].output, "no");
  assert.equal(items[2].isError, true);
});

Deno.test("ACP: a permission option without an id gets no button (no answer to it could work)", () => {
  const conversation = new Conversation();
  for (
    const envelope of envelopes([{
      streamEventType: "permission_request",
      data: {
        requestId: 2,
        toolCall: { title: "Run" },
        options: [7, null, { name: "NoId" }, { optionId: "", name: "" }, {
          optionId: "ok",
          name: "Allow",
          kind: "allow_once",
        }],
      },
    }])
  ) conversation.add(envelope);
  const permission = conversation.items.find((i) => i.kind === "permission")!;
  assert.deepEqual(permission.options, [{ optionId: "ok", name: "Allow", kind: "allow_once" }]);
});
