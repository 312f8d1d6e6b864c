/**
 * Feeding runs (created with `createRun` of ./ingest_client.ts) the way production does:
 * through the real wrapper library ({@link IngestConnection}) or a real wrapper process
 * (`wrapper/main.ts`).
 *
 * @module
 */
import { IngestConnection } from "../../wrapper/mod.ts";
import type { Run } from "./ingest_client.ts";

/**
 * An ingest connection for the run, connected and past its first `hello`.
 *
 * @example
 * ```ts
 * const conn = await connectIngest(await createRun(server, "s1"));
 * conn.send({ streamEventType: "output", data: { stream: "stdout", text: "hi" } });
 * await conn.finish({ streamEventType: "complete", data: { exitCode: 0 } });
 * ```
 */
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

/** Options of {@link spawnWrapper}. */
export interface SpawnWrapperOptions {
  /** Extra wrapper options, e.g. `["--heartbeat-ms", "1000"]`. */
  wrapperArgs?: string[];
  /** Where the wrapper's output goes. Default `"null"`. */
  output?: "inherit" | "null" | "piped";
}

/**
 * Starts `wrapper/main.ts` for the run with `agent` as the agent command.
 *
 * @example
 * ```ts
 * const wrapper = spawnWrapper(run, [Deno.execPath(), "run", AGENT], {
 *   wrapperArgs: ["--heartbeat-ms", "1000"],
 * });
 * assert.equal((await wrapper.status).code, 0);
 * ```
 */
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
