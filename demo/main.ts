/**
 * `deno task demo`: one command to watch Tether work. It starts the service on a local KV
 * file (in a temporary directory), creates a session and an execution, runs the real
 * wrapper (`wrapper/main.ts`, `--input text`) around the scripted agent of `demo/agent.ts`
 * for about 20 s, and prints the viewer URLs: a read-only link with a ticket that lives for
 * an hour, and the page plus a generated api key for the full view with the composer and
 * the interrupt button. Halfway the agent asks a question and waits for the answer, sent
 * from the page's composer or with the printed curl command (PROTOCOL.md 12).
 *
 * Options: `--duration-ms <n>` (default 20000), `--port <n>` (default `PORT` or 8000, a
 * free port when that one is taken), `--exit` (stop once the run has ended instead of
 * serving until Ctrl+C), `--acp` (run the scripted ACP agent of `demo/acp_agent.ts` under
 * `--acp` instead, see `demo/acp.ts`).
 *
 * @module
 */
import { loadConfig } from "../src/config.ts";
import { randomSecret } from "../src/ids.ts";
import { createService } from "../src/service.ts";
import { acpInstructions, conductAcpRun, pacedAcpAgentCommand, sendAcpPrompts } from "./acp.ts";

const SESSION_ID = "demo";
const TICKET_TTL_MS = 60 * 60 * 1000;

interface DemoOptions {
  durationMs: number;
  port: number;
  exitWhenDone: boolean;
  acp: boolean;
}

function parseArgs(args: string[]): DemoOptions {
  const value = (name: string, fallback: number) => {
    const i = args.indexOf(name);
    if (i < 0) return fallback;
    const n = Number(args[i + 1]);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${name} takes a whole number`);
    return n;
  };
  return {
    durationMs: value("--duration-ms", 20_000),
    port: value("--port", Number(Deno.env.get("PORT") ?? 8000)),
    exitWhenDone: args.includes("--exit"),
    acp: args.includes("--acp"),
  };
}

/** The wrapper's options and agent command after them: the scripted agent, or the ACP one. */
function agentArgs(options: DemoOptions): string[] {
  if (options.acp) return ["--acp", "--", ...pacedAcpAgentCommand(options.durationMs)];
  const agent = new URL("./agent.ts", import.meta.url).pathname;
  const duration = String(options.durationMs);
  return [
    "--input",
    "text",
    "--",
    Deno.execPath(),
    "run",
    agent,
    "--duration-ms",
    duration,
    "--ask",
  ];
}

function serve(port: number, handler: Deno.ServeHandler): Deno.HttpServer<Deno.NetAddr> {
  const options = { hostname: "127.0.0.1", onListen: () => {} };
  try {
    return Deno.serve({ ...options, port }, handler);
  } catch (err) {
    if (!(err instanceof Deno.errors.AddrInUse)) throw err;
    const server = Deno.serve({ ...options, port: 0 }, handler);
    console.log(`port ${port} is in use: the demo uses port ${server.addr.port} instead`);
    return server;
  }
}

async function main(): Promise<number> {
  const options = parseArgs(Deno.args);
  const dir = await Deno.makeTempDir({ prefix: "tether-demo-" });
  const apiKey = `demo_${randomSecret(18)}`;
  const config = {
    ...loadConfig({
      ...Deno.env.toObject(),
      TETHER_KV_PATH: `${dir}/tether.kv`,
      TETHER_LOG_LEVEL: Deno.env.get("TETHER_LOG_LEVEL") ?? "warn",
    }),
    apiKeys: [apiKey],
  };
  const kv = await Deno.openKv(config.kvPath);
  const service = await createService(config, kv);
  const server = serve(options.port, service.fetch);
  const base = `http://localhost:${server.addr.port}`;
  const api = async <T>(path: string, body: unknown): Promise<T> => {
    const res = await fetch(base + path, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return await res.json();
  };

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await service.stop();
    await server.shutdown();
    kv.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  await api("/v1/sessions", { sessionId: SESSION_ID, metadata: { repo: "todo-app", demo: true } });
  const exec = await api<{ executionId: string; ingestUrl: string; ingestToken: string }>(
    `/v1/sessions/${SESSION_ID}/executions`,
    { input: { prompt: "Fix the failing completed-todos filter" } },
  );
  const { ticket } = await api<{ ticket: string }>(`/v1/sessions/${SESSION_ID}/tickets`, {
    ttlMs: TICKET_TTL_MS,
  });

  const wrapper = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../wrapper/main.ts", import.meta.url).pathname,
      "--ingest-url",
      exec.ingestUrl,
      "--token",
      exec.ingestToken,
      ...agentArgs(options),
    ],
    cwd: dir,
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();

  const viewerUrl = `${base}/?session=${SESSION_ID}&ticket=${encodeURIComponent(ticket)}`;
  const inputPath = `/v1/sessions/${SESSION_ID}/executions/${exec.executionId}/input`;
  const answering = options.acp ? acpInstructions(base, apiKey, inputPath, options.exitWhenDone) : `
  Halfway the agent asks a question and waits. Answer from the page's composer, or:
    curl -X POST -H 'Authorization: Bearer ${apiKey}' -H 'Content-Type: application/json' \\
      -d '{"data":"yes"}' ${base}${inputPath}`;
  console.log(`
Tether demo: service on ${base} (KV file ${config.kvPath})

  Watch the run (read-only, link valid for 1 h):
    ${viewerUrl}

  Full view with the composer and the interrupt button: open ${base}/?session=${SESSION_ID}
  and enter the api key ${apiKey}
${answering}

  Follow it from a terminal:
    curl -N -H 'Authorization: Bearer ${apiKey}' -H 'Accept: text/event-stream' \\
      ${base}/v1/sessions/${SESSION_ID}/events

The scripted agent runs for about ${Math.round(options.durationMs / 1000)} s, plus the wait.`);
  const conducting = new AbortController();
  if (options.acp) {
    await sendAcpPrompts(api, inputPath);
    conductAcpRun({
      base,
      apiKey,
      sessionId: SESSION_ID,
      post: api,
      inputPath,
      approve: options.exitWhenDone,
      signal: conducting.signal,
    }).catch((error) => console.error(`the ACP demo's inputs failed: ${error}`));
  }

  const onSignal = () => void stop().then(() => Deno.exit(130));
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, onSignal);

  const { code } = await wrapper.status;
  conducting.abort();
  const outcome = code === 0 ? "completed" : code === 130 ? "interrupted" : `exit code ${code}`;
  console.log(`\nThe run ended: ${outcome}.`);
  const view = await fetch(`${base}/v1/sessions/${SESSION_ID}/executions/${exec.executionId}`, {
    headers: { authorization: `Bearer ${apiKey}` },
  }).then((res) => res.json());
  console.log(`Inputs: ${view.lastInputId} accepted, ${view.deliveredInputId} delivered.`);
  if (options.exitWhenDone) {
    await stop();
    return code === 0 ? 0 : 1;
  }
  console.log("The service keeps serving the session: press Ctrl+C to stop.");
  await new Promise(() => {});
  return 0;
}

if (import.meta.main) Deno.exit(await main());
