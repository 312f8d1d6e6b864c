/**
 * Starting and stopping one service process from its environment: configuration, KV, the
 * instance, `Deno.serve`, and a shutdown that fits the platform's SIGINT → SIGKILL window.
 *
 * The deadline cron is NOT registered here: Deno Deploy discovers crons by evaluating the
 * entry module's top level, before anything is served, so `main.ts` calls `Deno.cron` itself
 * at its top level with {@link ServiceSlot.cronTick} as the handler, and this module fills
 * the slot once the instance exists.
 *
 * @module
 */
import { delay } from "./async.ts";
import { type Config, ConfigError, isKvConnectUrl, loadConfig } from "./config.ts";
import { loadDevApiKey } from "./dev_key.ts";
import { lockKvFile } from "./kv_file_lock.ts";
import { createService, type Service } from "./service.ts";
import { checkPlatformKv } from "./platform_kv.ts";

/** The deadline cron: its name in the platform's dashboard and its schedule (every minute). */
export const DEADLINE_CRON = { name: "tether-deadlines", schedule: "* * * * *" } as const;

/** Exit status for a configuration error (EX_CONFIG). */
const EXIT_CONFIG = 78;

/**
 * Where the top-level cron handler finds the instance. A tick before the instance exists
 * (or after it stopped) does nothing: the next tick, or the instance's own sweep, covers it.
 *
 * @example
 * ```ts
 * const slot = new ServiceSlot();
 * Deno.cron(DEADLINE_CRON.name, DEADLINE_CRON.schedule, () => slot.cronTick());
 * ```
 */
export class ServiceSlot {
  #service?: Service;

  /** The running instance, if any. */
  get service(): Service | undefined {
    return this.#service;
  }

  /** Publishes the instance to the cron handler (`undefined` when it stops). */
  set service(service: Service | undefined) {
    this.#service = service;
  }

  /** The cron handler: a sweep, when an instance runs and uses cron wake-ups. */
  async cronTick(): Promise<void> {
    const service = this.#service;
    if (!service?.runner.wakeups.includes("cron")) return;
    await service.runner.sweep();
  }
}

/** Options of {@link startProcess}. */
export interface StartOptions {
  /** Filled with the instance once it exists (the cron handler reads it). */
  slot: ServiceSlot;
  /** The environment. Default `Deno.env.toObject()`. */
  env?: Record<string, string | undefined>;
  /** Opens KV (a test wraps the handle). Default `Deno.openKv`. */
  openKv?: (path: string | undefined) => Promise<Deno.Kv>;
  /** Longest shutdown, from the signal to `Deno.exit` (the platform kills at 5 s). Default 3000. */
  shutdownMs?: number;
}

/**
 * Reads the configuration, opens KV, starts the instance and serves it; SIGINT/SIGTERM stop
 * it within `shutdownMs`. Exits with status 78 on a configuration error.
 *
 * @example
 * ```ts
 * const slot = new ServiceSlot();
 * if (import.meta.main) await startProcess({ slot });
 * ```
 */
export async function startProcess(options: StartOptions): Promise<void> {
  const env = options.env ?? Deno.env.toObject();
  let config = configOrExit(env);
  const localFile = config.kvPath !== undefined && config.kvPath !== ":memory:" &&
    !isKvConnectUrl(config.kvPath);
  if (localFile) await Deno.mkdir(dirOf(config.kvPath!), { recursive: true });
  const kv = await (options.openKv ?? Deno.openKv)(config.kvPath);
  if (config.apiKeys.length === 0) config = await withDevApiKey(config, kv);
  // A single local process owned every connection and grace recorded in this file; a second
  // process started on it while the first still serves does not own them.
  const alone = localFile && await lockKvFile(config.kvPath!);
  const service = await createService(config, kv, { singleProcess: alone });
  const { rt } = service;
  if (localFile && !alone) {
    rt.log.warn("another process serves this KV file: the connections it holds stay its own");
  }
  if (config.kvPath === undefined) await checkPlatformKv(kv, rt.log);
  options.slot.service = service;
  const server = Deno.serve({
    port: config.port,
    hostname: "0.0.0.0",
    onListen: ({ port }) => rt.log.info("listening", { port, kvPath: kvPathForLog(config.kvPath) }),
  }, service.fetch);
  const shutdownMs = options.shutdownMs ?? 3000;
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const started = Date.now();
    rt.log.info("shutting down", { signal });
    // A peer that never answers the close handshake must not hold the exit: a connection
    // whose close was not recorded keeps its record, and the next start gives it a grace.
    await Promise.race([service.stop(), delay(shutdownMs / 2)]);
    options.slot.service = undefined;
    // Open HTTP requests get what is left, keeping a margin for the exit itself.
    const left = Math.max(0, shutdownMs * 0.85 - (Date.now() - started));
    await Promise.race([server.shutdown(), delay(left)]);
    rt.log.info("stopped", { ms: Date.now() - started });
    kv.close();
    Deno.exit(0);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(signal, () => void stop(signal));
    } catch {
      // signals are not available on every platform
    }
  }
}

/** Loads the configuration; exits 78 when it is invalid (no api key off a local KV file included). */
function configOrExit(env: Record<string, string | undefined>): Config {
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(err.message);
    Deno.exit(EXIT_CONFIG);
  }
  if (config.apiKeys.length > 0) return config;
  if (config.kvPath === undefined || isKvConnectUrl(config.kvPath)) {
    console.error("TETHER_API_KEYS is required when KV is not a local file (Deno Deploy)");
    Deno.exit(EXIT_CONFIG);
  }
  return config;
}

/** Dev mode: the key kept in the local KV file, printed at every start. */
async function withDevApiKey(config: Config, kv: Deno.Kv): Promise<Config> {
  const key = await loadDevApiKey(kv);
  // The one deliberate time a secret is printed (PROTOCOL.md 2).
  console.log(
    `dev mode: no TETHER_API_KEYS set; generated api key: ${key} ` +
      `(kept in ${config.kvPath}: the same at every start)`,
  );
  return { ...config, apiKeys: [key] };
}

/** The KV location for logs: a KV Connect URL without query or credentials. */
function kvPathForLog(path: string | undefined): string {
  if (path === undefined) return "(platform)";
  if (!isKvConnectUrl(path)) return path;
  const url = new URL(path);
  return `${url.protocol}//${url.host}${url.pathname}`;
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "." : path.slice(0, i);
}
