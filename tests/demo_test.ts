/**
 * `deno task demo` keeps working: the demo starts the service, runs the real wrapper around
 * the scripted agent to completion and prints a viewer link with a ticket.
 */
import assert from "node:assert/strict";

Deno.test("demo: runs the scripted agent through the wrapper and prints a viewer link", async () => {
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "demo/main.ts", "--duration-ms", "1500", "--exit", "--port", "0"],
    cwd: new URL("..", import.meta.url).pathname,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = new TextDecoder().decode(stdout);
  assert.equal(code, 0, text);
  assert.match(text, /http:\/\/localhost:\d+\/\?session=demo&ticket=[\w.%-]+/);
  assert.match(text, /The run ended: completed\./);
});

Deno.test("demo: says so when it moves to another port", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = taken.addr.port;
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "demo/main.ts", "--duration-ms", "300", "--exit", "--port", String(port)],
    cwd: new URL("..", import.meta.url).pathname,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = new TextDecoder().decode(stdout);
  assert.equal(code, 0, text);
  assert.match(text, new RegExp(`port ${port} is in use: the demo uses port \\d+ instead`));
});
