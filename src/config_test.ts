import assert from "node:assert/strict";
import { ConfigError, DEFAULT_KV_PATH, isKvConnectUrl, loadConfig, testConfig } from "./config.ts";

Deno.test("loadConfig gives every default of the contract", () => {
  const c = loadConfig({});
  assert.deepEqual(c.apiKeys, []);
  assert.equal(c.ticketSecret, undefined);
  assert.equal(c.ticketTtlMs, 60_000);
  assert.deepEqual(c.allowedOrigins, []);
  assert.equal(c.publicUrl, undefined);
  assert.equal(c.kvPath, DEFAULT_KV_PATH);
  assert.equal(c.port, 8000);
  assert.equal(c.maxQueue, 16);
  assert.equal(c.maxInFlight, 1000);
  assert.equal(c.maxPendingInputs, 100);
  assert.equal(c.maxFrameBytes, 524_288);
  assert.equal(c.maxFramesPerSec, 20_000);
  assert.equal(c.heartbeatWriteMs, 5000);
  assert.equal(c.pingMs, 15_000);
  assert.equal(c.sseKeepAliveMs, 15_000);
  assert.equal(c.viewerBufferBytes, 8 * 1024 * 1024);
  assert.equal(c.disconnectGraceMs, 10_000);
  assert.equal(c.heartbeatTimeoutMs, 120_000);
  assert.equal(c.pendingTimeoutMs, 300_000);
  assert.equal(c.interruptTimeoutMs, 10_000);
  assert.equal(c.sessionTtlMs, 7_776_000_000);
  assert.equal(c.timerWakeups, undefined);
  assert.equal(c.healthzTimeoutMs, 2000);
});

Deno.test("loadConfig parses lists, numbers and URLs", () => {
  const c = loadConfig({
    TETHER_API_KEYS: " k1, k2 ,,k3",
    TETHER_ALLOWED_ORIGINS: "https://a.example,https://b.example",
    TETHER_PUBLIC_URL: "https://tether.example:8443/",
    TETHER_KV_PATH: ":memory:",
    TETHER_MAX_QUEUE: "2",
    TETHER_DISCONNECT_GRACE_MS: "1500",
    TETHER_TIMER_WAKEUPS: "sweep, cron",
    TETHER_TICKET_SECRET: "0123456789abcdef",
    PORT: "0",
  });
  assert.deepEqual(c.apiKeys, ["k1", "k2", "k3"]);
  assert.deepEqual(c.allowedOrigins, ["https://a.example", "https://b.example"]);
  assert.equal(c.publicUrl, "https://tether.example:8443");
  assert.equal(c.kvPath, ":memory:");
  assert.equal(c.maxQueue, 2);
  assert.equal(c.disconnectGraceMs, 1500);
  assert.deepEqual(c.timerWakeups, ["sweep", "cron"]);
  assert.equal(c.ticketSecret, "0123456789abcdef");
  assert.equal(c.port, 0);
});

Deno.test("on Deno Deploy (no path given) the platform's KV is used", () => {
  assert.equal(loadConfig({ DENO_DEPLOYMENT_ID: "abc" }).kvPath, undefined);
  assert.equal(loadConfig({ DENO_DEPLOYMENT_ID: "abc", TETHER_KV_PATH: "x.kv" }).kvPath, "x.kv");
});

Deno.test("empty variables count as unset", () => {
  const c = loadConfig({ TETHER_DISCONNECT_GRACE_MS: "", PORT: "", TETHER_MAX_QUEUE: " " });
  assert.equal(c.disconnectGraceMs, 10_000);
  assert.equal(c.port, 8000);
  assert.equal(c.maxQueue, 16);
});

const bad: [string, string][] = [
  ["PORT", "http"],
  ["PORT", "70000"],
  ["TETHER_MAX_QUEUE", "-1"],
  ["TETHER_MAX_QUEUE", "1.5"],
  ["TETHER_MAX_QUEUE", "65"],
  ["TETHER_DISCONNECT_GRACE_MS", "soon"],
  ["TETHER_HEARTBEAT_TIMEOUT_MS", "0"],
  ["TETHER_TICKET_TTL_MS", "999"],
  ["TETHER_TICKET_TTL_MS", "86400001"],
  ["TETHER_MAX_FRAME_BYTES", "716801"],
  ["TETHER_PUBLIC_URL", "ftp://host"],
  ["TETHER_PUBLIC_URL", "not a url"],
  ["TETHER_TICKET_SECRET", "secret\r"],
  ["TETHER_TIMER_WAKEUPS", "sweep,alarm"],
  ["TETHER_LOG_LEVEL", "loud"],
  ["TETHER_HEARTBEAT_SLOT_MS", "-1"],
  ["TETHER_HEARTBEAT_SLOT_MS", "1001"],
];

