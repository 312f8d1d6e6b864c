/**
 * Preload module (`deno run --preload tests/helpers/deploy_observer.ts main.ts`) that watches
 * start-up the way Deno Deploy would: it records every `Deno.cron`, `Deno.openKv` and
 * `Deno.serve` call in order, printing one JSON line per call (`{"observed": …}`) on stdout.
 * `Deno.openKv` without a path (the platform's KV on Deploy) opens `:memory:` here.
 *
 * @module
 */
const calls: string[] = [];

function observe(call: string, detail: Record<string, unknown> = {}): void {
  calls.push(call);
  console.log(JSON.stringify({ observed: call, order: [...calls], ...detail }));
}

const realCron = Deno.cron;
const realOpenKv = Deno.openKv;
const realServe = Deno.serve;

// Some of these are getters on the namespace: redefine them rather than assign.
const replace = (name: string, value: unknown) =>
  Object.defineProperty(Deno, name, { value, configurable: true, writable: true });
replace("cron", (...args: Parameters<typeof Deno.cron>) => {
  observe("cron", { name: args[0] });
  return realCron(...args);
});
replace("openKv", (path?: string) => {
  observe("openKv", { path: path ?? null });
  return realOpenKv(path ?? ":memory:");
});
replace("serve", (...args: unknown[]) => {
  observe("serve");
  return (realServe as (...a: unknown[]) => Deno.HttpServer)(...args);
});
