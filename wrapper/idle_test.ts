import assert from "node:assert/strict";
import { IdleWatch } from "./idle.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("IdleWatch fires after a quiet period; touch restarts it; pause stops it", async () => {
  let fired = 0;
  const idle = new IdleWatch(60, () => fired++);
  idle.touch(); // not started: nothing happens
  await sleep(80);
  assert.equal(fired, 0);
  idle.restart();
  await sleep(40);
  idle.touch();
  await sleep(40);
  assert.equal(fired, 0);
  await sleep(40);
  assert.equal(fired, 1);
  idle.restart();
  idle.pause();
  await sleep(80);
  assert.equal(fired, 1);
});

Deno.test("IdleWatch with 0 is off", async () => {
  let fired = 0;
  const idle = new IdleWatch(0, () => fired++);
  idle.restart();
  await sleep(10);
  assert.equal(fired, 0);
});
