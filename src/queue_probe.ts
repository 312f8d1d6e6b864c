/**
 * Whether KV queues deliver here, and the one queue listener a KV handle gets. A commit of
 * `enqueue` proves nothing (a platform may accept messages it never delivers: the current Deno
 * Deploy has no KV queues), so the probe waits for its own message to arrive.
 *
 * @module
 */

/**
 * The queue listener of one KV handle: registered once (by the probe or the runner), with
 * the handler set later, so the probe's listener serves the deadline messages afterwards.
 *
 * @example
 * ```ts
 * const channel = new QueueChannel(kv);
 * channel.onMessage((message) => console.log("queued", message));
 * ```
 */
export class QueueChannel {
  #handler?: (message: unknown) => Promise<void> | void;
  /** Resolves when the listener ends (the handle closed, or queues unsupported). */
  readonly ended: Promise<void>;

  constructor(kv: Deno.Kv) {
    let listening: Promise<void>;
    try {
      listening = kv.listenQueue((message) => this.#handler?.(message));
    } catch (err) {
      listening = Promise.reject(err);
    }
    this.ended = listening.catch(() => {});
  }

  /** Sets where messages go (a message arriving before that is dropped). */
  onMessage(handler: (message: unknown) => Promise<void> | void): void {
    this.#handler = handler;
  }
}

/**
 * Enqueues a probe message and waits up to `timeoutMs` for it to be delivered. Returns the
 * listening channel when it was (queues work), else `undefined`.
 *
 * @example
 * ```ts
 * const kv = await Deno.openKv(":memory:");
 * const channel = await probeQueueDelivery(kv, 2000); // a QueueChannel: the local KV delivers
 * ```
 */
export async function probeQueueDelivery(
  kv: Deno.Kv,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<QueueChannel | undefined> {
  const probe = crypto.randomUUID();
  const arrived = Promise.withResolvers<boolean>();
  const channel = new QueueChannel(kv);
  channel.onMessage((message) => {
    if ((message as { probe?: unknown } | null)?.probe === probe) arrived.resolve(true);
  });
  void channel.ended.then(() => arrived.resolve(false));
  try {
    const result = await kv.atomic().enqueue({ probe }).commit();
    if (!result.ok) return undefined;
  } catch {
    return undefined;
  }
  const timer = setTimeout(() => arrived.resolve(false), timeoutMs);
  const onAbort = () => arrived.resolve(false);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return (await arrived.promise) ? channel : undefined;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    channel.onMessage(() => {});
  }
}
