import assert from "node:assert/strict";
import { MalformedDeadlineError, parseTimer } from "./deadlines.ts";

const callback = {
  url: "https://example.com/hook",
  body: { sessionId: "s", executionId: "exc_1", status: "completed", completedAt: "t" },
};

Deno.test("parseTimer: every deadline kind in its stored shape", () => {
  for (const kind of ["grace", "heartbeat", "pending", "interrupt"] as const) {
    const timer = { kind, id: "exc_1", dueAt: 5 };
    assert.deepEqual(parseTimer(timer), timer);
  }
  for (const kind of ["ttl", "purge"] as const) {
    const timer = { kind, id: "s", dueAt: 5, incarnation: "inc" };
    assert.deepEqual(parseTimer(timer), timer);
  }
  const retry = { kind: "callback", id: "exc_1", dueAt: 5, attempt: 2, callback };
  assert.deepEqual(parseTimer(retry), retry);
});

Deno.test("parseTimer: a record that is not a deadline is refused, never half-read", () => {
  const garbage: unknown[] = [
    null,
    "grace",
    42,
    [],
    {},
    { kind: "nap", id: "exc_1", dueAt: 5 },
    { kind: "grace", id: "exc_1" },
    { kind: "grace", id: 7, dueAt: 5 },
    { kind: "grace", id: "exc_1", dueAt: "5" },
    { kind: "ttl", id: "s", dueAt: 5 }, // a session deadline names its incarnation
    { kind: "callback", id: "exc_1", dueAt: 5, attempt: 0, callback },
    { kind: "callback", id: "exc_1", dueAt: 5, attempt: 1 },
    { kind: "callback", id: "exc_1", dueAt: 5, attempt: 1, callback: { url: "x", body: {} } },
  ];
  for (const value of garbage) {
    assert.throws(() => parseTimer(value), MalformedDeadlineError, JSON.stringify(value));
  }
});
