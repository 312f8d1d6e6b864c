/**
 * A scripted ACP agent (PROTOCOL.md section 14), built on the agent side of the official SDK,
 * for the demo and the tests. Each prompt is one turn: it streams its answer as message
 * chunks (and a thought and a plan); when the prompt's text contains the word `edit`, it also
 * makes a tool call that edits `notes.md` in the session's `cwd`, asks for permission first,
 * waits for the answer as long as it takes, and reports the edit as a diff (or the refusal).
 * `session/cancel` ends the running turn with `cancelled`; a prompt with the word `fail` is
 * answered with an error, and one with the word `crash` makes the agent exit with code 5 in
 * the middle of its turn.
 *
 * ```sh
 * deno run -A demo/acp_agent.ts [--chunks 3] [--delay-ms 0] [--log <file>] [--file <path>] [--noise]
 *   [--ignore-cancel] [--fail-initialize] [--exit-at-once]
 * ```
 *
 * - `--chunks <n>`: message chunks per turn (default 3); `--delay-ms <n>`: pause between
 *   updates (default 0).
 * - `--log <file>`: appends one JSON line per thing the agent saw or did (`initialize`,
 *   `session/new`, `prompt`, `permission`, `cancel`, `SIGTERM`, and every `update` it sent),
 *   so a test can prove what reached it, how often, and what it said.
 * - `--file <path>`: the file the tool call edits, instead of `notes.md` in the session's `cwd`.
 * - `--noise`: prints a line that is not JSON-RPC on stdout and one on stderr at start.
 * - `--ignore-cancel`: a cancelled turn goes on forever (SIGTERM still ends the process).
 * - `--fail-initialize`: answers `initialize` with an error; `--exit-at-once`: exits 0
 *   before reading anything.
 *
 * @module
 */
import {
  agent,
  type AgentContext,
  type ContentBlock,
  methods,
  ndJsonStream,
  PROTOCOL_VERSION,
  RequestError,
  type SessionUpdate,
  type StopReason,
} from "@agentclientprotocol/sdk";

/** The file the agent edits, relative to the session's `cwd`. */
export const EDITED_FILE = "notes.md";

/**
 * The command line that runs this agent with the project's config and `flags`.
 *
 * @example
 * ```ts
 * const command = acpAgentCommand("--chunks", "6"); // [deno, "run", "-A", …, "--chunks", "6"]
 * ```
 */
export function acpAgentCommand(...flags: string[]): string[] {
  const config = new URL("../deno.json", import.meta.url).pathname;
  const agent = new URL(import.meta.url).pathname;
  return [Deno.execPath(), "run", "-A", "--config", config, agent, ...flags];
}

interface Flags {
  chunks: number;
  delayMs: number;
  log: string | undefined;
  file: string | undefined;
  noise: boolean;
  ignoreCancel: boolean;
  failInitialize: boolean;
  exitAtOnce: boolean;
}

