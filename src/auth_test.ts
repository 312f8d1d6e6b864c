import assert from "node:assert/strict";
import { expectedSignature } from "../tests/helpers/signature.ts";
import { Credentials, loadSigningSecret } from "./auth.ts";
import { newExecutionId, sha256Hex, tokenExecutionId } from "./ids.ts";

const SECRET = "test-signing-secret-0123456789";
const claims = { sessionId: "s1", incarnation: "inc-1", expiresAt: 2_000_000 };

Deno.test("api keys are recognised exactly", () => {
  const creds = new Credentials(SECRET, ["k1", "key-two"]);
  assert.equal(creds.isApiKey("k1"), true);
  assert.equal(creds.isApiKey("key-two"), true);
  assert.equal(creds.isApiKey("k"), false);
  assert.equal(creds.isApiKey("k1 "), false);
  assert.equal(creds.isApiKey(""), false);
  assert.equal(new Credentials(SECRET, []).isApiKey(""), false);
});

Deno.test("a ticket verifies until it expires and carries its claims", async () => {
  const creds = new Credentials(SECRET, []);
  const ticket = await creds.issueTicket(claims);
  assert.deepEqual(await creds.verifyTicket(ticket, 1_999_999), claims);
  assert.equal(await creds.verifyTicket(ticket, 2_000_000), undefined);
  assert.equal(await creds.verifyTicket(ticket, 3_000_000), undefined);
});

Deno.test("a ticket signed with another secret, or altered, is refused", async () => {
  const creds = new Credentials(SECRET, []);
  const other = new Credentials("another-secret-0123456789abc", []);
  const ticket = await creds.issueTicket(claims);
  assert.equal(await other.verifyTicket(ticket, 0), undefined);
  const [body, mac] = ticket.split(".");
  // Re-encode the body for another session with the old MAC.
  const forged = btoa(JSON.stringify({ s: "s2", i: "inc-1", e: 2_000_000 }))
    .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
  assert.equal(await creds.verifyTicket(`${forged}.${mac}`, 0), undefined);
  const flipped = mac[0] === "A" ? "B" + mac.slice(1) : "A" + mac.slice(1);
  assert.equal(await creds.verifyTicket(`${body}.${flipped}`, 0), undefined);
  for (const junk of ["", ".", "abc", `${ticket}.x`, `${body}.`, `.${mac}`, "!!.??"]) {
    assert.equal(await creds.verifyTicket(junk, 0), undefined, junk);
  }
});

Deno.test("ingest tokens are deterministic per execution, name it, and differ by secret", async () => {
  const creds = new Credentials(SECRET, []);
  const eid = newExecutionId();
  const token = await creds.ingestToken(eid);
  assert.equal(await creds.ingestToken(eid), token);
  assert.equal(tokenExecutionId(token), eid);
  assert.notEqual(await creds.ingestToken(newExecutionId()), token);
  assert.notEqual(await new Credentials("x".repeat(32), []).ingestToken(eid), token);
  // At least 128 bits of secret after the execution id.
  assert.ok(token.split(".")[2].length * 6 >= 128);
});

Deno.test("the callback signature is the hex HMAC-SHA256 of the body keyed by the secret", async () => {
  const creds = new Credentials(SECRET, []);
  const body = '{"status":"completed"}';
  assert.equal(await creds.signature(body), await expectedSignature(SECRET, body));
  assert.notEqual(await creds.signature(body), `sha256=${await sha256Hex(body)}`);
});

Deno.test("the signing secret is the configured one, else created once in KV", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    assert.equal(await loadSigningSecret(kv, "configured-secret-123"), "configured-secret-123");
    const [a, b] = await Promise.all([loadSigningSecret(kv), loadSigningSecret(kv)]);
    assert.equal(a, b);
    assert.ok(a.length >= 32);
    assert.equal(await loadSigningSecret(kv), a);
  } finally {
    kv.close();
  }
});

Deno.test("isIngestToken knows the tokens this secret signed, and only those", async () => {
  const credentials = new Credentials("secret-one-0123456789", []);
  const other = new Credentials("secret-two-0123456789", []);
  const token = await credentials.ingestToken("exc_01J00000000000000000000000");
  assert.equal(await credentials.isIngestToken(token), true);
  assert.equal(await other.isIngestToken(token), false);
  assert.equal(await credentials.isIngestToken(token.replace(/.$/, "x")), false);
  assert.equal(await credentials.isIngestToken("garbage"), false);
  assert.equal(await credentials.isIngestToken("tok.exc_01J00000000000000000000000.x"), false);
});
