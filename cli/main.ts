/**
 * The `tether` CLI (PROTOCOL.md 13): `deno task tether [options] <command> [args]`, or
 * `node dist/tether.mjs …` after `deno task build`. See {@link usage} for the commands.
 *
 * @example
 * ```sh
 * export TETHER_API_KEY=dev_…
 * deno task tether run --session demo -- node examples/agent.mjs
 * deno task tether watch demo
 * ```
 *
 * @module
 */
import { TetherClient, TetherError } from "../client/mod.ts";
import type { Envelope, ExecutionStatus } from "../src/protocol.ts";
import { ErrorCode, EventType, isTerminal } from "../src/protocol.ts";
import { CliExit, type Invocation, parseCommandLine, usage, UsageError } from "./args.ts";
import { formatEvent, paint, processTerminal, Spinner, type Terminal } from "./output.ts";
import { EventLines } from "./render.ts";
import { runCommand } from "./run.ts";

/** What can go into an HTTP header as it is: printable ASCII only. */
const HEADER_SAFE = /^[\x20-\x7e]*$/;

/**
 * Where the CLI runs: its environment and terminal.
 *
 * @example
 * ```ts
 * await main(["sessions", "get", "s1"], { env: (name) => ({ TETHER_URL: "http://localhost:8000" })[name] });
 * ```
 */
export interface CliContext {
  /** Environment lookup: `TETHER_URL`, `TETHER_API_KEY`, and for `run` the wrapper's fallbacks. */
  env: (name: string) => string | undefined;
  /** Where output goes, and whether it may be colored or animated. */
  term: Terminal;
}

/**
 * What a command handler gets.
 *
 * @example
 * ```ts
 * const handler = async (ctx: CommandContext) => (ctx.print({ ok: true }, () => "ok"), 0);
 * ```
 */
export interface CommandContext extends CliContext {
  /** A client for `--url` / `TETHER_URL` with `--api-key` / `TETHER_API_KEY`. */
  client: TetherClient;
  /** The parsed command line. */
  inv: Invocation;
  /** Prints a result: its JSON with `--json`, else `human()`. */
  print(body: unknown, human: () => string): void;
  /** The text of events printed so far (agent messages continue across events). */
  lines: EventLines;
}

/**
 * Default service URL.
 *
 * @example
 * ```ts
 * new TetherClient({ url: Deno.env.get("TETHER_URL") ?? DEFAULT_URL });
 * ```
 */
export const DEFAULT_URL = "http://localhost:8000";

/**
 * Runs the CLI; resolves with the exit code.
 *
 * @example
 * ```ts
 * const code = await main(["sessions", "get", "demo"]);
 * ```
 */
export async function main(
  argv: readonly string[],
  context: Partial<CliContext> = {},
): Promise<number> {
  const env = context.env ?? ((name: string) => Deno.env.get(name));
  const term = context.term ?? processTerminal(env);
  let inv: Invocation;
  try {
    inv = parseCommandLine(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    term.err(`tether: ${err.message}\n`);
    return CliExit.usage;
  }
  if (inv.options.help) {
    term.out(usage(inv.command));
    return CliExit.ok;
  }
  const url = String(inv.options.url ?? env("TETHER_URL") ?? DEFAULT_URL);
  if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
    const source = inv.options.url === undefined && env("TETHER_URL") ? " (TETHER_URL)" : "";
    term.err(`tether: --url${source} must be an http(s) URL, got "${url}"\n`);
    return CliExit.usage;
  }
  const apiKey = inv.options["api-key"] ?? env("TETHER_API_KEY");
  if (apiKey !== undefined && !HEADER_SAFE.test(String(apiKey))) {
    const source = inv.options["api-key"] === undefined ? " (TETHER_API_KEY)" : "";
    term.err(`tether: --api-key${source} must be printable ASCII (it is sent as a header)\n`);
    return CliExit.usage;
  }
  const client = new TetherClient({ url, apiKey: apiKey ? String(apiKey) : undefined });
  const json = inv.options.json === true;
  const ctx: CommandContext = {
    env,
    term,
    client,
    inv,
    print: (body, human) => term.out(json ? JSON.stringify(body) : human()),
    lines: new EventLines(),
  };
  try {
    return await HANDLERS[inv.command!.words.join(" ")](ctx);
  } catch (err) {
    return reportError(term, err);
  }
}

