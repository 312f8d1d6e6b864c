/**
 * `GET /v1/openapi.json` (PROTOCOL.md 13): the OpenAPI 3.1 document, without credentials.
 *
 * @module
 */
import { Hono } from "hono";
import type { AppEnv } from "../context.ts";
import { OPENAPI_PATH, openApiDocument } from "../openapi.ts";

/**
 * The document's route, mounted at the root.
 *
 * @example
 * ```ts
 * app.route("/", openApiRoutes());
 * ```
 */
export function openApiRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get(OPENAPI_PATH, (c) => {
    // The public http(s) base: TETHER_PUBLIC_URL behind a proxy, else the request's origin.
    const serverUrl = c.get("runtime").publicBase(c.req.url).replace(/^ws/, "http");
    return c.json(openApiDocument({ serverUrl }));
  });
  return app;
}
