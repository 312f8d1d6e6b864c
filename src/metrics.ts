/**
 * Per-instance Prometheus metrics (PROTOCOL.md 11): counters and gauges rendered in the
 * text exposition format.
 *
 * @module
 */

type Labels = Record<string, string>;

const HELP: Record<string, [type: "counter" | "gauge", help: string]> = {
  tether_events_stored_total: ["counter", "Events stored in the session logs."],
  tether_frames_rejected_total: ["counter", "Ingest frames rejected, by code."],
  tether_executions_ended_total: ["counter", "Executions that reached a terminal status."],
  tether_grace_started_total: ["counter", "Disconnect grace periods started."],
  tether_grace_expired_total: ["counter", "Disconnect grace periods that expired."],
  tether_grace_cancelled_total: ["counter", "Disconnect grace periods cancelled by a reconnect."],
  tether_deadlines_fired_total: ["counter", "Deadlines fired, by kind and outcome."],
  tether_deadline_lateness_ms_sum: ["counter", "Sum of deadline lateness after due time (ms)."],
  tether_deadline_lateness_ms_max: ["gauge", "Largest deadline lateness seen (ms)."],
  tether_ingest_sockets: ["gauge", "Open ingest WebSockets on this instance."],
  tether_viewer_sockets: ["gauge", "Open viewer streams (WebSocket and SSE) on this instance."],
};

const labelText = (labels: Labels) => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, "_")}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
};

/** The metrics of one instance. */
export class Metrics {
  readonly #values = new Map<string, Map<string, number>>();

  /** Adds `by` (default 1) to a counter. */
  inc(name: keyof typeof HELP, labels: Labels = {}, by = 1): void {
    const series = this.#series(name);
    const key = labelText(labels);
    series.set(key, (series.get(key) ?? 0) + by);
  }

  /** Sets a gauge. */
  set(name: keyof typeof HELP, value: number, labels: Labels = {}): void {
    this.#series(name).set(labelText(labels), value);
  }

  /** Reads one series (tests). */
  get(name: keyof typeof HELP, labels: Labels = {}): number {
    return this.#values.get(name)?.get(labelText(labels)) ?? 0;
  }

  /** Records a deadline firing and how late it was. */
  deadline(kind: string, outcome: string, latenessMs: number): void {
    this.inc("tether_deadlines_fired_total", { kind, outcome });
    this.inc("tether_deadline_lateness_ms_sum", {}, Math.max(0, latenessMs));
    const max = this.get("tether_deadline_lateness_ms_max");
    if (latenessMs > max) this.set("tether_deadline_lateness_ms_max", latenessMs);
  }

  /** The Prometheus text exposition of every metric. */
  render(): string {
    const lines: string[] = [];
    for (const [name, [type, help]] of Object.entries(HELP)) {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      const series = this.#values.get(name);
      if (!series || series.size === 0) lines.push(`${name} 0`);
      else for (const [labels, value] of series) lines.push(`${name}${labels} ${value}`);
    }
    return lines.join("\n") + "\n";
  }

  #series(name: string): Map<string, number> {
    let series = this.#values.get(name);
    if (!series) this.#values.set(name, series = new Map());
    return series;
  }
}