/** Prints an error the way PROTOCOL.md 13 says and returns the exit code. */
function reportError(term: Terminal, err: unknown): number {
  if (err instanceof UsageError) {
    term.err(`tether: ${err.message}\n`);
    return CliExit.usage;
  }
  if (err instanceof TetherError) {
    term.err(`${err.code}: ${err.message}\n`);
    return err.status === 0 ? CliExit.connection : CliExit.apiError;
  }
  throw err;
}

function parseJsonOption(name: string, text: string | boolean | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(String(text));
  } catch {
    throw new UsageError(`--${name} must be JSON, got ${JSON.stringify(text)}`);
  }
}

function integerOption(name: string, text: string | boolean | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,15}$/.test(String(text))) {
    throw new UsageError(`--${name} must be a non-negative integer, got "${text}"`);
  }
  return Number(text);
}

const fields = (record: object) =>
  Object.entries(record).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join("\n");

type Handler = (ctx: CommandContext) => Promise<number>;

const HANDLERS: Record<string, Handler> = {
  async "sessions create"({ client, inv, print }) {
    const metadata = parseJsonOption("metadata", inv.options.metadata);
    if (metadata !== undefined && (typeof metadata !== "object" || Array.isArray(metadata))) {
      throw new UsageError("--metadata must be a JSON object");
    }
    const body = await client.createSession({
      sessionId: inv.args[0],
      metadata: metadata as Record<string, unknown> | undefined,
    });
    print(body, () => `created session ${body.sessionId}`);
    return CliExit.ok;
  },
  async "sessions get"({ client, inv, print }) {
    const body = await client.getSession(inv.args[0]);
    print(body, () => fields(body));
    return CliExit.ok;
  },
  async "sessions delete"({ client, inv, print }) {
    await client.deleteSession(inv.args[0]);
    print({}, () => `deleted session ${inv.args[0]}`);
    return CliExit.ok;
  },
  async "executions list"({ client, inv, print, term }) {
    const body = await client.listExecutions(inv.args[0], {
      limit: integerOption("limit", inv.options.limit),
      after: inv.options.after as string | undefined,
    });
    print(
      body,
      () =>
        body.executions.map((e) =>
          `${e.executionId} ${paintStatus(term, e.status)}${
            e.active ? " (active)" : ""
          } ${e.createdAt}`
        ).join("\n") || "no executions",
    );
    return CliExit.ok;
  },
  async "executions create"({ client, inv, print }) {
    const body = await client.createExecution(inv.args[0], {
      input: parseJsonOption("input", inv.options.input),
      ifIdle: inv.options["if-idle"] === true || undefined,
    }, { idempotencyKey: inv.options["idempotency-key"] as string | undefined });
    print(body, () => fields(body));
    return CliExit.ok;
  },
  async "executions get"({ client, inv, print }) {
    const body = await client.getExecution(inv.args[0], inv.args[1]);
    print(body, () => fields(body));
    return CliExit.ok;
  },
  async "executions interrupt"({ client, inv, print }) {
    const reason = inv.options.reason as string | undefined;
    const body = await client.interruptExecution(inv.args[0], inv.args[1], { reason });
    print(body, () => `${body.executionId}: ${body.status}`);
    return CliExit.ok;
  },
  async "executions fail"({ client, inv, print }) {
    if (typeof inv.options.error !== "string") throw new UsageError("missing --error <text>");
    const body = await client.failExecution(inv.args[0], inv.args[1], {
      error: inv.options.error,
    });
    print(body, () => body.failed ? "failed" : "already ended: nothing changed");
    return CliExit.ok;
  },
  async "executions input"({ client, inv, term }) {
    const text = inv.args[2];
    if (text !== undefined && inv.options.json !== undefined) {
      throw new UsageError("executions input: give <text> or --json, not both");
    }
    const data = text ?? parseJsonOption("json", inv.options.json);
    const end = inv.options.end === true;
    if (data === undefined && !end) {
      throw new UsageError("executions input: give <text>, --json <json> or --end");
    }
    const body = await client.sendInput(inv.args[0], inv.args[1], {
      ...(data === undefined ? {} : { data }),
      ...(end ? { endOfInput: true } : {}),
    });
    // `--json` carries the data here, so the answer is always printed as JSON.
    term.out(JSON.stringify(body));
    return CliExit.ok;
  },
  events: eventsCommand,
  watch: watchCommand,
  run: runCommand,
};

