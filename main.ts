/**
 * Entry point: read the configuration, open KV, start one service instance and serve it.
 *
 * `deno task start` (or `dev`) runs it on a local KV file (`./data/tether.kv` unless
 * `TETHER_KV_PATH` says otherwise); on Deno Deploy the platform's KV is used.
 *
 * @module
 */
import { delay } from "./src/async.ts";
import { ConfigError, loadConfig } from "./src/config.ts";
import { randomSecret } from "./src/ids.ts";
import { recoverLostConnections } from "./src/lifecycle.ts";
import { createService } from "./src/service.ts";

/** Longest wait for ingest sockets to close on SIGINT/SIGTERM before exiting anyway. */
const SHUTDOWN_WAIT_MS = 5000;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(Deno.env.toObject());
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(err.message);
    Deno.exit(78);
  }
  if (config.apiKeys.length === 0) {
    if (config.kvPath === undefined) {
      console.error("TETHER_API_KEYS is required when no local KV path is given (Deno Deploy)");
      Deno.exit(78);
    }
    // Dev mode: the one deliberate time a secret is printed.
    const key = `dev_${randomSecret(24)}`;
    config = { ...config, apiKeys: [key] };
    console.log(`dev mode: no TETHER_API_KEYS set; generated api key: ${key}`);
  }
  const localFile = config.kvPath !== undefined && config.kvPath !== ":memory:";
  if (localFile) await Deno.mkdir(dirOf(config.kvPath!), { recursive: true });
  const kv = await Deno.openKv(config.kvPath);
  const service = await createService(config, kv);
  const { rt } = service;
  if (localFile) {
    // A single local process owned every connection recorded in this file.
    const started = await recoverLostConnections(rt.ctx);
    rt.metrics.inc("tether_grace_started_total", {}, started);
    if (started > 0) rt.log.info("grace started for connections lost in a restart", { started });
  }
  if (service.runner.wakeups.includes("cron") && typeof Deno.cron === "function") {
    Deno.cron("tether-deadlines", "* * * * *", () => service.runner.sweep());
  }
  const server = Deno.serve({
    port: config.port,
    hostname: "0.0.0.0",
    onListen: ({ port }) =>
      rt.log.info("listening", { port, kvPath: config.kvPath ?? "(platform)" }),
  }, service.fetch);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    rt.log.info("shutting down", { signal });
    // A peer that never answers the close handshake must not hold the exit: a connection
    // whose close was not recorded keeps its record, and the next start gives it a grace.
    await Promise.race([service.stop(), delay(SHUTDOWN_WAIT_MS)]);
    await server.shutdown();
    kv.close();
    Deno.exit(0);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(signal, () => void stop(signal));
    } catch {
      // signals are not available on every platform (Deno Deploy)
    }
  }
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "." : path.slice(0, i);
}

if (import.meta.main) await main();
