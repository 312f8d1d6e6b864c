/**
 * Per-instance fan-out. Holds what only this instance can touch (its ingest sockets and
 * viewers) and wakes them:
 *
 * - connection commands (close with 4000/4001, send `kill`, send new inputs) arrive as KV
 *   inbox messages, addressed by the `instanceId` in the connection record; the instance watches its bell
 *   key and also polls, since watches do not cross processes on a local file;
 * - viewers are woken by a local push right after this instance commits events, and by a
 *   watch on the session's head key (plus a slow poll) for events other instances store.
 *
 * The socket map here is only ever a cache of sockets this very instance holds; who owns an
 * execution's connection is decided in KV.
 *
 * @module
 */
import {
  bellKey,
  type InboxMessage,
  type StoredEvent,
  takeInbox,
  viewerWatchKeys,
} from "./store/mod.ts";
import type { Logger } from "./log.ts";

/** What the hub can do to an ingest socket held by this instance. */
export interface ConnectionHandle {
  /** Settles once the close has been recorded. */
  readonly closed: Promise<void>;
  close(code: number, reason: string): void;
  kill(reason: string): void;
  /** Sends the execution's inputs this connection has not sent yet (PROTOCOL.md 12). */
  deliverInputs(): void;
}

/**
 * Why a viewer is woken: events this instance just committed (`pushed`, sent as they are),
 * events stored up to `upTo` that this instance did not push (`stored`: another instance
 * stored them; read what the viewer does not have), or a change of the session record
 * (`session`: deleted or re-created, look whether it still exists; events wake it apart).
 */
export type Wake =
  | { kind: "pushed"; events: readonly StoredEvent[] }
  | { kind: "stored"; upTo: number }
  | { kind: "session" };

/** A viewer's wake-up callback. */
export type Waker = (wake: Wake) => void;

const SESSION: Wake = { kind: "session" };

/** Options of {@link Hub}. */
export interface HubOptions {
  /** Poll period for the inbox and viewed sessions' heads, in ms. Default 1000. */
  pollMs?: number;
  log: Logger;
}

/** A session that viewers on this instance follow. */
interface Viewed {
  wakers: Set<Waker>;
  watch: ReadableStream<Deno.KvEntryMaybe<unknown>[]>;
  /** Highest eventId the viewers already have or were woken for: a head at or below it is old news. */
  known: number;
  /** Highest head seen through the watch or the poll. */
  head: number;
  /** Versionstamp of the session record last seen (it changes on delete and re-create). */
  sessionStamp?: string | null;
  /** A pending wake-up for events stored elsewhere. */
  remoteWake?: ReturnType<typeof setTimeout>;
}

/**
 * How long a head change waits before it wakes viewers: this instance's own commits are
 * pushed right after they commit, so their head change is dropped instead of making every
 * viewer re-read what it was just given. Events from other instances arrive this much later.
 */
const REMOTE_WAKE_DELAY_MS = 5;

/**
 * The instance's registry of the ingest sockets and viewers it holds; it delivers the
 * instance's inbox commands to those sockets and wakes viewers when their session's log
 * grows.
 *
 * @example
 * ```ts
 * const hub = new Hub(kv, instanceId, { log });
 * hub.start();
 * const release = hub.holdConnection(connectionId, connection);
 * ```
 */
export class Hub {
  readonly #connections = new Map<string, ConnectionHandle>();
  readonly #viewers = new Map<string, Viewed>();
  readonly #abort = new AbortController();
  #poll?: ReturnType<typeof setInterval>;
  #bellWatch?: ReadableStream<unknown>;
  #delivering?: Promise<void>;
  #deliverAgain = false;

  constructor(
    private readonly kv: Deno.Kv,
    readonly instanceId: string,
    private readonly options: HubOptions,
  ) {}

