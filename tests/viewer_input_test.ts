/**
 * Input from the viewer page (PROTOCOL.md 12 and 14) in headless Chromium against the real
 * service: the composer sends inputs to a pending, then running execution and shows each as
 * sent, then delivered (a raw ingest client plays the wrapper and confirms with
 * `input_delivered`); `endOfInput` closes it; an ACP run's permission request is answered by
 * clicking one of its buttons, and the answer appears once delivered. Read-only (ticket)
 * views get neither composer nor buttons.
 *
 * Needs the input route of section 12: without it (a branch where it has not landed) the
 * tests are skipped with a message.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { startServer, type TestServer } from "./helpers/server.ts";
import { spawnWrapper } from "./helpers/runs.ts";
import { acpAgentCommand } from "../demo/acp_agent.ts";
import type { Config } from "../src/config.ts";
import { connectRun, createRun, type IngestClient, type Run } from "./helpers/ingest_client.ts";
import {
  CHROMIUM,
  hasChromium,
  launchBrowser,
  newPage,
  openSession,
  screenshot,
  type TestBrowser,
  type TestFrame,
  ticketFor,
} from "./helpers/browser.ts";

const ACP = JSON.parse(
  Deno.readTextFileSync(new URL("./fixtures/page/acp_run.json", import.meta.url)),
) as { prompt: string; beforeAnswer: TestFrame[]; answer: unknown; afterAnswer: TestFrame[] };

/** Whether this build has `POST …/executions/:eid/input` (asked of a real instance). */
async function probeInputRoute(): Promise<boolean> {
  const server = await startServer();
  try {
    const run = await createRun(server, "probe", {});
    const res = await server.api(`/v1/sessions/probe/executions/${run.executionId}/input`, {
      method: "POST",
      json: { data: "x" },
    });
    await res.body?.cancel();
    return res.status === 202;
  } finally {
    await server.close();
  }
}

const hasInputRoute = hasChromium && await probeInputRoute();
if (!hasChromium) console.warn(`viewer_input_test: ${CHROMIUM} not found, skipping`);
else if (!hasInputRoute) {
  console.warn("viewer_input_test: no input route (PROTOCOL.md 12) in this build, skipping");
}

/** A raw ingest connection playing the wrapper: numbered frames, inputs it was sent. */
class FakeWrapper {
  #seq = 0;
  private constructor(readonly client: IngestClient) {}

  static async connect(run: Run): Promise<FakeWrapper> {
    return new FakeWrapper(await connectRun(run));
  }

