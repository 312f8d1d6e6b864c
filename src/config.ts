/**
 * Service configuration: every environment variable of PROTOCOL.md with its default, parsed
 * and validated in one place. A bad value stops start-up with a message naming the variable.
 *
 * @module
 */
import { z } from "zod";

const ms = (def: number, min = 1, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(def);
const list = z.string().optional().transform((s) =>
  (s ?? "").split(",").map((x) => x.trim()).filter(Boolean)
);

/** Where deadlines get their wake-ups from (PROTOCOL.md 8). */
export const TimerWakeup = z.enum(["queue", "sweep", "cron"]);
/** One wake-up source: `queue` (KV queue messages), `sweep` (an in-process timer) or `cron`. */
export type TimerWakeup = z.infer<typeof TimerWakeup>;

const EnvSchema = z.object({
  TETHER_API_KEYS: list,
  // Any length is taken (the runtime warns below 16 characters); a control character is
  // refused: it is a CR or NUL from a broken env file, and signatures would never verify.
  TETHER_TICKET_SECRET: z.string().refine(
    (secret) => ![...secret].some((ch) => ch < " " || ch === "\x7f"),
    "must not contain control characters (a CR from a CRLF .env file?)",
  ).optional(),
  TETHER_TICKET_TTL_MS: ms(60_000, 1000, 86_400_000),
  TETHER_ALLOWED_ORIGINS: list,
  TETHER_PUBLIC_URL: z.url({ protocol: /^https?$/ }).optional().transform((u) =>
    u?.replace(/\/+$/, "")
  ),
  TETHER_KV_PATH: z.string().min(1).optional().superRefine((path, ctx) => {
    const problem = path === undefined ? undefined : kvPathProblem(path);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  }),
  DENO_KV_ACCESS_TOKEN: z.string().min(1).optional(),
  PORT: z.coerce.number().int().min(0).max(65535).default(8000),
  // At most 64: deleting a session ends every queued execution in one commit, and a KV
  // commit takes at most 100 checks.
  TETHER_MAX_QUEUE: ms(16, 0, 64),
  TETHER_MAX_IN_FLIGHT: ms(1000, 1, 100_000),
  TETHER_MAX_PENDING_INPUTS: ms(100, 1, 100_000),
  TETHER_MAX_FRAME_BYTES: ms(524_288, 1024, 716_800),
  TETHER_MAX_FRAMES_PER_SEC: ms(20_000),
  TETHER_MAX_PENDING_BYTES: ms(16 * 1024 * 1024, 1024),
  TETHER_HEARTBEAT_WRITE_MS: ms(5000, 0),
  TETHER_PING_MS: ms(15_000),
  TETHER_SSE_KEEPALIVE_MS: ms(15_000),
  TETHER_HEALTHZ_TIMEOUT_MS: ms(2000, 1),
  TETHER_VIEWER_BUFFER_BYTES: ms(8 * 1024 * 1024, 1024),
  TETHER_READ_BUDGET_BYTES: ms(64 * 1024 * 1024, 1024 * 1024),
  TETHER_DISCONNECT_GRACE_MS: ms(10_000),
  TETHER_HEARTBEAT_TIMEOUT_MS: ms(120_000),
  TETHER_PENDING_TIMEOUT_MS: ms(300_000),
  TETHER_INTERRUPT_TIMEOUT_MS: ms(10_000),
  TETHER_SESSION_TTL_MS: ms(7_776_000_000),
  TETHER_PURGE_DELAY_MS: ms(5000, 0, 30_000),
  TETHER_TIMER_WAKEUPS: z.string().optional().transform((s, ctx) => {
    if (s === undefined || s.trim() === "") return undefined;
    const parts = s.split(",").map((x) => x.trim()).filter(Boolean);
    const parsed = z.array(TimerWakeup).safeParse(parts);
    if (!parsed.success) {
      ctx.addIssue({ code: "custom", message: "expected a list of queue, sweep, cron" });
      return z.NEVER;
    }
    return parsed.data;
  }),
  TETHER_SWEEP_MS: ms(500),
  // Heartbeat checks wake at slots this long, to share batches; added to a silent run's failure.
  TETHER_HEARTBEAT_SLOT_MS: ms(250, 0, 1000),
  // How long the start-up probe waits for its own queue message (PROTOCOL.md 8).
  TETHER_QUEUE_PROBE_MS: ms(2000, 10, 60_000),
  TETHER_CALLBACK_PRIVATE: z.enum(["allow", "deny"]).default("deny"),
  TETHER_LOG_LEVEL: z.enum(["debug", "info", "warn", "error", "silent"]).default("info"),
});

/**
 * Whether the environment is Deno Deploy's (its predefined variables are set). There, an
 * unset `TETHER_KV_PATH` means the platform's KV.
 *
 * @example
 * ```ts
 * onDenoDeploy(Deno.env.toObject());
 * onDenoDeploy({ DENO_DEPLOYMENT_ID: "abc123" }); // true
 * ```
 */
export function onDenoDeploy(env: Record<string, string | undefined>): boolean {
  return Boolean(env.DENO_DEPLOY || env.DENO_DEPLOYMENT_ID);
}

/**
 * Whether a `TETHER_KV_PATH` is a KV Connect URL (a remote `denokv` or Deploy database)
 * rather than a local file.
 *
 * @example
 * ```ts
 * isKvConnectUrl("https://api.deno.com/databases/<id>/connect"); // true
 * isKvConnectUrl("./data/tether.kv"); // false
 * ```
 */
export function isKvConnectUrl(path: string): boolean {
  return /^https?:\/\//i.test(path);
}

/** Why a `TETHER_KV_PATH` cannot be used, or `undefined` when it can. */
function kvPathProblem(path: string): string | undefined {
  if (!isKvConnectUrl(path)) return undefined;
  let url: URL;
  try {
    url = new URL(path);
  } catch {
    return "not a valid KV Connect URL";
  }
  // The token travels in DENO_KV_ACCESS_TOKEN, never in the URL (it would end up in logs).
  if (url.username || url.password) return "a KV Connect URL must not hold credentials";
  if (url.search || url.hash) return "a KV Connect URL takes no query or fragment";
  return undefined;
}

/** KV file for local runs when `TETHER_KV_PATH` is unset. */
export const DEFAULT_KV_PATH = "./data/tether.kv";

/** The typed configuration the service runs with. */
export interface Config {
  /** Accepted api keys (`TETHER_API_KEYS`); empty only in dev mode before a key is generated. */
  apiKeys: string[];
  /** HMAC secret for tickets and callback signatures; `undefined` = created once in KV. */
  ticketSecret?: string;
  ticketTtlMs: number;
  allowedOrigins: string[];
  /** `http(s)://host[:port]` base for ingest/stream URLs behind a proxy. */
  publicUrl?: string;
  /** Local KV file, `:memory:`, or `undefined` for the platform's KV (Deno Deploy). */
  kvPath?: string;
  port: number;
  maxQueue: number;
  maxInFlight: number;
  /** Inputs accepted and not yet delivered per execution (PROTOCOL.md 12). */
  maxPendingInputs: number;
  maxFrameBytes: number;
  maxFramesPerSec: number;
  /** Bytes received on one ingest connection and not yet committed; more → close 1008. */
  maxPendingBytes: number;
  heartbeatWriteMs: number;
  pingMs: number;
  sseKeepAliveMs: number;
  /** How long `/healthz` waits for KV before answering 503 (`TETHER_HEALTHZ_TIMEOUT_MS`). */
  healthzTimeoutMs: number;
  viewerBufferBytes: number;
  /** Bytes all readers of the instance may hold together (`TETHER_READ_BUDGET_BYTES`). */
  readBudgetBytes: number;
  disconnectGraceMs: number;
  heartbeatTimeoutMs: number;
  pendingTimeoutMs: number;
  interruptTimeoutMs: number;
  sessionTtlMs: number;
  /**
   * How long a deleted session's data stays before it is removed (`TETHER_PURGE_DELAY_MS`):
   * viewers on other instances, which learn of the deletion by polling, still read its last
   * events. PROTOCOL.md 4 allows removal "within a minute".
   */
  purgeDelayMs: number;
  /** Wake-up sources for deadlines; `undefined` = chosen at start-up (queues probed). */
  timerWakeups?: TimerWakeup[];
  sweepMs: number;
  /** Heartbeat deadlines wake at multiples of this (ms), so they fire in shared batches; 0: each on its own. */
  heartbeatSlotMs: number;
  /** How long the start-up probe waits for a queue message to arrive (ms). */
  queueProbeMs: number;
  /** `TETHER_CALLBACK_PRIVATE=allow`: callbacks may target loopback/private addresses. */
  callbackPrivate: boolean;
  logLevel: "debug" | "info" | "warn" | "error" | "silent";
}

/** Variables whose values are secrets: a config error names them but never shows the value. */
const SECRET_VARIABLES: ReadonlySet<string> = new Set([
  "TETHER_API_KEYS",
  "TETHER_TICKET_SECRET",
  "DENO_KV_ACCESS_TOKEN",
]);

/** ` (got "<value>")` for a config error, nothing for a secret or an absent value. */
function shownValue(name: string, value: string | undefined): string {
  if (value === undefined) return "";
  if (SECRET_VARIABLES.has(name)) return " (value not shown: it is a secret)";
  const text = value.length > 200 ? `${value.slice(0, 200)}…` : value;
  return ` (got ${JSON.stringify(text)})`;
}

/**
 * Raised for an invalid environment; the message names every bad variable (never a secret's
 * value). The entry point exits with status 78 on it.
 *
 * @example
 * ```ts
 * try {
 *   loadConfig({ PORT: "-1" });
 * } catch (err) {
 *   if (err instanceof ConfigError) console.error(err.message); // names PORT and its value
 * }
 * ```
 */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * Reads the configuration from an environment map.
 *
 * @example
 * ```ts
 * const config = loadConfig({ TETHER_KV_PATH: ":memory:", PORT: "0" });
 * config.disconnectGraceMs; // 10000
 * ```
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  // A variable set to an empty value (`PORT=` in a shell or .env file) means "unset", not 0.
  const given = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value.trim() !== ""),
  );
  const parsed = EnvSchema.safeParse(given);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const name = String(i.path[0]);
      return `  ${name}: ${i.message}${shownValue(name, given[name])}`;
    });
    throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
  }
  const e = parsed.data;
  if (e.TETHER_KV_PATH && isKvConnectUrl(e.TETHER_KV_PATH) && !e.DENO_KV_ACCESS_TOKEN) {
    throw new ConfigError(
      "invalid configuration:\n  TETHER_KV_PATH: a KV Connect URL needs DENO_KV_ACCESS_TOKEN",
    );
  }
  return {
    apiKeys: e.TETHER_API_KEYS,
    ticketSecret: e.TETHER_TICKET_SECRET,
    ticketTtlMs: e.TETHER_TICKET_TTL_MS,
    allowedOrigins: e.TETHER_ALLOWED_ORIGINS,
    publicUrl: e.TETHER_PUBLIC_URL,
    // Deno Deploy sets DENO_DEPLOY and DENO_DEPLOYMENT_ID; there the platform's KV is used.
    kvPath: e.TETHER_KV_PATH ?? (onDenoDeploy(env) ? undefined : DEFAULT_KV_PATH),
    port: e.PORT,
    maxQueue: e.TETHER_MAX_QUEUE,
    maxInFlight: e.TETHER_MAX_IN_FLIGHT,
    maxPendingInputs: e.TETHER_MAX_PENDING_INPUTS,
    maxFrameBytes: e.TETHER_MAX_FRAME_BYTES,
    maxFramesPerSec: e.TETHER_MAX_FRAMES_PER_SEC,
    maxPendingBytes: e.TETHER_MAX_PENDING_BYTES,
    heartbeatWriteMs: e.TETHER_HEARTBEAT_WRITE_MS,
    pingMs: e.TETHER_PING_MS,
    sseKeepAliveMs: e.TETHER_SSE_KEEPALIVE_MS,
    healthzTimeoutMs: e.TETHER_HEALTHZ_TIMEOUT_MS,
    viewerBufferBytes: e.TETHER_VIEWER_BUFFER_BYTES,
    readBudgetBytes: e.TETHER_READ_BUDGET_BYTES,
    disconnectGraceMs: e.TETHER_DISCONNECT_GRACE_MS,
    heartbeatTimeoutMs: e.TETHER_HEARTBEAT_TIMEOUT_MS,
    pendingTimeoutMs: e.TETHER_PENDING_TIMEOUT_MS,
    interruptTimeoutMs: e.TETHER_INTERRUPT_TIMEOUT_MS,
    sessionTtlMs: e.TETHER_SESSION_TTL_MS,
    purgeDelayMs: e.TETHER_PURGE_DELAY_MS,
    timerWakeups: e.TETHER_TIMER_WAKEUPS,
    sweepMs: e.TETHER_SWEEP_MS,
    heartbeatSlotMs: e.TETHER_HEARTBEAT_SLOT_MS,
    queueProbeMs: e.TETHER_QUEUE_PROBE_MS,
    callbackPrivate: e.TETHER_CALLBACK_PRIVATE === "allow",
    logLevel: e.TETHER_LOG_LEVEL,
  };
}

/**
 * A configuration for tests: `:memory:` KV, the api key `test-key`, silent logs, and any
 * overrides (short timers, say).
 *
 * @example
 * ```ts
 * const config = testConfig({ disconnectGraceMs: 200, heartbeatTimeoutMs: 1000 });
 * ```
 */
export function testConfig(overrides: Partial<Config> = {}): Config {
  return {
    ...loadConfig({ TETHER_KV_PATH: ":memory:", PORT: "0" }),
    apiKeys: ["test-key"],
    logLevel: "silent",
    purgeDelayMs: 0,
    ...overrides,
  };
}
