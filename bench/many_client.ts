/**
 * One client process of `bench/many.ts`: it holds many ingest sockets (to Tether or to the
 * raw relay), sends numbered frames at a low total rate spread evenly over them, plus a
 * heartbeat per socket as a wrapper does, and reports send → ack latencies. Commands come
 * as JSON lines on stdin, answers go as JSON lines to stdout:
 *
 * - `{"cmd":"open","target":"tether","conns":[{"url":…,"token":…}]}` → `{"opened":n,"failed":n}`
 * - `{"cmd":"run","target":"tether","rate":100,"seconds":10}` → `{"sent":n,"acked":n,"latencies":[ms…]}`
 * - `{"cmd":"exit"}`
 *
 * @module
 */

/** A socket target as the orchestrator hands it over. */
export interface ClientTarget {
  /** The execution's ingest URL. */
  url: string;
  /** Its ingest token. */
  token: string;
}

/** A command of the orchestrator. */
export type ClientCommand =
  | { cmd: "open"; target: string; conns: ClientTarget[]; heartbeatMs: number }
  | { cmd: "run"; target: string; rate: number; seconds: number }
  | { cmd: "exit" };

/** The answer to `run`. */
export interface RunReport {
  /** Frames sent. */
  sent: number;
  /** Frames acknowledged. */
  acked: number;
  /** Send → ack latency of each acknowledged frame (ms). */
  latencies: number[];
}

/** Dials opened at once while opening. */
const OPEN_CONCURRENCY = 50;
/** Time the last frames of a run get for their acks. */
const ACK_WAIT_MS = 3000;
/** Send tick: frames due are sent every this many ms. */
const TICK_MS = 5;

class Conn {
  seq = 0;
  readonly sentAt = new Map<number, number>();
  constructor(readonly socket: WebSocket, readonly onAck: (latencyMs: number) => void) {
    socket.onmessage = (ev) => this.#onMessage(ev.data as string);
  }

  send(): void {
    if (this.socket.readyState !== WebSocket.OPEN) return;
    const seq = ++this.seq;
    this.sentAt.set(seq, performance.now());
    this.socket.send(JSON.stringify({ streamEventType: "output", seq, data: { text: "tick" } }));
  }

  heartbeat(): void {
    if (this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ streamEventType: "heartbeat" }));
    }
  }

  #onMessage(text: string): void {
    const message = JSON.parse(text) as { type: string; seq?: number };
    if (message.type === "ping") {
      this.socket.send(JSON.stringify({ streamEventType: "pong" }));
    } else if (message.type === "ack") {
      const now = performance.now();
      for (const [seq, at] of this.sentAt) {
        if (seq > message.seq!) break;
        this.onAck(now - at);
        this.sentAt.delete(seq);
      }
    }
  }
}

function dial(target: ClientTarget, onAck: (ms: number) => void): Promise<Conn> {
  const socket = new WebSocket(target.url, {
    headers: { authorization: `Bearer ${target.token}` },
  });
  const conn = new Conn(socket, onAck);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no hello")), 30_000);
    socket.addEventListener("message", function onHello(ev) {
      if ((JSON.parse(ev.data as string) as { type: string }).type !== "hello") return;
      socket.removeEventListener("message", onHello);
      clearTimeout(timer);
      resolve(conn);
    });
    socket.addEventListener("close", () => {
      clearTimeout(timer);
      reject(new Error("closed"));
    }, { once: true });
  });
}

/** Serves the orchestrator's commands until `exit`. */
async function serve(): Promise<void> {
  const groups = new Map<string, Conn[]>();
  const heartbeats: ReturnType<typeof setInterval>[] = [];
  let sink: ((ms: number) => void) | undefined;
  const onAck = (ms: number) => sink?.(ms);
  const answer = (value: unknown) => console.log(JSON.stringify(value));
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let buffer = "";
  for await (const chunk of lines) {
    buffer += chunk;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const command = JSON.parse(buffer.slice(0, nl)) as ClientCommand;
      buffer = buffer.slice(nl + 1);
      if (command.cmd === "exit") {
        for (const timer of heartbeats) clearInterval(timer);
        Deno.exit(0);
      }
      if (command.cmd === "open") {
        const conns = groups.get(command.target) ?? [];
        groups.set(command.target, conns);
        const opened = await openAll(command.conns, onAck);
        conns.push(...opened);
        heartbeats.push(startHeartbeats(opened, command.heartbeatMs));
        answer({ opened: opened.length, failed: command.conns.length - opened.length });
      } else {
        const latencies: number[] = [];
        sink = (ms) => latencies.push(ms);
        const sent = await runLoad(groups.get(command.target) ?? [], command.rate, command.seconds);
        const deadline = Date.now() + ACK_WAIT_MS;
        while (latencies.length < sent && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20));
        }
        sink = undefined;
        answer({ sent, acked: latencies.length, latencies } satisfies RunReport);
      }
    }
  }
}

async function openAll(targets: ClientTarget[], onAck: (ms: number) => void): Promise<Conn[]> {
  const opened: Conn[] = [];
  let next = 0;
  const worker = async () => {
    while (next < targets.length) {
      const target = targets[next++];
      try {
        opened.push(await dial(target, onAck));
      } catch {
        // counted as failed by the caller
      }
    }
  };
  await Promise.all(Array.from({ length: OPEN_CONCURRENCY }, worker));
  return opened;
}

/** Heartbeats of a group spread evenly over the period, as independent wrappers would be. */
function startHeartbeats(conns: Conn[], periodMs: number): ReturnType<typeof setInterval> {
  let i = 0;
  const perTick = conns.length * TICK_MS * 20 / periodMs;
  let owed = 0;
  return setInterval(() => {
    owed += perTick;
    for (; owed >= 1 && conns.length > 0; owed--) conns[i++ % conns.length].heartbeat();
  }, TICK_MS * 20);
}

/** Sends `rate` frames per second for `seconds`, round-robin over the sockets. */
async function runLoad(conns: Conn[], rate: number, seconds: number): Promise<number> {
  if (conns.length === 0) return 0;
  const started = performance.now();
  const total = Math.round(rate * seconds);
  let sent = 0;
  let i = Math.floor(Math.random() * conns.length);
  while (sent < total) {
    const due = Math.min(total, Math.floor((performance.now() - started) / 1000 * rate));
    for (; sent < due; sent++) conns[i++ % conns.length].send();
    await new Promise((r) => setTimeout(r, TICK_MS));
  }
  return sent;
}

if (import.meta.main) await serve();
