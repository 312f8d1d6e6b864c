/**
 * The wrapper's command line (PROTOCOL.md section 9): `[options] -- <agent command> [args…]`,
 * each option as `--name value` or `--name=value`, with an environment fallback
 * (`TETHER_WRAPPER_<NAME>`, except `TETHER_INGEST_URL` and `TETHER_INGEST_TOKEN`).
 *
 * @module
 */
import { INPUT_MODES, type InputMode } from "./stdin.ts";

/** Everything the wrapper runs with. */
export interface WrapperOptions {
  /** `--ingest-url` / `TETHER_INGEST_URL`: the execution's ingest URL (http(s) or ws(s)). */
  ingestUrl: string;
  /** `--token` / `TETHER_INGEST_TOKEN`: the execution's ingest token. */
  token: string;
  /** Heartbeat interval while connected (ms). Default 20000. */
  heartbeatMs: number;
  /** Silence after which the wrapper closes with 4408 and reconnects (ms). Default 45000. */
  silenceTimeoutMs: number;
  /** First reconnect delay (ms, PROTOCOL.md 9.3). Default 1000. */
  reconnectBaseMs: number;
  /** Longest reconnect delay before jitter, and the wait after a 4009 (ms). Default 5000. */
  reconnectMaxMs: number;
  /** Failed dials in a row before giving up with exit 2. Default 10. */
  reconnectAttempts: number;
  /** Time a dial has to deliver its `hello` (ms). Default 5000. */
  connectTimeoutMs: number;
  /** Frames held back while they cannot be sent. Default 10000. */
  bufferLimit: number;
  /** Serialized bytes held back while they cannot be sent. Default 67108864. */
  bufferBytes: number;
  /** Wait between SIGTERM and SIGKILL (ms, PROTOCOL.md 9.2). Default 5000. */
  killGraceMs: number;
  /** Frame size limit; the smaller of this and `hello.maxFrameBytes` applies. Default 524288. */
  maxFrameBytes: number;
  /** Server-Sent Events URL to forward as `kilocode` frames, if any. */
  sse: string | undefined;
  /** The `--sse` event that ends the run as `complete {exitCode: 0}`. Default `session.idle`. */
  doneEvent: string;
  /** Ends the run when the agent produces no event for this long (ms, PROTOCOL.md 9.1); 0 = off. */
  idleTimeoutMs: number;
  /** How inputs (PROTOCOL.md 12) reach the agent's stdin; `none` closes it at start. */
  input: InputMode;
  /** The agent speaks ACP (PROTOCOL.md 14): the wrapper is its client. */
  acp: boolean;
  /** The agent command and its arguments; empty when only `--sse` is read. */
  command: string[];
}

/**
 * A bad command line; the message names the option. The CLI exits with 64.
 *
 * @example
 * ```ts
 * try {
 *   parseOptions(["--ingest-url", url, "--token", token, "--heartbeat-ms=soon", "--", "a"], env);
 * } catch (error) {
 *   // "option --heartbeat-ms must be an integer ≥ 1, got \"soon\""
 *   if (error instanceof UsageError) console.error(error.message);
 * }
 * ```
 */
export class UsageError extends Error {
  /** Always `"UsageError"`, as stack traces and `String(error)` show it. */
  override name = "UsageError";
}

type Kind =
  | "url"
  | "sse-url"
  | "text"
  | "positive"
  | "duration"
  | "positive-duration"
  | "input-mode"
  | "flag";

/** The longest wait a timer can take (ms): beyond it, `setTimeout` fires at once. */
const MAX_TIMER_MS = 2_147_483_647;

interface OptionSpec {
  key: Exclude<keyof WrapperOptions, "command">;
  kind: Kind;
  env?: string;
  default?: number | string | boolean;
}

