/**
 * What an input (PROTOCOL.md section 12) means to an ACP agent (section 14): a string, or
 * `{"prompt": [ContentBlock…]}`, is a prompt for one turn; `{"permission": {"requestId",
 * "optionId"}}` or `{"permission": {"requestId", "cancelled": true}}` answers a permission
 * request; anything else is ignored (and reported). Pure: no I/O.
 *
 * @module
 */
import type { ContentBlock, RequestPermissionOutcome } from "@agentclientprotocol/sdk";
import { z } from "zod";

/** What the wrapper does with one input's `data`. */
export type AcpInputAction =
  /** Queue one `session/prompt` with these content blocks. */
  | { kind: "prompt"; prompt: ContentBlock[] }
  /** Answer the permission request `requestId` with `outcome`. */
  | { kind: "permission"; requestId: number; outcome: RequestPermissionOutcome }
  /** Neither: the input is confirmed and reported as `acp_input_ignored`. */
  | { kind: "ignored"; reason: string }
  /** No `data` at all (a bare `endOfInput`). */
  | { kind: "none" };

/**
 * A content block as the wrapper checks it: an object with a string `type`. The agent
 * validates the rest (it knows which block types it accepts).
 */
const ContentBlockShape = z.looseObject({ type: z.string().min(1) });

const PromptData = z.strictObject({ prompt: z.array(ContentBlockShape).min(1) });

const RequestId = z.int().min(1).max(Number.MAX_SAFE_INTEGER);

const PermissionData = z.strictObject({
  permission: z.union([
    z.strictObject({ requestId: RequestId, optionId: z.string().min(1) }),
    z.strictObject({ requestId: RequestId, cancelled: z.literal(true) }),
  ]),
});

/** Why an input was not taken; the text of `acp_input_ignored`'s `reason`. */
export const IGNORED_REASON =
  'not a prompt (a string or {"prompt":[ContentBlock…]}) nor a permission answer ' +
  '({"permission":{"requestId","optionId"}} or {"permission":{"requestId","cancelled":true}})';

/**
 * Classifies one input's `data` (`undefined` when the input had none).
 *
 * @example
 * ```ts
 * classifyAcpInput("fix the tests");
 * // { kind: "prompt", prompt: [{ type: "text", text: "fix the tests" }] }
 * classifyAcpInput({ permission: { requestId: 1, optionId: "allow" } });
 * // { kind: "permission", requestId: 1, outcome: { outcome: "selected", optionId: "allow" } }
 * classifyAcpInput(42); // { kind: "ignored", reason: "…" }
 * ```
 */
export function classifyAcpInput(data: unknown): AcpInputAction {
  if (data === undefined) return { kind: "none" };
  if (typeof data === "string") return { kind: "prompt", prompt: [{ type: "text", text: data }] };
  const prompt = PromptData.safeParse(data);
  if (prompt.success) return { kind: "prompt", prompt: prompt.data.prompt as ContentBlock[] };
  const answer = PermissionData.safeParse(data);
  if (!answer.success) return { kind: "ignored", reason: IGNORED_REASON };
  const permission = answer.data.permission;
  return {
    kind: "permission",
    requestId: permission.requestId,
    outcome: "optionId" in permission
      ? { outcome: "selected", optionId: permission.optionId }
      : { outcome: "cancelled" },
  };
}
