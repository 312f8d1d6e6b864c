/**
 * The wrapper CLI: `deno task wrapper [options] -- <agent command> [args...]` (PROTOCOL.md
 * section 9). Runs a coding agent next to a Tether execution and streams its output to the
 * execution's ingest endpoint; see {@link USAGE} for the options and exit codes.
 *
 * @example
 * ```sh
 * TETHER_INGEST_URL=https://tether.example/v1/sessions/s1/executions/exc_…/ingest \
 * TETHER_INGEST_TOKEN=… deno task wrapper -- claude -p "fix the tests" --output-format stream-json --verbose
 * ```
 *
 * @module
 */
import { parseOptions, USAGE, UsageError } from "./options.ts";
import { ExitCode, runWrapper } from "./run.ts";

/**
 * Parses `args` and runs the wrapper; resolves with the process exit code.
 *
 * @example
 * ```ts
 * const code = await main(["--ingest-url", url, "--token", token, "--", "claude", "-p", "hi"]);
 * Deno.exit(code); // 0 completed, 1 failed, 130 interrupted, 64 usage…
 * ```
 */
export async function main(
  args: readonly string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): Promise<number> {
  let options;
  try {
    options = parseOptions(args, env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`tether-wrapper: ${error.message} (see --help)`);
    return ExitCode.usage;
  }
  if (options === "help") {
    console.log(USAGE);
    return ExitCode.completed;
  }
  return await runWrapper(options);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
