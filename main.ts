/**
 * Entry point: read the configuration, open KV, start one service instance and serve it.
 *
 * `deno task start` (or `dev`) runs it on a local KV file (`./data/tether.kv` unless
 * `TETHER_KV_PATH` says otherwise); on Deno Deploy the platform's KV is used.
 *
 * The deadline cron is registered here, at the module's top level, before KV is opened and
 * before anything is served: Deno Deploy only discovers crons defined that way (README,
 * "Deploying to Deno Deploy"). Its handler finds the instance through the slot, once it
 * exists.
 *
 * @module
 */
import { DEADLINE_CRON, ServiceSlot, startProcess } from "./src/start.ts";

const slot = new ServiceSlot();
Deno.cron(DEADLINE_CRON.name, DEADLINE_CRON.schedule, () => slot.cronTick());

if (import.meta.main) await startProcess({ slot });
