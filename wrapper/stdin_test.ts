import assert from "node:assert/strict";
import { startFakeService, type StoredFrame } from "./testdata/fake_service.ts";
import { encodeInput, type InputMode, StdinWriter } from "./stdin.ts";
import { agent, eventually, startRun } from "./test_util.ts";

const DATA: unknown[] = ["hi", { a: [1, "é"] }, "two\nlines", 5, null, { type: "user", x: 1 }];

const EXPECTED: Record<Exclude<InputMode, "none">, string> = {
  jsonl: '"hi"\n{"a":[1,"é"]}\n"two\\nlines"\n5\nnull\n{"type":"user","x":1}\n',
  text: 'hi\n{"a":[1,"é"]}\ntwo\nlines\n5\nnull\n{"type":"user","x":1}\n',
  claude: [
    '{"type":"user","message":{"role":"user","content":[{"type":"text","text":"hi"}]}}\n',
    '{"a":[1,"é"]}\n',
    '{"type":"user","message":{"role":"user","content":[{"type":"text","text":"two\\nlines"}]}}\n',
    '5\nnull\n{"type":"user","x":1}\n',
  ].join(""),
};

const delivered = (frames: StoredFrame[]) =>
  frames.filter((f) => f.streamEventType === "input_delivered").map((f) => f.data);

for (const mode of ["jsonl", "text", "claude"] as const) {
  Deno.test(`--input ${mode}: exact bytes on stdin, endOfInput closes it, each confirmed`, async () => {
    const file = await Deno.makeTempFile();
    await using service = await startFakeService();
    service.input({ data: DATA[0] }); // accepted before the wrapper connects
    const r = startRun(service, { input: mode, command: agent(`stdin:${file}`, "out:eof") });
    await eventually(() => service.deliveredInputId === 1);
    for (const data of DATA.slice(1)) service.input({ data });
    service.input({ endOfInput: true });
    assert.equal(await r.exit, 0);
    assert.equal(await Deno.readTextFile(file), EXPECTED[mode]);
    const ids = delivered(service.stored).map((d) => (d as { inputId: number }).inputId);
    assert.deepEqual(ids, [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(service.stored.at(-2)?.data, { stream: "stdout", text: "eof" });
    await Deno.remove(file);
  });
}

Deno.test("--input none: stdin is closed at start; inputs are neither written nor confirmed", async () => {
  const file = await Deno.makeTempFile();
  await using service = await startFakeService();
  service.input({ data: "ignored" });
  const r = startRun(service, { command: agent(`stdin:${file}`, "out:eof") });
  assert.equal(await r.exit, 0);
  assert.equal(await Deno.readTextFile(file), "");
  assert.deepEqual(delivered(service.stored), []);
  await Deno.remove(file);
});

Deno.test("endOfInput with data writes the data, then closes stdin", async () => {
  const file = await Deno.makeTempFile();
  await using service = await startFakeService();
  service.input({ data: "last", endOfInput: true });
  const r = startRun(service, { input: "text", command: agent(`stdin:${file}`) });
  assert.equal(await r.exit, 0);
  assert.equal(await Deno.readTextFile(file), "last\n");
  assert.deepEqual(delivered(service.stored), [{ inputId: 1 }]);
  await Deno.remove(file);
});

Deno.test("a wrapper never writes inputs at or below hello.deliveredInputId", async () => {
  const file = await Deno.makeTempFile();
  await using service = await startFakeService();
  for (let i = 1; i <= 7; i++) service.input({ data: `input ${i}` });
  service.input({ endOfInput: true });
  service.plan({ kind: "accept", deliveredInputId: 5 });
  const r = startRun(service, { input: "text", command: agent(`stdin:${file}`) });
  assert.equal(await r.exit, 0);
  assert.equal(await Deno.readTextFile(file), "input 6\ninput 7\n");
  assert.deepEqual(delivered(service.stored), [{ inputId: 6 }, { inputId: 7 }, { inputId: 8 }]);
  await Deno.remove(file);
});

Deno.test("an agent that never reads stdin holds up neither its output, the acks nor heartbeats", async () => {
  await using service = await startFakeService();
  const big = "x".repeat(40_000);
  for (let i = 0; i < 5; i++) service.input({ data: big }); // more than a pipe buffer holds
  const r = startRun(service, {
    input: "jsonl",
    heartbeatMs: 50,
    command: agent("sleep:300", "lines:10000", "sleep:300", "exit:0"),
  });
  assert.equal(await r.exit, 0);
  const heartbeats = service.connections.flatMap((c) => c.frames)
    .filter((f) => f.streamEventType === "heartbeat");
  assert.ok(heartbeats.length >= 4, `${heartbeats.length} heartbeats while stdin was full`);
  const lines = service.stored.filter((f) => f.streamEventType === "agent");
  assert.equal(lines.length, 10_000);
  assert.deepEqual(service.stored.at(-1)?.data, { exitCode: 0 });
  // What could not be written (the pipe was full) was never confirmed.
  const ids = delivered(service.stored).map((d) => (d as { inputId: number }).inputId);
  assert.ok(ids.length < 5, `confirmed ${ids}`);
});

Deno.test("--input with --sse and no agent command is a usage error", async () => {
  const { parseOptions, UsageError } = await import("./options.ts");
  const env = () => undefined;
  const base = ["--ingest-url", "http://x/i", "--token", "t", "--sse", "http://x/e"];
  assert.throws(() => parseOptions([...base, "--input", "jsonl"], env), UsageError);
  assert.throws(() => parseOptions([...base, "--input", "yaml", "--", "a"], env), UsageError);
  const ok = parseOptions([...base, "--input=claude", "--", "a"], env);
  assert.equal(ok !== "help" && ok.input, "claude");
  const fromEnv = parseOptions(
    [...base, "--", "a"],
    (name) => name === "TETHER_WRAPPER_INPUT" ? "text" : undefined,
  );
  assert.equal(fromEnv !== "help" && fromEnv.input, "text");
});

Deno.test("encodeInput and StdinWriter: a closed stdin stops writing and confirms nothing more", async () => {
  assert.equal(encodeInput("text", ""), "\n");
  const child = new Deno.Command("true", { stdin: "piped" }).spawn();
  await child.status;
  const written: number[] = [];
  let broken = "";
  const writer = new StdinWriter({
    mode: "jsonl",
    onWritten: (id) => written.push(id),
    onBroken: (m) => broken = m,
  });
  writer.push({ inputId: 1, data: "x".repeat(200_000) });
  writer.push({ inputId: 2, data: 1 });
  writer.attach(child.stdin);
  await eventually(() => broken !== "");
  assert.deepEqual(written, []);
  assert.equal(writer.pending, 0);
});
