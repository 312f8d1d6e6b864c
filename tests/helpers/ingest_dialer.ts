/**
 * A minimal raw ingest client for service tests: dials the real ingest WebSocket with a
 * token and an `X-Tether-Dial` header, records every frame the service sends, and lets a
 * test send frames by hand. Unlike the wrapper it never reconnects or resends by itself,
 * so a test controls exactly what the service sees.
 *
 * Also the few REST shortcuts the deadline tests share (create a run, read its events,
 * poll until a condition holds).
 *
 * @module
 */

/** A frame from the service (hello, ack, kill, ping, error). */
export type ServiceFrame = { type: string; [key: string]: unknown };

/** One raw ingest connection. */
export interface IngestDialer {
  readonly socket: WebSocket;
  /** Every frame received so far, in order. */
  readonly frames: ServiceFrame[];
  /** Settles with the close the client saw. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Waits for the first frame of `type` not yet taken by an earlier `next`. */
  next(type: string, timeoutMs?: number): Promise<ServiceFrame>;
  /** Sends a wrapper frame as JSON. */
  send(frame: Record<string, unknown>): void;
  /** Closes with a close frame (a polite disconnect). */
  close(code?: number, reason?: string): void;
}

/** Options of {@link dialIngest}. */
export interface DialOptions {
  /** `X-Tether-Dial` header value, e.g. `w1/1`; omitted when undefined. */
  dial?: string;
  /** How long to wait for the socket to open. Default 5000. */
  timeoutMs?: number;
}

/** Opens an ingest socket (resolves once open; admission frames follow). */
export async function dialIngest(
  url: string,
  token: string,
  options: DialOptions = {},
): Promise<IngestDialer> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (options.dial !== undefined) headers["x-tether-dial"] = options.dial;
  const socket = new WebSocket(url, { headers });
  const frames: ServiceFrame[] = [];
  const taken = new Set<number>();
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of waiters) w();
  };
  socket.onmessage = (ev) => {
    frames.push(JSON.parse(ev.data as string));
    wake();
  };
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.addEventListener("close", (ev) => {
      resolve({ code: ev.code, reason: ev.reason });
      wake();
    });
  });
  let closedSeen = false;
  void closed.then(() => closedSeen = true);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error("ingest dial timed out")),
      options.timeoutMs ?? 5000,
    );
    socket.addEventListener("open", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.addEventListener("close", () => {
      clearTimeout(timer);
      resolve(); // closed during admission: the test reads `closed`
    });
  });
  return {
    socket,
    frames,
    closed,
    next(type, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const i = frames.findIndex((f, i) => f.type === type && !taken.has(i));
          if (i >= 0) {
            taken.add(i);
            done();
            resolve(frames[i]);
          } else if (closedSeen) {
            done();
            reject(new Error(`socket closed before a ${type} frame`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no ${type} frame within ${timeoutMs} ms`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        // `closed` settles before `closedSeen` flips: re-check once it has.
        void closed.then(() => queueMicrotask(check));
        check();
      });
    },
    send(frame) {
      socket.send(JSON.stringify(frame));
    },
    close(code = 1000, reason = "") {
      socket.close(code, reason);
    },
  };
}

/** A REST caller: `TestServer.call` or a child-process equivalent. */
export type Call = <T = Record<string, unknown>>(
  path: string,
  init?: RequestInit & { json?: unknown },
) => Promise<{ status: number; body: T }>;

/** What a test needs of a created execution. */
export interface Run {
  sessionId: string;
  executionId: string;
  ingestToken: string;
  ingestUrl: string;
  active: boolean;
}

/** Creates a session (unless it exists) and an execution in it. */
export async function createRun(
  call: Call,
  sessionId: string,
  body: Record<string, unknown> = {},
): Promise<Run> {
  const session = await call("/v1/sessions", { method: "POST", json: { sessionId } });
  if (session.status !== 201 && session.status !== 409) {
    throw new Error(`session creation failed: ${session.status}`);
  }
  const created = await call<Run>(`/v1/sessions/${sessionId}/executions`, {
    method: "POST",
    json: body,
  });
  if (created.status !== 201) throw new Error(`execution creation failed: ${created.status}`);
  return created.body;
}

/** A stored event envelope. */
export interface Envelope {
  eventId: number;
  executionId: string;
  sessionId: string;
  streamEventType: string;
  timestamp: string;
  data: Record<string, unknown> | null;
}

/** Every stored event of a session (up to 1,000). */
export async function readEvents(call: Call, sessionId: string): Promise<Envelope[]> {
  const res = await call<{ events: Envelope[] }>(`/v1/sessions/${sessionId}/events?limit=1000`);
  if (res.status !== 200) throw new Error(`event read failed: ${res.status}`);
  return res.body.events;
}

/** The execution as `GET …/executions/:eid` shows it. */
export async function readExecution(
  call: Call,
  run: { sessionId: string; executionId: string },
): Promise<Record<string, unknown>> {
  const res = await call(`/v1/sessions/${run.sessionId}/executions/${run.executionId}`);
  if (res.status !== 200) throw new Error(`execution read failed: ${res.status}`);
  return res.body;
}

/** Polls `probe` every 20 ms until it returns a truthy value; fails after `timeoutMs`. */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  timeoutMs = 5000,
  what = "condition",
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Polls until the execution has `status`; returns its view. */
export function waitForStatus(
  call: Call,
  run: { sessionId: string; executionId: string },
  status: string,
  timeoutMs = 5000,
): Promise<Record<string, unknown>> {
  return waitFor(
    async () => {
      const exec = await readExecution(call, run);
      return exec.status === status ? exec : undefined;
    },
    timeoutMs,
    `status ${status}`,
  );
}
