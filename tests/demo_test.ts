/**
 * `deno task demo` keeps working: the demo starts the service, runs the real wrapper around
 * the scripted agent, prints a viewer link with a ticket and the curl command that answers
 * the agent's question; the answer sent with that command is delivered and the run
 * completes.
 */
import assert from "node:assert/strict";

/** `deno task demo` with `args`, from the project root, its stdout piped. */
function spawnDemo(...args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "demo/main.ts", ...args],
    cwd: new URL("..", import.meta.url).pathname,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
}

Deno.test("demo: the agent asks, the printed curl command answers, the run completes", async () => {
  const child = spawnDemo("--duration-ms", "1500", "--exit", "--port", "0");
  let text = "";
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) text += chunk;
  })();
  const end = Date.now() + 30_000;
  let answer: RegExpExecArray | null = null;
  while (!answer) {
    assert.ok(Date.now() < end, `no curl command printed:\n${text}`);
    await new Promise((r) => setTimeout(r, 50));
    answer = /curl -X POST -H 'Authorization: Bearer ([^']+)'[\s\S]*?-d '([^']+)' (\S+\/input)/
      .exec(text);
  }
  const [, apiKey, body, url] = answer;
  const res = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body,
  });
  assert.equal(res.status, 202, await res.text());
  const { code } = await child.status;
  await reading;
  assert.equal(code, 0, text);
  assert.match(text, /http:\/\/localhost:\d+\/\?session=demo&ticket=[\w.%-]+/);
  assert.match(text, /The run ended: completed\./);
  assert.match(text, /Inputs: 1 accepted, 1 delivered\./);
});

Deno.test("demo: says so when it moves to another port", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = taken.addr.port;
  const child = spawnDemo("--duration-ms", "300", "--port", String(port));
  let text = "";
  try {
    // The notice comes before the demo's banner; no need to wait for the run.
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      if (text.includes("Tether demo:")) break;
    }
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
  assert.match(text, new RegExp(`port ${port} is in use: the demo uses port \\d+ instead`));
});
