/**
 * The runtime of one service instance: configuration, KV, credentials, lifecycle context,
 * hub, logs and metrics, built once and shared by every route.
 *
 * @module
 */
import { MetricName } from "./metrics.ts";
import { Credentials, loadSigningSecret } from "./auth.ts";
import type { Config } from "./config.ts";
import { Hub } from "./hub.ts";
import { ulid } from "./ids.ts";
import type { Effects, LifecycleContext } from "./lifecycle.ts";
import { Logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { ReadBudget } from "./read_budget.ts";

/** Everything a route or socket handler needs. */
export interface Runtime {
  config: Config;
  kv: Deno.Kv;
  instanceId: string;
  credentials: Credentials;
  ctx: LifecycleContext;
  hub: Hub;
  /** What all readers of this instance may hold in memory together. */
  readBudget: ReadBudget;
  log: Logger;
  metrics: Metrics;
  /** Aborted when the instance shuts down. */
  shutdown: AbortSignal;
  /** Aborts `shutdown`: viewers end, loops stop. */
  abort(): void;
  /** `ws(s)://host[:port]` for URLs handed to wrappers and viewers. */
  publicBase(requestUrl: string): string;
}

/** Options of {@link createRuntime}. */
export interface RuntimeOptions {
  /** Whether commits enqueue KV queue wake-ups. Default: from `config.timerWakeups`. */
  queues?: boolean;
  /** Clock for lifecycle decisions. Default `Date.now`. */
  now?: () => number;
  /** Where log lines go. Default stdout. */
  logSink?: (line: string) => void;
  instanceId?: string;
}

/** Length below which a configured signing secret is warned about. */
const MIN_SECRET_CHARS = 16;

/**
 * Builds the runtime of one instance over an open KV handle. It loads (or creates) the
 * signing secret, so it needs KV; it starts nothing (`createService` does).
 *
 * @example
 * ```ts
 * const kv = await Deno.openKv(":memory:");
 * const rt = await createRuntime(testConfig(), kv, { queues: false });
 * ```
 */
export async function createRuntime(
  config: Config,
  kv: Deno.Kv,
  options: RuntimeOptions = {},
): Promise<Runtime> {
  const instanceId = options.instanceId ?? `ins_${ulid()}`;
  const log = new Logger(config.logLevel, options.logSink).with({ instanceId });
  if (config.ticketSecret !== undefined && config.ticketSecret.length < MIN_SECRET_CHARS) {
    // Accepted (the contract sets no minimum), but tickets and callback signatures are only
    // as strong as the secret.
    log.warn(
      `TETHER_TICKET_SECRET is shorter than ${MIN_SECRET_CHARS} characters: use a long random one`,
    );
  }
  const secret = await loadSigningSecret(kv, config.ticketSecret);
  const credentials = new Credentials(secret, config.apiKeys);
  const metrics = new Metrics();
  const hub = new Hub(kv, instanceId, { log });
  const shutdown = new AbortController();
  const queues = options.queues ?? (config.timerWakeups?.includes("queue") ?? true);
  const ctx: LifecycleContext = {
    kv,
    config,
    credentials,
    instanceId,
    queues,
    now: options.now ?? Date.now,
    // After a commit: push its events to local viewers and wake the instances it addressed.
    committed(effects: Effects) {
      hub.publish(effects.sessionId, effects.stored);
      metrics.inc(MetricName.eventsStored, {}, effects.stored.length);
      for (const e of effects.stored) {
        if (e.envelope.streamEventType !== "execution_status") continue;
        const status = (e.envelope.data as { status: string }).status;
        if (status === "completed" || status === "failed" || status === "interrupted") {
          metrics.inc(MetricName.executionsEnded, { status });
          log.info("execution ended", {
            sessionId: effects.sessionId,
            executionId: e.envelope.executionId,
            event: "execution_status",
            status,
          });
        }
      }
      if (effects.notified.has(instanceId)) void hub.deliverInbox();
    },
  };
  return {
    config,
    kv,
    instanceId,
    credentials,
    ctx,
    hub,
    readBudget: new ReadBudget(config.readBudgetBytes),
    log,
    metrics,
    shutdown: shutdown.signal,
    abort: () => shutdown.abort(),
    publicBase(requestUrl) {
      const base = config.publicUrl ?? new URL(requestUrl).origin;
      return base.replace(/^http/, "ws");
    },
  };
}
