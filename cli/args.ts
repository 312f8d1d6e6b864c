/**
 * The `tether` command line (PROTOCOL.md 13): commands, their options and usage texts,
 * parsed with `node:util`'s `parseArgs` (options anywhere before `--`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { FLAG_OPTION_NAMES, OPTION_NAMES as WRAPPER_OPTIONS } from "../wrapper/options.ts";

/**
 * A bad command line; the CLI prints it and exits 64.
 *
 * @example
 * ```ts
 * throw new UsageError("--after must be a non-negative integer");
 * ```
 */
export class UsageError extends Error {
  /** Always `"UsageError"`, as stack traces and `String(error)` show it. */
  override name = "UsageError";
}

/**
 * Exit codes of the CLI (PROTOCOL.md 13; `run` exits like the wrapper, section 9.2).
 *
 * @example
 * ```ts
 * Deno.exit(CliExit.usage); // 64
 * ```
 */
export const CliExit = {
  ok: 0,
  apiError: 1,
  failed: 1,
  connection: 2,
  usage: 64,
  interrupted: 130,
  /** stdout's reader went away (`tether events s | head`): 128 + SIGPIPE, as a shell tool. */
  brokenPipe: 141,
} as const;

type OptionSpec = { type: "string" | "boolean"; short?: string };

