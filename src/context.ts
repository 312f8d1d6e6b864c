/**
 * The typed Hono context of the service.
 *
 * @module
 */
import type { Runtime } from "./runtime.ts";
import type { SessionRecord } from "./store/mod.ts";

/** Who is calling. */
export type Caller = { kind: "client" } | { kind: "viewer"; sessionId: string };

/**
 * The Hono environment of every route: the instance's `runtime`, the `caller` set by the auth
 * middleware (`requireClient`, `requireSession`), and, on a `/:sid/...` route, the live
 * `session` record `requireSession` loaded.
 */
export interface AppEnv {
  Variables: {
    runtime: Runtime;
    caller: Caller;
    session: SessionRecord;
  };
}
