/**
 * Entry of `dist/tether.mjs`: the CLI, runnable by `node` (20+) and `deno run -A`.
 *
 * @module
 */
import "./node_runtime.ts";
import { main } from "../cli/main.ts";

Deno.exit(await main(Deno.args));
