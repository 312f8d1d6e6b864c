import assert from "node:assert/strict";
import { startFakeService } from "./testdata/fake_service.ts";
import { agent, startRun, startSseServer } from "./test_util.ts";

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;

for (
  const name of [
    "claude_code_stream_json.jsonl",
    "codex_exec_json.jsonl",
    "gemini_cli_stream_json.jsonl",
    "opencode_run_json.jsonl",
  ]
) {
  Deno.test(`fixture ${name}: every line is forwarded intact as an agent frame`, async () => {
    await using service = await startFakeService();
    const run = startRun(service, { command: agent(`file:${fixture(name)}`) });
    assert.equal(await run.exit, 0);
    const expected = Deno.readTextFileSync(fixture(name)).trimEnd().split("\n").map((line) =>
      JSON.parse(line)
    );
    assert.deepEqual(service.storedOfType("agent").map((f) => f.data), expected);
    assert.deepEqual(service.stored.map((f) => f.streamEventType), [
      ...expected.map(() => "agent"),
      "complete",
    ]);
  });
}

Deno.test("fixture kilocode_events.sse: forwarded as kilocode until session.idle", async () => {
  await using service = await startFakeService();
  await using sse = startSseServer([Deno.readTextFileSync(fixture("kilocode_events.sse")) + "…"]);
  const run = startRun(service, { sse: sse.url, command: [] });
  assert.equal(await run.exit, 0);
  const events = service.storedOfType("kilocode").map((f) => f.data as Record<string, unknown>);
  assert.deepEqual(events.map((e) => e.event), [
    "session.status",
    "message.updated",
    "message.part.updated",
    "custom.note",
    "permission.asked",
    "message.updated",
    "session.idle",
  ]);
  assert.deepEqual(events[2], {
    type: "message.part.updated",
    properties: {
      part: {
        id: "prt_k1",
        sessionID: "ses_kilo1",
        messageID: "msg_k1",
        type: "text",
        text: "Looking at the repository…",
      },
      delta: "Looking at the repository…",
    },
    event: "message.part.updated",
  });
  assert.deepEqual(events[3], { raw: "not json at all", event: "custom.note" });
  assert.equal(service.stored.at(-1)!.streamEventType, "complete");
});
