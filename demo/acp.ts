/**
 * The demo's `--acp` mode (PROTOCOL.md section 14): the wrapper runs the scripted ACP agent of
 * `demo/acp_agent.ts`, the demo sends it two prompts as inputs, and the first turn asks for
 * permission to edit `notes.md`, answered from the page (one button per option), with `curl`,
 * or, with `--exit`, by the demo itself. Once both turns have ended the demo sends
 * `endOfInput`, which ends the run.
 *
 * @module
 */
import { AcpEventType, type Envelope } from "../src/protocol.ts";
import { acpAgentCommand } from "./acp_agent.ts";

/** The prompts of the demo run, one turn each; the first one edits a file. */
export const ACP_PROMPTS = [
  "Please edit notes.md: add a line about today's run.",
  "Thanks! Now sum up what you changed.",
] as const;

/** Updates the scripted agent sends per turn at most (thought, plan, chunks, tool call). */
const UPDATES_PER_TURN = 10;

/** A POST with the demo's api key; resolves with the parsed body, throws on an error status. */
export type DemoPost = <T>(path: string, body: unknown) => Promise<T>;

/**
 * The scripted ACP agent's command line, its updates spread over about `durationMs`.
 *
 * @example
 * ```ts
 * const wrapperArgs = ["--acp", "--", ...pacedAcpAgentCommand(20_000)];
 * ```
 */
export function pacedAcpAgentCommand(durationMs: number): string[] {
  const delayMs = Math.round(durationMs / (ACP_PROMPTS.length * UPDATES_PER_TURN));
  return acpAgentCommand("--chunks", "6", "--delay-ms", String(delayMs));
}

/**
 * Sends the demo's prompts to the execution at `inputPath`.
 *
 * @example
 * ```ts
 * const inputPath = `/v1/sessions/${sessionId}/executions/${executionId}/input`;
 * await sendAcpPrompts(api, inputPath);
 * ```
 */
export async function sendAcpPrompts(post: DemoPost, inputPath: string): Promise<void> {
  for (const prompt of ACP_PROMPTS) await post(inputPath, { data: prompt });
}

/** Options of {@link conductAcpRun}. */
export interface ConductOptions {
  /** The service URL, e.g. `http://localhost:8000`. */
  base: string;
  /** Api key for reading the events. */
  apiKey: string;
  /** The demo's session. */
  sessionId: string;
  /** Posts an input with the api key. */
  post: DemoPost;
  /** `/v1/sessions/:sid/executions/:eid/input`. */
  inputPath: string;
  /** Answer each permission request with its first option (no user to click). */
  approve: boolean;
  /** Stops following when aborted (the demo ends). */
  signal: AbortSignal;
}

/**
 * Follows the run's events: answers permission requests when `approve` is set, and once
 * every prompt's turn has ended sends `endOfInput` (not before: answers are inputs too, and
 * none is accepted after `endOfInput`).
 *
 * @example
 * ```ts
 * const conducting = new AbortController();
 * const { signal } = conducting;
 * conductAcpRun({ base, apiKey, sessionId, post: api, inputPath, approve: true, signal })
 *   .catch((error) => console.error(error));
 * ```
 */
export async function conductAcpRun(options: ConductOptions): Promise<void> {
  const { base, apiKey, sessionId, post, inputPath, signal } = options;
  const types = [AcpEventType.permissionRequest, AcpEventType.turn].join(",");
  let after = 0;
  let turns = 0;
  while (!signal.aborted && turns < ACP_PROMPTS.length) {
    const res = await fetch(
      `${base}/v1/sessions/${sessionId}/events?after=${after}&eventTypes=${types}`,
      { headers: { authorization: `Bearer ${apiKey}` }, signal },
    ).catch(() => undefined);
    if (!res?.ok) return;
    const page = await res.json() as { events: Envelope[]; nextAfter: number };
    for (const { streamEventType, data } of page.events) {
      if (streamEventType === AcpEventType.turn) turns++;
      else if (options.approve) await post(inputPath, { data: { permission: firstOption(data) } });
    }
    after = page.nextAfter;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  if (!signal.aborted) await post(inputPath, { endOfInput: true });
}

function firstOption(data: unknown): { requestId: number; optionId: string } {
  const request = data as { requestId: number; options: { optionId: string }[] };
  return { requestId: request.requestId, optionId: request.options[0].optionId };
}

/**
 * What the demo prints in `--acp` mode about answering; `approves`: the demo allows the
 * permission request itself (`--exit`, an unattended run).
 *
 * @example
 * ```ts
 * console.log(acpInstructions("http://localhost:8000", apiKey, inputPath));
 * ```
 */
export function acpInstructions(
  base: string,
  apiKey: string,
  inputPath: string,
  approves = false,
): string {
  return `
  The scripted ACP agent answers ${ACP_PROMPTS.length} prompts, one turn each (the demo ends the input
  after the last one). In the first turn it asks for permission to edit notes.md and waits: click
  Allow or Reject on the page, or answer from a terminal:
    curl -X POST -H 'Authorization: Bearer ${apiKey}' -H 'Content-Type: application/json' \\
      -d '{"data":{"permission":{"requestId":1,"optionId":"allow"}}}' ${base}${inputPath}${
    approves ? "\n  (With --exit the demo sends that answer itself, for an unattended run.)" : ""
  }`;
}
