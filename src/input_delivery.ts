/**
 * Delivery of an execution's inputs over its admitted ingest connection (PROTOCOL.md 12):
 * after `hello` (and `kill`), every kept input above `deliveredInputId`, in order; then, each
 * time the connection is woken (an inbox message from the instance that accepted an input),
 * the inputs it has not sent yet. The inputs are read from KV, never carried by the wake-up,
 * so wake-ups that arrive late, twice or out of order still send each input once per
 * connection and in `inputId` order.
 *
 * @module
 */
import { InputEventType, type InputFrame } from "./protocol.ts";
import { type AgentInputRecord, listAgentInputs } from "./store/mod.ts";

/** Inputs read per KV list call. */
const PAGE = 100;

/** Options of {@link InputSender}. */
export interface InputSenderOptions {
  kv: Deno.Kv;
  sessionId: string;
  executionId: string;
  /** The execution's `deliveredInputId` at admission: inputs up to it are not sent. */
  deliveredInputId: number;
  /** Sends a frame on the connection; false once it can no longer send. */
  send: (frame: InputFrame) => boolean;
  /** Told when reading the inputs failed (the next wake-up tries again). */
  onError?: (err: unknown) => void;
}

/**
 * Sends an execution's inputs on one connection.
 *
 * @example
 * ```ts
 * const sender = new InputSender({ kv, sessionId, executionId, deliveredInputId: 0, send });
 * sender.wake(); // right after hello: everything above deliveredInputId
 * // … later, on an inbox message for this connection:
 * sender.wake();
 * ```
 */
export class InputSender {
  readonly #options: InputSenderOptions;
  #sent: number;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;

  constructor(options: InputSenderOptions) {
    this.#options = options;
    this.#sent = options.deliveredInputId;
  }

  /** Highest inputId sent on this connection (or `deliveredInputId` before any). */
  get sent(): number {
    return this.#sent;
  }

  /** Sends the inputs not sent yet; a call during a run makes the run look again. */
  wake(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#run().finally(() => this.#running = undefined);
    return this.#running;
  }

  async #run(): Promise<void> {
    const { kv, sessionId, executionId } = this.#options;
    do {
      this.#again = false;
      try {
        for (;;) {
          const inputs = await listAgentInputs(kv, sessionId, executionId, {
            after: this.#sent,
            limit: PAGE,
          });
          for (const input of inputs) if (!this.#sendOne(input)) return;
          if (inputs.length < PAGE) break;
        }
      } catch (err) {
        this.#options.onError?.(err);
        return;
      }
    } while (this.#again && !this.#stopped);
  }

  #sendOne(input: AgentInputRecord): boolean {
    if (this.#stopped) return false;
    if (!this.#options.send({ type: InputEventType.input, ...input })) {
      this.#stopped = true;
      return false;
    }
    this.#sent = input.inputId;
    return true;
  }
}