/** Options every command takes. */
const GLOBAL: Record<string, OptionSpec> = {
  url: { type: "string" },
  "api-key": { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

/**
 * A command: its words, positional arguments, own options and one line of help.
 *
 * @example
 * ```ts
 * const spec: CommandSpec = { words: ["sessions", "get"], args: ["sid"], summary: "Show a session" };
 * ```
 */
export interface CommandSpec {
  /** The words that name it, e.g. `["executions", "input"]`. */
  words: string[];
  /** Required positional arguments, by name (for usage and errors). */
  args: string[];
  /** Positional arguments that may follow the required ones. */
  optionalArgs?: string[];
  /** Its own options, by name without `--`, each with a line of help. */
  options?: Record<string, OptionSpec & { help: string }>;
  /** One line for the usage text. */
  summary: string;
}

/**
 * Every command of PROTOCOL.md 13.
 *
 * @example
 * ```ts
 * COMMANDS.map((c) => c.words.join(" ")); // ["sessions create", …, "run"]
 * ```
 */
export const COMMANDS: CommandSpec[] = [
  {
    words: ["sessions", "create"],
    args: ["sid"],
    options: { metadata: { type: "string", help: "<json> an object of metadata" } },
    summary: "Create a session",
  },
  { words: ["sessions", "get"], args: ["sid"], summary: "Show a session" },
  { words: ["sessions", "delete"], args: ["sid"], summary: "Delete a session" },
  {
    words: ["executions", "list"],
    args: ["sid"],
    options: {
      limit: { type: "string", help: "<n> at most n executions (1–1000, default 100)" },
      after: { type: "string", help: "<eid> executions created after this one" },
    },
    summary: "List a session's executions, oldest first",
  },
  {
    words: ["executions", "create"],
    args: ["sid"],
    options: {
      input: { type: "string", help: "<json> the execution's input" },
      "if-idle": { type: "boolean", help: "refuse (409) when another execution is active" },
      "idempotency-key": { type: "string", help: "<key> makes a retry safe" },
    },
    summary: "Create an execution",
  },
  { words: ["executions", "get"], args: ["sid", "eid"], summary: "Show an execution" },
  {
    words: ["executions", "interrupt"],
    args: ["sid", "eid"],
    options: { reason: { type: "string", help: "<text> why" } },
    summary: "Interrupt an execution",
  },
  {
    words: ["executions", "fail"],
    args: ["sid", "eid"],
    options: { error: { type: "string", help: "<text> the error (required)" } },
    summary: "Fail an execution",
  },
  {
    words: ["executions", "input"],
    args: ["sid", "eid"],
    optionalArgs: ["text"],
    options: {
      json: { type: "string", help: "<json> send this JSON as data (instead of <text>)" },
      end: { type: "boolean", help: "close the agent's input after this" },
    },
    summary: "Send input to a running or pending execution (text is sent as a string)",
  },
  {
    words: ["events"],
    args: ["sid"],
    options: {
      after: { type: "string", help: "<n> events after this eventId (default 0)" },
      follow: { type: "boolean", help: "keep following live events" },
    },
    summary: "Print a session's events, one line each",
  },
  {
    words: ["watch"],
    args: ["sid"],
    optionalArgs: ["eid"],
    summary: "Follow an execution (default: the active, else the newest) until it ends; " +
      "exit 0 completed, 1 failed, 130 interrupted",
  },
  {
    words: ["run"],
    args: [],
    options: {
      session: { type: "string", help: "<sid> the session (created when missing)" },
      ...Object.fromEntries(
        WRAPPER_OPTIONS.filter((name) => name !== "ingest-url" && name !== "token").map(
          (name) => [name, {
            type: FLAG_OPTION_NAMES.includes(name) ? "boolean" : "string",
            help: "wrapper option (deno task wrapper --help)",
          }],
        ),
      ),
    },
    summary: "Create a session (when missing) and an execution, and run the agent under " +
      "the wrapper in this process; exits like the wrapper",
  },
];

/** Every option of every command (the global `--json` flag wins over `input`'s `--json`). */
const ALL_OPTIONS: Record<string, OptionSpec> = Object.assign(
  {},
  ...COMMANDS.map((c) => c.options ?? {}),
  GLOBAL,
);

/**
 * A parsed command line.
 *
 * @example
 * ```ts
 * const { command, args, options, rest } = parseCommandLine(["run", "--", "claude"]);
 * ```
 */
export interface Invocation {
  /** The command named; `undefined` only with `--help` and no (known) command. */
  command: CommandSpec | undefined;
  /** Positional arguments after the command words. */
  args: string[];
  /** Global and command options by name without `--`; absent ones are `undefined`. */
  options: Record<string, string | boolean | undefined>;
  /** Everything after `--` (the agent command of `run`). */
  rest: string[];
}

/**
 * Parses the CLI's arguments. `--help` anywhere yields the command (or none) with
 * `options.help`; anything else wrong throws {@link UsageError} naming it.
 *
 * @example
 * ```ts
 * const inv = parseCommandLine(["sessions", "get", "s1", "--json"]);
 * inv.command?.words; // ["sessions", "get"]
 * inv.options.json; // true
 * ```
 */
export function parseCommandLine(argv: readonly string[]): Invocation {
  const dash = argv.indexOf("--");
  let before = dash < 0 ? [...argv] : argv.slice(0, dash);
  const rest = dash < 0 ? [] : argv.slice(dash + 1);
  // PROTOCOL.md 13 gives `--json` two meanings: the global flag, and `executions input`'s
  // data. A JSON value right after `--json` is that data, for that command only.
  const joined = jsonValuesJoined(before);
  const plain = findCommand(before);
  const valued = findCommand(joined);
  const { command, help } = takesJson(valued.command) ? valued : plain;
  if (takesJson(command)) before = outputJsonFlagsDropped(joined);
  if (help) return { command, args: [], options: { help: true }, rest };
  if (!command) {
    // An unknown option takes the next word as its value, which then looks like a command.
    const unknown = Object.keys(plain.options).find((name) => !(name in ALL_OPTIONS));
    throw new UsageError(unknown ? `unknown option --${unknown}` : unknownCommand(plain.words));
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: before,
      options: { ...GLOBAL, ...command.options },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw new UsageError(`${command.words.join(" ")}: ${(err as Error).message}`);
  }
  const args = parsed.positionals.slice(command.words.length);
  const max = command.args.length + (command.optionalArgs?.length ?? 0);
  if (args.length < command.args.length) {
    throw new UsageError(
      `${command.words.join(" ")}: missing <${command.args[args.length]}>`,
    );
  }
  if (args.length > max) {
    throw new UsageError(`${command.words.join(" ")}: unexpected argument "${args[max]}"`);
  }
  if (rest.length > 0 && command.words[0] !== "run") {
    throw new UsageError(`${command.words.join(" ")}: takes nothing after --`);
  }
  return { command, args, options: parsed.values, rest };
}

/** A first pass with every command's options finds the command words wherever they stand. */
function findCommand(args: string[]) {
  const loose = parseArgs({ args, options: ALL_OPTIONS, strict: false, allowPositionals: true });
  const words = loose.positionals;
  const command = COMMANDS.find((c) => c.words.every((w, i) => words[i] === w));
  return { command, words, options: loose.values, help: loose.values.help === true };
}

/** Whether the command's own `--json` takes a value (`executions input`). */
const takesJson = (command?: CommandSpec) => command?.options?.json?.type === "string";

/**
 * `--json <value>` as `--json=<value>` where the value is JSON (PROTOCOL.md 13 gives
 * `executions input` a `--json <json>` beside the global `--json` flag): `--json` followed by
 * anything else stays the flag.
 */
function jsonValuesJoined(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const next = args[i + 1];
    if (args[i] === "--json" && next !== undefined && !next.startsWith("-") && isJson(next)) {
      out.push(`--json=${next}`);
      i++;
    } else out.push(args[i]);
  }
  return out;
}

/** The flag `--json` left where `--json` takes a value: its answer is JSON anyway. */
const outputJsonFlagsDropped = (args: string[]) => args.filter((arg) => arg !== "--json");

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function unknownCommand(words: string[]): string {
  if (words.length === 0) return "missing command (see --help)";
  const group = COMMANDS.filter((c) => c.words[0] === words[0]);
  if (group.length > 0 && group[0].words.length > 1) {
    const subs = group.map((c) => c.words[1]).join(", ");
    return words[1] === undefined
      ? `${words[0]}: missing subcommand (${subs})`
      : `${words[0]}: unknown subcommand "${words[1]}" (${subs})`;
  }
  return `unknown command "${words[0]}" (see --help)`;
}

const GLOBAL_HELP = `Options of every command:
  --url <url>        the service (env TETHER_URL, default http://localhost:8000)
  --api-key <key>    the api key (env TETHER_API_KEY)
  --json             print the response body as JSON (events: one envelope per line)
  -h, --help         this help`;

/**
 * The usage text of one command, or of the whole CLI.
 *
 * @example
 * ```ts
 * console.log(usage(COMMANDS[0]));
 * ```
 */
export function usage(command?: CommandSpec): string {
  if (!command) {
    const lines = COMMANDS.map((c) => `  ${synopsis(c).padEnd(46)} ${c.summary.split(";")[0]}`);
    return `Usage: tether [options] <command> [args]   (deno task tether, node dist/tether.mjs)

Commands:
${lines.join("\n")}

${GLOBAL_HELP}

Exit codes: 0 ok, 1 API error (or watch/run: failed), 2 service unreachable,
64 usage, 130 interrupted, 141 stdout closed. \`tether <command> --help\` for a command's options.`;
  }
  const own = Object.entries(command.options ?? {}).map(([name, spec]) =>
    `  --${name.padEnd(20)} ${spec.help}`
  );
  return `Usage: tether ${synopsis(command)}

${command.summary}.
${own.length ? `\nOptions:\n${own.join("\n")}\n` : ""}
${GLOBAL_HELP}`;
}

function synopsis(command: CommandSpec): string {
  const args = [
    ...command.args.map((a) => `<${a}>`),
    ...(command.optionalArgs ?? []).map((a) => `[<${a}>]`),
  ];
  const tail = command.words[0] === "run" ? ["[options]", "--", "<agent command>"] : [];
  return [...command.words, ...args, ...tail].join(" ");
}