  /** Sends frames and waits for their acks. */
  async send(frames: TestFrame[]): Promise<void> {
    for (const frame of frames) {
      this.client.send({ ...frame, seq: ++this.#seq, timestamp: new Date().toISOString() });
    }
    await this.client.ackOf(this.#seq);
  }

  /** Waits for the service's `input` frame with this inputId and returns it. */
  input(inputId: number): Promise<Record<string, unknown>> {
    return this.client.next((m) => m.type === "input" && m.inputId === inputId, 30_000);
  }

  /** Confirms inputs up to `inputId` as written to the agent. */
  delivered(inputId: number): Promise<void> {
    return this.send([{ streamEventType: "input_delivered", data: { inputId } }]);
  }
}

function inputTest(
  name: string,
  fn: (server: TestServer, browser: TestBrowser) => Promise<void>,
  config: Record<string, unknown> = {},
) {
  Deno.test({
    name,
    ignore: !hasInputRoute,
    async fn() {
      // `maxPendingInputs` is the input branch's (PROTOCOL.md 12): untyped until it lands.
      const server = await startServer({ config: config as Partial<Config> });
      const browser = await launchBrowser();
      try {
        await fn(server, browser);
      } finally {
        await browser.close();
        await server.close();
      }
    },
  });
}

/** The delivery chip of input #n in the conversation. */
const inputState = (page: Page, inputId: number) =>
  page.locator(".item[data-kind=input] .item-body", { hasText: `Input #${inputId}` })
    .getAttribute("data-state");

async function waitForInputState(page: Page, inputId: number, state: string): Promise<void> {
  await page.locator(`.item[data-kind=input] .item-body[data-state="${state}"]`, {
    hasText: `Input #${inputId}`,
  }).waitFor({ timeout: 30_000 });
}

async function compose(page: Page, text: string, options: { json?: boolean; end?: boolean } = {}) {
  await page.fill("#composer-text", text);
  await page.setChecked("#composer-json", options.json ?? false);
  await page.setChecked("#composer-end", options.end ?? false);
  await page.click("#composer-send");
}

inputTest("composer: inputs to a pending, then running execution go from sent to delivered", async (
  server,
  browser,
) => {
  const run = await createRun(server, "composer", { input: { prompt: "ask me something" } });
  const { page, errors } = await newPage(browser);
  await openSession(page, server, "composer");
  await page.locator("#composer:not([hidden])").waitFor({ timeout: 30_000 });
  assert.equal(await page.inputValue("#composer-exec"), run.executionId, "the pending execution");

  // Sent while pending: accepted, shown as sent; the wrapper is not there yet.
  await compose(page, "first answer");
  await page.locator("#composer-status", { hasText: "Input #1 sent" }).waitFor();
  await waitForInputState(page, 1, "sent");
  assert.equal(await page.inputValue("#composer-text"), "", "the composer is cleared");

  // The wrapper connects, is given the input, confirms it: delivered.
  const wrapper = await FakeWrapper.connect(run);
  assert.deepEqual(await wrapper.input(1), { type: "input", inputId: 1, data: "first answer" });
  await wrapper.delivered(1);
  await waitForInputState(page, 1, "delivered");

  // JSON data, then end of input (without data): sent, delivered, and the composer closes.
  await compose(page, '{"answer": 42}', { json: true });
  await waitForInputState(page, 2, "sent");
  assert.deepEqual((await wrapper.input(2)).data, { answer: 42 });
  await compose(page, "", { end: true });
  await waitForInputState(page, 3, "sent");
  assert.equal((await wrapper.input(3)).endOfInput, true);
  await page.locator(".item[data-kind=input]", { hasText: "end of input" }).waitFor();
  await wrapper.delivered(3);
  await waitForInputState(page, 2, "delivered");
  await waitForInputState(page, 3, "delivered");
  await page.locator("#composer").waitFor({ state: "hidden", timeout: 30_000 });
  await page.locator(`#executions .exec-meta`, { hasText: "inputs 3/3 delivered" }).waitFor();
  assert.equal(await page.locator("#resume-scroll").isHidden(), true, "a short run is followed");
  await screenshot(page, "composer.png");

  const viewer = (await newPage(browser)).page;
  await openSession(viewer, server, "composer", { ticket: await ticketFor(server, "composer") });
  await viewer.locator(".item[data-kind=input]").first().waitFor({ timeout: 30_000 });
  assert.equal(await viewer.locator("#composer").isHidden(), true, "no composer with a ticket");
  assert.equal(await inputState(viewer, 3), "delivered");
  await wrapper.send([{ streamEventType: "complete", data: { exitCode: 0 } }]);
  assert.deepEqual(errors, []);
});

inputTest(
  "composer: bad JSON and a full input queue are explained; an ended run is not offered",
  async (
    server,
    browser,
  ) => {
    const run = await createRun(server, "composer-errors", {});
    const { page } = await newPage(browser);
    await openSession(page, server, "composer-errors");
    await page.locator("#composer:not([hidden])").waitFor({ timeout: 30_000 });
    await compose(page, "{not json", { json: true });
    await page.locator("#composer-status", { hasText: "Not valid JSON" }).waitFor();
    await compose(page, "one");
    await page.locator("#composer-status", { hasText: "Input #1 sent" }).waitFor();
    await compose(page, "two");
    await page.locator("#composer-status", { hasText: "Too many inputs wait for delivery" })
      .waitFor({ timeout: 30_000 });
    assert.equal(await page.inputValue("#composer-text"), "two", "kept for another try");
    const path = `/v1/sessions/composer-errors/executions/${run.executionId}`;
    assert.equal((await server.call<{ lastInputId: number }>(path)).body.lastInputId, 1);
    // An execution that ended is no longer offered.
    await server.call(`${path}/interrupt`, { method: "POST", json: {} });
    await page.locator("#composer").waitFor({ state: "hidden", timeout: 30_000 });
  },
  { maxPendingInputs: 1 },
);

inputTest("ACP run: a permission request answered by a click, shown once delivered", async (
  server,
  browser,
) => {
  const run = await createRun(server, "acp", {});
  // The first prompt goes in as an input while the execution is pending (PROTOCOL.md 14).
  const prompt = await server.call(`/v1/sessions/acp/executions/${run.executionId}/input`, {
    method: "POST",
    json: { data: ACP.prompt },
  });
  assert.equal(prompt.status, 202);
  const wrapper = await FakeWrapper.connect(run);
  await wrapper.input(1);
  await wrapper.delivered(1);
  await wrapper.send(ACP.beforeAnswer);

  const { page, errors } = await newPage(browser);
  await openSession(page, server, "acp");
  const request = page.locator(".item[data-kind=permission]");
  await request.locator("button.option").first().waitFor({ timeout: 30_000 });
  assert.deepEqual(await request.locator("button.option").allTextContents(), [
    "Allow once",
    "Always allow",
    "Reject",
  ]);
  const readOnly = (await newPage(browser)).page;
  await openSession(readOnly, server, "acp", { ticket: await ticketFor(server, "acp") });
  await readOnly.locator(".item[data-kind=permission]").waitFor({ timeout: 30_000 });
  assert.equal(await readOnly.locator(".item[data-kind=permission] button").count(), 1, "raw only");

  await request.locator("button.option", { hasText: "Allow once" }).click();
  const answer = await wrapper.input(2);
  assert.deepEqual(answer, { type: "input", inputId: 2, data: ACP.answer });
  await request.locator(".answer[data-state=sent]", { hasText: "Allow once" }).waitFor();
  assert.equal(await request.locator("button.option").count(), 0, "answered: no more buttons");
  await wrapper.delivered(2);
  await request.locator(".answer[data-state=delivered]", { hasText: "Answer: Allow once" })
    .waitFor({ timeout: 30_000 });
  await readOnly.locator(".item[data-kind=permission] .answer[data-state=delivered]").waitFor({
    timeout: 30_000,
  });

  await wrapper.send(ACP.afterAnswer);
  await page.locator(".item[data-kind=turn]", { hasText: "turn ended · end_turn" }).waitFor();
  const tool = page.locator(".item[data-kind=tool]");
  assert.equal(await tool.locator(".chip.status-completed").textContent(), "completed");
  assert.deepEqual(await tool.locator(".diff-lines span.add").allTextContents(), [
    "+ export const sum = (a, b) => a + b;\n",
  ]);
  assert.deepEqual(
    await page.locator(".item[data-kind=message] .text").allTextContents(),
    [
      "The test expects 3 for 1 + 2.",
      "I'll fix the off-by-one in `sum`.",
      "Fixed: `sum` no longer adds 1.",
    ],
  );
  assert.equal(await page.locator(".item[data-kind=plan] li.plan-completed").count(), 3);
  await page.locator("#timeline").evaluate((t) => t.scrollTop = 0);
  await screenshot(page, "acp-permission.png");
  await wrapper.send([{ streamEventType: "complete", data: { exitCode: 0 } }]);
  assert.deepEqual(errors, []);
});

inputTest(
  "ACP with the real wrapper: approve from the page, the agent edits, end of input ends the run",
  async (
    server,
    browser,
  ) => {
    const dir = await Deno.makeTempDir({ prefix: "tether-page-acp-" });
    const file = `${dir}/notes.md`;
    const run = await createRun(server, "acp-real", {});
    const path = `/v1/sessions/acp-real/executions/${run.executionId}`;
    await server.call(`${path}/input`, { method: "POST", json: { data: "please edit the notes" } });
    const wrapper = spawnWrapper(run, acpAgentCommand("--file", file), { wrapperArgs: ["--acp"] });
    try {
      const { page, errors } = await newPage(browser);
      await openSession(page, server, "acp-real");
      const request = page.locator(".item[data-kind=permission]");
      await request.locator("button.option", { hasText: "Allow" }).click();
      await request.locator(".answer[data-state=delivered]", { hasText: "Answer: Allow" })
        .waitFor();
      await page.locator(".item[data-kind=turn]", { hasText: "turn ended · end_turn" }).waitFor();
      const tool = page.locator(".item[data-kind=tool]");
      await tool.locator(".chip.status-completed").waitFor();
      assert.deepEqual(await tool.locator(".diff-lines span.add").allTextContents(), [
        "+ Edited in turn 1.\n",
      ]);
      assert.equal(await Deno.readTextFile(file), "Edited in turn 1.\n");
      await page.locator("#timeline").evaluate((t) => t.scrollTop = 0);
      await screenshot(page, "acp-real-wrapper.png");
      // End of input from the composer: the agent's stdin closes and the run completes.
      await compose(page, "", { end: true });
      await page.locator(`#executions li[data-status="completed"]`).waitFor({ timeout: 60_000 });
      assert.equal((await wrapper.status).code, 0);
      assert.deepEqual(errors, []);
    } finally {
      try {
        wrapper.kill("SIGKILL");
      } catch { /* already gone */ }
      await wrapper.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
);