  /** Starts watching the bell and polling. */
  start(): void {
    this.#bellWatch = this.kv.watch([bellKey(this.instanceId)]);
    this.#consume(this.#bellWatch, () => void this.deliverInbox());
    // Watches do not cross processes on a local file (and may miss): poll as a safety net,
    // one read per viewed session, waking its viewers only when there is something new.
    this.#poll = setInterval(() => {
      void this.deliverInbox();
      for (const [sessionId, viewed] of this.#viewers) {
        this.kv.getMany(viewerWatchKeys(sessionId)).then(
          (entries) => this.#headChanged(viewed, entries),
          () => {},
        );
      }
    }, this.options.pollMs ?? 1000);
  }

  /** Stops watches and polling. */
  async stop(): Promise<void> {
    this.#abort.abort();
    clearInterval(this.#poll);
    await this.#bellWatch?.cancel().catch(() => {});
    for (const { watch } of this.#viewers.values()) await watch.cancel().catch(() => {});
    this.#viewers.clear();
  }

  /** Registers an ingest socket this instance holds; returns the unregister function. */
  holdConnection(connectionId: string, handle: ConnectionHandle): () => void {
    this.#connections.set(connectionId, handle);
    return () => {
      if (this.#connections.get(connectionId) === handle) this.#connections.delete(connectionId);
    };
  }

  /** Ingest sockets currently held. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Handles of all held ingest sockets (shutdown). */
  connections(): ConnectionHandle[] {
    return [...this.#connections.values()];
  }

  /**
   * Reads and applies this instance's inbox messages. Calls made while a delivery runs
   * share one follow-up run: two overlapping reads would both see, and apply, the same
   * messages (a kill sent twice).
   */
  deliverInbox(): Promise<void> {
    if (this.#delivering) {
      this.#deliverAgain = true;
      return this.#delivering;
    }
    this.#delivering = (async () => {
      do {
        this.#deliverAgain = false;
        await this.#deliverOnce();
      } while (this.#deliverAgain);
    })().finally(() => this.#delivering = undefined);
    return this.#delivering;
  }

  async #deliverOnce(): Promise<void> {
    if (this.#abort.signal.aborted) return;
    let messages: InboxMessage[];
    try {
      messages = await takeInbox(this.kv, this.instanceId);
    } catch (err) {
      if (!this.#abort.signal.aborted) this.options.log.warn("inbox read failed", { err });
      return;
    }
    for (const message of messages) {
      const handle = this.#connections.get(message.connectionId);
      if (!handle) continue;
      if (message.type === "close") handle.close(message.code, message.reason);
      else if (message.type === "kill") handle.kill(message.reason);
      else handle.deliverInputs();
    }
  }

  /** Viewers currently subscribed on this instance. */
  get viewerCount(): number {
    let n = 0;
    for (const { wakers } of this.#viewers.values()) n += wakers.size;
    return n;
  }

  /** Subscribes a viewer to a session's new events; returns the unsubscribe function. */
  subscribe(sessionId: string, wake: Waker): () => void {
    let viewed = this.#viewers.get(sessionId);
    if (!viewed) {
      const watch = this.kv.watch(viewerWatchKeys(sessionId));
      const entry: Viewed = { wakers: new Set(), watch, known: 0, head: 0 };
      this.#viewers.set(sessionId, entry);
      this.#consume(watch, (entries) => this.#headChanged(entry, entries));
      viewed = entry;
    }
    viewed.wakers.add(wake);
    return () => {
      const current = this.#viewers.get(sessionId);
      if (!current) return;
      current.wakers.delete(wake);
      if (current.wakers.size === 0) {
        this.#viewers.delete(sessionId);
        clearTimeout(current.remoteWake);
        void current.watch.cancel().catch(() => {});
      }
    };
  }

  #headChanged(viewed: Viewed, [head, session]: Deno.KvEntryMaybe<unknown>[]): void {
    if (session.versionstamp !== viewed.sessionStamp) {
      viewed.sessionStamp = session.versionstamp;
      for (const w of viewed.wakers) w(SESSION);
    }
    // The same change may have stored events too (a deletion writes some).
    const lastEventId = (head.value as { lastEventId?: number } | null)?.lastEventId ?? 0;
    viewed.head = Math.max(viewed.head, lastEventId);
    if (viewed.head <= viewed.known || viewed.remoteWake !== undefined) return;
    viewed.remoteWake = setTimeout(() => {
      viewed.remoteWake = undefined;
      if (viewed.head <= viewed.known) return;
      viewed.known = viewed.head; // each woken viewer reads up to the head itself
      const wake: Wake = { kind: "stored", upTo: viewed.head };
      for (const w of viewed.wakers) w(wake);
    }, REMOTE_WAKE_DELAY_MS);
  }

  /** Pushes events this instance just committed to its viewers of the session. */
  publish(sessionId: string, stored: readonly StoredEvent[]): void {
    const entry = this.#viewers.get(sessionId);
    if (!entry || stored.length === 0) return;
    const last = stored[stored.length - 1].eventId;
    if (last > entry.known) entry.known = last;
    const wake: Wake = { kind: "pushed", events: stored };
    for (const w of entry.wakers) w(wake);
  }

  #consume<T>(stream: ReadableStream<T>, onChange: (value: T) => void): void {
    (async () => {
      try {
        for await (const value of stream) onChange(value);
      } catch (err) {
        if (!this.#abort.signal.aborted) this.options.log.warn("watch ended", { err });
      }
    })();
  }
}