function parseFlags(args: string[]): Flags {
  const value = (name: string) => {
    const i = args.indexOf(name);
    return i < 0 ? undefined : args[i + 1];
  };
  const count = (name: string, fallback: number) => {
    const n = Number(value(name) ?? fallback);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${name} takes a whole number`);
    return n;
  };
  return {
    chunks: count("--chunks", 3),
    delayMs: count("--delay-ms", 0),
    log: value("--log"),
    file: value("--file"),
    noise: args.includes("--noise"),
    ignoreCancel: args.includes("--ignore-cancel"),
    failInitialize: args.includes("--fail-initialize"),
    exitAtOnce: args.includes("--exit-at-once"),
  };
}

/** One session's state: where it works, and the turn that runs now. */
interface Session {
  cwd: string;
  turn: AbortController | undefined;
}

class ScriptedAgent {
  readonly #flags: Flags;
  readonly #sessions = new Map<string, Session>();
  #turns = 0;

  constructor(flags: Flags) {
    this.#flags = flags;
  }

  record(event: string, detail: Record<string, unknown> = {}): void {
    if (!this.#flags.log) return;
    Deno.writeTextFileSync(this.#flags.log, JSON.stringify({ event, ...detail }) + "\n", {
      append: true,
    });
  }

  newSession(cwd: string): string {
    const sessionId = `fake-${crypto.randomUUID()}`;
    this.#sessions.set(sessionId, { cwd, turn: undefined });
    return sessionId;
  }

  cancel(sessionId: string): void {
    this.record("cancel", { sessionId });
    if (!this.#flags.ignoreCancel) this.#sessions.get(sessionId)?.turn?.abort();
  }

  async prompt(
    client: AgentContext,
    sessionId: string,
    prompt: ContentBlock[],
  ): Promise<StopReason> {
    const session = this.#sessions.get(sessionId);
    if (!session) throw RequestError.invalidParams({ sessionId }, "unknown session");
    const text = prompt.map((block) => block.type === "text" ? block.text : `[${block.type}]`)
      .join(" ");
    const number = ++this.#turns;
    this.record("prompt", { text, turn: number });
    if (/\bfail\b/i.test(text)) throw RequestError.internalError(undefined, "asked to fail");
    if (/\bcrash\b/i.test(text)) Deno.exit(5);
    const turn = new AbortController();
    session.turn = turn;
    try {
      const say = (update: SessionUpdate) => this.#say(client, sessionId, turn.signal, update);
      await this.#answer(say, text, number);
      if (/\bedit\b/i.test(text)) {
        const edited = await this.#edit(client, sessionId, session.cwd, say, turn.signal);
        if (!edited) return "cancelled";
      }
      await say(chunk(`Turn ${number} is done.`));
      return "end_turn";
    } catch (error) {
      if (turn.signal.aborted) return "cancelled";
      throw error;
    } finally {
      session.turn = undefined;
    }
  }

  async #answer(say: Say, text: string, turn: number): Promise<void> {
    await say({ sessionUpdate: "agent_thought_chunk", content: { type: "text", text: "Reading" } });
    await say({
      sessionUpdate: "plan",
      entries: [
        { content: `Understand "${text.slice(0, 40)}"`, priority: "high", status: "completed" },
        { content: "Make the change", priority: "medium", status: "pending" },
      ],
    });
    for (let i = 1; i <= this.#flags.chunks; i++) {
      await say(chunk(`[turn ${turn} chunk ${i}/${this.#flags.chunks}] `));
    }
  }

  /** The tool call: ask, then edit (true), refuse (true) or give up on a cancel (false). */
  async #edit(
    client: AgentContext,
    sessionId: string,
    cwd: string,
    say: Say,
    signal: AbortSignal,
  ): Promise<boolean> {
    const toolCallId = `edit-${this.#turns}`;
    const path = this.#flags.file ?? `${cwd}/${EDITED_FILE}`;
    const title = `Append a line to ${EDITED_FILE}`;
    await say({ sessionUpdate: "tool_call", toolCallId, title, kind: "edit", status: "pending" });
    const { outcome } = await client.request(methods.client.session.requestPermission, {
      sessionId,
      toolCall: { toolCallId, title, kind: "edit", locations: [{ path }] },
      options: [
        { optionId: "allow", name: "Allow", kind: "allow_once" },
        { optionId: "reject", name: "Reject", kind: "reject_once" },
      ],
    });
    this.record("permission", { toolCallId, outcome });
    if (outcome.outcome === "cancelled" || signal.aborted) {
      // Honoured unless told to ignore the cancel: then it works on, forever.
      if (this.#flags.ignoreCancel) await new Promise(() => setInterval(() => {}, 60_000));
      return false;
    }
    if (outcome.optionId !== "allow") {
      await say({ sessionUpdate: "tool_call_update", toolCallId, status: "failed" });
      return true;
    }
    const oldText = await Deno.readTextFile(path).catch(() => null);
    const newText = `${oldText ?? ""}Edited in turn ${this.#turns}.\n`;
    await Deno.writeTextFile(path, newText);
    await say({
      sessionUpdate: "tool_call_update",
      toolCallId,
      status: "completed",
      locations: [{ path }],
      content: [{ type: "diff", path, oldText, newText }],
    });
    return true;
  }

  async #say(
    client: AgentContext,
    sessionId: string,
    signal: AbortSignal,
    update: SessionUpdate,
  ): Promise<void> {
    signal.throwIfAborted();
    if (this.#flags.delayMs > 0) await new Promise((r) => setTimeout(r, this.#flags.delayMs));
    signal.throwIfAborted();
    await client.notify(methods.client.session.update, { sessionId, update });
    this.record("update", { update });
  }
}

type Say = (update: SessionUpdate) => Promise<void>;

function chunk(text: string): SessionUpdate {
  return { sessionUpdate: "agent_message_chunk", content: { type: "text", text } };
}

function serve(flags: Flags): Promise<void> {
  const scripted = new ScriptedAgent(flags);
  const connection = agent({ name: "tether-fake-acp-agent" })
    .onRequest(methods.agent.initialize, ({ params }) => {
      scripted.record("initialize", { clientCapabilities: params.clientCapabilities });
      if (flags.failInitialize) throw RequestError.internalError(undefined, "refusing to start");
      return {
        protocolVersion: PROTOCOL_VERSION,
        agentCapabilities: { loadSession: false },
        agentInfo: { name: "tether-fake-acp-agent", version: "1.0.0" },
      };
    })
    .onRequest(methods.agent.session.new, ({ params }) => {
      scripted.record("session/new", { cwd: params.cwd, mcpServers: params.mcpServers });
      return { sessionId: scripted.newSession(params.cwd) };
    })
    .onRequest(methods.agent.session.prompt, async ({ params, client }) => ({
      stopReason: await scripted.prompt(client, params.sessionId, params.prompt),
    }))
    .onNotification(methods.agent.session.cancel, ({ params }) => scripted.cancel(params.sessionId))
    .connect(ndJsonStream(Deno.stdout.writable, Deno.stdin.readable));
  Deno.addSignalListener("SIGTERM", () => {
    scripted.record("SIGTERM");
    Deno.exit(143);
  });
  if (flags.noise) {
    console.log("fake ACP agent: not a JSON-RPC line");
    console.error("fake ACP agent: starting");
  }
  return connection.closed;
}

if (import.meta.main) {
  const flags = parseFlags(Deno.args);
  if (flags.exitAtOnce) Deno.exit(0);
  await serve(flags);
}
