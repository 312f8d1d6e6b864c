/**
 * `deno task build`: bundles the CLI and the wrapper into `dist/tether.mjs` and
 * `dist/tether-wrapper.mjs` with `deno bundle` (single files, every dependency inlined,
 * `node:` built-ins left as imports, so they run under Node 20+ and Deno alike).
 *
 * @example
 * ```sh
 * deno task build && node dist/tether-wrapper.mjs --help
 * ```
 *
 * @module
 */

/**
 * What gets built: entry module → output file, relative to the repository root.
 *
 * @example
 * ```ts
 * BUNDLES["build/tether_wrapper.ts"]; // "dist/tether-wrapper.mjs"
 * ```
 */
export const BUNDLES: Record<string, string> = {
  "build/tether.ts": "dist/tether.mjs",
  "build/tether_wrapper.ts": "dist/tether-wrapper.mjs",
};

const ROOT = new URL("../", import.meta.url);

/**
 * Bundles every entry of {@link BUNDLES}; throws when `deno bundle` fails.
 *
 * @example
 * ```ts
 * await build();
 * ```
 */
export async function build(): Promise<void> {
  for (const [entry, output] of Object.entries(BUNDLES)) {
    const { success, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--platform", "deno", "--output", output, entry],
      cwd: ROOT.pathname,
      stdout: "inherit",
      stderr: "piped",
    }).output();
    if (!success) {
      throw new Error(`deno bundle ${entry} failed:\n${new TextDecoder().decode(stderr)}`);
    }
    const path = new URL(output, ROOT);
    const text = await Deno.readTextFile(path);
    // A shebang makes the file runnable as it is (chmod +x) with Node.
    if (!text.startsWith("#!")) await Deno.writeTextFile(path, `#!/usr/bin/env node\n${text}`);
    await Deno.chmod(path, 0o755);
    console.log(`built ${output} (${Math.round(text.length / 1024)} KiB)`);
  }
}

if (import.meta.main) await build();
