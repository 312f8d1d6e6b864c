import assert from "node:assert/strict";
import { classifyFrame, FRAME_TYPES, terminalStatusOfFrame } from "./frames.ts";
import { ErrorText, RESERVED_EVENT_TYPES } from "./protocol.ts";

Deno.test("plain events keep their fields; a bad timestamp is dropped for the service's clock", () => {
  assert.deepEqual(
    classifyFrame({
      streamEventType: "output",
      seq: 7,
      timestamp: "2026-01-02T03:04:05.678Z",
      data: { x: 1 },
    }),
    {
      kind: "event",
      frame: {
        streamEventType: "output",
        seq: 7,
        timestamp: "2026-01-02T03:04:05.678Z",
        data: { x: 1 },
      },
    },
  );
  const leapDay = classifyFrame({
    streamEventType: "agent",
    timestamp: "2024-02-29T23:59:59+05:30",
  });
  assert.equal(leapDay.kind === "event" && leapDay.frame.timestamp, "2024-02-29T23:59:59+05:30");
  const yearZero = classifyFrame({ streamEventType: "agent", timestamp: "0000-02-29T00:00:00Z" });
  assert.equal(yearZero.kind === "event" && yearZero.frame.timestamp, "0000-02-29T00:00:00Z");
  const noSuchDays = ["2026-02-30T00:00:00Z", "2026-04-31T10:00:00+02:00", "2025-02-29T00:00Z"];
  for (const timestamp of [12, "yesterday", "2026-13-45T99:99:99Z", null, ...noSuchDays]) {
    const verdict = classifyFrame({ streamEventType: "agent", timestamp });
    assert.deepEqual(verdict, { kind: "event", frame: { streamEventType: "agent" } });
  }
});

Deno.test("liveness frames: never stored, and refused with a seq", () => {
  assert.deepEqual(classifyFrame({ streamEventType: "heartbeat" }), { kind: "liveness" });
  assert.deepEqual(classifyFrame({ streamEventType: "pong", data: {} }), { kind: "liveness" });
  assert.deepEqual(classifyFrame({ streamEventType: "heartbeat", seq: 3 }), {
    kind: "invalid",
    message: "heartbeat and pong carry no seq",
    seq: 3,
  });
});

Deno.test("terminal frames end the execution as PROTOCOL.md 5.1 says", () => {
  const end = (frame: unknown) => {
    const verdict = classifyFrame(frame);
    return verdict.kind === "event" ? verdict.end : verdict;
  };
  assert.deepEqual(end({ streamEventType: "complete", data: { exitCode: 0 } }), {
    status: "completed",
  });
  assert.deepEqual(end({ streamEventType: "interrupted" }), {
    status: "interrupted",
    error: ErrorText.userInterrupted,
  });
  assert.deepEqual(end({ streamEventType: "interrupted", data: null }), {
    status: "interrupted",
    error: ErrorText.userInterrupted,
  });
  assert.deepEqual(end({ streamEventType: "interrupted", data: { reason: "stop" } }), {
    status: "interrupted",
    error: "stop",
  });
  assert.deepEqual(end({ streamEventType: "error", data: { fatal: true, message: "m" } }), {
    status: "failed",
    error: "m",
  });
  assert.deepEqual(end({ streamEventType: "error", data: { fatal: true, error: "e" } }), {
    status: "failed",
    error: "e",
  });
  assert.deepEqual(end({ streamEventType: "error", data: { fatal: true } }), {
    status: "failed",
    error: ErrorText.fatalError,
  });
  assert.equal(end({ streamEventType: "error", data: { fatal: false } }), undefined);
  assert.equal(end({ streamEventType: "error" }), undefined);
});

