/**
 * The input channel in the model check (PROTOCOL.md 12): a simulated wrapper process per
 * execution that writes the inputs its connections receive through the real
 * {@link InputGate} (its "agent" is the list of what it wrote), confirms each with an
 * `input_delivered` frame, and the invariants on what was accepted, written and confirmed.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Envelope } from "../../src/protocol.ts";
import { keys } from "../../src/store/keys.ts";
import type { ExecutionRecord } from "../../src/store/mod.ts";
import { InputGate } from "../../wrapper/input.ts";
import type { IngestClient } from "./ingest_client.ts";

/**
 * One wrapper process of an execution: it lives across its connections, its agent with it.
 *
 * @example
 * ```ts
 * const process = new WrapperProcess();
 * process.attach(client); // after the connection's hello
 * process.feed(); // hands the input frames received so far to its gate
 * ```
 */
export class WrapperProcess {
  /** The inputIds written to this process's agent, in order. */
  readonly written: number[] = [];
  /** `hello.deliveredInputId` of its first connection. */
  floor: number | undefined;
  readonly #gate: InputGate;
  #client: IngestClient | undefined;
  #seen = 0;

  constructor() {
    this.#gate = new InputGate({
      onInput: (input) => {
        this.written.push(input.inputId);
        this.#gate.confirm(input.inputId);
      },
      send: (frame) => {
        this.#client?.send(frame); // a stored frame without seq, as a simple wrapper sends
        return true;
      },
    });
  }

  /** A connection of this process got its `hello`: inputs now come (and go) through it. */
  attach(client: IngestClient): void {
    const hello = client.messages.find((m) => m.type === "hello");
    assert.ok(hello, "attach after hello");
    const delivered = hello.deliveredInputId as number;
    this.floor ??= delivered;
    this.#client = client;
    this.#seen = 0;
    this.#gate.hello(delivered);
    this.feed();
  }

  /** Passes the `input` frames its connection received since the last call to the gate. */
  feed(): void {
    const messages = this.#client?.messages ?? [];
    for (; this.#seen < messages.length; this.#seen++) {
      const m = messages[this.#seen];
      if (m.type !== "input") continue;
      const { type: _, ...input } = m as unknown as { type: string; inputId: number };
      this.#gate.receive(input);
    }
  }

  /** Highest inputId this process confirmed (or found confirmed at its first hello). */
  get confirmed(): number {
    return this.#gate.confirmed;
  }

  /** Highest input this process wrote or found confirmed by an earlier one. */
  get reached(): number {
    return Math.max(this.floor ?? 0, this.written.at(-1) ?? 0);
  }
}

/**
 * Waits until every input up to `inputId` reached the process through `client` (written by
 * it, or confirmed before its first `hello`), or the connection closed; then until its
 * confirmations are committed, so the next step starts from a settled state.
 *
 * @example
 * ```ts
 * await awaitWritten(kv, run.executionId, process, client, 3, 5000);
 * assert.ok(process.reached >= 3 || client.closeInfo !== undefined);
 * ```
 */
export async function awaitWritten(
  kv: Deno.Kv,
  executionId: string,
  process: WrapperProcess,
  client: IngestClient,
  inputId: number,
  timeoutMs: number,
): Promise<void> {
  const written = () => {
    process.feed();
    return process.reached >= inputId || client.closeInfo !== undefined;
  };
  await client.until(written, `input ${inputId} written`, timeoutMs);
  const until = Date.now() + timeoutMs;
  for (;;) {
    const rec = (await kv.get<ExecutionRecord>(keys.exec(executionId))).value;
    if ((rec?.deliveredInputId ?? 0) >= process.confirmed || client.closeInfo) return;
    assert.ok(Date.now() < until, `confirmation of input ${process.confirmed} committed`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * The input invariants of one execution: its `input` events number 1…lastInputId, as many
 * as the model had accepted; `deliveredInputId` is the highest stored confirmation and never
 * above `lastInputId`; each process wrote consecutive inputs, each once, starting right
 * after the `deliveredInputId` of its first `hello`.
 *
 * @example
 * ```ts
 * checkInputs(`seed ${seed}, ${run.executionId}`, rec, mine, accepted, processes);
 * ```
 */
export function checkInputs(
  where: string,
  rec: ExecutionRecord,
  mine: readonly Envelope[],
  accepted: number,
  processes: readonly WrapperProcess[],
): void {
  const ids = mine.filter((e) => e.streamEventType === "input")
    .map((e) => (e.data as { inputId: number }).inputId);
  assert.deepEqual(ids, ids.map((_, k) => k + 1), `${where}: input events numbered 1, 2, 3…`);
  assert.equal(ids.length, accepted, `${where}: one input event per accepted input`);
  assert.equal(rec.lastInputId ?? 0, accepted, `${where}: lastInputId`);
  const confirmed = mine.filter((e) => e.streamEventType === "input_delivered")
    .map((e) => (e.data as { inputId: number }).inputId);
  const delivered = rec.deliveredInputId ?? 0;
  assert.equal(delivered, Math.max(0, ...confirmed), `${where}: deliveredInputId`);
  assert.ok(delivered <= accepted, `${where}: deliveredInputId ≤ lastInputId`);
  for (const p of processes) {
    const expected = p.written.map((_, k) => (p.floor ?? 0) + 1 + k);
    assert.deepEqual(p.written, expected, `${where}: a process writes each input once, in order`);
    assert.ok((p.written.at(-1) ?? 0) <= accepted, `${where}: only accepted inputs written`);
  }
}
