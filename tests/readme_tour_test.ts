/**
 * The README's API tour runs as written: its `tether()` setup line and the block after
 * `<!-- tour -->` go to bash, against a service, from the repository's root. The one
 * stand-in is `npx` (a script on PATH that runs this Deno for `npx -y deno@2.9.6 …`), so the
 * test does not download anything. The tour must leave no file in the repository.
 */
import assert from "node:assert/strict";
import { API_KEY, startServer } from "./helpers/server.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DENO_VIA_NPX = ["-y", "deno@2.9.6"];

/** The setup function line and the tour block of the README. */
async function readTour(): Promise<{ setup: string; tour: string }> {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const setup = readme.split("\n").find((line) => line.startsWith("tether() {"));
  const after = readme.split("<!-- tour -->")[1];
  const tour = after && /```sh\n([\s\S]*?)```/.exec(after)?.[1];
  assert.ok(setup && tour, "the README has the tour's setup line and block");
  return { setup, tour };
}

/** A directory with an `npx` that runs `npx -y deno@2.9.6 <args>` as `<this deno> <args>`. */
async function npxShim(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "tether-tour-" });
  await Deno.writeTextFile(
    `${dir}/npx`,
    `#!/bin/sh
[ "$1 $2" = "${DENO_VIA_NPX.join(" ")}" ] || { echo "unexpected npx $*" >&2; exit 99; }
shift 2
exec "${Deno.execPath()}" "$@"
`,
  );
  await Deno.chmod(`${dir}/npx`, 0o755);
  return dir;
}

async function repoEntries(): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(ROOT)) names.push(entry.name);
  return names.filter((name) => name !== "dist" && name !== "data").sort();
}

Deno.test({
  name: "README: the API tour runs verbatim against a service and leaves no file behind",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { setup, tour } = await readTour();
    const server = await startServer();
    const shim = await npxShim();
    const before = await repoEntries();
    try {
      const { code, stdout, stderr } = await new Deno.Command("bash", {
        args: ["-c", `set -e\n${setup}\n${tour}`],
        cwd: ROOT,
        env: {
          PATH: `${shim}:${Deno.env.get("PATH")}`,
          TETHER_URL: server.url,
          TETHER_API_KEY: API_KEY,
        },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const out = new TextDecoder().decode(stdout);
      const log = `${out}\n--- stderr ---\n${new TextDecoder().decode(stderr)}`;
      assert.equal(code, 0, log);
      for (
        const expected of [
          "created session demo",
          `viewer: ${server.url}/?session=demo&ticket=`,
          "agent Fixed: sum() no longer adds 1.",
          "running → completed",
          "the run failed (exit 1)",
          "watch: exit 1",
          '"status":"pending"',
          '{"openapi":"3.1.0"',
        ]
      ) {
        assert.ok(out.includes(expected), `${expected}\n${log}`);
      }
      assert.deepEqual(await repoEntries(), before, "no file left in the repository's root");
    } finally {
      await server.close();
      await Deno.remove(shim, { recursive: true });
    }
  },
});
