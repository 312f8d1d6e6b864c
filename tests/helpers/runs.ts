/**
 * Agent runs for end-to-end tests: create a session and an execution on a test server,
 * then feed it events through the real wrapper library ({@link IngestConnection}) or a
 * real wrapper process (`wrapper/main.ts`).
 *
 * @module
 */
import { IngestConnection } from "../../wrapper/mod.ts";
import type { TestServer } from "./server.ts";

/** A created execution and what a wrapper needs to feed it. */
export interface Run {
  sessionId: string;
  executionId: string;
  ingestUrl: string;
  ingestToken: string;
}

/** Creates the session (unless it exists) and an execution on it. */
export async function createRun(
  server: TestServer,
  sessionId: string,
  body: Record<string, unknown> = {},
): Promise<Run> {
  const session = await server.call("/v1/sessions", { method: "POST", json: { sessionId } });
  if (session.status !== 201 && session.status !== 409) {
    throw new Error(`session: ${session.status} ${JSON.stringify(session.body)}`);
  }
  const exec = await server.call<Run & { error?: string }>(
    `/v1/sessions/${sessionId}/executions`,
    { method: "POST", json: body },
  );
  if (exec.status !== 201) throw new Error(`execution: ${exec.status} ${exec.body.error}`);
  const { executionId, ingestUrl, ingestToken } = exec.body;
  return { sessionId, executionId, ingestUrl, ingestToken };
}

/** An ingest connection for the run, connected and past its first `hello`. */
export async function connectIngest(run: Run): Promise<IngestConnection> {
  const hello = Promise.withResolvers<void>();
  const conn = new IngestConnection({
    url: run.ingestUrl,
    token: run.ingestToken,
    onEvent: (event) => {
      if (event.type === "hello") hello.resolve();
      if (event.type === "ended") hello.reject(new Error(`ingest ended: ${event.end.kind}`));
    },
  });
  conn.connect();
  await hello.promise;
  return conn;
}

/** The session's newest eventId. */
export async function lastEventId(server: TestServer, sessionId: string): Promise<number> {
  const { body } = await server.call<{ lastEventId: number }>(`/v1/sessions/${sessionId}`);
  return body.lastEventId;
}

/** Polls `check` every 20 ms until it is true; fails after `timeoutMs` (default 10 s). */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Options of {@link spawnWrapper}. */
export interface SpawnWrapperOptions {
  /** Extra wrapper options, e.g. `["--heartbeat-ms", "1000"]`. */
  wrapperArgs?: string[];
  /** Where the wrapper's output goes. Default `"null"`. */
  output?: "inherit" | "null" | "piped";
}

/** Starts `wrapper/main.ts` for the run with `agent` as the agent command. */
export function spawnWrapper(
  run: Run,
  agent: string[],
  options: SpawnWrapperOptions = {},
): Deno.ChildProcess {
  const wrapper = new URL("../../wrapper/main.ts", import.meta.url).pathname;
  const output = options.output ?? "null";
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      wrapper,
      "--ingest-url",
      run.ingestUrl,
      "--token",
      run.ingestToken,
      ...(options.wrapperArgs ?? []),
      "--",
      ...agent,
    ],
    stdin: "null",
    stdout: output,
    stderr: output,
  }).spawn();
}
