/**
 * Credentials: api keys, viewer tickets (HMAC-signed, expiring, bound to one session
 * incarnation), ingest tokens (derived from the signing secret so an idempotent retry can
 * return the same token while only its hash is stored), and callback signatures.
 *
 * @module
 */
import { base64url, randomSecret, timingSafeEqual, toHex, tokenExecutionId } from "./ids.ts";
import { keys } from "./store/keys.ts";
import { transact } from "./store/transact.ts";

const encoder = new TextEncoder();

function fromBase64url(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined;
  try {
    const bin = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/**
 * The ticket signing secret: `TETHER_TICKET_SECRET` when set, else one created once and kept
 * in KV, so every instance and every restart agrees.
 *
 * @example
 * ```ts
 * const secret = await loadSigningSecret(kv, config.ticketSecret);
 * const credentials = new Credentials(secret, config.apiKeys);
 * ```
 */
export async function loadSigningSecret(kv: Deno.Kv, configured?: string): Promise<string> {
  if (configured) return configured;
  return await transact(kv, async (tx) => {
    const existing = await tx.get<string>(keys.ticketSecret());
    if (existing) return existing;
    const created = randomSecret(32);
    tx.set(keys.ticketSecret(), created);
    return created;
  });
}

/** What a valid ticket grants. */
export interface TicketClaims {
  sessionId: string;
  incarnation: string;
  expiresAt: number;
}

/**
 * Signs and checks every credential of the service with one secret: api keys, viewer
 * tickets, ingest tokens and callback signatures.
 *
 * @example
 * ```ts
 * const credentials = new Credentials(secret, ["key-1"]);
 * credentials.isApiKey("key-1"); // true
 * const ticket = await credentials.issueTicket({ sessionId: "ses_1", incarnation, expiresAt });
 * ```
 */
export class Credentials {
  readonly #key: Promise<CryptoKey>;
  readonly #apiKeys: string[];

  constructor(signingSecret: string, apiKeys: readonly string[]) {
    this.#apiKeys = [...apiKeys];
    this.#key = crypto.subtle.importKey(
      "raw",
      encoder.encode(signingSecret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
  }

  /** HMAC-SHA256 of `text`. */
  async mac(text: string): Promise<Uint8Array> {
    return new Uint8Array(await crypto.subtle.sign("HMAC", await this.#key, encoder.encode(text)));
  }

  /** True when `key` is one of the configured api keys (constant time per key). */
  isApiKey(key: string): boolean {
    let found = false;
    for (const k of this.#apiKeys) found = timingSafeEqual(k, key) || found;
    return found;
  }

  /** The ingest token of an execution: `tok.<executionId>.<MAC>`. */
  async ingestToken(executionId: string): Promise<string> {
    return `tok.${executionId}.${base64url(await this.mac(`ingest:${executionId}`))}`;
  }

  /**
   * True when `token` is an ingest token this service signed (for any execution). It grants
   * only that execution's ingest socket; HTTP routes refuse it with 403, not 401.
   *
   * @example
   * ```ts
   * await credentials.isIngestToken(await credentials.ingestToken("exc_01J…")); // true
   * ```
   */
  async isIngestToken(token: string): Promise<boolean> {
    const executionId = tokenExecutionId(token);
    return executionId !== undefined &&
      timingSafeEqual(await this.ingestToken(executionId), token);
  }

  /** A viewer ticket for one session incarnation. */
  async issueTicket(claims: TicketClaims): Promise<string> {
    const body = base64url(encoder.encode(JSON.stringify(
      { s: claims.sessionId, i: claims.incarnation, e: claims.expiresAt },
    )));
    return `${body}.${base64url(await this.mac(`ticket:${body}`))}`;
  }

  /** The claims of a ticket whose signature is valid and which has not expired at `now`. */
  async verifyTicket(ticket: string, now: number): Promise<TicketClaims | undefined> {
    const [body, mac, extra] = ticket.split(".");
    if (!body || !mac || extra !== undefined) return undefined;
    const expected = base64url(await this.mac(`ticket:${body}`));
    if (!timingSafeEqual(expected, mac)) return undefined;
    const raw = fromBase64url(body);
    if (!raw) return undefined;
    try {
      const { s, i, e } = JSON.parse(new TextDecoder().decode(raw));
      if (typeof s !== "string" || typeof i !== "string" || typeof e !== "number") return undefined;
      return e > now ? { sessionId: s, incarnation: i, expiresAt: e } : undefined;
    } catch {
      return undefined;
    }
  }

  /** `sha256=<hex HMAC-SHA256 of body>` for the `X-Tether-Signature` header. */
  async signature(body: string): Promise<string> {
    return `sha256=${toHex(await this.mac(body))}`;
  }
}
