/**
 * Entry of `dist/tether-wrapper.mjs`: the wrapper of PROTOCOL.md 9, runnable by `node`
 * (20+) and `deno run -A`, to copy into an agent's sandbox image.
 *
 * @module
 */
import "./node_runtime.ts";
import { main } from "../wrapper/main.ts";

Deno.exit(await main(Deno.args));
