/**
 * One supervised agent run (PROTOCOL.md section 9): connect, start the agent (and the
 * `--sse` reader) after the first `hello`, forward its output, turn its ending, a `kill`,
 * the idle timeout or a signal into the one terminal frame, and map the outcome to the
 * wrapper's exit code.
 *
 * @module
 */
import { CloseCode, ErrorText, type KillFrame, type TerminalStatus } from "../src/protocol.ts";
import { terminalStatusOfFrame } from "../src/frames.ts";
import { delay } from "../src/async.ts";
import { AcpClient } from "./acp.ts";
import { type Agent, type AgentExit, startAgent } from "./agent.ts";
import {
  agentExitFrame,
  completeFrame,
  idleTimeoutFrame,
  interruptedFrame,
  kilocodeFrame,
  lineFrame,
  startFailedFrame,
} from "./frames.ts";
import { IdleWatch } from "./idle.ts";
import { InputGate } from "./input.ts";
import {
  IngestConnection,
  type IngestConnectionOptions,
  type IngestEnd,
  type IngestEvent,
  type OutgoingFrame,
} from "./mod.ts";
import type { WrapperOptions } from "./options.ts";
import { followSse } from "./sse.ts";
import { StdinWriter } from "./stdin.ts";

/** The signals the wrapper handles. */
export type WrapperSignal = "SIGINT" | "SIGTERM";

/** How long the first `hello` waits for a pending `kill` before the agent starts (ms). */
const KILL_AFTER_HELLO_WAIT_MS = 50;

/** Exit codes of PROTOCOL.md 9.2. */
export const ExitCode = {
  completed: 0,
  failed: 1,
  gaveUp: 2,
  replaced: 3,
  refused: 4,
  usage: 64,
  interrupted: 130,
} as const;

/** What a run needs from its surroundings; every field has a default for the real CLI. */
export interface RunEnvironment {
  /** Where progress messages go. Default: one line on stderr each. */
  log?: (message: string) => void;
  /** Subscribes to SIGINT/SIGTERM; returns the unsubscribe. Default: `Deno.addSignalListener`. */
  onSignal?: (listener: (signal: WrapperSignal) => void) => () => void;
  /** After a signal, how long the `interrupted` frame may wait for its ack. Default 5000. */
  signalAckTimeoutMs?: number;
  /** Overrides of the connection (a fixed `wrapperId`, injected randomness or delays). */
  connection?: Partial<IngestConnectionOptions>;
}

/** Why the wrapper stops the agent before it exits by itself. */
type StopCause =
  | { kind: "kill"; reason: string | undefined }
  | { kind: "signal"; signal: WrapperSignal }
  | { kind: "idle" }
  | { kind: "done" };

const STATUS_EXIT: Record<TerminalStatus, number> = {
  completed: ExitCode.completed,
  failed: ExitCode.failed,
  interrupted: ExitCode.interrupted,
};

/**
 * The wrapper's exit code for how its connection ended: a 4000 reason wins, then a signal
 * (130), then the run's own terminal frame.
 *
 * @example
 * ```ts
 * exitCodeFor({ kind: "done", status: "completed", reason: "execution completed" }); // 0
 * exitCodeFor({ kind: "gave_up", failedDials: 10 }); // 2
 * ```
 */
export function exitCodeFor(
  end: IngestEnd,
  options: { own?: TerminalStatus; signalled?: boolean } = {},
): number {
  if (end.kind === "done" && end.status) return STATUS_EXIT[end.status];
  if (options.signalled) return ExitCode.interrupted;
  switch (end.kind) {
    case "done":
      return STATUS_EXIT[options.own ?? "failed"];
    case "acknowledged":
    case "unacknowledged":
      return STATUS_EXIT[end.status];
    case "replaced":
      return ExitCode.replaced;
    case "refused":
      return ExitCode.refused;
    case "gave_up":
      return ExitCode.gaveUp;
    case "closed":
      return ExitCode.interrupted;
  }
}

