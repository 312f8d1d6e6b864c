/**
 * The typed Hono context of the service.
 *
 * @module
 */
import type { Runtime } from "./runtime.ts";
import type { SessionRecord } from "./store/mod.ts";

/** Who is calling. */
export type Caller = { kind: "client" } | { kind: "viewer"; sessionId: string };

export interface AppEnv {
  Variables: {
    runtime: Runtime;
    caller: Caller;
    session: SessionRecord;
  };
}
