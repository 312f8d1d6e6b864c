/**
 * The viewer page (`GET /`) in headless Chromium against the real service and a real
 * wrapper process running the demo agent: events appear live, a ticket link is read-only,
 * agent output is shown as text (never markup), and an interrupt from the page reaches the
 * agent and is reflected. Saves a screenshot to `test-artifacts/viewer.png`.
 *
 * Needs Debian's `chromium` at /usr/bin/chromium (`.ci/run` installs it); without it the
 * browser test is skipped with a message.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { startServer } from "./helpers/server.ts";
import { createRun, eventually } from "./helpers/ingest_client.ts";
import { spawnWrapper } from "./helpers/runs.ts";
import {
  CHROMIUM,
  hasChromium,
  launchBrowser,
  newPage,
  openSession,
  screenshot,
  ticketFor,
} from "./helpers/browser.ts";
import { MODULE_PARAM, moduleUrl, PAGE_MODULES } from "../src/routes/viewer_page.ts";

if (!hasChromium) {
  console.warn(`viewer_page_test: ${CHROMIUM} not found, skipping the browser test`);
}

const AGENT = new URL("../demo/agent.ts", import.meta.url).pathname;

/** Number of items drawn in the conversation. */
const itemCount = (page: Page) => page.locator("#events > li.item").count();

