/**
 * Where the CLI writes: stdout for results, stderr for errors and the progress spinner.
 * Colors only when stdout is a terminal and `NO_COLOR` is unset; the spinner only when
 * stderr is a terminal.
 *
 * @module
 */
import type { Envelope } from "../src/protocol.ts";
import { CliExit } from "./args.ts";
import { eventKind, type EventLines } from "./render.ts";

/**
 * The CLI's terminal: how it writes, and whether it may color or animate.
 *
 * @example
 * ```ts
 * const quiet: Terminal = { out: () => {}, err: () => {}, color: false, animate: false };
 * ```
 */
export interface Terminal {
  /** Writes to stdout (the result: JSON with `--json`, else text). */
  out(text: string): void;
  /** Writes to stderr (errors, progress, the spinner). */
  err(text: string): void;
  /** Colors on stdout. */
  color: boolean;
  /** A spinner on stderr. */
  animate: boolean;
}

/**
 * The process's terminal: colors when stdout is a TTY and `NO_COLOR` is unset (or empty).
 *
 * @example
 * ```ts
 * const term = processTerminal((name) => Deno.env.get(name));
 * term.out("hello");
 * ```
 */
export function processTerminal(env: (name: string) => string | undefined): Terminal {
  const encoder = new TextEncoder();
  const write = (stream: typeof Deno.stdout, text: string) => {
    const bytes = encoder.encode(text);
    let at = 0;
    try {
      while (at < bytes.length) at += stream.writeSync(bytes.subarray(at));
    } catch (err) {
      if (!(err instanceof Deno.errors.BrokenPipe)) throw err;
      // Nobody reads any more: stop quietly, as a tool killed by SIGPIPE does.
      Deno.exit(CliExit.brokenPipe);
    }
  };
  return {
    out: (text) => write(Deno.stdout, `${text}\n`),
    err: (text) => write(Deno.stderr, text),
    color: Deno.stdout.isTerminal() && !env("NO_COLOR"),
    animate: Deno.stderr.isTerminal(),
  };
}

const CODES: Record<string, string> = {
  dim: "2",
  bold: "1",
  red: "31",
  green: "32",
  yellow: "33",
  blue: "34",
  magenta: "35",
  cyan: "36",
};

/**
 * Wraps `text` in an ANSI color when `on`.
 *
 * @example
 * ```ts
 * paint(true, "red", "failed"); // "\x1b[31mfailed\x1b[39m" style sequence
 * ```
 */
export function paint(on: boolean, style: keyof typeof CODES, text: string): string {
  return on ? `\x1b[${CODES[style]}m${text}\x1b[0m` : text;
}

const KIND_STYLE: Record<string, keyof typeof CODES> = {
  status: "cyan",
  error: "red",
  agent: "bold",
  output: "dim",
  input: "blue",
};

/**
 * One line for an event: `#id time type text`.
 *
 * @example
 * ```ts
 * formatEvent(envelope, new EventLines(), false); // "#3 12:00:01 output ok"
 * ```
 */
export function formatEvent(event: Envelope, lines: EventLines, color: boolean): string {
  const time = event.timestamp.slice(11, 19);
  const kind = eventKind(event);
  return `${paint(color, "dim", `#${event.eventId} ${time}`)} ${
    paint(color, "yellow", event.streamEventType)
  } ${paint(color, KIND_STYLE[kind] ?? "bold", lines.text(event))}`;
}

const FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";

/**
 * A one-line spinner on stderr while the CLI waits (silent when not animating). Call
 * `clear()` before printing, `stop()` at the end.
 *
 * @example
 * ```ts
 * const spinner = new Spinner(term, "waiting for events");
 * spinner.clear(); term.out("…"); spinner.stop();
 * ```
 */
export class Spinner {
  readonly #term: Terminal;
  #text: string;
  #frame = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** Starts spinning at once when `term.animate`; otherwise draws nothing at all. */
  constructor(term: Terminal, text: string) {
    this.#term = term;
    this.#text = text;
    if (term.animate) this.#timer = setInterval(() => this.#draw(), 100);
  }

  /** Changes the text next to the spinner. */
  set text(text: string) {
    this.#text = text;
  }

  /** Erases the line so output can be printed. */
  clear(): void {
    if (this.#timer !== undefined) this.#term.err("\r\x1b[2K");
  }

  /** Erases the line and stops for good. */
  stop(): void {
    this.clear();
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #draw(): void {
    const frame = FRAMES[this.#frame++ % FRAMES.length];
    this.#term.err(`\r\x1b[2K${frame} ${this.#text}`);
  }
}