/** Every option, in the order of PROTOCOL.md's table; absent `default` = required or off. */
const OPTIONS: Record<string, OptionSpec> = {
  "ingest-url": { key: "ingestUrl", kind: "url", env: "TETHER_INGEST_URL" },
  "token": { key: "token", kind: "text", env: "TETHER_INGEST_TOKEN" },
  "heartbeat-ms": { key: "heartbeatMs", kind: "positive-duration", default: 20_000 },
  "silence-timeout-ms": { key: "silenceTimeoutMs", kind: "positive-duration", default: 45_000 },
  "reconnect-base-ms": { key: "reconnectBaseMs", kind: "positive-duration", default: 1000 },
  "reconnect-max-ms": { key: "reconnectMaxMs", kind: "positive-duration", default: 5000 },
  "reconnect-attempts": { key: "reconnectAttempts", kind: "positive", default: 10 },
  "connect-timeout-ms": { key: "connectTimeoutMs", kind: "positive-duration", default: 5000 },
  "buffer-limit": { key: "bufferLimit", kind: "positive", default: 10_000 },
  "buffer-bytes": { key: "bufferBytes", kind: "positive", default: 67_108_864 },
  "kill-grace-ms": { key: "killGraceMs", kind: "duration", default: 5000 },
  "max-frame-bytes": { key: "maxFrameBytes", kind: "positive", default: 524_288 },
  "sse": { key: "sse", kind: "sse-url" },
  "done-event": { key: "doneEvent", kind: "text", default: "session.idle" },
  "idle-timeout-ms": { key: "idleTimeoutMs", kind: "duration", default: 0 },
  "input": { key: "input", kind: "input-mode", default: "none" },
  "acp": { key: "acp", kind: "flag", default: false },
};

/** The names of the wrapper's options (without `--`), for CLIs that pass them through. */
export const OPTION_NAMES: readonly string[] = Object.keys(OPTIONS);

/** The options among {@link OPTION_NAMES} that take no value (`--acp`). */
export const FLAG_OPTION_NAMES: readonly string[] = OPTION_NAMES.filter((name) =>
  OPTIONS[name].kind === "flag"
);

/** Options `--acp` excludes (PROTOCOL.md 14): ACP is the input path and the run's end. */
const NOT_WITH_ACP = ["input", "sse", "done-event"] as const;

const PLACEHOLDERS: Record<Kind, string> = {
  url: "url",
  "sse-url": "url",
  text: "type",
  positive: "n",
  duration: "ms",
  "positive-duration": "ms",
  "input-mode": INPUT_MODES.join("|"),
  flag: "",
};

/** Smallest frame limit that still leaves room for a truncated line. */
const MIN_FRAME_BYTES = 1024;

/** The help text. */
export const USAGE = `Usage: deno task wrapper [options] -- <agent command> [args...]
   (or: node dist/tether-wrapper.mjs [options] -- <agent command> [args...])

Runs a coding agent and streams its output to a Tether execution's ingest endpoint.

Options (each also --name=value; environment fallback in brackets):
  --ingest-url <url>          ingest URL, http(s) or ws(s)   [TETHER_INGEST_URL] (required)
  --token <token>             the execution's ingest token   [TETHER_INGEST_TOKEN] (required)
${
  Object.entries(OPTIONS).slice(2).map(([name, spec]) =>
    `  --${`${name}${spec.kind === "flag" ? "" : ` <${PLACEHOLDERS[spec.kind]}>`}`.padEnd(26)} ` +
    `[${envName(name)}] default ${spec.default ?? "off"}`
  ).join("\n")
}

Exit codes: 0 completed, 1 failed, 130 interrupted, 2 connection given up,
3 replaced by another wrapper, 4 token refused, 64 usage.`;

function envName(option: string): string {
  return OPTIONS[option]?.env ?? `TETHER_WRAPPER_${option.toUpperCase().replaceAll("-", "_")}`;
}

/**
 * Parses the wrapper's arguments; throws {@link UsageError} naming the bad option. Returns
 * `"help"` for `--help`.
 *
 * @example
 * ```ts
 * const options = parseOptions(
 *   ["--ingest-url=https://t.example/v1/sessions/s/executions/e/ingest", "--token", "tk", "--", "claude", "-p", "hi"],
 *   (name) => Deno.env.get(name),
 * );
 * options === "help" || options.command; // ["claude", "-p", "hi"]
 * ```
 */