/**
 * Runs the agent described by `options` against its execution's ingest endpoint and
 * resolves with the wrapper's exit code.
 *
 * @example
 * ```ts
 * const code = await runWrapper({ ...options, command: ["claude", "-p", "fix the tests"] });
 * Deno.exit(code);
 * ```
 */
export function runWrapper(
  options: WrapperOptions,
  environment: RunEnvironment = {},
): Promise<number> {
  return new Run(options, environment).run();
}

class Run {
  readonly #options: WrapperOptions;
  readonly #log: (message: string) => void;
  readonly #onSignal: NonNullable<RunEnvironment["onSignal"]>;
  readonly #signalAckTimeoutMs: number;
  readonly #conn: IngestConnection;
  readonly #idle: IdleWatch;
  /**
   * With `--input` other than `none`: orders inputs and writes them to the agent's stdin;
   * with `--acp`: orders inputs for the ACP client (no writer).
   */
  readonly #input: { gate: InputGate; writer?: StdinWriter } | undefined;
  /** With `--acp`: the wrapper as the agent's ACP client (PROTOCOL.md 14). */
  readonly #acp: AcpClient | undefined;
  readonly #sseReader = new AbortController();
  readonly #firstHello = Promise.withResolvers<void>();
  /** Resolves when a stop cause arrives while no agent process has to be waited for. */
  readonly #stopWithoutAgent = Promise.withResolvers<void>();
  #helloSeen = false;
  #agent: Pick<Agent, "exited" | "stop"> | undefined;
  #startError: string | undefined;
  #stopCause: StopCause | undefined;
  #signal: WrapperSignal | undefined;
  #terminalQueued = false;

