import assert from "node:assert/strict";
import { main } from "./main.ts";
import { COMMANDS } from "./args.ts";
import type { Terminal } from "./output.ts";
import { API_KEY, type TestServer } from "../tests/helpers/server.ts";
import { connectIngest } from "../tests/helpers/runs.ts";
import { serverTest } from "../tests/helpers/ingest_client.ts";

const FAKE_AGENT = new URL("../wrapper/testdata/fake_agent.ts", import.meta.url).pathname;

/** One CLI invocation, in process, with its output captured. */
interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(server: TestServer | { url: string }) {
  return async (...argv: string[]): Promise<Result> => {
    const out: string[] = [];
    const err: string[] = [];
    const term: Terminal = {
      out: (text) => out.push(`${text}\n`),
      err: (text) => err.push(text),
      color: false,
      animate: false,
    };
    const env: Record<string, string> = { TETHER_URL: server.url, TETHER_API_KEY: API_KEY };
    const code = await main(argv, { env: (name) => env[name], term });
    return { code, stdout: out.join(""), stderr: err.join("") };
  };
}

function cliTest(
  name: string,
  fn: (run: ReturnType<typeof cli>, server: TestServer) => Promise<void>,
) {
  serverTest(name, (server) => fn(cli(server), server));
}

const json = (result: Result) => {
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout);
};

cliTest("sessions: create, get, delete; --json output; API errors exit 1", async (tether) => {
  const created = json(
    await tether("sessions", "create", "s1", "--metadata", '{"repo":"x"}', "--json"),
  );
  assert.deepEqual(created.metadata, { repo: "x" });
  // Options anywhere before the command words.
  const view = json(await tether("--json", "sessions", "get", "s1"));
  assert.equal(view.lastEventId, 0);
  const human = await tether("sessions", "get", "s1");
  assert.match(human.stdout, /^sessionId: s1$/m);
  const exists = await tether("sessions", "create", "s1");
  assert.equal(exists.code, 1);
  assert.match(exists.stderr, /^SESSION_EXISTS: /);
  assert.deepEqual(json(await tether("sessions", "delete", "s1", "--json")), {});
  const gone = await tether("sessions", "get", "s1");
  assert.equal(gone.code, 1);
  assert.equal(gone.stderr, "SESSION_NOT_FOUND: session not found\n");
});

cliTest("executions: create, list, get, interrupt, fail", async (tether) => {
  await tether("sessions", "create", "e1");
  const first = json(await tether("executions", "create", "e1", "--input", '{"p":1}', "--json"));
  assert.equal(first.status, "pending");
  assert.ok(first.ingestToken);
  const busy = await tether("executions", "create", "e1", "--if-idle");
  assert.equal(busy.code, 1);
  assert.match(busy.stderr, /^EXECUTION_IN_PROGRESS: /);
  const second = json(await tether("--json", "executions", "create", "e1"));
  const list = json(await tether("executions", "list", "e1", "--json"));
  assert.deepEqual(list.executions.map((e: { executionId: string }) => e.executionId), [
    first.executionId,
    second.executionId,
  ]);
  const human = await tether("executions", "list", "e1");
  assert.match(human.stdout, new RegExp(`${first.executionId} pending \\(active\\)`));
  const got = json(await tether("executions", "get", "e1", first.executionId, "--json"));
  assert.deepEqual(got.input, { p: 1 });
  const sent = json(await tether("executions", "input", "e1", first.executionId, "hello agent"));
  assert.deepEqual(sent, { executionId: first.executionId, inputId: 1, status: "pending" });
  // `--json` is the global flag unless a JSON value follows it (PROTOCOL.md 13 uses it twice).
  const eid = first.executionId;
  assert.equal(json(await tether("--json", "executions", "input", "e1", eid, "two")).inputId, 2);
  assert.equal(json(await tether("executions", "input", "e1", eid, "three", "--json")).inputId, 3);
  assert.equal(json(await tether("--json", "[4]", "executions", "input", "e1", eid)).inputId, 4);
  const data = json(
    await tether("executions", "input", "e1", first.executionId, "--json", '{"a":1}', "--end"),
  );
  assert.equal(data.inputId, 5);
  const inputs = (await tether("events", "e1", "--json")).stdout.trim().split("\n")
    .map((line) => JSON.parse(line)).filter((e) => e.streamEventType === "input");
  assert.deepEqual(inputs.map((e) => e.data.data), ["hello agent", "two", "three", [4], { a: 1 }]);
  const closed = await tether("executions", "input", "e1", first.executionId, "more");
  assert.equal(closed.code, 1);
  assert.match(closed.stderr, /^INPUT_CLOSED: /);
  const interrupted = json(
    await tether("executions", "interrupt", "e1", second.executionId, "--reason", "no", "--json"),
  );
  assert.equal(interrupted.status, "interrupted");
  const failed = json(
    await tether("executions", "fail", "e1", first.executionId, "--error", "boom", "--json"),
  );
  assert.deepEqual(failed, { failed: true });
  const again = await tether("executions", "fail", "e1", first.executionId, "--error", "boom");
  assert.match(again.stdout, /already ended/);
  const missing = await tether("executions", "get", "e1", "exc_nope");
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^EXECUTION_NOT_FOUND: /);
});

