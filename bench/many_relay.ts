/**
 * The baseline of `bench/many.ts`: a raw WebSocket server without storage that speaks just
 * enough of the ingest protocol for the bench clients (a `hello` on open, an `ack` for every
 * numbered frame, parsed as JSON as Tether parses it). Run as its own process so its RSS and
 * CPU can be read like the service's. Prints `{"port":N}` once listening.
 *
 * @module
 */

/**
 * Starts the relay on an ephemeral port.
 *
 * @example
 * ```ts
 * const server = startRelay();
 * console.log(JSON.stringify({ port: server.addr.port }));
 * ```
 */
export function startRelay(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
    socket.onopen = () => socket.send(JSON.stringify({ type: "hello", lastSeq: 0 }));
    socket.onmessage = (ev) => {
      const frame = JSON.parse(ev.data as string) as { seq?: number };
      if (frame.seq !== undefined) socket.send(JSON.stringify({ type: "ack", seq: frame.seq }));
    };
    socket.onerror = () => {};
    return response;
  });
}

if (import.meta.main) {
  const server = startRelay();
  console.log(JSON.stringify({ port: server.addr.port }));
}
