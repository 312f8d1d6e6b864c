/**
 * The wrapper as the ACP client of its agent (PROTOCOL.md section 14), on the official SDK
 * (`@agentclientprotocol/sdk`, its stable ACP v1 entry point): it starts the agent, sends
 * `initialize` (no file system, no terminal) and `session/new` (the working directory, no MCP
 * servers), runs the prompts it takes from inputs one turn at a time in `inputId` order,
 * turns `session/update`s into `acp` frames and each turn's end into `acp_turn`, asks the
 * user about `session/request_permission` with `permission_request` frames and gives the
 * answers at once, and ends the agent after `endOfInput` or on `kill`.
 *
 * It knows nothing of the connection: frames go out and inputs are confirmed through an
 * {@link AcpHost}; the run around it (`run.ts`) decides the terminal frame, asking
 * {@link AcpClient.endFrame} first.
 *
 * @module
 */
import {
  type AnyMessage,
  client,
  type ClientConnection,
  type ContentBlock,
  methods,
  PROTOCOL_VERSION,
  type RequestPermissionOutcome,
  type RequestPermissionRequest,
  type RequestPermissionResponse,
} from "@agentclientprotocol/sdk";
import type { AgentExit } from "./agent.ts";
import {
  acpInputIgnoredFrame,
  acpTurnFrame,
  acpUpdateFrame,
  agentProtocolErrorFrame,
  permissionRequestFrame,
  type TurnEnd,
} from "./acp_frames.ts";
import { type AcpInputAction, classifyAcpInput } from "./acp_input.ts";
import { type AcpProcess, startAcpProcess } from "./acp_transport.ts";
import { completeFrame, outputFrame } from "./frames.ts";
import type { OutgoingFrame } from "./outbox.ts";

/** What the ACP client needs from the run around it. */
export interface AcpHost {
  /** Queues a stored frame (the connection's `send`). */
  send(frame: OutgoingFrame): void;
  /** Confirms inputs up to `inputId` with the stored `input_delivered` frame. */
  confirm(inputId: number): void;
  /** The frame limit in force. */
  maxFrameBytes(): number;
  /** A progress message for the wrapper's log. */
  log(message: string): void;
  /**
   * Called when the agent starts or stops waiting for the user: between turns with no prompt
   * queued, or while a permission request is open. The run's idle watch stops counting then.
   */
  waitingForUser?(waiting: boolean): void;
}

/** One input, taken once and in `inputId` order (PROTOCOL.md section 12). */
export interface AcpInput {
  /** 1, 2, 3… per execution. */
  inputId: number;
  /** A prompt (a string or `{prompt: [ContentBlock…]}`) or a permission answer; else ignored. */
  data?: unknown;
  /** No prompt follows: once every turn has ended the agent's stdin is closed. */
  endOfInput?: boolean;
}

/** Options of {@link AcpClient}. */
export interface AcpClientOptions {
  /** The ACP agent command and its arguments. */
  command: readonly string[];
  /** Where frames and confirmations go. */
  host: AcpHost;
  /** How long the agent has to end a cancelled turn, or to exit, before it is signalled. */
  killGraceMs: number;
  /** `cwd` of `session/new`. Default: the wrapper's working directory. */
  cwd?: string;
  /** Longest JSON-RPC message read from the agent. Default 16 MiB. */
  maxMessageBytes?: number;
}

type Phase = "idle" | "starting" | "ready" | "ending" | "stopping" | "failed";

interface QueuedPrompt {
  inputId: number;
  prompt: ContentBlock[];
}

interface OpenPermission {
  optionIds: ReadonlySet<string>;
  answer: (outcome: RequestPermissionOutcome) => void;
}

const CANCELLED: RequestPermissionOutcome = { outcome: "cancelled" };

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * One ACP agent run. Create it when the run starts (inputs may be taken before the agent
 * is), call {@link AcpClient.start} after the first `hello`, feed it every input once with
 * {@link AcpClient.take}, and stop it with {@link AcpClient.stop}.
 *
 * @example
 * ```ts
 * const acp = new AcpClient({
 *   command: ["gemini", "--experimental-acp"],
 *   killGraceMs: 5000,
 *   host: {
 *     send: (frame) => conn.send(frame),
 *     confirm: (inputId) => gate.confirm(inputId),
 *     maxFrameBytes: () => conn.maxFrameBytes,
 *     log: console.error,
 *   },
 * });
 * acp.take({ inputId: 1, data: "Fix the failing test", endOfInput: true });
 * acp.start();
 * const exit = await acp.exited;
 * const frame = acp.endFrame(exit); // complete {exitCode: 0} once the turn has ended
 * ```
 */
