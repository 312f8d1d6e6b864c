/**
 * The model-based check of the lifecycle (issue 6): fast-check draws random command
 * sequences (create, connect, send, send input, cut, close, complete, fail, interrupt, fire a
 * deadline early/late/twice, advance the clock, crash an instance) and runs them against two real
 * instances sharing one KV file, with raw ingest clients going through chaos proxies (for
 * abrupt cuts). After every step the invariants of PROTOCOL.md 3 are checked on the KV state
 * and the event log; at the end every deadline is fired until every execution has ended.
 *
 * Deadlines never fire by themselves here (no wake-ups): the instances share a clock the
 * model moves, and the model fires deadlines itself, so a seed replays the same decisions.
 *
 * @module
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { fireDeadline } from "../../src/lifecycle.ts";
import { isTerminal, STREAM_EVENT_TYPE_RE } from "../../src/protocol.ts";
import { keys } from "../../src/store/keys.ts";
import {
  type ActiveSlot,
  type ExecutionRecord,
  type GraceRecord,
  type InterruptFlag,
  listTimers,
  type QueueRecord,
  readEvents,
  timerKey,
} from "../../src/store/mod.ts";
import { type ChaosProxy, startChaosProxy } from "./chaos_proxy.ts";
import { IngestClient } from "./ingest_client.ts";
import { awaitWritten, checkInputs, WrapperProcess } from "./model_inputs.ts";
import { startServer, tempKvPath, type TestServer } from "./server.ts";

/** Options of {@link runModel}. */
export interface ModelOptions {
  /** Runs (command sequences). */
  runs: number;
  /** fast-check seed; the same seed replays the same sequences. */
  seed: number;
  /** Longest command sequence. Default 60. */
  maxCommands?: number;
}

/** Figures of a finished model check. */
export interface ModelStats {
  /** Random command sequences run. */
  runs: number;
  /** Commands executed. */
  commands: number;
  /** Executions created. */
  executions: number;
  /** Instance crashes. */
  crashes: number;
  /** Deadline firings. */
  firings: number;
  /** Frames acknowledged. */
  framesAcked: number;
  /** Inputs accepted by the service. */
  inputsAccepted: number;
  /** Inputs written to a simulated agent. */
  inputsWritten: number;
}

const SESSIONS = ["m0", "m1"];
const EXECUTION_DEADLINES = new Set(["grace", "heartbeat", "pending", "interrupt"]);
const STEP_TIMEOUT_MS = 4000;

interface ExecRef {
  sessionId: string;
  executionId: string;
  token: string;
  /** Highest seq ever sent for this execution. */
  sentMax: number;
  /** Highest seq ever acknowledged. */
  ackedMax: number;
  /** Inputs accepted for it (PROTOCOL.md 12). */
  inputs: number;
  /** Its wrapper processes, oldest first (a fresh one starts with an empty agent). */
  processes: WrapperProcess[];
}

interface ConnRef {
  exec: ExecRef;
  client: IngestClient;
  instance: number;
  /** The generation of the instance it was admitted by (a crash makes it dead). */
  generation: number;
  /** Highest seq this connection knows is durable (hello.lastSeq, acks). */
  durable: number;
  /** The wrapper process it belongs to. */
  process: WrapperProcess;
}

const isOpen = (c: ConnRef) => c.client.socket.readyState === WebSocket.OPEN;
const portOf = (server: TestServer) => Number(new URL(server.url).port);

/** The system under test: two instances on one KV file, proxies, clients, a shared clock. */
class World {
  offset = 0;
  servers: TestServer[] = [];
  proxies: ChaosProxy[] = [];
  generations = [0, 0];
  execs: ExecRef[] = [];
  conns: ConnRef[] = [];
  /** Terminal statuses seen so far: they must never change. */
  terminal = new Map<string, string>();
  /** Per session: the execution whose interrupt flag the model set (until it ends). */
  flagOwner = new Map<string, string>();
  stats = { commands: 0, crashes: 0, firings: 0 };

  private constructor(
    readonly kvPath: string,
    readonly cleanup: () => Promise<void>,
    readonly kv: Deno.Kv,
  ) {}

