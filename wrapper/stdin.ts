/**
 * Writing inputs to the agent's stdin (PROTOCOL.md section 12, `--input <mode>`): the bytes
 * each mode gives the agent for an input's `data`, and {@link StdinWriter}, which writes
 * inputs one after another on its own queue, so an agent that reads its stdin slowly (or
 * never) holds up nothing but later inputs: its output, the acknowledgements and the
 * heartbeats go on.
 *
 * @module
 */
import type { AgentInput } from "./input.ts";

/** The `--input` modes. */
export const INPUT_MODES = ["none", "jsonl", "text", "claude"] as const;
/** How inputs reach the agent; `none` closes its stdin at start. */
export type InputMode = typeof INPUT_MODES[number];

const encoder = new TextEncoder();

/**
 * The text one input's `data` becomes on the agent's stdin in `mode` (always one line ending
 * in `\n`; a `text` string is written as it is, newlines included).
 *
 * @example
 * ```ts
 * encodeInput("jsonl", { answer: 42 }); // '{"answer":42}\n'
 * encodeInput("text", "yes"); // "yes\n"
 * encodeInput("claude", "yes");
 * // '{"type":"user","message":{"role":"user","content":[{"type":"text","text":"yes"}]}}\n'
 * ```
 */
export function encodeInput(mode: Exclude<InputMode, "none">, data: unknown): string {
  if (typeof data === "string" && mode === "text") return `${data}\n`;
  if (typeof data === "string" && mode === "claude") {
    const message = { role: "user", content: [{ type: "text", text: data }] };
    return `${JSON.stringify({ type: "user", message })}\n`;
  }
  return `${JSON.stringify(data)}\n`;
}

/** Options of {@link StdinWriter}. */
export interface StdinWriterOptions {
  /** The encoding of each input's `data`. */
  mode: Exclude<InputMode, "none">;
  /** Called in order once input `inputId` was written (for `endOfInput`: stdin closed). */
  onWritten: (inputId: number) => void;
  /** Told once when stdin cannot be written any more (the agent closed it). */
  onBroken?: (message: string) => void;
}

/**
 * Writes inputs to a child's stdin, one at a time and in the order pushed, on its own
 * asynchronous queue. Inputs pushed before {@link StdinWriter.attach} wait for it. After an
 * `endOfInput` stdin is closed; after a failed write (the agent closed its stdin) nothing
 * more is written or reported as written.
 *
 * @example
 * ```ts
 * const child = new Deno.Command("cat", { stdin: "piped" }).spawn();
 * const writer = new StdinWriter({ mode: "text", onWritten: (id) => console.log("wrote", id) });
 * writer.attach(child.stdin);
 * writer.push({ inputId: 1, data: "hello" });
 * writer.push({ inputId: 2, endOfInput: true }); // closes cat's stdin: cat exits
 * ```
 */
export class StdinWriter {
  readonly #options: StdinWriterOptions;
  readonly #queue: AgentInput[] = [];
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #pumping = false;
  #finished = false;

  /** Writes nothing until {@link StdinWriter.attach} gives it the child's stdin. */
  constructor(options: StdinWriterOptions) {
    this.#options = options;
  }

  /** Starts writing to `stdin` (once; later calls are ignored). */
  attach(stdin: WritableStream<Uint8Array>): void {
    if (this.#writer || this.#finished) return;
    this.#writer = stdin.getWriter();
    this.#pump();
  }

  /** Queues an input; never blocks. */
  push(input: AgentInput): void {
    if (this.#finished) return;
    this.#queue.push(input);
    this.#pump();
  }

  /** Inputs queued and not yet written. */
  get pending(): number {
    return this.#queue.length;
  }

  async #pump(): Promise<void> {
    if (this.#pumping || !this.#writer) return;
    this.#pumping = true;
    const writer = this.#writer;
    try {
      while (this.#queue.length > 0 && !this.#finished) {
        const input = this.#queue[0];
        if (input.data !== undefined) {
          await writer.write(encoder.encode(encodeInput(this.#options.mode, input.data)));
        }
        if (input.endOfInput) {
          this.#finished = true;
          await writer.close();
        }
        this.#queue.shift();
        this.#options.onWritten(input.inputId);
      }
    } catch (error) {
      this.#finished = true;
      this.#queue.length = 0;
      this.#options.onBroken?.(error instanceof Error ? error.message : String(error));
    } finally {
      this.#pumping = false;
    }
  }
}