export class AcpClient {
  readonly #options: AcpClientOptions;
  readonly #host: AcpHost;
  readonly #exited = Promise.withResolvers<AgentExit>();
  readonly #prompts: QueuedPrompt[] = [];
  readonly #permissions = new Map<number, OpenPermission>();
  #phase: Phase = "idle";
  #process: AcpProcess | undefined;
  #connection: ClientConnection | undefined;
  #handshake: Promise<void> | undefined;
  #sessionId: string | undefined;
  #turn: Promise<void> | undefined;
  #endInputId: number | undefined;
  #lastRequestId = 0;
  #processExited = false;
  #stoppedByWrapper = false;
  #failure: string | undefined;
  #waitingForUser = false;
  /** The last input taken before the agent started: confirmed once it has started. */
  #takenBeforeStart: number | undefined;

  /** Starts nothing: the agent is started by {@link AcpClient.start}. */
  constructor(options: AcpClientOptions) {
    this.#options = options;
    this.#host = options.host;
  }

  /** Resolves once the agent has exited and everything it said has been handed over. */
  get exited(): Promise<AgentExit> {
    return this.#exited.promise;
  }

  /**
   * Starts the agent and its handshake; returns this client, which stops and awaits the
   * agent like a plain agent process. Throws when the command cannot be started.
   */
  start(): this {
    if (this.#phase !== "idle") return this;
    const host = this.#host;
    const process = startAcpProcess(this.#options.command, {
      onLine: (line, stream) => host.send(outputFrame(line, stream, host.maxFrameBytes())),
      onMessage: (message) => this.#observe(message),
      maxMessageBytes: this.#options.maxMessageBytes,
    });
    process.process.exited.then(() => this.#processExited = true);
    this.#process = process;
    this.#phase = "starting";
    if (this.#takenBeforeStart !== undefined) host.confirm(this.#takenBeforeStart);
    this.#connection = client({ name: "tether-wrapper" })
      .onRequest(
        methods.client.session.requestPermission,
        ({ params, signal }) => this.#askPermission(params, signal),
      )
      .connect(process.stream);
    this.#handshake = this.#startSession(this.#connection);
    this.#connection.closed.then(() => this.#connectionClosed());
    this.#finish(process, this.#connection).then(this.#exited.resolve);
    return this;
  }

  /**
   * Takes one input (each once, in `inputId` order): a prompt is queued for its turn, a
   * permission answer is given at once, anything else is reported as `acp_input_ignored`;
   * each is confirmed at once (once the agent has started), except an `endOfInput`,
   * confirmed when the agent's stdin is closed after the last turn. Inputs that arrive while
   * the run is being stopped, or before an agent that never starts, are left undelivered.
   */
  take(input: AcpInput): void {
    if (this.#phase === "stopping" || this.#phase === "failed") return;
    const action = classifyAcpInput(input.data);
    switch (action.kind) {
      case "prompt":
        this.#prompts.push({ inputId: input.inputId, prompt: action.prompt });
        break;
      case "permission":
        this.#answer(input, action);
        break;
      case "ignored":
        this.#host.send(
          acpInputIgnoredFrame(input.inputId, input.data, action.reason, this.#maxFrameBytes),
        );
        break;
    }
    if (input.endOfInput) {
      this.#endInputId = input.inputId;
      // Requests still open can no longer be answered either.
      this.#cancelPermissions();
    } else if (this.#phase === "idle") this.#takenBeforeStart = input.inputId;
    else this.#host.confirm(input.inputId);
    this.#pump();
  }

  /**
   * Stops the agent (a `kill`, a signal to the wrapper, the idle timeout): cancels the
   * running turn with `session/cancel`, answers open permission requests `cancelled`, and
   * once the turn has ended (or after `graceMs`) closes its stdin and sends SIGTERM, then
   * SIGKILL after `graceMs`. `signal: "SIGKILL"` kills at once.
   */
  stop(options: { signal?: "SIGTERM" | "SIGKILL"; graceMs: number }): void {
    const { signal = "SIGTERM", graceMs } = options;
    if (signal === "SIGKILL") this.#process?.process.stop({ signal, graceMs });
    if (this.#phase === "stopping") return;
    const turn = this.#turn;
    this.#phase = "stopping";
    this.#checkWaiting();
    this.#prompts.length = 0;
    this.#cancelPermissions();
    if (turn && this.#sessionId !== undefined) {
      this.#host.log("cancelling the running turn");
      this.#connection?.agent.notify(methods.agent.session.cancel, { sessionId: this.#sessionId })
        .catch(() => {});
      void withTimeout(turn, graceMs).then(() => this.#terminate(graceMs));
    } else {
      this.#terminate(graceMs);
    }
  }

  /**
   * The terminal frame this run ends with when the ACP session decides it, else
   * `undefined` (then the agent's exit decides, as for any agent): the fatal
   * `AGENT_PROTOCOL_ERROR` after a failed handshake, or `complete` with the agent's exit
   * code after `endOfInput` (0 when the wrapper had to stop it).
   */
  endFrame(exit: AgentExit): OutgoingFrame | undefined {
    if (this.#failure !== undefined) {
      return agentProtocolErrorFrame(this.#failure, this.#maxFrameBytes);
    }
    if (this.#phase === "ending") return completeFrame(this.#stoppedByWrapper ? 0 : exit.code);
    return undefined;
  }

  /** True between turns with no prompt queued, and while a permission request is open. */
  get waitingForUser(): boolean {
    return this.#waitingForUser;
  }

  /** Tells the host when {@link AcpClient.waitingForUser} changes. */
  #checkWaiting(): void {
    const waiting = this.#phase === "ready" && (!this.#turn || this.#permissions.size > 0);
    if (waiting === this.#waitingForUser) return;
    this.#waitingForUser = waiting;
    this.#host.waitingForUser?.(waiting);
  }

  get #maxFrameBytes(): number {
    return this.#host.maxFrameBytes();
  }

  /** Every `session/update` becomes one `acp` frame, in the order the agent sent them. */
  #observe(message: AnyMessage): void {
    if (!("method" in message) || "id" in message) return;
    if (message.method !== methods.client.session.update) return;
    const params = message.params as { update?: unknown } | undefined;
    if (params?.update === undefined) return;
    this.#host.send(acpUpdateFrame(params.update, this.#maxFrameBytes));
  }

  async #startSession(connection: ClientConnection): Promise<void> {
    let step = "initialize";
    try {
      const init = await connection.agent.request(methods.agent.initialize, {
        protocolVersion: PROTOCOL_VERSION,
        clientCapabilities: { fs: { readTextFile: false, writeTextFile: false }, terminal: false },
      });
      if (init.protocolVersion !== PROTOCOL_VERSION) {
        throw new Error(
          `the agent speaks ACP version ${init.protocolVersion}, not ${PROTOCOL_VERSION}`,
        );
      }
      step = "session/new";
      const session = await connection.agent.request(methods.agent.session.new, {
        cwd: this.#options.cwd ?? Deno.cwd(),
        mcpServers: [],
      });
      this.#sessionId = session.sessionId;
    } catch (error) {
      return this.#fail(step, error);
    }
    if (this.#phase !== "starting") return;
    this.#host.log(`ACP session ${this.#sessionId} started`);
    this.#phase = "ready";
    this.#pump();
  }

  /** The SDK closed the connection while the agent runs: it broke the protocol. */
  #connectionClosed(): void {
    if (this.#processExited || this.#phase !== "ready") return;
    const reason = this.#connection?.signal.reason;
    this.#fail("the ACP connection", reason, `the ACP connection broke: ${errorText(reason)}`);
  }

  #fail(step: string, error: unknown, message = `${step} failed: ${errorText(error)}`): void {
    if (this.#phase === "stopping" || this.#phase === "failed") return;
    this.#failure = this.#processExited ? `agent exited before answering ${step}` : message;
    this.#host.log(this.#failure);
    this.#phase = "failed";
    this.#checkWaiting();
    this.#terminate(this.#options.killGraceMs);
  }

  /** Starts the next turn, or ends the input after the last one. */
  #pump(): void {
    if (this.#phase === "ready" && !this.#turn) {
      const next = this.#prompts.shift();
      if (next) {
        this.#turn = this.#runTurn(next).finally(() => {
          this.#turn = undefined;
          this.#pump();
        });
      } else if (this.#endInputId !== undefined && !this.#agentGone) {
        // An agent that is gone already ends the run by its own exit (section 9.2).
        void this.#endInput(this.#endInputId);
      }
    }
    this.#checkWaiting();
  }

  /** The agent exited, or its ACP connection closed. */
  get #agentGone(): boolean {
    return this.#processExited || this.#connection?.signal.aborted === true;
  }

  async #runTurn({ inputId, prompt }: QueuedPrompt): Promise<void> {
    let end: TurnEnd;
    try {
      const response = await this.#connection!.agent.request(methods.agent.session.prompt, {
        sessionId: this.#sessionId!,
        prompt,
      });
      end = { stopReason: response.stopReason };
    } catch (error) {
      // An agent that is gone ends the run by its exit; no turn end to report.
      if (this.#agentGone) return;
      end = { stopReason: "error", error: errorText(error) };
    }
    this.#host.send(acpTurnFrame(inputId, end, this.#maxFrameBytes));
  }

