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
