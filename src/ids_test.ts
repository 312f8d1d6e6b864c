import assert from "node:assert/strict";
import {
  newExecutionId,
  newSessionId,
  randomSecret,
  sha256Hex,
  timingSafeEqual,
  tokenExecutionId,
  ulid,
} from "./ids.ts";
import { EXECUTION_ID_RE, SESSION_ID_RE } from "./protocol.ts";

const ULID_RE = /^[0-9A-HJKMNP-TV-Z]{26}$/;

Deno.test("ulid is 26 Crockford characters with the time first", () => {
  const t = Date.UTC(2026, 0, 1);
  const id = ulid(t + 1_000_000);
  assert.match(id, ULID_RE);
  // 10 time characters encode the milliseconds; a later time sorts later.
  assert.ok(ulid(t + 2_000_000).slice(0, 10) > id.slice(0, 10));
});

Deno.test("ulids made in the same millisecond strictly increase", () => {
  const now = Date.now() + 10_000;
  const ids = Array.from({ length: 1000 }, () => ulid(now));
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1], `${ids[i]} > ${ids[i - 1]}`);
  assert.equal(new Set(ids).size, ids.length);
});

Deno.test("ulids keep increasing when the clock steps back", () => {
  const now = Date.now() + 20_000;
  const a = ulid(now);
  const b = ulid(now - 5000);
  const c = ulid();
  assert.ok(b > a);
  assert.ok(c > b);
});

Deno.test("session and execution ids match the contract's patterns", () => {
  const sid = newSessionId();
  const eid = newExecutionId();
  assert.match(sid, /^ses_[0-9A-HJKMNP-TV-Z]{26}$/);
  assert.match(sid, SESSION_ID_RE);
  assert.match(eid, EXECUTION_ID_RE);
});

Deno.test("randomSecret is URL-safe with the requested entropy", () => {
  const s = randomSecret(32);
  assert.match(s, /^[A-Za-z0-9_-]{43}$/);
  assert.match(randomSecret(16), /^[A-Za-z0-9_-]{22}$/);
  assert.notEqual(randomSecret(), randomSecret());
});

Deno.test("tokenExecutionId reads the execution of a well-formed token only", () => {
  const eid = newExecutionId();
  const token = `tok.${eid}.${randomSecret(32)}`;
  assert.equal(tokenExecutionId(token), eid);
  assert.equal(tokenExecutionId(`tok.${eid}.short`), undefined);
  assert.equal(tokenExecutionId(`tok.exc_bad.${randomSecret(32)}`), undefined);
  // Crockford base32 has no I, L, O or U: no execution id holds one.
  assert.equal(tokenExecutionId(`tok.exc_${"O".repeat(26)}.${randomSecret(32)}`), undefined);
  assert.equal(tokenExecutionId(""), undefined);
});

Deno.test("sha256Hex matches a known digest", async () => {
  assert.equal(
    await sha256Hex("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
});

Deno.test("timingSafeEqual compares whole texts", () => {
  assert.equal(timingSafeEqual("secret", "secret"), true);
  assert.equal(timingSafeEqual("secret", "secreT"), false);
  assert.equal(timingSafeEqual("secret", "secret2"), false);
  assert.equal(timingSafeEqual("", ""), true);
  assert.equal(timingSafeEqual("é", "e"), false);
});