cliTest("events: one line per event, --after, --json lines, --follow ends on deletion", async (
  tether,
  server,
) => {
  await tether("sessions", "create", "ev");
  const run = json(await tether("executions", "create", "ev", "--json"));
  const conn = await connectIngest(run);
  conn.send({ streamEventType: "output", data: { stream: "stdout", text: "hello there" } });
  await conn.finish({ streamEventType: "complete", data: { exitCode: 0 } });
  const human = await tether("events", "ev");
  assert.match(human.stdout, /^#3 \d\d:\d\d:\d\d output hello there$/m);
  assert.match(human.stdout, /running → completed/);
  const lines = (await tether("events", "ev", "--after", "2", "--json")).stdout.trim().split("\n");
  const ids = lines.map((line) => JSON.parse(line).eventId);
  assert.deepEqual(ids, [3, 4, 5]);

  const following = tether("events", "ev", "--follow", "--json");
  await new Promise((r) => setTimeout(r, 200));
  await server.client.deleteSession("ev");
  const followed = await following;
  assert.equal(followed.code, 0);
  assert.equal(followed.stdout.trim().split("\n").length, 5);
});

cliTest("watch exits 0 completed, 1 failed, 130 interrupted", async (tether, server) => {
  await tether("sessions", "create", "w");
  const done = json(await tether("executions", "create", "w", "--json"));
  const watching = tether("watch", "w"); // the active one
  const conn = await connectIngest(done);
  await conn.finish({ streamEventType: "complete", data: { exitCode: 0 } });
  const completed = await watching;
  assert.equal(completed.code, 0, completed.stderr);
  assert.match(completed.stdout, /running → completed/);

  const failing = json(await tether("executions", "create", "w", "--json"));
  const watchFail = tether("watch", "w", failing.executionId);
  await new Promise((r) => setTimeout(r, 100));
  await server.client.failExecution("w", failing.executionId, { error: "nope" });
  assert.equal((await watchFail).code, 1);

  const stopping = json(await tether("executions", "create", "w", "--json"));
  const watchInterrupt = tether("watch", "w");
  await new Promise((r) => setTimeout(r, 100));
  await server.client.interruptExecution("w", stopping.executionId);
  assert.equal((await watchInterrupt).code, 130);
  // An execution that already ended: watch answers at once, by its status (the newest).
  assert.equal((await tether("watch", "w")).code, 130);
  assert.equal((await tether("watch", "w", done.executionId)).code, 0);
});

cliTest("run: creates the session and an execution, runs the agent, exits like the wrapper", async (
  tether,
  server,
) => {
  const ok = await tether(
    "run",
    "--session",
    "r1",
    "--heartbeat-ms",
    "1000",
    "--",
    Deno.execPath(),
    "run",
    FAKE_AGENT,
    'out:{"type":"assistant","message":{"content":[{"type":"text","text":"all good"}]}}',
    "err:warning",
  );
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /viewer: http:\/\/127\.0\.0\.1:\d+\/\?session=r1&ticket=/);
  assert.match(ok.stdout, /agent all good/);
  assert.match(ok.stdout, /running → completed/);
  const session = await server.client.getSession("r1");
  assert.equal(session.activeExecutionId, null);

  const failing = await tether(
    "run",
    "--session",
    "r1",
    "--",
    Deno.execPath(),
    "run",
    FAKE_AGENT,
    "exit:3",
  );
  assert.equal(failing.code, 1);
  assert.match(failing.stdout, /agent exited with code 3/);
  const list = await server.client.listExecutions("r1");
  assert.equal(list.executions.length, 2, "the existing session was reused");

  const fresh = await tether("run", "--json", "--", Deno.execPath(), "run", FAKE_AGENT, "out:x");
  assert.equal(fresh.code, 0, fresh.stderr);
  const envelopes = fresh.stdout.trim().split("\n").map((line) => JSON.parse(line));
  assert.ok(envelopes.some((e) => e.streamEventType === "output" && e.data.text === "x"));
  assert.match(fresh.stderr, /viewer: /);
});

