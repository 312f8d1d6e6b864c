import assert from "node:assert/strict";
import { startChaosProxy } from "./chaos_proxy.ts";

/** A WebSocket echo server on an ephemeral port. */
function startEcho() {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    if (req.headers.get("upgrade") !== "websocket") return new Response("plain");
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.onmessage = (ev) => socket.send(ev.data);
    socket.onerror = () => {};
    return response;
  });
  return { port: server.addr.port, close: () => server.shutdown() };
}

/** Opens a WebSocket and resolves its close code and the time it stayed open. */
async function openSocket(url: string) {
  const ws = new WebSocket(url);
  ws.onerror = () => {};
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onclose = () => reject(new Error("closed before open"));
  });
  const openedAt = Date.now();
  const closed = new Promise<{ code: number; wasClean: boolean; openMs: number }>((resolve) => {
    ws.onclose = (ev) =>
      resolve({ code: ev.code, wasClean: ev.wasClean, openMs: Date.now() - openedAt });
  });
  return { ws, closed };
}

Deno.test("chaos proxy: passes HTTP and WebSocket traffic untouched without chaos", async () => {
  const echo = startEcho();
  await using proxy = startChaosProxy({ targetPort: echo.port });
  try {
    const res = await fetch(`http://127.0.0.1:${proxy.port}/`);
    assert.equal(await res.text(), "plain");
    const { ws, closed } = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
    const reply = new Promise((resolve) => ws.onmessage = (ev) => resolve(ev.data));
    ws.send("ping");
    assert.equal(await reply, "ping");
    ws.close(1000);
    assert.equal((await closed).code, 1000);
    assert.equal(proxy.stats.scheduledCuts, 0);
    assert.ok(proxy.stats.bytes > 0);
  } finally {
    await echo.close();
  }
});

Deno.test("chaos proxy: cuts a connection abruptly after its scheduled lifetime", async () => {
  const echo = startEcho();
  await using proxy = startChaosProxy({ targetPort: echo.port, seed: 3, cutAfterMs: [30, 60] });
  try {
    const { closed } = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
    const end = await closed;
    assert.equal(end.wasClean, false, "a cut carries no close frame");
    assert.ok(end.openMs < 1000, `cut after ${end.openMs} ms`);
    assert.equal(proxy.stats.scheduledCuts, 1);
    const planned = proxy.stats.lifetimes[0]!;
    assert.ok(planned >= 30 && planned <= 60);
  } finally {
    await echo.close();
  }
});

Deno.test("chaos proxy: the schedule depends on the seed only", async () => {
  const echo = startEcho();
  const plan = async (seed: number) => {
    await using proxy = startChaosProxy({ targetPort: echo.port, seed, cutAfterMs: [1, 10_000] });
    for (let i = 0; i < 4; i++) {
      const { ws, closed } = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
      ws.close();
      await closed;
    }
    return proxy.stats.lifetimes;
  };
  try {
    const a = await plan(11);
    assert.deepEqual(await plan(11), a);
    assert.notDeepEqual(await plan(12), a);
  } finally {
    await echo.close();
  }
});

Deno.test("chaos proxy: the chaos stops after maxCuts", async () => {
  const echo = startEcho();
  await using proxy = startChaosProxy({
    targetPort: echo.port,
    cutAfterMs: [10, 20],
    maxCuts: 2,
  });
  try {
    for (let i = 0; i < 2; i++) {
      const { closed } = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
      assert.equal((await closed).wasClean, false);
    }
    const { ws, closed } = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(ws.readyState, WebSocket.OPEN, "no cut once the budget is spent");
    ws.close();
    await closed;
    assert.equal(proxy.stats.scheduledCuts, 2);
  } finally {
    await echo.close();
  }
});

Deno.test("chaos proxy: a stall holds a direction back", async () => {
  const echo = startEcho();
  await using proxy = startChaosProxy({
    targetPort: echo.port,
    stallChance: 1,
    stallMs: [150, 150],
  });
  try {
    const { ws, closed } = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
    const started = Date.now();
    const reply = new Promise((resolve) => ws.onmessage = (ev) => resolve(ev.data));
    ws.send("slow");
    assert.equal(await reply, "slow");
    assert.ok(Date.now() - started >= 280, "stalled on the way there and back");
    assert.ok(proxy.stats.stalls >= 2);
    proxy.calm();
    ws.close();
    await closed;
  } finally {
    await echo.close();
  }
});

Deno.test("chaos proxy: cut() drops everything, retarget() moves new connections", async () => {
  const first = startEcho();
  const second = startEcho();
  await using proxy = startChaosProxy({ targetPort: first.port });
  try {
    const a = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
    const b = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
    assert.equal(proxy.cut(), 2);
    assert.equal((await a.closed).wasClean, false);
    assert.equal((await b.closed).wasClean, false);
    await first.close();
    proxy.retarget(second.port);
    const res = await fetch(`http://127.0.0.1:${proxy.port}/`);
    assert.equal(await res.text(), "plain");
    assert.equal(proxy.stats.manualCuts, 2);
  } finally {
    await second.close();
  }
});

Deno.test("chaos proxy: closes itself after its lifetime", async () => {
  const echo = startEcho();
  const proxy = startChaosProxy({ targetPort: echo.port, lifetimeMs: 50 });
  try {
    await new Promise((r) => setTimeout(r, 120));
    await assert.rejects(() => Deno.connect({ hostname: "127.0.0.1", port: proxy.port }));
  } finally {
    await proxy.close();
    await echo.close();
  }
});
