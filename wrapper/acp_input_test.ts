import assert from "node:assert/strict";
import { classifyAcpInput } from "./acp_input.ts";

Deno.test("acp input: a string is a one-block text prompt", () => {
  assert.deepEqual(classifyAcpInput("fix it"), {
    kind: "prompt",
    prompt: [{ type: "text", text: "fix it" }],
  });
});

Deno.test("acp input: {prompt:[blocks]} is a prompt, blocks passed on as given", () => {
  const prompt = [
    { type: "text", text: "look at" },
    { type: "resource_link", uri: "file:///a.ts", name: "a.ts" },
  ];
  assert.deepEqual(classifyAcpInput({ prompt }), { kind: "prompt", prompt });
});

Deno.test("acp input: permission answers, selected or cancelled", () => {
  assert.deepEqual(classifyAcpInput({ permission: { requestId: 2, optionId: "allow" } }), {
    kind: "permission",
    requestId: 2,
    outcome: { outcome: "selected", optionId: "allow" },
  });
  assert.deepEqual(classifyAcpInput({ permission: { requestId: 1, cancelled: true } }), {
    kind: "permission",
    requestId: 1,
    outcome: { outcome: "cancelled" },
  });
});

Deno.test("acp input: no data is nothing to take", () => {
  assert.deepEqual(classifyAcpInput(undefined), { kind: "none" });
});

Deno.test("acp input: garbage is ignored, never half-read", () => {
  const garbage: unknown[] = [
    null,
    42,
    true,
    [],
    ["text"],
    {},
    { prompt: [] },
    { prompt: "text" },
    { prompt: [{ text: "no type" }] },
    { prompt: [null] },
    { prompt: [{ type: "text", text: "x" }], extra: 1 },
    { permission: { requestId: 0, optionId: "allow" } },
    { permission: { requestId: 1.5, optionId: "allow" } },
    { permission: { requestId: "1", optionId: "allow" } },
    { permission: { requestId: 1 } },
    { permission: { requestId: 1, optionId: "" } },
    { permission: { requestId: 1, cancelled: false } },
    { permission: { requestId: 1, optionId: "allow", cancelled: true } },
    { permission: { requestId: 1, optionId: "allow" }, prompt: [{ type: "text" }] },
  ];
  for (const data of garbage) {
    assert.equal(classifyAcpInput(data).kind, "ignored", JSON.stringify(data));
  }
});
