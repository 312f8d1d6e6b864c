import assert from "node:assert/strict";
import { callbackTargetProblem, callbackUrlProblem, isPrivateAddress } from "./callback_url.ts";

const refused = [
  // loopback, in the spellings URL normalizes to 127.0.0.1 or keeps
  "http://127.0.0.1/hook",
  "http://127.1.2.3:8080/hook",
  "http://2130706433/hook", // decimal
  "http://0x7f.0.0.1/hook", // hex
  "http://0x7f000001/hook",
  "http://017700000001/hook", // octal
  "http://localhost/hook",
  "http://LOCALHOST./hook",
  "http://api.localhost/hook",
  "http://[::1]/hook",
  "http://[::ffff:127.0.0.1]/hook",
  "http://[0:0:0:0:0:ffff:7f00:1]/hook",
  // unspecified
  "http://0.0.0.0/hook",
  "http://0/hook",
  "http://[::]/hook",
  // private
  "http://10.1.2.3/hook",
  "http://172.16.0.1/hook",
  "http://172.31.255.255/hook",
  "http://192.168.1.1/hook",
  "http://[fc00::1]/hook",
  "http://[fd12:3456::1]/hook",
  "http://[::ffff:10.0.0.1]/hook",
  // link-local (cloud metadata)
  "http://169.254.169.254/latest/meta-data",
  "http://[fe80::1]/hook",
  "http://[febf::1]/hook",
];

const accepted = [
  "https://hooks.example.com/tether",
  "http://8.8.8.8/hook",
  "http://172.32.0.1/hook",
  "http://172.15.255.255/hook",
  "http://192.169.0.1/hook",
  "http://169.255.0.1/hook",
  "http://[2001:db8::1]/hook",
  "http://[::ffff:8.8.8.8]/hook",
  "http://[fec0::1]/hook",
  "http://localhost.example.com/hook",
];

Deno.test("callbackUrlProblem refuses every loopback, private, link-local and unspecified form", () => {
  for (const url of refused) {
    assert.match(String(callbackUrlProblem(url, false)), /private/, url);
    assert.equal(callbackUrlProblem(url, true), undefined, `${url} with the allow switch`);
  }
  for (const url of accepted) assert.equal(callbackUrlProblem(url, false), undefined, url);
});

Deno.test("callbackUrlProblem refuses credentials even with the allow switch", () => {
  for (const url of ["https://user:pw@hooks.example.com/", "https://user@hooks.example.com/"]) {
    assert.match(String(callbackUrlProblem(url, false)), /credentials/);
    assert.match(String(callbackUrlProblem(url, true)), /credentials/);
  }
});

Deno.test("isPrivateAddress reads resolver answers (v4 and v6)", () => {
  for (const a of ["127.0.0.1", "10.0.0.1", "::1", "fe80::1%eth0", "::ffff:192.168.0.1", "::"]) {
    assert.equal(isPrivateAddress(a), true, a);
  }
  for (const a of ["93.184.216.34", "2606:2800:220:1::1", "not an address"]) {
    assert.equal(isPrivateAddress(a), false, a);
  }
});

Deno.test("callbackTargetProblem: a name resolving to a private address is not called", async () => {
  const resolveTo = (addresses: string[]) => () => Promise.resolve(addresses);
  const url = new URL("https://hooks.example.com/tether");
  assert.equal(await callbackTargetProblem(url, resolveTo(["93.184.216.34"])), undefined);
  assert.match(
    String(await callbackTargetProblem(url, resolveTo(["93.184.216.34", "10.0.0.5"]))),
    /private/,
  );
  assert.match(String(await callbackTargetProblem(url, resolveTo(["::1"]))), /private/);
  assert.match(String(await callbackTargetProblem(url, resolveTo([]))), /resolve/);
  // Address literals need no resolver.
  const never = () => Promise.reject(new Error("not called"));
  assert.equal(await callbackTargetProblem(new URL("http://8.8.8.8/"), never), undefined);
  assert.match(String(await callbackTargetProblem(new URL("http://[::1]/"), never)), /private/);
});