function paintStatus(term: Terminal, status: ExecutionStatus): string {
  const style = status === "completed"
    ? "green"
    : status === "failed" || status === "interrupted"
    ? "red"
    : "yellow";
  return paint(term.color, style, status);
}

/**
 * Prints an envelope as `--json` or human output says.
 *
 * @example
 * ```ts
 * for await (const event of ctx.client.follow("s1")) printEvent(ctx, event);
 * ```
 */
export function printEvent(ctx: CommandContext, event: Envelope): void {
  ctx.term.out(
    ctx.inv.options.json ? JSON.stringify(event) : formatEvent(event, ctx.lines, ctx.term.color),
  );
}

async function eventsCommand(ctx: CommandContext): Promise<number> {
  const { client, inv } = ctx;
  const sid = inv.args[0];
  let after = integerOption("after", inv.options.after) ?? 0;
  if (!inv.options.follow) {
    for (;;) {
      const page = await client.getEvents(sid, { after, limit: 1000 });
      for (const event of page.events) printEvent(ctx, event);
      if (page.nextAfter >= page.lastEventId) return CliExit.ok;
      after = page.nextAfter;
    }
  }
  const spinner = new Spinner(ctx.term, `following ${sid} (Ctrl-C to stop)`);
  try {
    for await (const event of client.follow(sid, { after })) {
      spinner.clear();
      printEvent(ctx, event);
    }
  } finally {
    spinner.stop();
  }
  ctx.term.err(`session ${sid} was deleted\n`);
  return CliExit.ok;
}

/**
 * Exit code of a terminal status for `watch` and `run`.
 *
 * @example
 * ```ts
 * statusExit("interrupted"); // 130
 * ```
 */
export function statusExit(status: ExecutionStatus): number {
  return status === "completed"
    ? CliExit.ok
    : status === "interrupted"
    ? CliExit.interrupted
    : CliExit.failed;
}

async function watchCommand(ctx: CommandContext): Promise<number> {
  const { client, inv, term } = ctx;
  const sid = inv.args[0];
  const eid = inv.args[1] ?? await defaultExecution(client, sid);
  // Only an execution that exists has events to wait for: an unknown one (or one of
  // another session) is the service's 404, not an endless follow.
  if (inv.args[1] !== undefined) await client.getExecution(sid, eid);
  const status = await followExecution(ctx, sid, eid);
  term.err(`${eid} ${paintStatus(term, status)}\n`);
  return statusExit(status);
}

/** The active execution, else the newest one. */
async function defaultExecution(client: TetherClient, sid: string): Promise<string> {
  const session = await client.getSession(sid);
  if (session.activeExecutionId) return session.activeExecutionId;
  let newest: string | undefined;
  for (let after: string | undefined;;) {
    const { executions } = await client.listExecutions(sid, { limit: 1000, after });
    if (executions.length === 0) break;
    newest = after = executions.at(-1)!.executionId;
  }
  if (!newest) throw new TetherError(404, ErrorCode.executionNotFound, `session ${sid} has none`);
  return newest;
}

/**
 * Prints an execution's events until its terminal `execution_status`; resolves with that
 * status (`failed` when the session is deleted under it).
 *
 * @example
 * ```ts
 * const status = await followExecution(ctx, "s1", "exc_…"); // "completed"
 * ```
 */
export async function followExecution(
  ctx: CommandContext,
  sid: string,
  eid: string,
  options: { signal?: AbortSignal } = {},
): Promise<ExecutionStatus> {
  const spinner = new Spinner(ctx.term, `watching ${eid}`);
  try {
    for await (
      const event of ctx.client.follow(sid, { executionIds: [eid], signal: options.signal })
    ) {
      spinner.clear();
      printEvent(ctx, event);
      const data = event.data as { status?: ExecutionStatus };
      if (event.streamEventType === EventType.executionStatus && data.status) {
        spinner.text = `${eid}: ${data.status}`;
        if (isTerminal(data.status)) return data.status;
      }
    }
  } finally {
    spinner.stop();
  }
  // Deleted session or aborted: ask once more.
  const exec = await ctx.client.getExecution(sid, eid).catch(() => undefined);
  return exec && isTerminal(exec.status) ? exec.status : "failed";
}

if (import.meta.main) Deno.exit(await main(Deno.args));
