/**
 * `tether run [--session <sid>] [wrapper options] -- <agent command>`: a one-command local
 * try of any agent (PROTOCOL.md 13). Creates the session when it does not exist and one
 * execution, prints a viewer URL, runs the wrapper in this process while printing the
 * run's events, and exits like the wrapper (section 9.2).
 *
 * @module
 */
import { TetherError } from "../client/mod.ts";
import { delay } from "../src/async.ts";
import { ErrorCode } from "../src/protocol.ts";
import { OPTION_NAMES, parseOptions, UsageError as WrapperUsageError } from "../wrapper/options.ts";
import { runWrapper } from "../wrapper/run.ts";
import { UsageError } from "./args.ts";
import type { CommandContext } from "./main.ts";
import { followExecution } from "./main.ts";
import { paint } from "./output.ts";

/** After the wrapper exits, how long the printer may take to show the last events. */
const DRAIN_MS = 3000;
/** Lifetime of the viewer link's ticket. */
const VIEWER_TICKET_MS = 3_600_000;

/**
 * Runs the `run` command; resolves with the wrapper's exit code.
 *
 * @example
 * ```ts
 * const code = await runCommand(ctx); // ctx from `tether run -- claude -p hi`
 * ```
 */
export async function runCommand(ctx: CommandContext): Promise<number> {
  const { client, inv, term } = ctx;
  if (inv.rest.length === 0) throw new UsageError("run: missing agent command after --");
  const forwarded = OPTION_NAMES.filter((name) => inv.options[name] !== undefined)
    .map((name) => inv.options[name] === true ? `--${name}` : `--${name}=${inv.options[name]}`);
  // Wrapper options are checked before anything is created.
  wrapperOptions(ctx, [...forwarded, "--ingest-url=http://x", "--token=x"]);

  const sid = await ensureSession(ctx, inv.options.session as string | undefined);
  const run = await client.createExecution(sid);
  const { ticket } = await client.createTicket(sid, { ttlMs: VIEWER_TICKET_MS });
  const info = inv.options.json ? (text: string) => term.err(`${text}\n`) : term.out;
  info(`session ${sid}, execution ${run.executionId}`);
  info(`viewer: ${client.viewerUrl(sid, ticket)}`);

  const options = wrapperOptions(ctx, [
    ...forwarded,
    `--ingest-url=${run.ingestUrl}`,
    `--token=${run.ingestToken}`,
  ]);
  const stopPrinting = new AbortController();
  const printing = followExecution(ctx, sid, run.executionId, { signal: stopPrinting.signal })
    .catch(() => undefined);
  const code = await runWrapper(options, {
    log: (message) => term.err(`${paint(term.color, "dim", `wrapper: ${message}`)}\n`),
  });
  await Promise.race([printing, delay(DRAIN_MS)]);
  stopPrinting.abort();
  await printing;
  return code;
}

function wrapperOptions(ctx: CommandContext, args: string[]) {
  try {
    const options = parseOptions([...args, "--", ...ctx.inv.rest], ctx.env);
    if (options === "help") throw new UsageError("run: --help takes no value");
    return options;
  } catch (err) {
    if (err instanceof WrapperUsageError) throw new UsageError(`run: ${err.message}`);
    throw err;
  }
}

/** The session to run in: `sid` (created when missing), or a new one. */
async function ensureSession(ctx: CommandContext, sid: string | undefined): Promise<string> {
  if (sid === undefined) return (await ctx.client.createSession()).sessionId;
  try {
    await ctx.client.getSession(sid);
  } catch (err) {
    if (!(err instanceof TetherError && err.code === ErrorCode.sessionNotFound)) throw err;
    await ctx.client.createSession({ sessionId: sid }).catch((err) => {
      // Created meanwhile by someone else: fine.
      if (!(err instanceof TetherError && err.code === ErrorCode.sessionExists)) throw err;
    });
  }
  return sid;
}
