/**
 * The agent as a child process (PROTOCOL.md 9.1 and 9.2): its stdout and stderr are read
 * line by line, continuously, whatever else happens; stopping it is SIGTERM, then SIGKILL
 * after a grace period.
 *
 * @module
 */
import { type Line, splitLines } from "./lines.ts";
import type { OutputStream } from "./frames.ts";

/** Options of {@link startAgent}. */
export interface AgentOptions {
  /** Called for every non-blank line, in order per stream. */
  onLine: (line: Line, stream: OutputStream) => void;
  /** Longest line kept whole (see {@link splitLines}). Default: unbounded. */
  maxLineBytes?: () => number;
  /**
   * After the process has exited, how long its output may still take to reach end of file
   * (a grandchild can hold it open). Default 2000.
   */
  drainMs?: number;
  /**
   * `piped` keeps the agent's stdin open for {@link Agent.stdin}; `null` gives it a closed
   * one (PROTOCOL.md 12, `--input none`). Default `null`.
   */
  stdin?: "piped" | "null";
}

/** How the agent process ended. */
export interface AgentExit {
  /** The exit code (128 + n when killed by signal n). */
  code: number;
  /** The signal that killed it, if one did. */
  signal: Deno.Signal | null;
}

/** A running agent; see {@link startAgent}. */
export interface Agent {
  /** Resolves when the process has exited and its output has been read to the end. */
  readonly exited: Promise<AgentExit>;
  /** The agent's stdin, when started with `stdin: "piped"`. */
  readonly stdin: WritableStream<Uint8Array> | undefined;
  /**
   * Stops the agent: `signal` now (default SIGTERM), then SIGKILL after `graceMs` if it
   * still runs. A later call can only escalate (SIGKILL at once).
   */
  stop(options: { signal?: "SIGTERM" | "SIGKILL"; graceMs: number }): void;
}

/**
 * Spawns `command` (stdin closed, or piped for the caller) and forwards its output lines. Throws when the
 * command cannot be started (for example `Deno.errors.NotFound`).
 *
 * @example
 * ```ts
 * const agent = startAgent(["echo", "hi"], { onLine: (line) => console.log(line.text) });
 * console.log(await agent.exited); // { code: 0, signal: null }
 * ```
 */
export function startAgent(command: readonly string[], options: AgentOptions): Agent {
  const { onLine, maxLineBytes, drainMs = 2000, stdin = "null" } = options;
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
    stdin,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const readers = new AbortController();
  const forward = async (stream: ReadableStream<Uint8Array>, name: OutputStream) => {
    const cancel = () => stream.cancel().catch(() => {});
    readers.signal.addEventListener("abort", cancel, { once: true });
    try {
      for await (const line of splitLines(stream, { maxBytes: maxLineBytes })) onLine(line, name);
    } catch {
      // Cancelled after the drain time: what was read has been forwarded.
    }
  };
  const reading = Promise.all([forward(child.stdout, "stdout"), forward(child.stderr, "stderr")]);
  const exited = child.status.then(async (status) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const drained = new Promise((resolve) => timer = setTimeout(resolve, drainMs));
    await Promise.race([reading, drained]);
    clearTimeout(timer);
    readers.abort();
    return { code: status.code, signal: status.signal };
  });

  let killTimer: ReturnType<typeof setTimeout> | undefined;
  let stopping: Deno.Signal | undefined;
  const send = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch {
      // It has exited already.
    }
  };
  exited.then(() => clearTimeout(killTimer));
  return {
    exited,
    stdin: stdin === "piped" ? child.stdin : undefined,
    stop({ signal = "SIGTERM", graceMs }) {
      if (stopping === "SIGKILL" || stopping === signal) return;
      stopping = signal;
      send(signal);
      clearTimeout(killTimer);
      if (signal === "SIGTERM") killTimer = setTimeout(() => send("SIGKILL"), graceMs);
    },
  };
}