Deno.test("garbage is refused with a reason, and the seq only when it is a valid one", () => {
  const cases: [unknown, string, number?][] = [
    [null, "frame is not a JSON object"],
    [[1, 2], "frame is not a JSON object"],
    ["text", "frame is not a JSON object"],
    [{}, "invalid streamEventType"],
    [{ streamEventType: "" }, "invalid streamEventType"],
    [{ streamEventType: "a b" }, "invalid streamEventType"],
    [{ streamEventType: "x".repeat(65) }, "invalid streamEventType"],
    [{ streamEventType: 5, seq: 2 }, "invalid streamEventType", 2],
    [{ streamEventType: "output", seq: 0 }, "seq must be an integer ≥ 1"],
    [{ streamEventType: "output", seq: 1.5 }, "seq must be an integer ≥ 1"],
    [{ streamEventType: "output", seq: "1" }, "seq must be an integer ≥ 1"],
    [{ streamEventType: "output", seq: 2 ** 53 }, "seq must be an integer ≥ 1"],
    [{ streamEventType: "complete", seq: 4 }, "complete needs data.exitCode (number)", 4],
    [
      { streamEventType: "complete", data: { exitCode: "0" } },
      "complete needs data.exitCode (number)",
    ],
    [
      // What JSON.parse makes of 1e400: a number JSON cannot write back.
      { streamEventType: "complete", data: { exitCode: Infinity } },
      "complete needs data.exitCode (number)",
    ],
    [
      { streamEventType: "interrupted", data: { reason: 1 } },
      "interrupted needs data.reason to be a string",
    ],
    [{ streamEventType: "interrupted", data: [] }, "interrupted needs data.reason to be a string"],
    [
      { streamEventType: "error", data: { fatal: "yes" } },
      "error data has fields of the wrong type",
    ],
    [{ streamEventType: "error", data: { code: 5 } }, "error data has fields of the wrong type"],
    [{ streamEventType: "error", data: "boom" }, "error data has fields of the wrong type"],
  ];
  for (const [frame, message, seq] of cases) {
    assert.deepEqual(
      classifyFrame(frame),
      { kind: "invalid", message, ...(seq === undefined ? {} : { seq }) },
      JSON.stringify(frame),
    );
  }
  for (const type of RESERVED_EVENT_TYPES) {
    assert.deepEqual(classifyFrame({ streamEventType: type, seq: 1 }), {
      kind: "invalid",
      message: "streamEventType is reserved for the service",
      seq: 1,
    });
  }
});

Deno.test("names of Object.prototype are plain event types, not rules", () => {
  for (const type of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
    assert.equal(Object.hasOwn(FRAME_TYPES, type), false);
    assert.equal(classifyFrame({ streamEventType: type }).kind, "event", type);
  }
});

Deno.test("terminalStatusOfFrame agrees with the classifier", () => {
  assert.equal(
    terminalStatusOfFrame({ streamEventType: "complete", data: { exitCode: 1 } }),
    "completed",
  );
  assert.equal(terminalStatusOfFrame({ streamEventType: "complete" }), undefined);
  assert.equal(terminalStatusOfFrame({ streamEventType: "interrupted" }), "interrupted");
  assert.equal(
    terminalStatusOfFrame({ streamEventType: "error", data: { fatal: true } }),
    "failed",
  );
  assert.equal(terminalStatusOfFrame({ streamEventType: "output" }), undefined);
});

Deno.test("with its text, a frame is held to the same depth limit", () => {
  const nest = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
  const frame = (data: string) => `{"streamEventType":"output","seq":2,"data":${data}}`;
  const classify = (text: string) => classifyFrame(JSON.parse(text), text);
  assert.equal(classify(frame(nest(64))).kind, "event");
  assert.deepEqual(classify(frame(nest(65))), {
    kind: "invalid",
    message: "frame nests deeper than 64 levels",
    seq: 2,
  });
  // Many brackets, shallow: the text's bound says nothing, the walk accepts it.
  const wide = `[${Array(200).fill("[{}]").join(",")}]`;
  assert.equal(classify(frame(wide)).kind, "event");
  assert.equal(classify(frame(JSON.stringify("[".repeat(500)))).kind, "event");
  // Deep and wide: refused all the same.
  assert.equal(classify(frame(`[${wide},${nest(65)}]`)).kind, "invalid");
  for (const text of [frame(nest(64)), frame(nest(65)), frame(wide)]) {
    assert.deepEqual(classify(text), classifyFrame(JSON.parse(text)), text.slice(0, 60));
  }
});
