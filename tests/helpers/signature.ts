/**
 * An independent oracle for callback signatures: `sha256=<hex HMAC-SHA256 of body>` keyed by
 * the UTF-8 bytes of a secret, computed with WebCrypto directly (not with the code under test).
 *
 * @module
 */

/**
 * The `X-Tether-Signature` value a receiver expects for `body`.
 *
 * @example
 * ```ts
 * assert.equal(hook.signature, await expectedSignature(SECRET, hook.body)); // "sha256=…"
 * ```
 */
export async function expectedSignature(secret: string, body: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body)));
  return "sha256=" + Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
}
