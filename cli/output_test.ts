import assert from "node:assert/strict";
import { formatEvent, paint, Spinner, type Terminal } from "./output.ts";
import { EventLines } from "./render.ts";

const ESC = "\x1b";

function terminal(options: { color: boolean; animate: boolean }) {
  const err: string[] = [];
  const term: Terminal = { out: () => {}, err: (text) => err.push(text), ...options };
  return { term, err };
}

const envelope = {
  eventId: 7,
  executionId: "exc_x",
  sessionId: "s",
  streamEventType: "output",
  timestamp: "2026-01-01T12:34:56.000Z",
  data: { stream: "stdout", text: "all good" },
};

Deno.test("colors only when the terminal allows them", () => {
  assert.equal(paint(false, "red", "x"), "x");
  assert.equal(paint(true, "red", "x"), `${ESC}[31mx${ESC}[0m`);
  assert.equal(formatEvent(envelope, new EventLines(), false), "#7 12:34:56 output all good");
  assert.ok(formatEvent(envelope, new EventLines(), true).includes(`${ESC}[`));
});

Deno.test("the spinner draws on stderr only when animating, and clears its line", async () => {
  const quiet = terminal({ color: false, animate: false });
  const still = new Spinner(quiet.term, "waiting");
  await new Promise((r) => setTimeout(r, 250));
  still.stop();
  assert.deepEqual(quiet.err, []);

  const tty = terminal({ color: false, animate: true });
  const spinner = new Spinner(tty.term, "waiting");
  await new Promise((r) => setTimeout(r, 250));
  spinner.text = "still waiting";
  await new Promise((r) => setTimeout(r, 150));
  spinner.stop();
  assert.ok(tty.err.some((line) => line.includes("waiting")));
  assert.ok(tty.err.some((line) => line.includes("still waiting")));
  assert.equal(tty.err.at(-1), "\r\x1b[2K", "the line is cleared at the end");
});

Deno.test("agent messages streamed in chunks print as deltas", () => {
  const lines = new EventLines();
  const chunk = (eventId: number, text: string) => ({
    ...envelope,
    eventId,
    streamEventType: "acp",
    data: { sessionUpdate: "agent_message_chunk", content: { type: "text", text } },
  });
  assert.equal(lines.text(chunk(1, "Hello")), "Hello");
  assert.equal(lines.text(chunk(2, " world")), "world");
});