  /** After `endOfInput` and the last turn: close stdin, give the agent time to exit. */
  async #endInput(inputId: number): Promise<void> {
    this.#phase = "ending";
    this.#checkWaiting();
    await this.#process!.closeInput();
    this.#host.confirm(inputId);
    const exitedInTime = await withTimeout(
      this.#process!.process.exited,
      this.#options.killGraceMs,
    );
    if (!exitedInTime && this.#phase === "ending") {
      this.#stoppedByWrapper = true;
      this.#process!.process.stop({ graceMs: this.#options.killGraceMs });
    }
  }

  async #askPermission(
    params: RequestPermissionRequest,
    signal: AbortSignal,
  ): Promise<RequestPermissionResponse> {
    if (this.#phase === "stopping" || this.#phase === "failed") return { outcome: CANCELLED };
    // After `endOfInput` no answer can come (section 12 refuses later inputs): it is cancelled.
    if (this.#endInputId !== undefined) return { outcome: CANCELLED };
    const requestId = ++this.#lastRequestId;
    const answered = Promise.withResolvers<RequestPermissionOutcome>();
    this.#permissions.set(requestId, {
      optionIds: new Set(params.options.map((option) => option.optionId)),
      answer: answered.resolve,
    });
    // The agent withdrew the request, or the connection closed.
    signal.addEventListener("abort", () => {
      if (this.#permissions.delete(requestId)) answered.resolve(CANCELLED);
    }, { once: true });
    this.#host.send(
      permissionRequestFrame(requestId, params.toolCall, params.options, this.#maxFrameBytes),
    );
    this.#checkWaiting();
    const outcome = await answered.promise;
    this.#checkWaiting();
    return { outcome };
  }

  /** Gives an answer to its open request; an answer naming no open request is ignored. */
  #answer(input: AcpInput, action: Extract<AcpInputAction, { kind: "permission" }>): void {
    const open = this.#permissions.get(action.requestId);
    if (!open) return;
    const { outcome } = action;
    if (outcome.outcome === "selected" && !open.optionIds.has(outcome.optionId)) {
      const reason = `permission request ${action.requestId} has no option "${outcome.optionId}"`;
      this.#host.send(acpInputIgnoredFrame(input.inputId, input.data, reason, this.#maxFrameBytes));
      return;
    }
    this.#permissions.delete(action.requestId);
    open.answer(outcome);
  }

  #cancelPermissions(): void {
    for (const open of this.#permissions.values()) open.answer(CANCELLED);
    this.#permissions.clear();
  }

  /** Closes the agent's stdin and signals it: SIGTERM now, SIGKILL after `graceMs`. */
  #terminate(graceMs: number): void {
    void this.#process?.closeInput();
    this.#process?.process.stop({ graceMs });
  }

  /** Waits for the exit, for the SDK to read the agent's last messages, and for the turn. */
  async #finish(process: AcpProcess, connection: ClientConnection): Promise<AgentExit> {
    const exit = await process.process.exited;
    await connection.closed;
    await this.#handshake;
    await this.#turn;
    this.#cancelPermissions();
    return exit;
  }
}

/** True when `promise` settled within `ms`, false when the time ran out first. */
async function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
