/**
 * Per-instance Prometheus metrics (PROTOCOL.md 11): counters and gauges rendered in the
 * text exposition format.
 *
 * @module
 */

type Labels = Record<string, string>;

/**
 * Every metric name, as a named constant: a misspelled name does not compile.
 *
 * @example
 * ```ts
 * metrics.inc(MetricName.eventsStored, {}, 3);
 * ```
 */
export const MetricName = {
  eventsStored: "tether_events_stored_total",
  framesRejected: "tether_frames_rejected_total",
  executionsEnded: "tether_executions_ended_total",
  graceStarted: "tether_grace_started_total",
  graceExpired: "tether_grace_expired_total",
  graceCancelled: "tether_grace_cancelled_total",
  deadlinesFired: "tether_deadlines_fired_total",
  deadlineFailures: "tether_deadline_failures_total",
  deadlineLatenessSum: "tether_deadline_lateness_ms_sum",
  deadlineLatenessMax: "tether_deadline_lateness_ms_max",
  ingestSockets: "tether_ingest_sockets",
  viewerSockets: "tether_viewer_sockets",
  queueWakeups: "tether_queue_wakeups",
} as const;

/** One of the {@link MetricName} values. */
export type MetricName = typeof MetricName[keyof typeof MetricName];

const HELP: Record<MetricName, [type: "counter" | "gauge", help: string]> = {
  [MetricName.eventsStored]: ["counter", "Events stored in the session logs."],
  [MetricName.framesRejected]: ["counter", "Ingest frames rejected, by code."],
  [MetricName.executionsEnded]: ["counter", "Executions that reached a terminal status."],
  [MetricName.graceStarted]: ["counter", "Disconnect grace periods started."],
  [MetricName.graceExpired]: ["counter", "Disconnect grace periods that expired."],
  [MetricName.graceCancelled]: ["counter", "Disconnect grace periods cancelled by a reconnect."],
  [MetricName.deadlinesFired]: ["counter", "Deadlines fired, by kind and outcome."],
  [MetricName.deadlineFailures]: [
    "counter",
    "Deadline firings that failed (retried with backoff), by kind.",
  ],
  [MetricName.deadlineLatenessSum]: ["counter", "Sum of deadline lateness after due time (ms)."],
  [MetricName.deadlineLatenessMax]: ["gauge", "Largest deadline lateness seen (ms)."],
  [MetricName.ingestSockets]: ["gauge", "Open ingest WebSockets on this instance."],
  [MetricName.viewerSockets]: [
    "gauge",
    "Open viewer streams (WebSocket and SSE) on this instance.",
  ],
  [MetricName.queueWakeups]: [
    "gauge",
    "1 when KV queue wake-ups are in use (the start-up delivery probe passed), else 0.",
  ],
};

const labelText = (labels: Labels) => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, "_")}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
};

/**
 * The metrics of one instance, served by `GET /metrics` (PROTOCOL.md section 11). A series is
 * one metric name with one set of labels.
 *
 * @example
 * ```ts
 * const metrics = new Metrics();
 * metrics.inc(MetricName.framesRejected, { code: ErrorCode.seqGap });
 * metrics.render(); // "# HELP tether_events_stored_total …"
 * ```
 */
export class Metrics {
  readonly #values = new Map<MetricName, Map<string, number>>();

  /** Adds `by` (default 1) to a counter. */
  inc(name: MetricName, labels: Labels = {}, by = 1): void {
    const series = this.#series(name);
    const key = labelText(labels);
    series.set(key, (series.get(key) ?? 0) + by);
  }

  /** Sets a gauge. */
  set(name: MetricName, value: number, labels: Labels = {}): void {
    this.#series(name).set(labelText(labels), value);
  }

  /** Reads one series (tests). */
  get(name: MetricName, labels: Labels = {}): number {
    return this.#values.get(name)?.get(labelText(labels)) ?? 0;
  }

  /** Records a deadline firing and how late it was. */
  deadline(kind: string, outcome: string, latenessMs: number): void {
    this.inc(MetricName.deadlinesFired, { kind, outcome });
    this.inc(MetricName.deadlineLatenessSum, {}, Math.max(0, latenessMs));
    const max = this.get(MetricName.deadlineLatenessMax);
    if (latenessMs > max) this.set(MetricName.deadlineLatenessMax, latenessMs);
  }

  /** The Prometheus text exposition of every metric. */
  render(): string {
    const lines: string[] = [];
    for (const [name, [type, help]] of Object.entries(HELP) as [MetricName, [string, string]][]) {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      const series = this.#values.get(name);
      if (!series || series.size === 0) lines.push(`${name} 0`);
      else for (const [labels, value] of series) lines.push(`${name}${labels} ${value}`);
    }
    return lines.join("\n") + "\n";
  }

  #series(name: MetricName): Map<string, number> {
    let series = this.#values.get(name);
    if (!series) this.#values.set(name, series = new Map());
    return series;
  }
}
