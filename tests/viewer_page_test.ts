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
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { API_KEY, startServer } from "./helpers/server.ts";
import { createRun } from "./helpers/ingest_client.ts";
import { spawnWrapper } from "./helpers/runs.ts";

const CHROMIUM = "/usr/bin/chromium";
const hasChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);
if (!hasChromium) {
  console.warn(`viewer_page_test: ${CHROMIUM} not found, skipping the browser test`);
}

const ARTIFACTS = new URL("../test-artifacts/", import.meta.url);
const AGENT = new URL("../demo/agent.ts", import.meta.url).pathname;

async function launchBrowser(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const userDataDir = await Deno.makeTempDir({ prefix: "tether-chromium-" });
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 860 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return {
    context,
    async close() {
      await context.close();
      await Deno.remove(userDataDir, { recursive: true }).catch(() => {});
    },
  };
}

/** Number of event rows in the timeline. */
const rowCount = (page: Page) => page.locator("#events > li").count();

/** Waits until the timeline has at least `n` rows. */
async function waitForRows(page: Page, n: number, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while ((await rowCount(page)) < n) {
    if (Date.now() > end) throw new Error(`timeline never reached ${n} rows`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test({
  name: "viewer page: live timeline, read-only ticket view, interrupt reflected",
  ignore: !hasChromium,
  async fn() {
    const server = await startServer({ config: { interruptTimeoutMs: 10_000 } });
    const browser = await launchBrowser();
    let wrapper: Deno.ChildProcess | undefined;
    try {
      // A plain GET serves the page with a strict CSP.
      const plain = await fetch(`${server.url}/`);
      assert.equal(plain.status, 200);
      assert.match(plain.headers.get("content-type") ?? "", /text\/html/);
      assert.match(plain.headers.get("content-security-policy") ?? "", /script-src 'sha256-/);
      await plain.body?.cancel();

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

      const page = await browser.context.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (err) => pageErrors.push(String(err)));
      await page.goto(`${server.url}/?session=viewer-e2e`);
      await page.fill("#key-input", API_KEY);
      await page.click("#open-button");

      // Replay, then live: rows keep arriving while we watch.
      await page.locator(`#executions li[data-status="running"]`).waitFor({ timeout: 15_000 });
      await waitForRows(page, 5);
      await waitForRows(page, (await rowCount(page)) + 5);
      assert.equal(await page.textContent("#conn-text"), "live");
      assert.equal(await page.textContent("#s-access"), "full (API key)");
      assert.equal(await page.locator(".execution .health.healthy").count(), 1);

      // Agent output that looks like markup is shown as text.
      await page.locator("#events .ev-summary", { hasText: '<h1 id="injected">' })
        .waitFor({ timeout: 15_000 });
      assert.equal(await page.locator("#injected").count(), 0);

      // Filters and pretty JSON.
      await page.selectOption("#filter-type", "agent");
      const visible = await page.locator("#events > li:not([hidden])").all();
      const visibleTypes = await Promise.all(visible.map((row) => row.getAttribute("data-type")));
      assert.ok(visibleTypes.length > 0);
      assert.deepEqual([...new Set(visibleTypes)], ["agent"]);
      await page.locator("#events > li:not([hidden]) .event-row").first().click();
      const json = await page.locator("#events > li.open pre.json").first().textContent();
      assert.equal(JSON.parse(json!).streamEventType, "agent");
      await page.selectOption("#filter-type", "");

      // A ticket link is a read-only view of the same live session: no interrupt button.
      const { body: t } = await server.call<{ ticket: string }>(
        "/v1/sessions/viewer-e2e/tickets",
        { method: "POST", json: { ttlMs: 600_000 } },
      );
      const viewer = await browser.context.newPage();
      await viewer.goto(`${server.url}/?session=viewer-e2e&ticket=${encodeURIComponent(t.ticket)}`);
      await waitForRows(viewer, 5);
      await viewer.locator(`#executions li[data-status="running"]`).waitFor();
      assert.equal(await viewer.textContent("#s-access"), "read-only (ticket)");
      assert.equal(await viewer.locator(`[data-action="interrupt"]`).count(), 0);
      assert.equal(await viewer.locator("#key-label").isHidden(), true);

      // Auto-scroll: scrolling up pauses it and counts what arrives; the button resumes it.
      await viewer.hover("#timeline");
      await viewer.mouse.wheel(0, -5000);
      await viewer.locator("#resume-scroll").waitFor({ timeout: 10_000 });
      assert.match((await viewer.textContent("#resume-scroll")) ?? "", /Paused · \d+ new/);
      await viewer.click("#resume-scroll");
      assert.equal(await viewer.locator("#resume-scroll").isHidden(), true);

      await Deno.mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: new URL("viewer-running.png", ARTIFACTS).pathname });

      // Interrupt (two clicks) from the key-holding page.
      const interrupt = page.locator(`[data-action="interrupt"]`);
      await interrupt.click();
      assert.equal(await interrupt.textContent(), "Click again to interrupt");
      await interrupt.click();
      await page.locator(`#executions li[data-status="interrupted"]`).waitFor({ timeout: 15_000 });
      await page.locator(`#events > li[data-type="interrupted"]`).waitFor();
      const reason = await page.locator(`#events > li[data-type="interrupted"] .ev-summary`)
        .first().textContent();
      assert.equal(reason, "Interrupted from the viewer");
      await page.locator(`#executions .exec-error`, { hasText: "Interrupted from the viewer" })
        .waitFor();
      assert.equal(await page.locator(`[data-action="interrupt"]`).count(), 0);
      // The read-only page sees the end too, live.
      await viewer.locator(`#executions li[data-status="interrupted"]`).waitFor({
        timeout: 10_000,
      });
      await viewer.locator(`#events > li[data-type="interrupted"]`).waitFor();
      assert.equal(await viewer.locator("#resume-scroll").isHidden(), true, "still following");

      const status = await wrapper.status;
      assert.equal(status.code, 130, "the wrapper exits 130 after an interrupt");
      wrapper = undefined;

      await page.screenshot({ path: new URL("viewer.png", ARTIFACTS).pathname });
      await viewer.screenshot({ path: new URL("viewer-readonly.png", ARTIFACTS).pathname });
      assert.deepEqual(pageErrors, []);
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
