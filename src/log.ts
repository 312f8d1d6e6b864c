/**
 * Structured JSON logs: one line per entry with `level`, `time`, `msg` and fields such as
 * `sessionId`, `executionId`, `event`. Secrets are never passed in; as a second line of
 * defence, fields whose names look secret are redacted.
 *
 * @module
 */

/** The least severe level a {@link Logger} writes; `silent` writes nothing (`TETHER_LOG_LEVEL`). */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };
const SECRET_FIELD = /token|ticket|secret|key|authorization|password/i;

/**
 * A logger writing JSON lines to a sink (stdout by default). Entries below its level are
 * dropped; fields whose names look secret are written as `[redacted]`.
 *
 * @example
 * ```ts
 * const log = new Logger("info").with({ instanceId: "ins_1" });
 * log.info("execution ended", { sessionId: "ses_1", event: "execution_status" });
 * ```
 */
export class Logger {
  constructor(
    readonly level: LogLevel = "info",
    private readonly sink: (line: string) => void = (line) => console.log(line),
    private readonly fields: Record<string, unknown> = {},
  ) {}

  /** A logger that adds `fields` to every entry. */
  with(fields: Record<string, unknown>): Logger {
    return new Logger(this.level, this.sink, { ...this.fields, ...fields });
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.#write("debug", msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.#write("info", msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.#write("warn", msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.#write("error", msg, fields);
  }

  #write(level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
    if (ORDER[level] < ORDER[this.level]) return;
    const entry: Record<string, unknown> = { level, time: new Date().toISOString(), msg };
    for (const [k, v] of Object.entries({ ...this.fields, ...fields })) {
      entry[k] = SECRET_FIELD.test(k) ? "[redacted]" : v instanceof Error ? String(v) : v;
    }
    this.sink(JSON.stringify(entry));
  }
}
