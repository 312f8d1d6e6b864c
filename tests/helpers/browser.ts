/**
 * Browser tests of the viewer page: headless Debian Chromium through playwright-core, pages
 * opened on a session with the api key or a ticket, sessions filled with frames through a
 * raw ingest connection, and screenshots under `test-artifacts/` (git-ignored).
 *
 * @module
 */
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { API_KEY, type TestServer } from "./server.ts";
import { connectRun, createRun, type Run } from "./ingest_client.ts";

/** Where Debian installs Chromium (`.ci/run` installs it when it can). */
export const CHROMIUM = "/usr/bin/chromium";

/** Whether Chromium is there; browser tests are skipped with a message when it is not. */
export const hasChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);

/** Screenshots and other outputs of browser tests (ignored by git). */
export const ARTIFACTS = new URL("../../test-artifacts/", import.meta.url);

/** A browser with one persistent context, and how to close both. */
export interface TestBrowser {
  /** The persistent context pages are opened in. */
  context: BrowserContext;
  /** Closes the context and the browser, and removes the profile. */
  close(): Promise<void>;
}

/**
 * Starts headless Chromium with a throwaway profile.
 *
 * @example
 * ```ts
 * const browser = await launchBrowser();
 * try {
 *   const { page } = await newPage(browser);
 * } finally {
 *   await browser.close();
 * }
 * ```
 */
export async function launchBrowser(
  viewport = { width: 1400, height: 860 },
): Promise<TestBrowser> {
  const userDataDir = await Deno.makeTempDir({ prefix: "tether-chromium-" });
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
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

/**
 * A page that records its uncaught errors and CSP violations.
 *
 * @example
 * ```ts
 * const { page, errors } = await newPage(browser);
 * await openSession(page, server, "viewer-e2e");
 * assert.deepEqual(errors, []);
 * ```
 */
export async function newPage(
  browser: TestBrowser,
): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.context.newPage();
  // The suite runs in parallel on a shared machine: give each step room.
  page.setDefaultTimeout(30_000);
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  return { page, errors };
}

/**
 * Opens a session on the page: with the api key (typed into the form) or a ticket link.
 *
 * @example
 * ```ts
 * await openSession(page, server, "s1"); // types the api key into the form
 * await openSession(page, server, "s1", { ticket: await ticketFor(server, "s1") });
 * ```
 */
export async function openSession(
  page: Page,
  server: TestServer,
  sessionId: string,
  options: { ticket?: string } = {},
): Promise<void> {
  if (options.ticket) {
    const query = `session=${encodeURIComponent(sessionId)}&ticket=${
      encodeURIComponent(options.ticket)
    }`;
    await page.goto(`${server.url}/?${query}`);
    return;
  }
  await page.goto(`${server.url}/?session=${encodeURIComponent(sessionId)}`);
  await page.fill("#key-input", API_KEY);
  await page.click("#open-button");
}

/**
 * A ticket for a session (read-only view).
 *
 * @example
 * ```ts
 * const ticket = await ticketFor(server, "s1");
 * await openSession(page, server, "s1", { ticket });
 * ```
 */
export async function ticketFor(server: TestServer, sessionId: string): Promise<string> {
  const { body } = await server.call<{ ticket: string }>(`/v1/sessions/${sessionId}/tickets`, {
    method: "POST",
    json: { ttlMs: 600_000 },
  });
  return body.ticket;
}

/** A frame to ingest: its type and data (seq and timestamp are added). */
export interface TestFrame {
  /** The frame's type, e.g. `agent`. */
  streamEventType: string;
  /** Its data. */
  data?: unknown;
}

/**
 * Creates an execution and streams `frames` through a raw ingest connection, waiting for
 * every ack. The connection stays open (for more frames) unless `end` sends a `complete`.
 *
 * @example
 * ```ts
 * const { run, send, close } = await ingestRun(server, "s1", jsonlFrames(fixture), {
 *   input: { prompt: "fix the tests" },
 * });
 * await send([{ streamEventType: "complete", data: { exitCode: 0 } }]);
 * ```
 */
export async function ingestRun(
  server: TestServer,
  sessionId: string,
  frames: TestFrame[],
  options: { input?: unknown; end?: boolean } = {},
): Promise<{ run: Run; send(frames: TestFrame[]): Promise<void>; close(): Promise<void> }> {
  const run = await createRun(server, sessionId, {
    ...(options.input === undefined ? {} : { input: options.input }),
  });
  const client = await connectRun(run);
  let seq = 0;
  const send = async (batch: TestFrame[]) => {
    for (const frame of batch) {
      if (seq - client.acked > 500) await client.ackOf(seq - 500, 20_000);
      client.send({ ...frame, seq: ++seq, timestamp: new Date().toISOString() });
    }
    await client.ackOf(seq, 30_000);
  };
  await send(frames);
  if (options.end) await send([{ streamEventType: "complete", data: { exitCode: 0 } }]);
  return { run, send, close: async () => void (await client.close()) };
}

/**
 * The frames of a JSON-lines fixture as `agent` events.
 *
 * @example
 * ```ts
 * const frames = jsonlFrames(new URL("claude_code_stream_json.jsonl", FIXTURES));
 * await ingestRun(server, "s1", frames, { end: true });
 * ```
 */
export function jsonlFrames(url: URL): TestFrame[] {
  return Deno.readTextFileSync(url).trimEnd().split("\n").map((line) => ({
    streamEventType: "agent",
    data: JSON.parse(line),
  }));
}

/**
 * Saves a screenshot of the page under {@link ARTIFACTS}.
 *
 * @example
 * ```ts
 * const path = await screenshot(page, "viewer.png"); // test-artifacts/viewer.png
 * ```
 */
export async function screenshot(page: Page, name: string): Promise<string> {
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  const path = new URL(name, ARTIFACTS).pathname;
  await page.screenshot({ path });
  return path;
}