for (const [name, value] of bad) {
  Deno.test(`a bad ${name} (${JSON.stringify(value)}) throws ConfigError naming it`, () => {
    assert.throws(
      () => loadConfig({ [name]: value }),
      (err) => err instanceof ConfigError && err.message.includes(name),
    );
  });
}

Deno.test("ConfigError names every bad variable at once", () => {
  assert.throws(
    () => loadConfig({ PORT: "x", TETHER_MAX_QUEUE: "y" }),
    (err) =>
      err instanceof ConfigError && err.message.includes("PORT") &&
      err.message.includes("TETHER_MAX_QUEUE"),
  );
});

Deno.test("testConfig uses memory KV, the test key and silent logs", () => {
  const c = testConfig({ maxQueue: 3 });
  assert.equal(c.kvPath, ":memory:");
  assert.deepEqual(c.apiKeys, ["test-key"]);
  assert.equal(c.logLevel, "silent");
  assert.equal(c.maxQueue, 3);
});

Deno.test("config errors repeat the bad value, except for secrets", () => {
  assert.throws(() => loadConfig({ PORT: "abc" }), /PORT: .*\(got "abc"\)/);
  assert.throws(() => loadConfig({ TETHER_LOG_LEVEL: "loud" }), /\(got "loud"\)/);
  const secret = "a-secret-from-a-crlf-file\r";
  try {
    loadConfig({ TETHER_TICKET_SECRET: secret });
    assert.fail("a secret with a control character is refused");
  } catch (err) {
    assert.match(String(err), /TETHER_TICKET_SECRET/);
    assert.ok(!String(err).includes(secret.trim()), "the secret's value is never printed");
  }
});

Deno.test("TETHER_KV_PATH takes a KV Connect URL with its token from DENO_KV_ACCESS_TOKEN", () => {
  const url = "https://api.deno.com/v2/databases/0d5b3c1e-1111-4222-8333-444455556666/connect";
  const config = loadConfig({ TETHER_KV_PATH: url, DENO_KV_ACCESS_TOKEN: "ddo_x" });
  assert.equal(config.kvPath, url);
  assert.equal(isKvConnectUrl(url), true);
  assert.equal(isKvConnectUrl("./data/tether.kv"), false);
  assert.equal(
    loadConfig({ TETHER_KV_PATH: "http://10.0.0.5:4512", DENO_KV_ACCESS_TOKEN: "t" }).kvPath,
    "http://10.0.0.5:4512",
  );
  const refused: [Record<string, string>, RegExp][] = [
    [{ TETHER_KV_PATH: url }, /DENO_KV_ACCESS_TOKEN/],
    [
      { TETHER_KV_PATH: "https://user:pw@kv.example.com/", DENO_KV_ACCESS_TOKEN: "t" },
      /credentials/,
    ],
    [{ TETHER_KV_PATH: "https://kv.example.com/?token=x", DENO_KV_ACCESS_TOKEN: "t" }, /query/],
    [{ TETHER_KV_PATH: "https://", DENO_KV_ACCESS_TOKEN: "t" }, /TETHER_KV_PATH/],
  ];
  for (const [env, message] of refused) {
    assert.throws(
      () => loadConfig(env),
      (err: Error) => err instanceof ConfigError && message.test(err.message),
    );
  }
});

Deno.test("Deno Deploy is recognised by DENO_DEPLOY or DENO_DEPLOYMENT_ID: the platform's KV", () => {
  assert.equal(loadConfig({ DENO_DEPLOY: "true" }).kvPath, undefined);
  assert.equal(loadConfig({ DENO_DEPLOYMENT_ID: "x" }).kvPath, undefined);
  assert.equal(loadConfig({}).kvPath, DEFAULT_KV_PATH);
});

Deno.test("TETHER_CALLBACK_PRIVATE and TETHER_QUEUE_PROBE_MS", () => {
  assert.equal(loadConfig({}).callbackPrivate, false);
  assert.equal(loadConfig({ TETHER_CALLBACK_PRIVATE: "allow" }).callbackPrivate, true);
  assert.throws(() => loadConfig({ TETHER_CALLBACK_PRIVATE: "yes" }), ConfigError);
  assert.equal(loadConfig({}).queueProbeMs, 2000);
  assert.throws(() => loadConfig({ TETHER_QUEUE_PROBE_MS: "0" }), ConfigError);
});

Deno.test("TETHER_HEARTBEAT_SLOT_MS: 250 by default, 0 wakes each heartbeat check on its own", () => {
  assert.equal(loadConfig({}).heartbeatSlotMs, 250);
  assert.equal(loadConfig({ TETHER_HEARTBEAT_SLOT_MS: "0" }).heartbeatSlotMs, 0);
});

Deno.test("any non-empty TETHER_TICKET_SECRET is taken (the runtime warns when it is short)", () => {
  assert.equal(loadConfig({ TETHER_TICKET_SECRET: "short" }).ticketSecret, "short");
  assert.equal(loadConfig({ TETHER_TICKET_SECRET: "" }).ticketSecret, undefined);
});
