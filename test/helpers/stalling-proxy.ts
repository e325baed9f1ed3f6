/**
 * A TCP proxy on 127.0.0.1 in front of an HTTP server (the tests' radosgw)
 * that stalls chosen requests on real sockets: once armed, the next request
 * whose request line matches gets at most `afterBytes` more bytes of the
 * server's answer, and then none, its connection left open, as a server or
 * network that hangs would. It records every request line it forwards.
 */
import { createServer, type Server, type Socket, connect } from "node:net";

export interface Stall {
  /** The request line of the request stalled, once one matched. */
  matched: Promise<string>;
  /** Settles when the client closes the stalled connection (it gave up on the request). */
  closedByClient: Promise<void>;
}

export interface StallingProxy {
  hostPort: string;
  /** Every request line seen ("PUT /bucket/key HTTP/1.1"), in order. */
  requests: string[];
  stall(match: (requestLine: string) => boolean, afterBytes?: number): Stall;
  close(): Promise<void>;
}

const REQUEST_LINE = /^(GET|PUT|HEAD|DELETE|POST) \S+ HTTP\/1\.1/;

export async function stallingProxy(targetPort: number): Promise<StallingProxy> {
  const sockets = new Set<Socket>();
  const requests: string[] = [];
  let armed: { match: (l: string) => boolean; afterBytes: number; onMatch: (l: string) => void; onClosed: () => void } | undefined;

  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    /** Bytes of the answer still to forward: undefined when this connection is not stalled. */
    let budget: number | undefined;
    client.on("data", (chunk: Buffer) => {
      const line = REQUEST_LINE.exec(chunk.subarray(0, 2048).toString("latin1"))?.[0];
      if (line !== undefined) {
        requests.push(line);
        const a = armed;
        if (a !== undefined && budget === undefined && a.match(line)) {
          armed = undefined;
          budget = a.afterBytes;
          client.once("close", a.onClosed);
          a.onMatch(line);
        }
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (budget === undefined) {
        client.write(chunk);
        return;
      }
      if (budget > 0) client.write(chunk.subarray(0, budget));
      budget = Math.max(0, budget - chunk.byteLength);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const addr = server.address();
  if (typeof addr !== "object" || addr === null) throw new Error("stalling proxy: no address");

  return {
    hostPort: `127.0.0.1:${addr.port}`,
    requests,
    stall(match, afterBytes = 0) {
      let onMatch!: (l: string) => void;
      let onClosed!: () => void;
      const matched = new Promise<string>((resolve) => (onMatch = resolve));
      const closedByClient = new Promise<void>((resolve) => (onClosed = resolve));
      armed = { match, afterBytes, onMatch, onClosed };
      return { matched, closedByClient };
    },
    async close() {
      armed = undefined;
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