/** Waits until the conversation has drawn at least `n` items. */
async function waitForItems(page: Page, n: number, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while ((await itemCount(page)) < n) {
    if (Date.now() > end) throw new Error(`the list never drew ${n} items`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function sha256Base64(bytes: ArrayBuffer): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

Deno.test("viewer page: every script is pinned by hash; modules are served on / only", async () => {
  const server = await startServer();
  try {
    const res = await fetch(`${server.url}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/html/);
    const csp = res.headers.get("content-security-policy") ?? "";
    const html = await res.text();
    const scriptSrc = csp.split("; ").find((d) => d.startsWith("script-src "))!;
    assert.doesNotMatch(scriptSrc, /'self'|'unsafe-|data:|blob:|https?:/, "hashes only");
    const importMap = JSON.parse(html.match(/<script type="importmap">(.*?)<\/script>/s)![1]);
    for (const name of PAGE_MODULES) {
      const module = await fetch(`${server.url}${moduleUrl(name)}`);
      assert.equal(module.status, 200, name);
      assert.match(module.headers.get("content-type") ?? "", /text\/javascript/);
      assert.equal(module.headers.get("x-content-type-options"), "nosniff");
      const hash = `sha256-${await sha256Base64(await module.arrayBuffer())}`;
      assert.ok(scriptSrc.includes(`'${hash}'`), `${name} is pinned in the CSP`);
      assert.equal(importMap.imports[`./${name}`], moduleUrl(name));
      assert.equal(importMap.integrity[moduleUrl(name)], hash);
    }
    const unknown = await fetch(`${server.url}/?${MODULE_PARAM}=../deno.json`);
    assert.equal(unknown.status, 404);
    assert.equal((await unknown.json()).error, "NOT_FOUND");
  } finally {
    await server.close();
  }
});

Deno.test({
  name: "viewer page: live conversation, read-only ticket view, interrupt reflected",
  ignore: !hasChromium,
  async fn() {
    const server = await startServer({ config: { interruptTimeoutMs: 10_000 } });
    const browser = await launchBrowser();
    let wrapper: Deno.ChildProcess | undefined;
    try {
      const run = await createRun(server, "viewer-e2e", { input: { prompt: "fix the tests" } });
      // The agent's script repeats for about a minute, so it is still running when we stop it.
      wrapper = spawnWrapper(run, [
        Deno.execPath(),
        "run",
        AGENT,
        "--duration-ms",
        "6000",
        "--repeat",
        "10",
      ]);

      const { page, errors } = await newPage(browser);
      await openSession(page, server, "viewer-e2e");

      // The tail, then live: items keep arriving while we watch.
      await page.locator(`#executions li[data-status="running"]`).waitFor({ timeout: 30_000 });
      await waitForItems(page, 5);
      await page.locator(`.item[data-kind="tool"]`).first().waitFor({ timeout: 30_000 });
      await page.locator("#conn-text", { hasText: "live" }).waitFor({ timeout: 30_000 });
      assert.equal(await page.textContent("#s-access"), "full (API key)");
      assert.equal(await page.locator(".execution .health.healthy").count(), 1);
      // The full execution id, with a copy button, in the card and at the top of the run.
      assert.equal(await page.textContent("#executions .exec-id"), run.executionId);
      await browser.context.grantPermissions(["clipboard-read", "clipboard-write"], {
        origin: server.url,
      });
      await page.locator("#executions .copy").click();
      assert.equal(await page.evaluate("navigator.clipboard.readText()"), run.executionId);
      await page.locator("#timeline").evaluate((t) => t.scrollTop = 0);
      const header = page.locator(`.item[data-kind="execution"]`);
      assert.equal(await header.locator(".full-id").textContent(), run.executionId);
      assert.equal(await header.locator(".prompt pre").textContent(), "fix the tests");
      // Back to the end: the list follows the live run again.
      await page.locator("#timeline").evaluate((t) => t.scrollTop = t.scrollHeight);

      // Agent output that looks like markup is shown as text.
      await page.locator(`.item[data-kind="output"]`, { hasText: '<h1 id="injected">' })
        .waitFor({ timeout: 30_000 });
      assert.equal(await page.locator("#injected").count(), 0);

      // Filters, the events view and the raw JSON of an item.
      await page.selectOption("#filter-type", "agent");
      const kinds = await page.locator("#events > li.item").evaluateAll((items) =>
        items.map((item) => item.getAttribute("data-kind"))
      );
      assert.ok(kinds.length > 0);
      assert.ok(!kinds.includes("output"), `no output item when filtered: ${kinds}`);
      await page.check(`input[name="view"][value="events"]`);
      // The newest item stays drawn while the list follows the live run.
      const key = await page.locator("#events > li.item").last().getAttribute("data-key");
      const row = page.locator(`#events > li.item[data-key="${key}"]`);
      await row.locator("button.raw").click();
      // An item that joins several events (message parts) shows them all, as an array.
      const raw = JSON.parse((await row.locator("pre.json").textContent())!);
      const shown: { streamEventType: string }[] = Array.isArray(raw) ? raw : [raw];
      assert.ok(shown.length > 0);
      assert.deepEqual(new Set(shown.map((e) => e.streamEventType)), new Set(["agent"]));
      await page.check(`input[name="view"][value="conversation"]`);
      await page.selectOption("#filter-type", "");

      // A ticket link is a read-only view of the same live session: no interrupt, no composer.
      const viewer = (await newPage(browser)).page;
      await openSession(viewer, server, "viewer-e2e", {
        ticket: await ticketFor(server, "viewer-e2e"),
      });
      await waitForItems(viewer, 5);
      await viewer.locator(`#executions li[data-status="running"]`).waitFor();
      assert.equal(await viewer.textContent("#s-access"), "read-only (ticket)");
      assert.equal(await viewer.locator(`[data-action="interrupt"]`).count(), 0);
      assert.equal(await viewer.locator("#key-label").isHidden(), true);
      assert.equal(await viewer.locator("#composer").isHidden(), true);

      // Following: scrolling up pauses it and counts what arrives; the button resumes it.
      await eventually(
        async () =>
          await viewer.locator("#timeline").evaluate((t) => t.scrollHeight - t.clientHeight) > 300,
        "a scrollable conversation",
        30_000,
      );
      await viewer.hover("#timeline");
      await viewer.mouse.wheel(0, -5000);
      await viewer.locator("#resume-scroll").waitFor({ timeout: 30_000 });
      assert.match((await viewer.textContent("#resume-scroll")) ?? "", /Paused · \d+ new/);
      await viewer.click("#resume-scroll");
      assert.equal(await viewer.locator("#resume-scroll").isHidden(), true);

      await screenshot(page, "viewer-running.png");

      // Interrupt (two clicks) from the key-holding page.
      const interrupt = page.locator(`[data-action="interrupt"]`);
      await interrupt.click();
      assert.equal(await interrupt.textContent(), "Click again to interrupt");
      await interrupt.click();
      await page.locator(`#executions li[data-status="interrupted"]`).waitFor({ timeout: 45_000 });
      const stopped = page.locator(`.item[data-kind="status"]`, {
        hasText: "Interrupted from the viewer",
      });
      await stopped.first().waitFor();
      await page.locator(`#executions .exec-error`, { hasText: "Interrupted from the viewer" })
        .waitFor();
      assert.equal(await page.locator(`[data-action="interrupt"]`).count(), 0);
      // The read-only page sees the end too, live, and still follows.
      await viewer.locator(`#executions li[data-status="interrupted"]`).waitFor({
        timeout: 30_000,
      });
      await viewer.locator(`.item[data-kind="status"]`, { hasText: "Interrupted from the viewer" })
        .first().waitFor();
      assert.equal(await viewer.locator("#resume-scroll").isHidden(), true, "still following");

      const status = await wrapper.status;
      assert.equal(status.code, 130, "the wrapper exits 130 after an interrupt");
      wrapper = undefined;

      await screenshot(page, "viewer.png");
      await screenshot(viewer, "viewer-readonly.png");
      assert.deepEqual(errors, []);
    } finally {
      if (wrapper) {
        try {
          wrapper.kill("SIGKILL");
        } catch { /* already gone */ }
        await wrapper.status;
      }
      await browser.close();
      await server.close();
    }
  },
});

Deno.test({
  name: "viewer page: an expired ticket says so and stops, instead of showing a stale run",
  ignore: !hasChromium,
  async fn() {
    const server = await startServer();
    const browser = await launchBrowser();
    try {
      await createRun(server, "expiring");
      const { body } = await server.call<{ ticket: string }>("/v1/sessions/expiring/tickets", {
        method: "POST",
        json: { ttlMs: 1000 },
      });
      const { page } = await newPage(browser);
      const refused: string[] = [];
      page.on("response", (res) => res.status() === 401 && refused.push(res.url()));
      await openSession(page, server, "expiring", { ticket: body.ticket });
      await page.locator("#banner", { hasText: "expired" }).waitFor();
      assert.equal(await page.textContent("#conn-text"), "not connected");
      const seen = refused.length;
      await new Promise((r) => setTimeout(r, 4500)); // two of the page's 2 s polls
      assert.equal(refused.length, seen, "the page stopped polling");
    } finally {
      await browser.close();
      await server.close();
    }
  },
});
