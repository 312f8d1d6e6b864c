import assert from "node:assert/strict";
import { startServer } from "./helpers/server.ts";

Deno.test("a session and an execution can be created and read back", async () => {
  const server = await startServer();
  try {
    const created = await server.call("/v1/sessions", {
      method: "POST",
      json: { sessionId: "s1" },
    });
    assert.equal(created.status, 201);
    const exec = await server.call<{ executionId: string; active: boolean }>(
      "/v1/sessions/s1/executions",
      { method: "POST", json: { input: { prompt: "hi" } } },
    );
    assert.equal(exec.status, 201);
    assert.equal(exec.body.active, true);
    const session = await server.call("/v1/sessions/s1");
    assert.equal(session.body.activeExecutionId, exec.body.executionId);
    assert.equal(session.body.lastEventId, 1);
  } finally {
    await server.close();
  }
});
