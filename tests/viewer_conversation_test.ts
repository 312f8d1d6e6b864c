/**
 * The viewer page's conversation view in headless Chromium against the real service: each
 * agent format of `wrapper/fixtures/` drawn as messages, tool calls, results, diffs and
 * usage; a hostile fixture that never becomes markup; and a 50,000-event session opened at
 * its tail with a bounded DOM. Screenshots go to `test-artifacts/` (git-ignored).
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { startServer, type TestServer } from "./helpers/server.ts";
import {
  CHROMIUM,
  hasChromium,
  ingestRun,
  jsonlFrames,
  launchBrowser,
  newPage,
  openSession,
  screenshot,
  type TestBrowser,
  type TestFrame,
  ticketFor,
} from "./helpers/browser.ts";

if (!hasChromium) {
  console.warn(`viewer_conversation_test: ${CHROMIUM} not found, skipping the browser tests`);
}

const FIXTURES = new URL("../wrapper/fixtures/", import.meta.url);
const PAGE_FIXTURES = new URL("./fixtures/page/", import.meta.url);

/** The Kilo SSE fixture as the wrapper forwards it (`kilocode` events, PROTOCOL.md 9.1). */
function kiloFrames(): TestFrame[] {
  const text = Deno.readTextFileSync(new URL("kilocode_events.sse", FIXTURES));
  const frames: TestFrame[] = [];
  for (const block of text.split("\n\n")) {
    const lines = block.split("\n");
    const event = lines.find((l) => l.startsWith("event: "))?.slice(7);
    const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
    if (!data) continue;
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(data);
    } catch {
      parsed = { raw: data };
    }
    const name = event ?? String(parsed.type);
    if (name === "server.connected" || name === "server.heartbeat") continue;
    frames.push({ streamEventType: "kilocode", data: { ...parsed, event: name } });
  }
  return frames;
}

const stderr = (text: string): TestFrame => ({
  streamEventType: "output",
  data: { stream: "stderr", text },
});

/** Text of the drawn items of one kind. */
function texts(page: Page, kind: string, selector = ".item-body"): Promise<string[]> {
  return page.locator(`#events > .item[data-kind="${kind}"] ${selector}`).allTextContents();
}

