import assert from "node:assert/strict";
import { parseOptions, USAGE, UsageError, type WrapperOptions } from "./options.ts";

const URL_ = "https://t.example/v1/sessions/s/executions/e/ingest";
const base = ["--ingest-url", URL_, "--token", "tk"];
const noEnv = () => undefined;
const parse = (args: string[], env: Record<string, string> = {}) =>
  parseOptions(args, (name) => env[name]) as WrapperOptions;

Deno.test("defaults are those of PROTOCOL.md section 9", () => {
  assert.deepEqual(parse([...base, "--", "agent", "-x"]), {
    ingestUrl: URL_,
    token: "tk",
    heartbeatMs: 20_000,
    silenceTimeoutMs: 45_000,
    reconnectBaseMs: 1000,
    reconnectMaxMs: 5000,
    reconnectAttempts: 10,
    connectTimeoutMs: 5000,
    bufferLimit: 10_000,
    bufferBytes: 67_108_864,
    killGraceMs: 5000,
    maxFrameBytes: 524_288,
    sse: undefined,
    doneEvent: "session.idle",
    idleTimeoutMs: 0,
    input: "none",
    acp: false,
    command: ["agent", "-x"],
  });
});

Deno.test("--acp is a flag (or 1/true/0/false), also from TETHER_WRAPPER_ACP", () => {
  const acp = (args: string[], env: Record<string, string> = {}) => {
    const options = parseOptions([...base, ...args, "--", "agent"], (name) => env[name]);
    return options !== "help" && options.acp;
  };
  assert.equal(acp(["--acp"]), true);
  assert.equal(acp(["--acp=false"]), false);
  assert.equal(acp([], { TETHER_WRAPPER_ACP: "1" }), true);
  assert.equal(acp([], { TETHER_WRAPPER_ACP: "0" }), false);
  assert.equal(acp(["--acp=0"], { TETHER_WRAPPER_ACP: "1" }), false, "the option wins");
  assert.throws(() => acp(["--acp=yes"]), /--acp/);
  assert.throws(() => acp(["--acp", "--input", "jsonl"]), /--input cannot be used with --acp/);
  assert.throws(() => acp(["--acp", "--done-event=x"]), /--done-event cannot be used with --acp/);
  assert.throws(() => acp(["--acp"], { TETHER_WRAPPER_SSE: "http://h/e" }), /--sse/);
});

Deno.test("--name value and --name=value; the agent's own options stay after --", () => {
  const options = parse([
    `--ingest-url=${URL_}`,
    "--token=a=b",
    "--heartbeat-ms=15",
    "--kill-grace-ms",
    "0",
    "--sse",
    "http://127.0.0.1:4096/event",
    "--done-event=run.done",
    "--",
    "claude",
    "--token",
    "--",
  ]);
  assert.equal(options.token, "a=b");
  assert.equal(options.heartbeatMs, 15);
  assert.equal(options.killGraceMs, 0);
  assert.equal(options.sse, "http://127.0.0.1:4096/event");
  assert.equal(options.doneEvent, "run.done");
  assert.deepEqual(options.command, ["claude", "--token", "--"]);
});

Deno.test("environment fallbacks; the command line wins", () => {
  const env = {
    TETHER_INGEST_URL: URL_,
    TETHER_INGEST_TOKEN: "from-env",
    TETHER_WRAPPER_RECONNECT_ATTEMPTS: "3",
    TETHER_WRAPPER_BUFFER_BYTES: "1000",
    TETHER_WRAPPER_SSE: "https://k.example/event",
    TETHER_WRAPPER_IDLE_TIMEOUT_MS: "60000",
  };
  const options = parse(["--buffer-bytes", "2000"], env);
  assert.equal(options.ingestUrl, URL_);
  assert.equal(options.token, "from-env");
  assert.equal(options.reconnectAttempts, 3);
  assert.equal(options.bufferBytes, 2000);
  assert.equal(options.sse, "https://k.example/event");
  assert.equal(options.idleTimeoutMs, 60_000);
  assert.deepEqual(options.command, []);
});

Deno.test("bad command lines name the option", () => {
  const cases: [string[], RegExp][] = [
    [["--token", "t", "--", "a"], /--ingest-url.*TETHER_INGEST_URL/],
    [["--ingest-url", URL_, "--", "a"], /--token.*TETHER_INGEST_TOKEN/],
    [[...base, "--heartbeat-ms", "soon", "--", "a"], /--heartbeat-ms/],
    [[...base, "--heartbeat-ms=0", "--", "a"], /--heartbeat-ms must be an integer ≥ 1/],
    [[...base, "--kill-grace-ms=-1", "--", "a"], /--kill-grace-ms/],
    // What a timer can wait: a longer setTimeout fires at once.
    [[...base, "--idle-timeout-ms=2147483648", "--", "a"], /--idle-timeout-ms must be at most/],
    [[...base, "--connect-timeout-ms=3000000000", "--", "a"], /--connect-timeout-ms must be at/],
    [[...base, "--reconnect-attempts=1.5", "--", "a"], /--reconnect-attempts/],
    [[...base, "--max-frame-bytes=100", "--", "a"], /--max-frame-bytes must be at least/],
    [[...base, "--bogus=1", "--", "a"], /unknown option --bogus/],
    [[...base, "--sse"], /--sse needs a value/],
    [[...base, "--sse", "ftp://x", "--", "a"], /--sse must be a http:\/https: URL/],
    [["--ingest-url", "nope", "--token", "t", "--", "a"], /--ingest-url must be/],
    [[...base, "--token=", "--", "a"], /--token must not be empty/],
    [[...base, "claude"], /unexpected argument "claude"/],
    [base, /missing agent command/],
  ];
  for (const [args, message] of cases) {
    assert.throws(
      () => parseOptions(args, noEnv),
      (e) => e instanceof UsageError && message.test(e.message),
      args.join(" "),
    );
  }
  assert.throws(
    () =>
      parseOptions(
        [...base, "--", "a"],
        (n) => n === "TETHER_WRAPPER_HEARTBEAT_MS" ? "x" : undefined,
      ),
    /--heartbeat-ms/,
  );
});

Deno.test("--help, and the usage text lists every option with its env name", () => {
  assert.equal(parseOptions(["--help"], noEnv), "help");
  for (
    const text of [
      "--silence-timeout-ms",
      "TETHER_WRAPPER_BUFFER_LIMIT",
      "--done-event",
      "64 usage",
    ]
  ) {
    assert.ok(USAGE.includes(text), text);
  }
});