  static async start(): Promise<World> {
    const { path, cleanup } = await tempKvPath();
    const kv = await Deno.openKv(path);
    const world = new World(path, cleanup, kv);
    for (let i = 0; i < 2; i++) {
      world.servers.push(await world.#startInstance());
      world.proxies.push(startChaosProxy({ targetPort: portOf(world.servers[i]) }));
    }
    for (const sid of SESSIONS) {
      const res = await world.servers[0].call("/v1/sessions", {
        method: "POST",
        json: { sessionId: sid },
      });
      assert.equal(res.status, 201);
    }
    return world;
  }

  now = () => Date.now() + this.offset;

  #startInstance(): Promise<TestServer> {
    return startServer({
      kvPath: this.kvPath,
      now: this.now,
      // TETHER_MODEL_LOG=1 shows the instances' warnings and errors while debugging a seed.
      logSink: (line) => console.error(line),
      config: {
        logLevel: Deno.env.get("TETHER_MODEL_LOG") ? "warn" : "silent",
        timerWakeups: [],
        disconnectGraceMs: 300,
        heartbeatTimeoutMs: 20_000,
        pendingTimeoutMs: 30_000,
        interruptTimeoutMs: 5_000,
        heartbeatWriteMs: 0,
        pingMs: 60_000,
      },
    });
  }

  async close(): Promise<void> {
    for (const c of this.conns) if (isOpen(c)) c.client.socket.close();
    for (const p of this.proxies) await p.close();
    for (const s of this.servers) await s.close();
    this.kv.close();
    await this.cleanup();
  }

  ingestUrl(exec: ExecRef, instance: number): string {
    return `ws://127.0.0.1:${
      this.proxies[instance].port
    }/v1/sessions/${exec.sessionId}/executions/${exec.executionId}/ingest`;
  }

  async execRecord(eid: string): Promise<ExecutionRecord> {
    const rec = (await this.kv.get<ExecutionRecord>(keys.exec(eid))).value;
    assert.ok(rec, `execution ${eid} exists`);
    return rec;
  }

  async crash(instance: number): Promise<void> {
    this.stats.crashes++;
    await this.servers[instance].crash();
    this.proxies[instance].cut();
    this.generations[instance]++;
    this.servers[instance] = await this.#startInstance();
    this.proxies[instance].retarget(portOf(this.servers[instance]));
  }

  /**
   * Cuts every connection through an instance's proxy and waits until that instance has
   * recorded each close it held (its frames committed, its grace written): the next step
   * then starts from a settled state.
   */
  async cut(instance: number): Promise<void> {
    const held = await this.#heldBy(instance);
    this.proxies[instance].cut();
    for (const c of this.conns.filter((c) => c.instance === instance)) await c.client.closed;
    await this.#released(held);
  }

  /** Closes a client politely and waits until the service recorded it. */
  async closeClient(conn: ConnRef, code: number): Promise<void> {
    const held = await this.#heldBy(conn.instance);
    await conn.client.close(code);
    await this.#released(held);
  }