export function parseOptions(
  args: readonly string[],
  env: (name: string) => string | undefined,
): WrapperOptions | "help" {
  const given = new Map<string, string>();
  let i = 0;
  for (; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") break;
    if (arg === "--help" || arg === "-h") return "help";
    if (!arg.startsWith("--")) {
      throw new UsageError(`unexpected argument "${arg}": put the agent command after --`);
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (!(name in OPTIONS)) throw new UsageError(`unknown option --${name}`);
    if (eq >= 0) {
      given.set(name, arg.slice(eq + 1));
    } else if (OPTIONS[name].kind === "flag") {
      given.set(name, "true");
    } else {
      const value = args[++i];
      if (value === undefined || value === "--") {
        throw new UsageError(`option --${name} needs a value`);
      }
      given.set(name, value);
    }
  }
  const options = { command: args.slice(i + 1) } as Partial<WrapperOptions>;
  for (const [name, spec] of Object.entries(OPTIONS)) {
    const raw = given.get(name) ?? env(envName(name));
    // A bad value from the environment names both, so either can be found and fixed.
    const label = given.has(name) ? `--${name}` : `--${name} (${envName(name)})`;
    const value = raw === undefined ? spec.default : convert(label, spec.kind, raw);
    if (value === undefined && spec.kind !== "sse-url") {
      throw new UsageError(`missing option --${name} (or ${envName(name)})`);
    }
    Object.assign(options, { [spec.key]: value });
  }
  const parsed = options as WrapperOptions;
  if (parsed.maxFrameBytes < MIN_FRAME_BYTES) {
    throw new UsageError(`option --max-frame-bytes must be at least ${MIN_FRAME_BYTES}`);
  }
  if (parsed.command.length === 0 && parsed.sse === undefined) {
    throw new UsageError("missing agent command after -- (or --sse <url>)");
  }
  if (parsed.command.length === 0 && parsed.input !== "none") {
    throw new UsageError(`option --input ${parsed.input} needs an agent command after --`);
  }
  if (parsed.acp) checkAcp((name) => given.has(name) || env(envName(name)) !== undefined);
  return parsed;
}

/** `--acp` excludes {@link NOT_WITH_ACP}, given or from the environment. */
function checkAcp(isSet: (name: string) => boolean): void {
  for (const name of NOT_WITH_ACP) {
    if (isSet(name)) {
      throw new UsageError(`option --${name} cannot be used with --acp (ACP is the input path)`);
    }
  }
}

function convert(label: string, kind: Kind, raw: string): string | number | boolean {
  switch (kind) {
    case "flag":
      if (raw === "1" || raw === "true") return true;
      if (raw === "0" || raw === "false") return false;
      throw new UsageError(`option ${label} must be 1, true, 0 or false, got "${raw}"`);
    case "text":
      if (raw === "") throw new UsageError(`option ${label} must not be empty`);
      return raw;
    case "url":
    case "sse-url": {
      const schemes = kind === "url" ? ["http:", "https:", "ws:", "wss:"] : ["http:", "https:"];
      if (!URL.canParse(raw) || !schemes.includes(new URL(raw).protocol)) {
        throw new UsageError(`option ${label} must be a ${schemes.join("/")} URL, got "${raw}"`);
      }
      return raw;
    }
    case "input-mode":
      if (!(INPUT_MODES as readonly string[]).includes(raw)) {
        throw new UsageError(
          `option ${label} must be one of ${INPUT_MODES.join(", ")}, got "${raw}"`,
        );
      }
      return raw;
    case "positive":
    case "duration":
    case "positive-duration": {
      const value = Number(raw);
      const min = kind === "positive" || kind === "positive-duration" ? 1 : 0;
      if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min) {
        throw new UsageError(`option ${label} must be an integer ≥ ${min}, got "${raw}"`);
      }
      if (kind.endsWith("duration") && value > MAX_TIMER_MS) {
        throw new UsageError(`option ${label} must be at most ${MAX_TIMER_MS} ms, got "${raw}"`);
      }
      return value;
    }
  }
}
