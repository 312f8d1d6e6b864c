/**
 * One running service instance: runtime, app and deadline runner over an open KV handle,
 * with an orderly stop (ingest sockets closed with 1012 so wrappers reconnect elsewhere).
 * The entry point and the tests both build instances with it.
 *
 * @module
 */
import { createApp } from "./app.ts";
import { type Config, isKvConnectUrl } from "./config.ts";
import { MetricName } from "./metrics.ts";
import { CloseCode } from "./protocol.ts";
import { createRuntime, type Runtime, type RuntimeOptions } from "./runtime.ts";
import { chooseWakeups, DeadlineRunner, type DeadlineRunnerOptions } from "./timers.ts";

/** Options of {@link createService}. */
export interface ServiceOptions extends RuntimeOptions {
  /** Overrides of the deadline runner's options (tests shorten the callback backoff). */
  deadlines?: Partial<DeadlineRunnerOptions>;
}

/** A service instance. */
export interface Service {
  rt: Runtime;
  runner: DeadlineRunner;
  /** The request handler for `Deno.serve`. */
  fetch: (req: Request) => Response | Promise<Response>;
  /** Closes ingest sockets with 1012, waits for their records, stops timers and the hub. */
  stop(): Promise<void>;
}

/**
 * Whether the KV is this machine's own (a file or `:memory:`): then one process owns it, so
 * no cron is needed to fire deadlines while it is stopped. The platform's KV (no path) and a
 * KV Connect URL are shared and outlive any one process.
 */
function isLocalKv(kvPath: string | undefined): boolean {
  return kvPath !== undefined && !isKvConnectUrl(kvPath);
}

/** Builds and starts an instance (deadline wake-ups, hub watches). */
export async function createService(
  config: Config,
  kv: Deno.Kv,
  options: ServiceOptions = {},
): Promise<Service> {
  const { wakeups, queue } = config.timerWakeups
    ? { wakeups: config.timerWakeups, queue: undefined }
    : await chooseWakeups(kv, isLocalKv(config.kvPath), config.queueProbeMs);
  const rt = await createRuntime(config, kv, {
    ...options,
    queues: options.queues ?? wakeups.includes("queue"),
  });
  rt.metrics.set(MetricName.queueWakeups, wakeups.includes("queue") ? 1 : 0);
  if (!config.timerWakeups) rt.log.info("deadline wake-ups chosen", { wakeups });
  const runner = new DeadlineRunner(rt, {
    wakeups,
    queue,
    sweepMs: config.sweepMs,
    callbackPrivate: config.callbackPrivate,
    ...options.deadlines,
  });
  const app = createApp(rt);
  rt.hub.start();
  runner.start();
  return {
    rt,
    runner,
    fetch: (req) => app.fetch(req),
    async stop() {
      const closing = rt.hub.connections().map((c) => {
        c.close(CloseCode.restart, "service restarting");
        return c.closed;
      });
      await Promise.all(closing);
      rt.abort();
      await runner.stop();
      await rt.hub.stop();
    },
  };
}
