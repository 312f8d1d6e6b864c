/**
 * What the bundled CLI and wrapper need from Deno, provided on Node 20+ (PROTOCOL.md 13:
 * one file that runs under `node` and `deno run -A`). Under Deno this module does nothing,
 * so the wrapper behaves exactly as `deno task wrapper` does. Under Node it installs:
 *
 * - `WebSocket` from the `ws` package: Node 20 has no global WebSocket, and Node 22's
 *   cannot send the `Authorization` and `X-Tether-Dial` headers of an ingest dial;
 *   `ws` can, and its event interface (`onmessage` with string data for text frames,
 *   `onclose` with the code and reason) is the one the wrapper already uses;
 * - the small part of the `Deno` namespace the CLI and wrapper call (`Command`, signal
 *   listeners, `env`, `args`, `exit`, `stdout`/`stderr`, `errors.NotFound`/`BrokenPipe`), built on
 *   `node:child_process` and `node:process`;
 * - `Promise.withResolvers`, which Node gained only in 22.
 *
 * @module
 */
import { spawn } from "node:child_process";
import { accessSync, constants as fsConstants, writeSync } from "node:fs";
import { constants as osConstants } from "node:os";
import process from "node:process";
import { Readable, Writable } from "node:stream";

/**
 * True when running under Deno (nothing to install).
 *
 * @example
 * ```ts
 * if (!isDeno) console.log("running on Node with the shim");
 * ```
 */
export const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";

class NotFound extends Error {
  override name = "NotFound";
}

class BrokenPipe extends Error {
  override name = "BrokenPipe";
}

type Stdio = "inherit" | "piped" | "null" | undefined;
const nodeStdio = (mode: Stdio, fallback: "inherit" | "pipe") =>
  mode === "piped" ? "pipe" : mode === "null" ? "ignore" : mode ?? fallback;

/** Finds `command` like a shell does (PATH), so a missing one throws at once as on Deno. */
function resolveCommand(command: string): string {
  const executable = (path: string) => {
    try {
      accessSync(path, fsConstants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (command.includes("/")) {
    if (executable(command)) return command;
  } else {
    for (const dir of (process.env.PATH ?? "").split(":")) {
      if (dir && executable(`${dir}/${command}`)) return `${dir}/${command}`;
    }
  }
  throw new NotFound(`Failed to spawn '${command}': entity not found`);
}

interface CommandOptions {
  args?: string[];
  cwd?: string;
  env?: Record<string, string>;
  stdin?: Stdio;
  stdout?: Stdio;
  stderr?: Stdio;
}

/** `Deno.Command` on `node:child_process`: spawn, piped streams as web streams, status. */
class NodeCommand {
  constructor(readonly command: string, readonly options: CommandOptions = {}) {}

  spawn() {
    const { args = [], cwd, env, stdin, stdout, stderr } = this.options;
    const child = spawn(resolveCommand(this.command), args, {
      cwd,
      env: env ? { ...process.env, ...env } : process.env,
      stdio: [
        nodeStdio(stdin, "inherit"),
        nodeStdio(stdout, "inherit"),
        nodeStdio(stderr, "inherit"),
      ],
    });
    const status = new Promise<{ success: boolean; code: number; signal: string | null }>(
      (resolve) => {
        child.once("exit", (code, signal) => {
          const number = signal ? osConstants.signals[signal] ?? 0 : 0;
          const exitCode = code ?? 128 + number;
          resolve({ success: exitCode === 0, code: exitCode, signal: signal ?? null });
        });
      },
    );
    const web = (stream: Readable | null) => stream ? Readable.toWeb(stream) : null;
    return {
      pid: child.pid,
      status,
      stdout: web(child.stdout),
      stderr: web(child.stderr),
      stdin: child.stdin ? Writable.toWeb(child.stdin) : null,
      kill(signal: NodeJS.Signals = "SIGTERM") {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new TypeError("Child process has already terminated");
        }
        child.kill(signal);
      },
      ref: () => child.ref(),
      unref: () => child.unref(),
    };
  }
}

/** How long a write to a full pipe waits before it tries again (ms). */
const FULL_PIPE_WAIT_MS = 2;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * A `Deno.stdout`-like writer on a file descriptor. Node leaves a piped stdout non-blocking,
 * so a write to a full pipe fails with EAGAIN: it waits and writes nothing (callers loop until
 * all is written, as with Deno's partial writes). A closed pipe throws `BrokenPipe`, as Deno.
 */
function writer(fd: number, stream: { isTTY?: boolean }) {
  const write = (bytes: Uint8Array) => {
    try {
      return writeSync(fd, bytes);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "EPIPE") throw new BrokenPipe(String(err));
      if (code !== "EAGAIN") throw err;
      Atomics.wait(sleeper, 0, 0, FULL_PIPE_WAIT_MS);
      return 0;
    }
  };
  return {
    writeSync: write,
    write: (bytes: Uint8Array) => Promise.resolve(write(bytes)),
    isTerminal: () => stream.isTTY === true,
  };
}

function denoOnNode() {
  return {
    args: process.argv.slice(2),
    build: { os: process.platform === "win32" ? "windows" : process.platform },
    env: {
      get: (name: string) => process.env[name],
      set: (name: string, value: string) => void (process.env[name] = value),
      toObject: () => ({ ...process.env }),
    },
    errors: { NotFound, BrokenPipe },
    exit: (code?: number) => process.exit(code),
    execPath: () => process.execPath,
    cwd: () => process.cwd(),
    Command: NodeCommand,
    addSignalListener: (signal: string, handler: () => void) => process.on(signal, handler),
    removeSignalListener: (signal: string, handler: () => void) => process.off(signal, handler),
    stdout: writer(1, process.stdout),
    stderr: writer(2, process.stderr),
    stdin: {
      readable: Readable.toWeb(process.stdin),
      isTerminal: () => process.stdin.isTTY === true,
    },
  };
}

/** The second argument of Deno's `WebSocket` constructor, when it is an object. */
interface WebSocketInit {
  headers?: Record<string, string>;
  protocols?: string | string[];
}

/** Node's `ws` client, constructed the way Deno's `WebSocket` is: `(url, {headers})`. */
async function webSocketWithHeaders() {
  const { WebSocket: Ws } = await import("ws");
  return class WebSocketWithHeaders extends Ws {
    constructor(url: string | URL, init?: string | string[] | WebSocketInit) {
      const options = typeof init === "object" && !Array.isArray(init) ? init : undefined;
      super(url, options ? options.protocols ?? [] : init, { headers: options?.headers });
    }
  };
}

if (!isDeno) {
  const global = globalThis as Record<string, unknown>;
  global.Deno = denoOnNode();
  global.WebSocket = await webSocketWithHeaders();
  if (typeof Promise.withResolvers !== "function") {
    Object.assign(Promise, {
      withResolvers<T>() {
        let resolve!: (value: T | PromiseLike<T>) => void;
        let reject!: (reason?: unknown) => void;
        const promise = new Promise<T>((res, rej) => {
          resolve = res;
          reject = rej;
        });
        return { promise, resolve, reject };
      },
    });
  }
}
