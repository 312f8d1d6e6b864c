/**
 * The kept inputs of an execution (PROTOCOL.md 12): each accepted input stays in KV until its
 * session is removed, so every `hello` can send again what was not confirmed yet.
 *
 * An input is stored as the UTF-8 bytes of its JSON: a KV value holds at most 64 KiB, and
 * 32 KiB of input JSON can take more than that as a structured value (a string with one
 * character beyond Latin-1 is kept as UTF-16). Values written as objects by an earlier version
 * are read too.
 *
 * @module
 */
import { keys } from "./keys.ts";
import type { AgentInputRecord } from "./records.ts";
import type { Tx } from "./transact.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Keeps an accepted input, in the transaction that accepts it.
 *
 * @example
 * ```ts
 * keepAgentInput(tx, "s1", "exc_…", { inputId: 1, data: "yes" });
 * ```
 */
export function keepAgentInput(tx: Tx, sid: string, eid: string, input: AgentInputRecord): void {
  tx.set(keys.agentInput(sid, eid, input.inputId), encoder.encode(JSON.stringify(input)));
}

/**
 * An execution's kept inputs with `inputId > after`, in order (at most `limit`).
 *
 * @example
 * ```ts
 * const inputs = await listAgentInputs(kv, "s1", "exc_…", { after: 0, limit: 100 });
 * ```
 */
export async function listAgentInputs(
  kv: Deno.Kv,
  sid: string,
  eid: string,
  options: { after: number; limit: number },
): Promise<AgentInputRecord[]> {
  const prefix = keys.agentInputs(sid, eid);
  const selector = { prefix, start: keys.agentInput(sid, eid, options.after + 1) };
  const out: AgentInputRecord[] = [];
  for await (
    const e of kv.list<Uint8Array | AgentInputRecord>(selector, { limit: options.limit })
  ) {
    out.push(e.value instanceof Uint8Array ? JSON.parse(decoder.decode(e.value)) : e.value);
  }
  return out;
}