Deno.test("usage errors exit 64 and name the problem; --help exits 0 everywhere", async () => {
  const tether = cli({ url: "http://127.0.0.1:1" });
  const cases: [string[], RegExp][] = [
    [[], /missing command/],
    [["frobnicate"], /unknown command "frobnicate"/],
    [["sessions"], /sessions: missing subcommand/],
    [["sessions", "get"], /missing <sid>/],
    [["sessions", "get", "a", "b"], /unexpected argument "b"/],
    [["sessions", "get", "a", "--bogus"], /--bogus/],
    [["--bogus", "val", "sessions", "get", "a"], /unknown option --bogus/],
    [["sessions", "create", "a", "--metadata", "{nope"], /--metadata must be JSON/],
    [["sessions", "create", "a", "--metadata", "[1]"], /--metadata must be a JSON object/],
    [["executions", "fail", "s", "e"], /--error/],
    [["executions", "input", "s", "e"], /give <text>/],
    [["events", "s", "--after", "x"], /--after must be/],
    [["run", "--session", "s"], /missing agent command/],
    [["run", "--heartbeat-ms", "0", "--", "true"], /--heartbeat-ms/],
    [["run", "--acp", "--input", "text", "--", "true"], /--acp/],
    [["run", "--input", "loud", "--", "true"], /--input/],
    [["--url", "ftp://x", "sessions", "get", "s"], /--url/],
    [["--api-key", "a\nb", "sessions", "get", "s"], /--api-key must be printable/],
  ];
  for (const [argv, message] of cases) {
    const result = await tether(...argv);
    assert.equal(result.code, 64, `${argv.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, message, argv.join(" "));
  }
  for (const command of [[], ...COMMANDS.map((c) => c.words)]) {
    const result = await tether(...command, "--help");
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^Usage: tether /);
  }
});

Deno.test("a service that cannot be reached exits 2", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const result = await cli({ url: `http://127.0.0.1:${port}` })("sessions", "get", "s");
  assert.equal(result.code, 2);
  assert.match(result.stderr, /^NETWORK_ERROR: cannot reach /);
});

const ESC = "\x1b";

const hasScript = await new Deno.Command("script", { args: ["--version"], stdout: "null" })
  .output().then((out) => out.success, () => false);

cliTest("colors on a terminal only, and never with NO_COLOR", async (tether, server) => {
  if (!hasScript) return; // util-linux `script` gives the CLI a pseudo-terminal
  await tether("sessions", "create", "tty");
  await tether("executions", "create", "tty");
  const cliPath = new URL("./main.ts", import.meta.url).pathname;
  const run = async (env: Record<string, string>, viaTerminal: boolean) => {
    const command = `${Deno.execPath()} run -A ${cliPath} events tty`;
    const { stdout } = await new Deno.Command(viaTerminal ? "script" : "sh", {
      args: viaTerminal ? ["-qc", command, "/dev/null"] : ["-c", command],
      env: { TETHER_URL: server.url, TETHER_API_KEY: API_KEY, ...env },
      stdout: "piped",
      stderr: "null",
    }).output();
    return new TextDecoder().decode(stdout);
  };
  const colored = await run({}, true);
  assert.ok(colored.includes(`${ESC}[2m#1 `), colored);
  const noColor = await run({ NO_COLOR: "1" }, true);
  assert.match(noColor, /#1 /);
  assert.ok(!noColor.includes(ESC));
  const piped = await run({}, false);
  assert.match(piped, /#1 /);
  assert.ok(!piped.includes(ESC));
});

const CLI_PATH = new URL("./main.ts", import.meta.url).pathname;

/** The CLI as a user runs it: a child process, killed after `timeoutMs`. */
async function cliProcess(url: string, argv: string[], timeoutMs = 15_000): Promise<Result> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI_PATH, ...argv],
    env: { TETHER_URL: url, TETHER_API_KEY: API_KEY, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  assert.equal(out.signal, null, `killed after ${timeoutMs} ms: ${decode(out.stderr)}`);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

serverTest("a reader that goes away (`| head`) ends the CLI quietly with 141", async (server) => {
  await server.client.createSession({ sessionId: "pipe" });
  const conn = await connectIngest(await server.client.createExecution("pipe"));
  const text = "x".repeat(500);
  for (let i = 0; i < 1000; i++) conn.send({ streamEventType: "output", data: { text } });
  await conn.finish({ streamEventType: "complete", data: { exitCode: 0 } });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI_PATH, "events", "pipe"],
    env: { TETHER_URL: server.url, TETHER_API_KEY: API_KEY, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(15_000),
  }).spawn();
  // Read one chunk of the ~500 KB, then stop reading, as `head` does.
  const reader = child.stdout.getReader();
  assert.ok((await reader.read()).value);
  await reader.cancel();
  const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
  assert.equal(status.code, 141, stderr);
  assert.equal(stderr, "");
});

serverTest("watch of an unknown execution or session prints the API error and exits 1", async (
  server,
) => {
  await server.client.createSession({ sessionId: "wx" });
  await server.client.createSession({ sessionId: "other" });
  const elsewhere = await server.client.createExecution("other");
  const cases: [string[], string][] = [
    [["watch", "wx", "exc_01ARZ3NDEKTSV4RRFFQ69G5FAV"], "EXECUTION_NOT_FOUND"],
    [["watch", "wx", elsewhere.executionId], "EXECUTION_NOT_FOUND"],
    [["watch", "nope", "exc_01ARZ3NDEKTSV4RRFFQ69G5FAV"], "SESSION_NOT_FOUND"],
    [["watch", "nope"], "SESSION_NOT_FOUND"],
  ];
  for (const [argv, code] of cases) {
    const result = await cliProcess(server.url, argv);
    assert.equal(result.code, 1, `${argv.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, new RegExp(`^${code}: [^\\n]+\\n$`), argv.join(" "));
  }
});

serverTest("events --follow of an unknown session prints SESSION_NOT_FOUND and exits 1", async (
  server,
) => {
  const result = await cliProcess(server.url, ["events", "nope", "--follow"]);
  assert.equal(result.code, 1, result.stderr);
  assert.equal(result.stderr, "SESSION_NOT_FOUND: session not found\n");
  assert.equal(result.stdout, "");
});

Deno.test("a 2xx answer that is not JSON prints one error line and exits 1, no stack", async () => {
  // A stand-in for what sits outside the system: a proxy answering 200 with its own page.
  await using foreign = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    () =>
      new Response("<html>sign in to the wifi</html>", {
        headers: { "content-type": "text/html" },
      }),
  );
  const url = `http://127.0.0.1:${foreign.addr.port}`;
  for (const argv of [["sessions", "get", "s1"], ["events", "s1", "--follow"]]) {
    const result = await cliProcess(url, argv);
    assert.equal(result.code, 1, `${argv.join(" ")}: ${result.stderr}`);
    assert.match(
      result.stderr,
      /^HTTP_200: the answer is not (JSON|an event stream) \(text\/html\): <html>sign in to the wifi<\/html>\n$/,
      argv.join(" "),
    );
  }
});
