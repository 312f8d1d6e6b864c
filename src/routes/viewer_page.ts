/**
 * `GET /`: the viewer page (plain HTML, CSS and a small script from `static/`, no build
 * step). The three files are read once, relative to this module so the same code works
 * locally and on Deno Deploy, and served as one document whose inline style and script
 * are pinned by hash in a strict Content-Security-Policy.
 *
 * @module
 */
import { Hono } from "hono";
import type { AppEnv } from "../context.ts";

const STATIC_DIR = new URL("../../static/", import.meta.url);

interface Page {
  html: string;
  csp: string;
}

let page: Promise<Page> | undefined;

async function sha256Base64(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/** Reads `static/viewer.{html,css,js}` and inlines the style and script into the page. */
async function loadPage(): Promise<Page> {
  const read = (name: string) => Deno.readTextFile(new URL(name, STATIC_DIR));
  const [template, css, js] = await Promise.all([
    read("viewer.html"),
    read("viewer.css"),
    read("viewer.js"),
  ]);
  const html = template
    .replace("<!-- STYLE -->", () => `<style>${css}</style>`)
    .replace("<!-- SCRIPT -->", () => `<script type="module">${js}</script>`);
  const [styleHash, scriptHash] = await Promise.all([sha256Base64(css), sha256Base64(js)]);
  const csp = [
    "default-src 'none'",
    `script-src 'sha256-${scriptHash}'`,
    `style-src 'sha256-${styleHash}'`,
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
  return { html, csp };
}

/** The viewer page route, mounted at `/`. */
export function viewerPageRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/", async (c) => {
    page ??= loadPage().catch((err) => {
      page = undefined; // a failed read is retried on the next request
      throw err;
    });
    const { html, csp } = await page;
    return c.html(html, 200, {
      "content-security-policy": csp,
      "cache-control": "no-cache",
      "referrer-policy": "no-referrer",
      "x-content-type-options": "nosniff",
    });
  });
  return app;
}
