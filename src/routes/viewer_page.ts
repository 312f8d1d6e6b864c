/**
 * `GET /`: the viewer page (plain HTML, CSS and ES modules from `static/`, no build step).
 * The files are read once, relative to this module so the same code works locally and on
 * Deno Deploy. The page inlines its style and main script; the modules that script imports
 * are served by the same route as `/?module=<file>` (PROTOCOL.md 1 allows no other path
 * outside `/v1`) and named in an import map with their SHA-256 as `integrity`. Every script
 * (the import map, the main script, each module) is pinned by hash in a strict
 * Content-Security-Policy: nothing else can run, even if markup were ever injected.
 *
 * @module
 */
import { Hono } from "hono";
import type { AppEnv } from "../context.ts";
import { errorResponse } from "../http.ts";
import { ErrorCode } from "../protocol.ts";

const STATIC_DIR = new URL("../../static/", import.meta.url);

/** The ES modules the page's main script imports (directly or through each other). */
export const PAGE_MODULES: readonly string[] = [
  "protocol.js",
  "conversation.js",
  "event_pages.js",
  "item_view.js",
  "virtual_list.js",
];

/** The query parameter of `GET /` that asks for one of {@link PAGE_MODULES}. */
export const MODULE_PARAM = "module";

interface Page {
  html: string;
  csp: string;
  modules: Map<string, string>;
}

let page: Promise<Page> | undefined;

async function sha256Base64(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/**
 * The URL a module is served at, as the import map and the browser see it.
 *
 * @example
 * ```ts
 * moduleUrl("protocol.js"); // "/?module=protocol.js"
 * ```
 */
export function moduleUrl(name: string): string {
  return `/?${MODULE_PARAM}=${encodeURIComponent(name)}`;
}

/**
 * Reads `static/viewer.{html,css,js}` and the page modules, inlines the style, the import
 * map and the main script, and builds the CSP that pins each of them.
 */
async function loadPage(): Promise<Page> {
  const read = (name: string) => Deno.readTextFile(new URL(name, STATIC_DIR));
  const [template, css, js, ...sources] = await Promise.all(
    ["viewer.html", "viewer.css", "viewer.js", ...PAGE_MODULES].map(read),
  );
  const modules = new Map(PAGE_MODULES.map((name, i) => [name, sources[i]]));
  const moduleHashes = await Promise.all(sources.map(sha256Base64));
  const importMap = JSON.stringify({
    imports: Object.fromEntries(PAGE_MODULES.map((name) => [`./${name}`, moduleUrl(name)])),
    integrity: Object.fromEntries(
      PAGE_MODULES.map((name, i) => [moduleUrl(name), `sha256-${moduleHashes[i]}`]),
    ),
  });
  const html = template
    .replace("<!-- STYLE -->", () => `<style>${css}</style>`)
    .replace("<!-- IMPORTMAP -->", () => `<script type="importmap">${importMap}</script>`)
    .replace("<!-- SCRIPT -->", () => `<script type="module">${js}</script>`);
  const [styleHash, scriptHash, mapHash] = await Promise.all(
    [css, js, importMap].map(sha256Base64),
  );
  const scriptSources = [scriptHash, mapHash, ...moduleHashes].map((h) => `'sha256-${h}'`);
  const csp = [
    "default-src 'none'",
    `script-src ${scriptSources.join(" ")}`,
    `style-src 'sha256-${styleHash}'`,
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
  return { html, csp, modules };
}

function loadOnce(): Promise<Page> {
  page ??= loadPage().catch((err) => {
    page = undefined; // a failed read is retried on the next request
    throw err;
  });
  return page;
}

const COMMON_HEADERS = {
  "cache-control": "no-cache",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
};

/**
 * The viewer page route, mounted at `/` (PROTOCOL.md section 1), without credentials: the
 * page holds no secret; the api key is entered in the browser, or a ticket comes in its URL.
 *
 * @example
 * ```ts
 * app.route("/", viewerPageRoutes());
 * ```
 */
export function viewerPageRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/", async (c) => {
    const { html, csp, modules } = await loadOnce();
    const name = c.req.query(MODULE_PARAM);
    if (name === undefined) {
      return c.html(html, 200, { ...COMMON_HEADERS, "content-security-policy": csp });
    }
    const source = modules.get(name);
    if (source === undefined) {
      return errorResponse(c, ErrorCode.notFound, `no page module named ${JSON.stringify(name)}`);
    }
    return c.body(source, 200, {
      ...COMMON_HEADERS,
      "content-type": "text/javascript; charset=utf-8",
    });
  });
  return app;
}
