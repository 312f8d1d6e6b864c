/**
 * A tiny TCP proxy in front of a test server, to lose connections the way a dying network
 * or a killed process does: `cut()` drops every proxied TCP connection at once, so neither
 * side sees a WebSocket close frame.
 *
 * @module
 */

/** A running proxy. */
export interface TcpProxy {
  /** Port the proxy listens on (127.0.0.1). */
  readonly port: number;
  /** Rewrites a `ws://` or `http://` URL of the target to go through the proxy. */
  via(url: string): string;
  /** Drops every proxied connection abruptly (no close frame either way). */
  cut(): void;
  /** Stops listening and drops everything. */
  close(): Promise<void>;
}

/** Starts a proxy on an ephemeral port that forwards to `127.0.0.1:targetPort`. */
export function startTcpProxy(targetPort: number): TcpProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const drop = (conn: Deno.Conn) => {
    open.delete(conn);
    try {
      conn.close();
    } catch {
      // already closed
    }
  };
  const pump = async (from: Deno.Conn, to: Deno.Conn) => {
    try {
      await from.readable.pipeTo(to.writable, { preventClose: true, preventAbort: true });
    } catch {
      // a cut or a peer reset ends the pump
    }
    drop(from);
    drop(to);
  };
  const accepting = (async () => {
    for await (const client of listener) {
      try {
        const backend = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
        open.add(client).add(backend);
        void pump(client, backend);
        void pump(backend, client);
      } catch {
        drop(client);
      }
    }
  })().catch(() => {});
  const port = (listener.addr as Deno.NetAddr).port;
  return {
    port,
    via(url) {
      const u = new URL(url);
      u.hostname = "127.0.0.1";
      u.port = String(port);
      return u.toString();
    },
    cut() {
      for (const conn of [...open]) drop(conn);
    },
    async close() {
      listener.close();
      this.cut();
      await accepting;
    },
  };
}
