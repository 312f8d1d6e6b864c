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
import { recoverLostConnections, restartGraces } from "./lifecycle.ts";
import { CloseCode } from "./protocol.ts";
import { createRuntime, type Runtime, type RuntimeOptions } from "./runtime.ts";
import { probeQueueDelivery } from "./queue_probe.ts";
import { baseWakeups, DeadlineRunner, type DeadlineRunnerOptions } from "./timers.ts";

/** Options of {@link createService}. */
export interface ServiceOptions extends RuntimeOptions {
  /** Overrides of the deadline runner's options (tests shorten the callback backoff). */
  deadlines?: Partial<DeadlineRunnerOptions>;
  /**
   * The KV is a local file only this process uses: before any deadline fires, the instance
   * takes over what a previous process left (its connections lose their sockets, and every
   * disconnect grace starts again from now; PROTOCOL.md 5.4, 9.3). Default false.
   */
  singleProcess?: boolean;
}

/** A service instance. */
export interface Service {
  rt: Runtime;
  runner: DeadlineRunner;
  /** Settles once the queue delivery probe decided (at once when wake-ups are configured). */
  wakeupsSettled: Promise<void>;
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

/**
 * Probes KV queue delivery in the background (a cold start does not wait for it) and adds
 * queue wake-ups when the probe's message arrives. Until then, and for good when it does not,
 * commits enqueue nothing and the sweep (and cron) fire every deadline.
 */
async function addQueueIfItDelivers(rt: Runtime, runner: DeadlineRunner): Promise<void> {
  const channel = await probeQueueDelivery(rt.kv, rt.config.queueProbeMs, rt.shutdown);
  if (rt.shutdown.aborted) return;
  if (!channel) {
    rt.log.warn("KV queues do not deliver here: deadlines use the sweep and cron", {
      wakeups: runner.wakeups,
    });
    return;
  }
  rt.ctx.queues = true;
  runner.useQueue(channel);
  rt.metrics.set(MetricName.queueWakeups, 1);
  rt.log.info("KV queues deliver: queue wake-ups added", { wakeups: runner.wakeups });
}

/**
 * After a restart of a single-process service: graces the previous process left start again
 * from now, and each connection it held is lost (close code 1012), which starts its grace.
 */
async function takeOverFromPreviousProcess(rt: Runtime): Promise<void> {
  const restarted = await restartGraces(rt.ctx);
  const started = await recoverLostConnections(rt.ctx);
  rt.metrics.inc(MetricName.graceStarted, {}, started);
  if (restarted + started > 0) {
    rt.log.info("graces started again after a restart", { restarted, started });
  }
}

/**
 * Builds and starts an instance (deadline wake-ups, hub watches). Stop it with
 * `service.stop()` before closing KV.
 *
 * @example
 * ```ts
 * const service = await createService(testConfig(), await Deno.openKv(":memory:"));
 * const server = Deno.serve({ port: 0 }, service.fetch);
 * await service.stop();
 * ```
 */
export async function createService(
  config: Config,
  kv: Deno.Kv,
  options: ServiceOptions = {},
): Promise<Service> {
  const wakeups = config.timerWakeups ?? baseWakeups(isLocalKv(config.kvPath));
  const rt = await createRuntime(config, kv, {
    ...options,
    queues: options.queues ?? wakeups.includes("queue"),
  });
  rt.metrics.set(MetricName.queueWakeups, wakeups.includes("queue") ? 1 : 0);
  const runner = new DeadlineRunner(rt, {
    wakeups,
    sweepMs: config.sweepMs,
    heartbeatSlotMs: config.heartbeatSlotMs,
    callbackPrivate: config.callbackPrivate,
    ...options.deadlines,
  });
  const app = createApp(rt);
  if (options.singleProcess) await takeOverFromPreviousProcess(rt);
  rt.hub.start();
  runner.start();
  const wakeupsSettled = config.timerWakeups ? Promise.resolve() : addQueueIfItDelivers(rt, runner);
  return {
    rt,
    runner,
    wakeupsSettled,
    fetch: (req) => app.fetch(req),
    async stop() {
      // Ingest sockets and viewers are told at once (both 1012: wrappers reconnect, viewers
      // resume with `after`), then the instance waits for the ingest closes to be recorded.
      const closing = rt.hub.connections().map((c) => {
        c.close(CloseCode.restart, "service restarting");
        return c.closed;
      });
      rt.abort();
      await wakeupsSettled;
      await runner.stop();
      await Promise.all(closing);
      await rt.hub.stop();
    },
  };
}
