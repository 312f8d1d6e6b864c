/**
 * An ACP agent that sends values nested deeper than the service stores (PROTOCOL.md 10), for
 * the wrapper's tests. It speaks raw JSON-RPC lines (no SDK, so nothing smooths what it
 * sends): `initialize` and `session/new` are answered; each `session/prompt` sends a
 * `tool_call` update and a `session/request_permission` whose `rawInput` nests `<depth>`
 * levels (the first argument, default 70), and ends its turn once the permission is answered.
 * It exits when its stdin closes.
 *
 * @module
 */
const depth = Number(Deno.args[0] ?? 70);
let rawInput: Record<string, unknown> = {};
for (let i = 1; i < depth; i++) rawInput = { a: rawInput };
const toolCall = { toolCallId: "deep-1", title: "Deep input", kind: "other", rawInput };

const encoder = new TextEncoder();
function send(message: Record<string, unknown>): void {
  const bytes = encoder.encode(JSON.stringify({ jsonrpc: "2.0", ...message }) + "\n");
  for (let at = 0; at < bytes.length;) at += Deno.stdout.writeSync(bytes.subarray(at));
}

const PERMISSION_ID = "ask-1";
let promptId: unknown;

function handle(message: { id?: unknown; method?: string; params?: { sessionId?: string } }) {
  const sessionId = message.params?.sessionId;
  switch (message.method) {
    case "initialize":
      return send({ id: message.id, result: { protocolVersion: 1, agentCapabilities: {} } });
    case "session/new":
      return send({ id: message.id, result: { sessionId: "deep-session" } });
    case "session/prompt":
      promptId = message.id;
      send({
        method: "session/update",
        params: {
          sessionId,
          update: { sessionUpdate: "tool_call", status: "pending", ...toolCall },
        },
      });
      return send({
        id: PERMISSION_ID,
        method: "session/request_permission",
        params: {
          sessionId,
          toolCall,
          options: [{ optionId: "allow", name: "Allow", kind: "allow_once" }],
        },
      });
  }
  if (message.id === PERMISSION_ID) send({ id: promptId, result: { stopReason: "end_turn" } });
}

let buffer = "";
for await (const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  buffer += text;
  const lines = buffer.split("\n");
  buffer = lines.pop()!;
  for (const line of lines) if (line.trim()) handle(JSON.parse(line));
}
