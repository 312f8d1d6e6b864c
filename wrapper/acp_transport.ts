/**
 * An ACP agent as a child process (PROTOCOL.md section 14): JSON-RPC 2.0, one message per
 * line, over its stdin and stdout, as the official SDK's `ndJsonStream` speaks it. Lines on
 * its stdout that are not JSON-RPC, and every stderr line, go to the caller instead (they
 * become `output` events), so a misbehaving agent stays visible and never confuses the
 * SDK. Every message from the agent is shown to an observer, in order, before the SDK
 * handles it.
 *
 * @module
 */
import { type AnyMessage, ndJsonStream, type Stream } from "@agentclientprotocol/sdk";
import { type Agent, startAgent } from "./agent.ts";
import type { OutputStream } from "./frames.ts";
import type { Line } from "./lines.ts";

/** Largest JSON-RPC message read from the agent by default: 16 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** Options of {@link startAcpProcess}. */
export interface AcpProcessOptions {
  /** A stdout line that is not JSON-RPC, or any stderr line. */
  onLine: (line: Line, stream: OutputStream) => void;
  /** Every message from the agent, in arrival order, before the SDK sees it. */
  onMessage: (message: AnyMessage) => void;
  /**
   * Longest stdout line read whole; a longer one cannot be JSON-RPC and is forwarded cut.
   * Default {@link DEFAULT_MAX_MESSAGE_BYTES}.
   */
  maxMessageBytes?: number;
}

/** A running ACP agent; see {@link startAcpProcess}. */
export interface AcpProcess {
  /** The process: its exit, and SIGTERM/SIGKILL. */
  readonly process: Agent;
  /** The message stream to hand to the SDK; it ends when the agent's stdout does. */
  readonly stream: Stream;
  /** Closes the agent's stdin once what was written before has been written. */
  closeInput(): Promise<void>;
}

const encoder = new TextEncoder();

/** Hands something to the SDK's stream, unless the SDK has closed it (its connection broke). */
function toSdk(step: () => void): void {
  try {
    step();
  } catch {
    // The SDK cancelled its reader: the connection is closed, and the client ends the run.
  }
}

/**
 * True for a line holding one JSON-RPC 2.0 message (an object with `"jsonrpc": "2.0"`).
 *
 * @example
 * ```ts
 * isJsonRpcLine('{"jsonrpc":"2.0","method":"session/update","params":{}}'); // true
 * isJsonRpcLine('{"type":"log"}'); // false
 * isJsonRpcLine("Loading model…"); // false
 * ```
 */
export function isJsonRpcLine(text: string): boolean {
  if (!text.trimStart().startsWith("{")) return false;
  try {
    const value = JSON.parse(text);
    return typeof value === "object" && value !== null && value.jsonrpc === "2.0";
  } catch {
    return false;
  }
}

/**
 * Spawns the ACP agent `command` with piped stdio. Throws when it cannot be started.
 *
 * @example
 * ```ts
 * import { client } from "@agentclientprotocol/sdk";
 * const agent = startAcpProcess(["gemini", "--experimental-acp"], {
 *   onLine: (line, stream) => console.error(stream, line.text),
 *   onMessage: () => {},
 * });
 * const connection = client({ name: "tether" }).connect(agent.stream);
 * ```
 */
export function startAcpProcess(
  command: readonly string[],
  options: AcpProcessOptions,
): AcpProcess {
  const { onLine, onMessage, maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES } = options;
  let messages!: ReadableStreamDefaultController<Uint8Array>;
  const fromAgent = new ReadableStream<Uint8Array>({ start: (c) => void (messages = c) });
  const process = startAgent(command, {
    stdin: "piped",
    maxLineBytes: () => maxMessageBytes,
    onLine: (line, stream) => {
      if (stream === "stdout" && !line.cut && isJsonRpcLine(line.text)) {
        toSdk(() => messages.enqueue(encoder.encode(line.text + "\n")));
      } else {
        onLine(line, stream);
      }
    },
  });
  process.exited.then(() => toSdk(() => messages.close()));

  const stdin = process.stdin!.getWriter();
  // Writes fail once the agent is gone; the SDK then fails the request that wrote them.
  const toAgent = new WritableStream<Uint8Array>({ write: (chunk) => stdin.write(chunk) });
  // Room for the newline: a line the splitter kept whole always fits the SDK's limit.
  const raw = ndJsonStream(toAgent, fromAgent, { maxMessageBytes: maxMessageBytes + 1 });
  const observed = new TransformStream<AnyMessage, AnyMessage>({
    transform(message, controller) {
      onMessage(message);
      controller.enqueue(message);
    },
  });
  return {
    process,
    stream: { writable: raw.writable, readable: raw.readable.pipeThrough(observed) },
    closeInput: () => stdin.close().catch(() => {}),
  };
}