  constructor(options: WrapperOptions, environment: RunEnvironment) {
    this.#options = options;
    this.#log = environment.log ?? ((message) => console.error(`tether-wrapper: ${message}`));
    this.#onSignal = environment.onSignal ?? listenToSignals;
    this.#signalAckTimeoutMs = environment.signalAckTimeoutMs ?? 5000;
    this.#idle = new IdleWatch(options.idleTimeoutMs, () => this.#stop({ kind: "idle" }));
    this.#conn = new IngestConnection({
      url: options.ingestUrl,
      token: options.token,
      heartbeatMs: options.heartbeatMs,
      silenceTimeoutMs: options.silenceTimeoutMs,
      reconnectBaseMs: options.reconnectBaseMs,
      reconnectMaxMs: options.reconnectMaxMs,
      reconnectAttempts: options.reconnectAttempts,
      connectTimeoutMs: options.connectTimeoutMs,
      bufferLimit: options.bufferLimit,
      bufferBytes: options.bufferBytes,
      maxFrameBytes: options.maxFrameBytes,
      ...environment.connection,
      onEvent: (event) => this.#onConnectionEvent(event),
    });
    this.#acp = options.acp ? this.#acpClient() : undefined;
    this.#input = this.#inputChannel();
  }

  #acpClient(): AcpClient {
    return new AcpClient({
      command: this.#options.command,
      killGraceMs: this.#options.killGraceMs,
      host: {
        send: (frame) => this.#forward(frame),
        confirm: (inputId) => this.#input?.gate.confirm(inputId),
        maxFrameBytes: () => this.#conn.maxFrameBytes,
        log: this.#log,
        // Waiting for a prompt or an answer is not an idle agent.
        waitingForUser: (waiting) => {
          if (waiting) this.#idle.pause();
          else if (this.#conn.state === "open" && !this.#stopCause) this.#idle.restart();
        },
      },
    });
  }

  /**
   * The input channel: with `--acp` a gate for the ACP client; with `--input none` none (stdin
   * closed, inputs neither written nor confirmed); else a gate and the stdin writer.
   */
  #inputChannel(): { gate: InputGate; writer?: StdinWriter } | undefined {
    const send = (frame: OutgoingFrame) => this.#conn.send(frame);
    const acp = this.#acp;
    if (acp) return { gate: new InputGate({ send, onInput: (input) => acp.take(input) }) };
    const mode = this.#options.input;
    if (mode === "none") return undefined;
    const writer = new StdinWriter({
      mode,
      onWritten: (inputId) => gate.confirm(inputId),
      onBroken: (message) => this.#log(`agent stdin closed, inputs no longer written: ${message}`),
    });
    const gate = new InputGate({ send, onInput: (input) => writer.push(input) });
    return { gate, writer };
  }

  async run(): Promise<number> {
    const unsubscribe = this.#onSignal((signal) => this.#onProcessSignal(signal));
    try {
      return await this.#main();
    } finally {
      unsubscribe();
      this.#idle.pause();
      this.#sseReader.abort();
    }
  }

  async #main(): Promise<number> {
    this.#conn.connect();
    const early = await Promise.race([this.#firstHello.promise, this.#conn.closed]);
    // Ended before any hello (4000, 4401/4403, gave up, or a signal): the agent never starts.
    if (early) return exitCodeFor(early, { signalled: this.#signal !== undefined });
    // The service sends a pending kill right after hello, as a second message: a zero-delay
    // timer can run between the two, so wait a short window for it before starting.
    await delay(KILL_AFTER_HELLO_WAIT_MS);
    if (!this.#stopCause) this.#start();

    const ended = await Promise.race([
      this.#agent?.exited ?? this.#stopWithoutAgent.promise,
      this.#conn.closed,
    ]);
    this.#sseReader.abort();
    if (ended && "kind" in ended) {
      // 4000, 4001, 4401/4403 or giving up while the agent runs: stop it, exit by the end.
      await this.#stopAgent();
      return exitCodeFor(ended, { signalled: this.#signal !== undefined });
    }
    const frame = this.#terminalFrame(ended);
    this.#terminalQueued = true;
    this.#log(`run ended: ${frame.streamEventType} ${JSON.stringify(frame.data)}`);
    const end = await this.#conn.finish(frame, {
      ackTimeoutMs: this.#signal ? this.#signalAckTimeoutMs : undefined,
    });
    return exitCodeFor(end, {
      own: terminalStatusOfFrame(frame),
      signalled: this.#signal !== undefined,
    });
  }

  #start(): void {
    const { command, sse, killGraceMs } = this.#options;
    if (command.length > 0) {
      try {
        this.#agent = this.#acp?.start() ?? this.#startAgent(command);
        this.#log(`agent started: ${command.join(" ")} (kill grace ${killGraceMs} ms)`);
      } catch (error) {
        this.#startError = error instanceof Error ? error.message : String(error);
        this.#stopWithoutAgent.resolve();
        return;
      }
    }
    if (sse) this.#readSse(sse);
    if (this.#conn.state === "open") this.#idle.restart();
  }

  #startAgent(command: string[]): Agent {
    const agent = startAgent(command, {
      onLine: (line, stream) => this.#forward(lineFrame(line, stream, this.#conn.maxFrameBytes)),
      maxLineBytes: () => this.#conn.maxFrameBytes,
      stdin: this.#input ? "piped" : "null",
    });
    if (agent.stdin) this.#input?.writer?.attach(agent.stdin);
    return agent;
  }

  #readSse(url: string): void {
    followSse(url, {
      signal: this.#sseReader.signal,
      reconnectBaseMs: this.#options.reconnectBaseMs,
      reconnectMaxMs: this.#options.reconnectMaxMs,
      onDrop: (message) => this.#log(`SSE stream dropped (${message}), re-opening`),
      onEvent: (event) => {
        const { name, frame } = kilocodeFrame(event, this.#conn.maxFrameBytes);
        if (frame) this.#forward(frame);
        if (name === this.#options.doneEvent) this.#stop({ kind: "done" });
      },
    });
  }

  #forward(frame: OutgoingFrame): void {
    this.#conn.send(frame);
    this.#idle.touch();
  }

  /** Records the first reason to stop and stops the agent; a SIGKILL kill can escalate. */
  #stop(cause: StopCause, signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): void {
    const graceMs = this.#options.killGraceMs;
    if (this.#terminalQueued) return;
    if (this.#stopCause) {
      if (signal === "SIGKILL") this.#agent?.stop({ signal, graceMs });
      return;
    }
    this.#stopCause = cause;
    this.#idle.pause();
    this.#sseReader.abort();
    if (this.#agent) this.#agent.stop({ signal, graceMs });
    else this.#stopWithoutAgent.resolve();
  }

  async #stopAgent(): Promise<void> {
    if (!this.#agent) return;
    this.#agent.stop({ graceMs: this.#options.killGraceMs });
    await this.#agent.exited;
  }

  #terminalFrame(exit: AgentExit | void): OutgoingFrame {
    if (this.#startError !== undefined) return startFailedFrame(this.#startError);
    switch (this.#stopCause?.kind) {
      case "kill":
        return interruptedFrame(this.#stopCause.reason);
      case "signal":
        return interruptedFrame(`Wrapper received ${this.#stopCause.signal}`);
      case "idle":
        return idleTimeoutFrame(this.#options.idleTimeoutMs);
      case "done":
        return completeFrame();
    }
    // An ACP session ends the run itself after endOfInput, or when its handshake failed.
    const acpEnd = exit ? this.#acp?.endFrame(exit) : undefined;
    if (acpEnd) return acpEnd;
    return !exit || exit.code === 0 ? completeFrame() : agentExitFrame(exit.code, exit.signal);
  }

  #onProcessSignal(signal: WrapperSignal): void {
    this.#log(`received ${signal}`);
    if (!this.#helloSeen) {
      // Before the first hello there is nothing to report.
      this.#signal ??= signal;
      this.#conn.close();
      return;
    }
    if (this.#signal) {
      // A repeated signal (Ctrl-C reaches both `deno task` and this process, and the task
      // forwards it too) hurries the agent; the run still ends with its `interrupted`.
      this.#agent?.stop({ signal: "SIGKILL", graceMs: 0 });
      return;
    }
    this.#signal = signal;
    if (this.#terminalQueued) {
      setTimeout(() => this.#conn.close(), this.#signalAckTimeoutMs);
    } else {
      this.#stop({ kind: "signal", signal });
    }
  }

  #onKill(kill: KillFrame): void {
    this.#log(`kill received (${kill.signal}): ${kill.reason ?? ErrorText.userInterrupted}`);
    this.#stop({ kind: "kill", reason: kill.reason }, kill.signal);
  }

  #onConnectionEvent(event: IngestEvent): void {
    switch (event.type) {
      case "hello":
        this.#log(`connected (lastSeq ${event.hello.lastSeq})`);
        this.#helloSeen = true;
        this.#input?.gate.hello(event.hello.deliveredInputId);
        if (event.first) this.#firstHello.resolve();
        else if (
          !this.#stopCause && (this.#agent || this.#options.sse) && !this.#acp?.waitingForUser
        ) {
          this.#idle.restart();
        }
        return;
      case "kill":
        return this.#onKill(event.kill);
      case "input":
        return this.#input?.gate.receive(event.input);
      case "disconnected":
        this.#idle.pause();
        // A 4000 is the service's normal end of the run, not a lost connection.
        if (event.code === CloseCode.executionDone) {
          return this.#log(`the service ended the run: ${event.reason}`);
        }
        return this.#log(
          `${event.wasOpen ? "connection lost" : "dial failed"}: ${event.code} ${event.reason}`,
        );
      case "waiting":
        return this.#log(`reconnecting in ${event.delayMs} ms`);
      case "warning":
        return this.#log(event.message);
      case "ended":
        return this.#log(`connection ended: ${JSON.stringify(event.end)}`);
      case "dialing":
        return;
    }
  }
}

function listenToSignals(listener: (signal: WrapperSignal) => void): () => void {
  const signals: WrapperSignal[] = ["SIGINT", "SIGTERM"];
  const handlers = signals.map((signal) => [signal, () => listener(signal)] as const);
  for (const [signal, handler] of handlers) Deno.addSignalListener(signal, handler);
  return () => {
    for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
  };
}
