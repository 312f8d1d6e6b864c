import assert from "node:assert/strict";
import { type AgentInput, inputDeliveredFrame, InputGate } from "./input.ts";
import type { OutgoingFrame } from "./outbox.ts";

function gate(maxHeld?: number) {
  const yielded: number[] = [];
  const sent: OutgoingFrame[] = [];
  const g = new InputGate({
    onInput: (input) => yielded.push(input.inputId),
    send: (frame) => (sent.push(frame), true),
    maxHeld,
  });
  const feed = (...ids: number[]) => ids.forEach((inputId) => g.receive({ inputId }));
  return { g, yielded, sent, feed };
}

Deno.test("InputGate yields each input once, in order, whatever the arrival order", () => {
  const { g, yielded, feed } = gate();
  g.hello(0);
  feed(1, 1, 3, 2, 3, 5, 4, 1, 2);
  assert.deepEqual(yielded, [1, 2, 3, 4, 5]);
  g.hello(2); // a reconnect: the service resends everything above its deliveredInputId
  feed(3, 4, 5, 6);
  assert.deepEqual(yielded, [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(g.highest, 6);
});

Deno.test("InputGate never yields inputs at or below hello.deliveredInputId", () => {
  const { g, yielded, feed } = gate();
  g.hello(5);
  feed(1, 2, 3, 4, 5, 6, 7);
  assert.deepEqual(yielded, [6, 7]);
  assert.deepEqual(g.confirmed, 5);
});

Deno.test("InputGate drops held inputs a later hello covers", () => {
  const { g, yielded, feed } = gate();
  feed(3, 4); // waiting for 1 and 2
  g.hello(3); // another process wrote up to 3
  assert.deepEqual(yielded, [4]);
  feed(5);
  assert.deepEqual(yielded, [4, 5]);
});

Deno.test("InputGate holds at most maxHeld inputs while one is missing", () => {
  const { g, yielded, feed } = gate(2);
  feed(2, 3, 4); // 4 is dropped: no room
  feed(1);
  assert.deepEqual(yielded, [1, 2, 3]);
  feed(4);
  assert.deepEqual(yielded, [1, 2, 3, 4]);
  assert.deepEqual(g.highest, 4);
});

Deno.test("InputGate passes data and endOfInput through untouched", () => {
  const got: AgentInput[] = [];
  const g = new InputGate({ onInput: (i) => got.push(i), send: () => true });
  g.receive({ inputId: 1, data: { a: [1] } });
  g.receive({ inputId: 2, endOfInput: true });
  assert.deepEqual(got, [{ inputId: 1, data: { a: [1] } }, { inputId: 2, endOfInput: true }]);
});

Deno.test("InputGate.confirm sends input_delivered once per higher inputId", () => {
  const { g, sent } = gate();
  g.confirm(1);
  g.confirm(1);
  g.confirm(3);
  g.confirm(2);
  g.hello(5);
  g.confirm(4);
  g.confirm(6);
  assert.deepEqual(sent, [inputDeliveredFrame(1), inputDeliveredFrame(3), inputDeliveredFrame(6)]);
  assert.deepEqual(sent[0], { streamEventType: "input_delivered", data: { inputId: 1 } });
});
