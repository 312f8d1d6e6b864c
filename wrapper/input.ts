/**
 * The wrapper's side of the input channel's ordering (PROTOCOL.md section 12): the service
 * sends `{"type":"input"}` frames for every input above `hello.deliveredInputId`, again after
 * every `hello`, so the same input can arrive several times, and inputs accepted on other
 * instances can arrive out of order. {@link InputGate} turns that into each input exactly
 * once, in `inputId` order, and sends the stored `input_delivered` frame when its consumer
 * confirms one. It does no I/O of its own: the consumer (the stdin writer of `--input`, or
 * the ACP client of `--acp`) decides what "written" means and when to confirm.
 *
 * Wiring it to an {@link IngestConnection}: feed it the connection's `hello` and `input`
 * events, and give it the connection's `send` for the confirmations.
 *
 * @example
 * ```ts
 * import { IngestConnection } from "./mod.ts";
 * import { InputGate } from "./input.ts";
 *
 * let conn: IngestConnection;
 * const gate = new InputGate({
 *   send: (frame) => conn.send(frame),
 *   onInput: (input) => {
 *     console.log("write", input.inputId, input.data);
 *     gate.confirm(input.inputId); // once it has really been written
 *   },
 * });
 * conn = new IngestConnection({
 *   url: "https://tether.example/v1/sessions/s1/executions/exc_…/ingest",
 *   token: "…",
 *   onEvent: (event) => {
 *     if (event.type === "hello") gate.hello(event.hello.deliveredInputId);
 *     if (event.type === "input") gate.receive(event.input);
 *   },
 * });
 * ```
 *
 * @module
 */
import { InputEventType } from "../src/protocol.ts";
import type { OutgoingFrame } from "./outbox.ts";

/** One input for the agent, as the service sends it (keys absent when not given). */
export interface AgentInput {
  /** 1, 2, 3… per execution. */
  inputId: number;
  /** What to give the agent; absent for a bare `endOfInput`. */
  data?: unknown;
  /** The last input: the agent's input ends after this one. */
  endOfInput?: boolean;
}

/** Options of {@link InputGate}. */
export interface InputGateOptions {
  /** Called once per input, in `inputId` order (1, 2, 3… above the floor). */
  onInput: (input: AgentInput) => void;
  /** Sends a stored frame (the connection's `send`); used by {@link InputGate.confirm}. */
  send: (frame: OutgoingFrame) => boolean;
  /**
   * Most inputs held while an earlier one is missing; further ones are dropped (the service
   * sends them again after the next `hello`). Default 1000.
   */
  maxHeld?: number;
}

/**
 * The stored frame that confirms inputs up to `inputId`.
 *
 * @example
 * ```ts
 * inputDeliveredFrame(3); // { streamEventType: "input_delivered", data: { inputId: 3 } }
 * ```
 */
export function inputDeliveredFrame(inputId: number): OutgoingFrame {
  return { streamEventType: InputEventType.delivered, data: { inputId } };
}

/**
 * Yields each input once, in `inputId` order; see the module documentation. An input at or
 * below the floor (the highest one already yielded, or `hello.deliveredInputId`, whichever
 * is higher) is dropped; one above the next expected id waits for the ones before it.
 *
 * @example
 * ```ts
 * const gate = new InputGate({ send: (frame) => conn.send(frame), onInput: write });
 * gate.hello(2); // inputs 1 and 2 were written by an earlier process
 * gate.receive({ inputId: 4, data: "later" }); // held: 3 has not arrived
 * gate.receive({ inputId: 3, data: "next" }); // onInput(3), then onInput(4)
 * gate.confirm(4); // sends input_delivered {inputId: 4}
 * ```
 */
export class InputGate {
  readonly #onInput: (input: AgentInput) => void;
  readonly #send: (frame: OutgoingFrame) => boolean;
  readonly #maxHeld: number;
  /** Inputs that arrived before an earlier one, by inputId. */
  readonly #held = new Map<number, AgentInput>();
  #floor = 0;
  #confirmed = 0;

  /** Starts with floor 0: until a `hello` says otherwise, input 1 is the next one. */
  constructor(options: InputGateOptions) {
    this.#onInput = options.onInput;
    this.#send = options.send;
    this.#maxHeld = options.maxHeld ?? 1000;
  }

  /**
   * A `hello` arrived with the service's `deliveredInputId`: inputs up to it were written by
   * some wrapper process for this execution, so this one never yields them.
   */
  hello(deliveredInputId: number): void {
    if (deliveredInputId > this.#floor) this.#floor = deliveredInputId;
    if (deliveredInputId > this.#confirmed) this.#confirmed = deliveredInputId;
    for (const id of this.#held.keys()) if (id <= this.#floor) this.#held.delete(id);
    this.#release();
  }

  /** An `input` frame arrived; yields it (and any held ones it unblocks) when it is next. */
  receive(input: AgentInput): void {
    const { inputId } = input;
    if (inputId <= this.#floor || this.#held.has(inputId)) return;
    if (this.#held.size >= this.#maxHeld && inputId !== this.#floor + 1) return;
    this.#held.set(inputId, input);
    this.#release();
  }

  /**
   * Confirms that input `inputId` and every one before it reached the agent: sends the
   * stored `input_delivered` frame, unless an equal or higher one was confirmed already.
   */
  confirm(inputId: number): void {
    if (inputId <= this.#confirmed) return;
    this.#confirmed = inputId;
    this.#send(inputDeliveredFrame(inputId));
  }

  /** Highest inputId yielded so far, or the highest `deliveredInputId` seen if higher. */
  get highest(): number {
    return this.#floor;
  }

  /** Highest inputId confirmed (by this process or, via `hello`, by an earlier one). */
  get confirmed(): number {
    return this.#confirmed;
  }

  #release(): void {
    for (let next = this.#held.get(this.#floor + 1); next; next = this.#held.get(this.#floor + 1)) {
      this.#held.delete(next.inputId);
      this.#floor = next.inputId;
      this.#onInput(next);
    }
  }
}