function browserTest(
  name: string,
  fn: (server: TestServer, browser: TestBrowser) => Promise<void>,
) {
  Deno.test({
    name,
    ignore: !hasChromium,
    async fn() {
      const server = await startServer();
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

interface FormatCase {
  name: string;
  frames: TestFrame[];
  check(page: Page): Promise<void>;
}

const LONG_OUTPUT = Array.from({ length: 30 }, (_, i) => `ok ${i + 1} - test ${i + 1}`).join("\n");

const FORMATS: FormatCase[] = [
  {
    name: "claude",
    frames: [
      ...jsonlFrames(new URL("claude_code_stream_json.jsonl", FIXTURES)).slice(0, -1),
      {
        streamEventType: "agent",
        data: {
          type: "assistant",
          message: {
            content: [{
              type: "tool_use",
              id: "toolu_edit",
              name: "Edit",
              input: { file_path: "src/sum.ts", old_string: "a + b + 1", new_string: "a + b" },
            }, { type: "tool_use", id: "toolu_long", name: "Bash", input: { command: "tap" } }],
          },
        },
      },
      {
        streamEventType: "agent",
        data: {
          type: "user",
          message: {
            content: [{ type: "tool_result", tool_use_id: "toolu_long", content: LONG_OUTPUT }],
          },
        },
      },
      ...jsonlFrames(new URL("claude_code_stream_json.jsonl", FIXTURES)).slice(-1),
    ],
    async check(page) {
      assert.deepEqual(await texts(page, "tool", ".tool-name"), ["Bash", "Edit", "Bash"]);
      assert.deepEqual(
        await page.locator(".item[data-kind=tool] .diff-lines span").allTextContents(),
        ["- a + b + 1\n", "+ a + b\n"],
      );
      const long = page.locator(".item[data-kind=tool] details.long", { hasText: "30 lines" });
      assert.equal(await long.getAttribute("open"), null, "a long result starts collapsed");
      await long.locator("summary").click();
      await long.locator("pre", { hasText: "ok 30 - test 30" }).waitFor();
      assert.deepEqual(await texts(page, "result", ".text"), [
        "All 3 tests pass — nothing to fix. ✅",
      ]);
      const usage = "2,500 in · 67 out · 1,700 cache read · $0.0123";
      assert.equal(await page.textContent(".item[data-kind=execution] .usage"), `Usage: ${usage}`);
      assert.equal(await page.textContent("#executions .exec-usage"), usage);
    },
  },
  {
    name: "codex",
    frames: jsonlFrames(new URL("codex_exec_json.jsonl", FIXTURES)),
    async check(page) {
      assert.deepEqual(await texts(page, "tool", ".tool-name"), ["shell"]);
      assert.equal(await page.textContent(".item[data-kind=tool] .chip"), "failed");
      assert.deepEqual(await texts(page, "files", "li"), ["src/sum.js (update)"]);
      assert.match((await texts(page, "turn")).join(), /24,763 in · 122 out · 24,448 cache read/);
      assert.deepEqual(await texts(page, "message", ".text"), [
        "**Checking the failing test**\n\nI'll look at the test output first.",
        "Fixed the off-by-one in `sum` and the test passes now.",
      ]);
    },
  },
  {
    name: "gemini",
    frames: jsonlFrames(new URL("gemini_cli_stream_json.jsonl", FIXTURES)),
    async check(page) {
      assert.deepEqual(await texts(page, "message", ".text"), [
        "List the files in src",
        "`src` holds three files: main.ts, app.ts and util.ts.",
      ]);
      assert.deepEqual(await texts(page, "tool", ".tool-name"), ["list_directory"]);
      assert.deepEqual(await texts(page, "result", ".text"), ["success"]);
      assert.match(await page.textContent("#executions .exec-usage") ?? "", /8,000 in · 123 out/);
    },
  },
  {
    name: "opencode",
    frames: jsonlFrames(new URL("opencode_run_json.jsonl", FIXTURES)),
    async check(page) {
      assert.deepEqual(await texts(page, "tool", ".tool-name"), ["bash"]);
      assert.deepEqual(await texts(page, "message", ".text"), [
        "The project has a README and a src directory.",
      ]);
      assert.match((await texts(page, "turn")).join(), /step finished · stop · 9,120 in · 48 out/);
    },
  },
  {
    name: "kilo",
    frames: kiloFrames(),
    async check(page) {
      assert.deepEqual(await texts(page, "message", ".text"), ["Looking at the repository…"]);
      assert.deepEqual(await texts(page, "output", ".stream"), ["custom.note", "stderr"]);
      assert.ok((await texts(page, "status")).includes("permission.asked: bash · git status"));
    },
  },
];

browserTest("conversation view: every fixture format, prompt on top, stderr labelled", async (
  server,
  browser,
) => {
  for (const format of FORMATS) {
    const sessionId = `format-${format.name}`;
    const prompt = `Prompt of the ${format.name} run`;
    const { run } = await ingestRun(server, sessionId, [
      ...format.frames,
      stderr("warning: this is only a warning"),
    ], { input: { prompt }, end: true });
    const { page, errors } = await newPage(browser);
    await openSession(page, server, sessionId);
    await page.locator(`#executions li[data-status="completed"]`).waitFor({ timeout: 30_000 });
    await page.locator(".item[data-kind=status]", { hasText: "running → completed" }).waitFor();
    // Everything fits: scroll to the top so the header is drawn too.
    await page.locator("#timeline").evaluate((t) => t.scrollTop = 0);
    const header = page.locator(".item[data-kind=execution]");
    assert.equal(await header.locator(".full-id").textContent(), run.executionId);
    assert.equal(await header.locator(".prompt pre").textContent(), prompt);
    const stderrItem = page.locator(".item[data-kind=output] [data-stream=stderr]");
    assert.equal(await stderrItem.locator(".stream").textContent(), "stderr");
    assert.equal(await stderrItem.locator("pre").textContent(), "warning: this is only a warning");
    assert.equal(await page.locator(".item[data-kind=error]").count(), 0, "a warning is no error");
    await format.check(page);
    await page.locator("#timeline").evaluate((t) => t.scrollTop = 0);
    await screenshot(page, `conversation-${format.name}.png`);
    assert.deepEqual(errors, [], format.name);
    await page.close();
  }
});

/** Hostile frames: markup, event handlers and javascript: URLs in every field drawn. */
function hostileFrames(): TestFrame[] {
  const acp = (update: Record<string, unknown>) => ({ streamEventType: "acp", data: update });
  const pwn = (tag: string) => `<img src=x onerror="window.__pwned='${tag}'">`;
  return [
    ...jsonlFrames(new URL("hostile.jsonl", PAGE_FIXTURES)),
    { streamEventType: "output", data: { stream: "stdout", text: `<script>${pwn("out")}` } },
    stderr(`<a href="javascript:window.__pwned='stderr'">x</a>`),
    {
      streamEventType: "kilocode",
      data: { raw: `<svg onload="window.__pwned='raw'">`, event: "x" },
    },
    acp({ sessionUpdate: "agent_message_chunk", content: { type: "text", text: pwn("acp") } }),
    acp({
      sessionUpdate: "tool_call",
      toolCallId: "c1",
      title: pwn("title"),
      kind: pwn("kind"),
      status: "pending",
      locations: [{ path: pwn("location") }],
      content: [{ type: "diff", path: pwn("diffpath"), oldText: "a", newText: pwn("diff") }],
    }),
    acp({ sessionUpdate: "plan", entries: [{ content: pwn("plan"), status: pwn("status") }] }),
    {
      streamEventType: "permission_request",
      data: {
        requestId: 1,
        toolCall: { toolCallId: "c1", title: pwn("permission") },
        options: [{ optionId: pwn("optionid"), name: pwn("option"), kind: "allow_once" }],
      },
    },
    { streamEventType: "error", data: { error: pwn("error"), code: pwn("code"), fatal: false } },
    { streamEventType: pwn("type").replace(/[^A-Za-z0-9_.:-]/g, "_"), data: { x: pwn("x") } },
  ];
}

/** Opens every item's raw JSON and collapsed texts, checking that nothing became markup. */
async function assertOnlyText(page: Page): Promise<void> {
  const keys = await page.locator("#events > .item").evaluateAll((items) =>
    items.map((item) => item.getAttribute("data-key")!)
  );
  assert.ok(keys.length > 15, `items drawn: ${keys.length}`);
  // Collected item by item: the virtual list keeps only the items near the view drawn.
  let text = "";
  for (const key of keys) {
    const item = page.locator(`#events > .item[data-key="${key}"]`);
    // At the top of the view, the item stays drawn when its raw JSON makes it taller (the
    // virtual list drops items that leave the viewport and its overscan).
    await item.evaluate((node) => node.scrollIntoView({ block: "start" }));
    const closed = item.locator("details:not([open]) > summary");
    while (await closed.count() > 0) await closed.first().click();
    if (await item.locator("button.raw").count()) {
      await item.locator("button.raw").click();
      await item.locator("pre.json").waitFor();
    }
    await assertNoMarkup(page);
    text += await item.textContent() ?? "";
    if (await item.locator("button.raw").count()) await item.locator("button.raw").click();
  }
  assert.ok(text.includes("<b>not bold</b>"), "markup shown as text");
}

async function assertNoMarkup(page: Page): Promise<void> {
  const injected = await page.locator(
    "#events :is(script, img, iframe, svg, object, a, style, marquee, b, i, u, embed)",
  ).count();
  assert.equal(injected, 0, "no element made from event data");
  assert.equal(await page.evaluate("window.__pwned"), undefined);
}

browserTest("conversation view: a hostile fixture is only ever text", async (server, browser) => {
  await ingestRun(server, "hostile", hostileFrames(), {
    input: { prompt: `<script>window.__pwned='prompt'</script>` },
  });
  for (const ticket of [undefined, await ticketFor(server, "hostile")]) {
    const { page, errors } = await newPage(browser);
    await openSession(page, server, "hostile", { ticket });
    await page.locator(".item[data-kind=error]").waitFor({ timeout: 30_000 });
    await page.locator("#timeline").evaluate((t) => t.scrollTop = 0);
    await page.locator(".item[data-kind=execution] .prompt").waitFor();
    await assertOnlyText(page);
    if (!ticket) {
      assert.equal(await page.locator(".item[data-kind=permission] button.option").count(), 1);
      await page.locator("#timeline").evaluate((t) => t.scrollTop = 0);
      await screenshot(page, "conversation-hostile.png");
    } else {
      assert.equal(await page.locator(".item[data-kind=permission] button.option").count(), 0);
    }
    assert.deepEqual(errors, []);
    await page.close();
  }
});