  /** The connection records (execution → connectionId) the instance holds now. */
  async #heldBy(instance: number): Promise<Map<string, string>> {
    const held = new Map<string, string>();
    const instanceId = this.servers[instance].service.rt.instanceId;
    for (const exec of this.execs) {
      const conn = (await this.kv.get<{ connectionId: string; instanceId: string }>(
        keys.conn(exec.executionId),
      )).value;
      if (conn?.instanceId === instanceId) held.set(exec.executionId, conn.connectionId);
    }
    return held;
  }

  async #released(held: Map<string, string>): Promise<void> {
    const until = Date.now() + STEP_TIMEOUT_MS;
    for (const [eid, connectionId] of held) {
      for (;;) {
        const conn = (await this.kv.get<{ connectionId: string }>(keys.conn(eid))).value;
        if (conn?.connectionId !== connectionId) break;
        const socketOpen = this.conns.some((c) => c.exec.executionId === eid && isOpen(c));
        if (socketOpen) break; // a polite close of another connection: this one stays
        assert.ok(Date.now() < until, `the close of ${connectionId} is recorded`);
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  /** Every KV entry but the hub's inbox and bell, as comparable JSON. */
  async snapshot(): Promise<string> {
    const out: string[] = [];
    for await (const e of this.kv.list({ prefix: [] })) {
      if (e.key[0] === "inbox" || e.key[0] === "bell") continue;
      out.push(JSON.stringify([e.key, e.value instanceof Uint8Array ? [...e.value] : e.value]));
    }
    return out.join("\n");
  }

  /**
   * Checks the invariants on a stable state: an instance may still be recording a close
   * while the checks read, so a verdict counts only when the whole KV was the same before
   * and after it.
   */
  async check(step: string): Promise<void> {
    for (let attempt = 0;; attempt++) {
      const before = await this.snapshot();
      let failure: unknown;
      try {
        await this.#invariants(step);
      } catch (err) {
        failure = err;
      }
      if (before === await this.snapshot() || attempt >= 50) {
        if (failure) throw failure;
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The invariants of PROTOCOL.md 3 and 5, on the KV state and the event log. */
  async #invariants(step: string): Promise<void> {
    const timers = await listTimers(this.kv);
    const timerFor = (kind: string, id: string) =>
      timers.some((t) => t.kind === kind && t.id === id);
    for (const sid of SESSIONS) {
      const where = `after ${step}, session ${sid}`;
      const [active, queue, flag, grace] = await Promise.all([
        this.kv.get<ActiveSlot>(keys.active(sid)),
        this.kv.get<QueueRecord>(keys.queue(sid)),
        this.kv.get<InterruptFlag>(keys.interrupt(sid)),
        this.kv.get<GraceRecord>(keys.grace(sid)),
      ]).then((entries) => entries.map((e) => e.value)) as [
        ActiveSlot | null,
        QueueRecord | null,
        InterruptFlag | null,
        GraceRecord | null,
      ];
      const refs = this.execs.filter((e) => e.sessionId === sid);
      const recs = await Promise.all(refs.map((e) => this.execRecord(e.executionId)));
      const live = recs.filter((r) => !isTerminal(r.status));
      // At most one active execution: the oldest live one; the others wait in FIFO order.
      assert.equal(active?.executionId, live[0]?.executionId, `${where}: active slot`);
      assert.deepEqual(
        queue?.executionIds ?? [],
        live.slice(1).map((r) => r.executionId),
        `${where}: queue`,
      );
      for (const r of live.slice(1)) {
        assert.equal(r.status, "pending", `${where}: queued is pending`);
      }
      // Slot, flag and grace belong to the active running execution only.
      const head = live[0];
      if (flag) {
        assert.equal(flag.executionId, head?.executionId, `${where}: flag owner`);
        assert.equal(head?.status, "running", `${where}: flag on a running execution`);
        assert.ok(timerFor("interrupt", flag.executionId), `${where}: interrupt deadline armed`);
      }
      const owner = this.flagOwner.get(sid);
      if (owner && live.some((r) => r.executionId === owner)) {
        assert.equal(flag?.executionId, owner, `${where}: a live execution's flag survives`);
      }
      if (grace) {
        assert.equal(grace.executionId, head?.executionId, `${where}: grace owner`);
        assert.equal(head?.status, "running", `${where}: grace on a running execution`);
        assert.ok(timerFor("grace", grace.executionId), `${where}: grace deadline armed`);
      }
      if (head?.status === "pending") {
        assert.ok(timerFor("pending", head.executionId), `${where}: pending deadline armed`);
      }
      if (head?.status === "running") {
        assert.ok(timerFor("heartbeat", head.executionId), `${where}: heartbeat deadline armed`);
      }
      // Terminal statuses never change.
      for (const r of recs) {
        const seen = this.terminal.get(r.executionId);
        if (seen) assert.equal(r.status, seen, `${where}: terminal status of ${r.executionId}`);
        else if (isTerminal(r.status)) this.terminal.set(r.executionId, r.status);
      }
      await this.#checkLog(sid, refs, recs, where);
    }
  }

  async #checkLog(sid: string, refs: ExecRef[], recs: ExecutionRecord[], where: string) {
    const events = await readEvents(this.kv, sid, { after: 0, limit: 100_000 });
    let previousId = 0;
    for (const { envelope: e } of events) {
      assert.ok(e.eventId > previousId, `${where}: eventIds increase`);
      previousId = e.eventId;
      assert.equal(e.sessionId, sid);
      assert.match(e.streamEventType, STREAM_EVENT_TYPE_RE);
      assert.ok(!Number.isNaN(Date.parse(e.timestamp)), `${where}: timestamp`);
    }
    for (let i = 0; i < refs.length; i++) {
      const ref = refs[i];
      const rec = recs[i];
      const mine = events.map((s) => s.envelope).filter((e) => e.executionId === ref.executionId);
      const statuses = mine.filter((e) => e.streamEventType === "execution_status");
      const data = statuses.map((e) => e.data as { status: string; previousStatus: string | null });
      const terminalEvents = data.filter((d) => isTerminal(d.status as never));
      assert.equal(
        terminalEvents.length,
        isTerminal(rec.status) ? 1 : 0,
        `${where}: terminal execution_status events of ${ref.executionId}`,
      );
      assert.equal(data[0]?.previousStatus, null, `${where}: first status event is the creation`);
      for (let k = 1; k < data.length; k++) {
        assert.equal(data[k].previousStatus, data[k - 1].status, `${where}: status chain`);
      }
      assert.equal(data.at(-1)?.status, rec.status, `${where}: last status event = status`);
      if (isTerminal(rec.status)) {
        const end = statuses.find((e) => isTerminal((e.data as { status: never }).status))!;
        assert.ok(
          mine.every((e) => e.eventId <= end.eventId),
          `${where}: nothing of ${ref.executionId} is stored after its end`,
        );
      }
      // Every acknowledged frame stored exactly once, in seq order.
      const frames = mine.filter((e) => typeof (e.data as { n?: unknown })?.n === "number");
      const seqs = frames.map((e) => (e.data as { n: number }).n);
      assert.deepEqual(seqs, seqs.map((_, k) => k + 1), `${where}: frames of ${ref.executionId}`);
      assert.ok(seqs.length >= ref.ackedMax, `${where}: acked frames of ${ref.executionId} stored`);
      assert.ok(seqs.length <= ref.sentMax, `${where}: only sent frames stored`);
      assert.equal(rec.lastSeq, seqs.length, `${where}: lastSeq of ${ref.executionId}`);
      for (const e of frames) {
        assert.equal((e.data as { eid: string }).eid, ref.executionId.slice(-6));
      }
      checkInputs(`${where}, ${ref.executionId}`, rec, mine, ref.inputs, ref.processes);
    }
  }

  /** Fires every due execution deadline, moving the clock, until every execution ended. */
  async drain(): Promise<void> {
    for (let round = 0; round < 40; round++) {
      const recs = await Promise.all(this.execs.map((e) => this.execRecord(e.executionId)));
      if (recs.every((r) => isTerminal(r.status))) return;
      this.offset += 10_000;
      // Every due deadline in one call: they fire as batches sharing commits (src/timers.ts).
      const due = (await listTimers(this.kv))
        .filter((t) => EXECUTION_DEADLINES.has(t.kind) && t.dueAt <= this.now())
        .map(timerKey);
      await this.servers[0].service.runner.fire(...due);
      this.stats.firings += due.length;
      await this.check(`drain round ${round}`);
    }
    assert.fail("executions still live after every deadline fired");
  }
}

type Model = { execs: number; conns: number };
type Cmd = fc.AsyncCommand<Model, World>;

const pick = <T>(items: T[], index: number): T | undefined =>
  items.length === 0 ? undefined : items[index % items.length];

/** Sends a connection's resends (after what it knows is durable) and `count` new frames. */
function sendFrames(conn: ConnRef, count: number, terminal?: Record<string, unknown>): number {
  const exec = conn.exec;
  const frame = (n: number) => ({
    streamEventType: "output",
    seq: n,
    data: { n, eid: exec.executionId.slice(-6) },
  });
  for (let n = conn.durable + 1; n <= exec.sentMax; n++) conn.client.send(frame(n));
  for (let k = 0; k < count; k++) conn.client.send(frame(++exec.sentMax));
  if (terminal) {
    const n = ++exec.sentMax;
    conn.client.send({
      ...terminal,
      seq: n,
      data: { ...(terminal.data as object), n, eid: exec.executionId.slice(-6) },
    });
  }
  return exec.sentMax;
}

/** Waits until the connection acknowledged `seq` or closed; updates what is durable. */
async function settle(conn: ConnRef, seq: number): Promise<void> {
  await conn.client.until(
    () => conn.client.acked >= seq || conn.client.closeInfo !== undefined,
    `ack ${seq} or close`,
    STEP_TIMEOUT_MS,
  );
  conn.durable = Math.max(conn.durable, conn.client.acked);
  conn.exec.ackedMax = Math.max(conn.exec.ackedMax, conn.client.acked);
}

abstract class Step implements Cmd {
  abstract label(): string;
  abstract act(w: World, m: Model): Promise<void>;
  check(_m: Readonly<Model>): boolean {
    return true;
  }
  async run(m: Model, w: World): Promise<void> {
    w.stats.commands++;
    await this.act(w, m);
    await w.check(this.label());
  }
  toString(): string {
    return this.label();
  }
}

class Create extends Step {
  constructor(readonly session: number, readonly instance: number) {
    super();
  }
  label = () => `create(s${this.session}@i${this.instance})`;
  async act(w: World, m: Model) {
    const sid = SESSIONS[this.session];
    const res = await w.servers[this.instance].call<{ executionId: string; ingestToken: string }>(
      `/v1/sessions/${sid}/executions`,
      { method: "POST", json: {} },
    );
    assert.equal(res.status, 201, JSON.stringify(res.body));
    w.execs.push({
      sessionId: sid,
      executionId: res.body.executionId,
      token: res.body.ingestToken,
      sentMax: 0,
      ackedMax: 0,
      inputs: 0,
      processes: [],
    });
    m.execs++;
  }
}

class Connect extends Step {
  constructor(readonly exec: number, readonly instance: number, readonly fresh: boolean) {
    super();
  }
  label = () => `connect(e${this.exec}@i${this.instance}${this.fresh ? ", fresh process" : ""})`;
  override check = (m: Readonly<Model>) => m.execs > 0;
  async act(w: World, m: Model) {
    const exec = pick(w.execs, this.exec)!;
    const before = await w.execRecord(exec.executionId);
    const active = (await w.kv.get<ActiveSlot>(keys.active(exec.sessionId))).value;
    const flag = (await w.kv.get<InterruptFlag>(keys.interrupt(exec.sessionId))).value;
    const older = w.conns.filter((c) =>
      c.exec === exec && isOpen(c) && c.generation === w.generations[c.instance]
    );
    const client = await IngestClient.dial(w.ingestUrl(exec, this.instance), { token: exec.token });
    await client.until(
      () => client.messages.some((f) => f.type === "hello") || client.closeInfo !== undefined,
      "hello or close",
      STEP_TIMEOUT_MS,
    );
    if (isTerminal(before.status)) {
      assert.deepEqual(await client.closed, { code: 4000, reason: `execution ${before.status}` });
      return;
    }
    if (active?.executionId !== exec.executionId) {
      assert.equal((await client.closed).code, 4009);
      return;
    }
    const hello = client.messages.find((f) => f.type === "hello");
    assert.ok(hello, `hello expected, got close ${JSON.stringify(client.closeInfo)}`);
    const lastSeq = hello.lastSeq as number;
    assert.ok(lastSeq >= exec.ackedMax, "hello.lastSeq covers every ack");
    assert.ok(lastSeq >= before.lastSeq && lastSeq <= exec.sentMax, "hello.lastSeq is durable");
    const process = this.fresh || exec.processes.length === 0
      ? new WrapperProcess()
      : exec.processes.at(-1)!;
    if (process !== exec.processes.at(-1)) exec.processes.push(process);
    const conn: ConnRef = {
      exec,
      client,
      instance: this.instance,
      generation: w.generations[this.instance],
      durable: hello.lastSeq as number,
      process,
    };
    process.attach(client);
    // Every input accepted before this hello reaches the agent (or was confirmed before).
    await awaitWritten(w.kv, exec.executionId, process, client, exec.inputs, STEP_TIMEOUT_MS);
    exec.ackedMax = Math.max(exec.ackedMax, conn.durable);
    w.conns.push(conn);
    m.conns++;
    if (flag?.executionId === exec.executionId) {
      await client.next((f) => f.type === "kill", STEP_TIMEOUT_MS);
    }
    // Every earlier connection of the execution, on either instance, is replaced.
    for (const old of older) {
      const closed = await Promise.race([old.client.closed, timeout(STEP_TIMEOUT_MS)]);
      assert.equal(closed?.code, 4001, "an older connection is closed with 4001 once replaced");
    }
  }
}

const timeout = (ms: number) =>
  new Promise<undefined>((resolve) => {
    const t = setTimeout(() => resolve(undefined), ms);
    Deno.unrefTimer(t);
  });

class Send extends Step {
  constructor(readonly conn: number, readonly count: number, readonly thenCut: boolean) {
    super();
  }
  label = () => `send(c${this.conn}, ${this.count}${this.thenCut ? ", then cut" : ""})`;
  override check = (m: Readonly<Model>) => m.conns > 0;
  async act(w: World) {
    const conn = pick(w.conns, this.conn)!;
    if (!isOpen(conn)) return;
    const last = sendFrames(conn, this.count);
    if (this.thenCut) {
      await w.cut(conn.instance);
      conn.durable = Math.max(conn.durable, conn.client.acked);
      conn.exec.ackedMax = Math.max(conn.exec.ackedMax, conn.client.acked);
      return;
    }
    await settle(conn, last);
  }
}

/** Sends on every open connection at once: frames of different executions share commits. */
class SendAll extends Step {
  constructor(readonly count: number) {
    super();
  }
  label = () => `sendAll(${this.count})`;
  override check = (m: Readonly<Model>) => m.conns > 1;
  async act(w: World) {
    const open = w.conns.filter(isOpen);
    const lasts = open.map((conn) => sendFrames(conn, this.count));
    await Promise.all(open.map((conn, i) => settle(conn, lasts[i])));
  }
}

class SendInput extends Step {
  constructor(readonly exec: number, readonly instance: number, readonly end: boolean) {
    super();
  }
  label = () => `input(e${this.exec}@i${this.instance}${this.end ? ", endOfInput" : ""})`;
  override check = (m: Readonly<Model>) => m.execs > 0;
  async act(w: World) {
    const exec = pick(w.execs, this.exec)!;
    const before = await w.execRecord(exec.executionId);
    const res = await w.servers[this.instance].call<{ inputId: number; error?: string }>(
      `/v1/sessions/${exec.sessionId}/executions/${exec.executionId}/input`,
      {
        method: "POST",
        json: { data: { from: this.instance }, endOfInput: this.end || undefined },
      },
    );
    if (isTerminal(before.status)) return assert.equal(res.body.error, "EXECUTION_ENDED");
    if (before.inputClosed) return assert.equal(res.body.error, "INPUT_CLOSED");
    assert.equal(res.status, 202, JSON.stringify(res.body));
    assert.equal(res.body.inputId, ++exec.inputs, "inputIds number the accepted inputs");
    // A live connection gets it at once, whichever instance holds it.
    const live = w.conns.findLast((c) => c.exec === exec);
    if (live && isOpen(live) && live.generation === w.generations[live.instance]) {
      const { process, client } = live;
      await awaitWritten(w.kv, exec.executionId, process, client, exec.inputs, STEP_TIMEOUT_MS);
    }
  }
}

class Cut extends Step {
  constructor(readonly instance: number) {
    super();
  }
  label = () => `cut(i${this.instance})`;
  async act(w: World) {
    await w.cut(this.instance);
  }
}

class Close extends Step {
  constructor(readonly conn: number, readonly code: number) {
    super();
  }
  label = () => `close(c${this.conn}, ${this.code})`;
  override check = (m: Readonly<Model>) => m.conns > 0;
  async act(w: World) {
    const conn = pick(w.conns, this.conn)!;
    if (isOpen(conn)) await w.closeClient(conn, this.code);
  }
}

const TERMINAL_FRAMES: Record<string, Record<string, unknown>> = {
  complete: { streamEventType: "complete", data: { exitCode: 0 } },
  fatal: { streamEventType: "error", data: { fatal: true, error: "agent crashed" } },
  interrupted: { streamEventType: "interrupted", data: { reason: "stopped" } },
};

class Finish extends Step {
  constructor(readonly conn: number, readonly kind: string, readonly count: number) {
    super();
  }
  label = () => `finish(c${this.conn}, ${this.kind}, after ${this.count})`;
  override check = (m: Readonly<Model>) => m.conns > 0;
  async act(w: World) {
    const conn = pick(w.conns, this.conn)!;
    if (!isOpen(conn)) return;
    const last = sendFrames(conn, this.count, TERMINAL_FRAMES[this.kind]);
    await settle(conn, last);
    if (conn.client.acked < last) return; // not current any more: nothing was acknowledged
    const rec = await w.execRecord(conn.exec.executionId);
    assert.ok(isTerminal(rec.status), "an acknowledged terminal frame ends the execution");
    const closed = await Promise.race([conn.client.closed, timeout(STEP_TIMEOUT_MS)]);
    assert.deepEqual(closed, { code: 4000, reason: `execution ${rec.status}` });
  }
}

class Fail extends Step {
  constructor(readonly exec: number, readonly instance: number) {
    super();
  }
  label = () => `fail(e${this.exec}@i${this.instance})`;
  override check = (m: Readonly<Model>) => m.execs > 0;
  async act(w: World) {
    const exec = pick(w.execs, this.exec)!;
    const before = await w.execRecord(exec.executionId);
    const res = await w.servers[this.instance].call<{ failed: boolean }>(
      `/v1/sessions/${exec.sessionId}/executions/${exec.executionId}/fail`,
      { method: "POST", json: { error: "failed by the model" } },
    );
    assert.equal(res.status, 200);
    assert.equal(res.body.failed, !isTerminal(before.status), "fail is idempotent");
    const after = await w.execRecord(exec.executionId);
    if (res.body.failed) {
      assert.equal(after.status, "failed");
      assert.equal(after.error, "failed by the model");
    } else assert.equal(after.status, before.status);
  }
}

class Interrupt extends Step {
  constructor(readonly exec: number, readonly instance: number) {
    super();
  }
  label = () => `interrupt(e${this.exec}@i${this.instance})`;
  override check = (m: Readonly<Model>) => m.execs > 0;
  async act(w: World) {
    const exec = pick(w.execs, this.exec)!;
    const before = await w.execRecord(exec.executionId);
    const res = await w.servers[this.instance].call<{ status: string }>(
      `/v1/sessions/${exec.sessionId}/executions/${exec.executionId}/interrupt`,
      { method: "POST", json: { reason: "model interrupt" } },
    );
    assert.equal(res.status, 202);
    const after = await w.execRecord(exec.executionId);
    if (before.status === "pending") assert.equal(after.status, "interrupted");
    else assert.equal(after.status, before.status);
    if (before.status === "running") {
      w.flagOwner.set(exec.sessionId, exec.executionId);
      const flag = (await w.kv.get<InterruptFlag>(keys.interrupt(exec.sessionId))).value;
      assert.equal(flag?.executionId, exec.executionId, "a running execution gets the flag");
    }
  }
}

/** How far before its due time an "early" firing happens at the least. */
const EARLY_MARGIN_MS = 1000;

class Fire extends Step {
  constructor(
    readonly timer: number,
    readonly mode: "early" | "late" | "twice",
    readonly instance: number,
  ) {
    super();
  }
  label = () => `fire(t${this.timer}, ${this.mode}@i${this.instance})`;
  async act(w: World) {
    const timers = (await listTimers(w.kv)).filter((t) => EXECUTION_DEADLINES.has(t.kind));
    const timer = pick(timers, this.timer);
    if (!timer) return;
    const key = timerKey(timer);
    w.stats.firings++;
    // The shared clock follows real time: "early" needs a margin that a snapshot and a firing
    // cannot use up, or the deadline may fall due while it is being fired.
    if (this.mode === "early" && timer.dueAt > w.now() + EARLY_MARGIN_MS) {
      // Called directly (below the runner's due check): must change nothing at all.
      const before = await w.snapshot();
      await fireDeadline(w.servers[this.instance].service.rt.ctx, key);
      assert.equal(await w.snapshot(), before, `an early ${timer.kind} deadline is a no-op`);
      return;
    }
    w.offset += Math.max(0, timer.dueAt - w.now() + 1);
    const fire = (i: number) => w.servers[i].service.runner.fire(key);
    if (this.mode === "twice") {
      await Promise.all([fire(0), fire(1)]);
      const once = await w.snapshot();
      await fire(this.instance);
      assert.equal(await w.snapshot(), once, "a second firing is a no-op");
    } else await fire(this.instance);
  }
}

class Advance extends Step {
  constructor(readonly ms: number) {
    super();
  }
  label = () => `advance(${this.ms} ms)`;
  act(w: World) {
    w.offset += this.ms;
    return Promise.resolve();
  }
}

class Crash extends Step {
  constructor(readonly instance: number) {
    super();
  }
  label = () => `crash(i${this.instance})`;
  async act(w: World) {
    await w.crash(this.instance);
  }
}

const instance = fc.integer({ min: 0, max: 1 });
const index = fc.nat(20);

/** The command arbitraries, weighted by repetition (fast-check picks uniformly). */
export const commandArbitraries: fc.Arbitrary<Cmd>[] = (() => {
  const create = fc.tuple(instance, instance).map(([s, i]): Cmd => new Create(s, i));
  const connect = fc.tuple(index, instance, fc.boolean()).map(([e, i, fresh]): Cmd =>
    new Connect(e, i, fresh)
  );
  const sendInput = fc.tuple(index, instance, fc.nat(5)).map(([e, i, n]): Cmd =>
    new SendInput(e, i, n === 0)
  );
  const send = fc.tuple(index, fc.integer({ min: 1, max: 6 }), fc.boolean()).map(
    ([c, n, cut]): Cmd => new Send(c, n, cut),
  );
  const fire = fc.tuple(
    index,
    fc.constantFrom("early", "late", "twice") as fc.Arbitrary<"early" | "late" | "twice">,
    instance,
  ).map(([t, mode, i]): Cmd => new Fire(t, mode, i));
  return [
    create,
    create,
    connect,
    connect,
    connect,
    send,
    send,
    send,
    fc.integer({ min: 1, max: 4 }).map((n): Cmd => new SendAll(n)),
    sendInput,
    sendInput,
    fire,
    fire,
    instance.map((i): Cmd => new Cut(i)),
    fc.tuple(index, fc.constantFrom(1000, 3000, 4999)).map(([c, code]): Cmd => new Close(c, code)),
    fc.tuple(index, fc.constantFrom("complete", "fatal", "interrupted"), fc.nat(3)).map(
      ([c, k, n]): Cmd => new Finish(c, k, n),
    ),
    fc.tuple(index, instance).map(([e, i]): Cmd => new Fail(e, i)),
    fc.tuple(index, instance).map(([e, i]): Cmd => new Interrupt(e, i)),
    fc.constantFrom(100, 1000, 15_000).map((ms): Cmd => new Advance(ms)),
    instance.map((i): Cmd => new Crash(i)),
  ];
})();

/**
 * Runs the model check; throws with the seed and the shrunk command sequence on failure.
 *
 * @example
 * ```ts
 * const seed = seedFrom("TETHER_MODEL_SEED");
 * const stats = await runModel({ seed, runs: 200 });
 * ```
 */
export async function runModel(options: ModelOptions): Promise<ModelStats> {
  const totals: ModelStats = {
    runs: 0,
    commands: 0,
    executions: 0,
    crashes: 0,
    firings: 0,
    framesAcked: 0,
    inputsAccepted: 0,
    inputsWritten: 0,
  };
  const property = fc.asyncProperty(
    fc.commands(commandArbitraries, { maxCommands: options.maxCommands ?? 60, size: "max" }),
    async (commands) => {
      const world = await World.start();
      try {
        await fc.asyncModelRun(() => ({ model: { execs: 0, conns: 0 }, real: world }), commands);
        for (const c of world.conns) if (isOpen(c)) c.client.socket.close();
        await world.drain();
        totals.runs++;
        totals.commands += world.stats.commands;
        totals.executions += world.execs.length;
        totals.crashes += world.stats.crashes;
        totals.firings += world.stats.firings;
        totals.framesAcked += world.execs.reduce((n, e) => n + e.ackedMax, 0);
        for (const e of world.execs) {
          totals.inputsAccepted += e.inputs;
          totals.inputsWritten += e.processes.reduce((n, p) => n + p.written.length, 0);
        }
      } finally {
        await world.close();
      }
    },
  );
  const details = await fc.check(property, {
    seed: options.seed,
    numRuns: options.runs,
  });
  if (details.failed) {
    const counterexample = details.counterexample?.[0]?.toString() ?? "(none)";
    throw new Error(
      `model check failed: seed ${options.seed} (replay: TETHER_MODEL_SEED=${options.seed}), ` +
        `path ${details.counterexamplePath}\nshrunk sequence: ${counterexample}\n` +
        `error: ${
          details.errorInstance instanceof Error
            ? details.errorInstance.stack
            : details.errorInstance
        }`,
    );
  }
  return totals;
}
