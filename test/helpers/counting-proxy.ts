/**
 * A plain HTTP proxy in front of the test radosgw that counts what its
 * clients ask: object reads (GET of a key) and bucket listings. Requests
 * go through unchanged, Host header included, so that their signatures
 * still hold; on request, the body of the next object read is cut short,
 * as by a dropped connection. Path-style requests only (/BUCKET/KEY), as
 * coffer sends to a non-AWS endpoint.
 */
import { request, createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface CountingProxy {
  /** host:port, for s3+http:// locations. */
  hostPort: string;
  /** GETs of an object, by key ("BUCKET/KEY"). */
  objectReads: Map<string, number>;
  /** GETs of a bucket (listings). */
  listings: number;
  /** The Range header of each object read, in order ("" for none). */
  ranges: string[];
  /** Drops the connection of the next object read once `bytes` of its body are sent. */
  cutNext(bytes: number): void;
  reset(): void;
  close(): Promise<void>;
}

export async function countingProxy(upstream: { hostPort: string }): Promise<CountingProxy> {
  const [host, port] = upstream.hostPort.split(":") as [string, string];
  const counts = { objectReads: new Map<string, number>(), listings: 0, ranges: [] as string[], cut: undefined as number | undefined };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://proxy");
    const path = decodeURIComponent(url.pathname).replace(/^\//, "");
    let cut: number | undefined;
    if (req.method === "GET") {
      const slash = path.indexOf("/");
      if (slash < 0 || slash === path.length - 1) counts.listings++;
      else {
        counts.objectReads.set(path, (counts.objectReads.get(path) ?? 0) + 1);
        counts.ranges.push(req.headers.range ?? "");
        cut = counts.cut;
        counts.cut = undefined;
      }
    }
    const up = request({ host, port: Number(port), method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      if (cut === undefined) {
        r.pipe(res);
        return;
      }
      let left = cut;
      r.on("data", (chunk: Buffer) => {
        if (left <= 0) return;
        res.write(chunk.subarray(0, left));
        left -= chunk.byteLength;
        if (left <= 0) {
          r.destroy();
          res.socket?.destroy();
        }
      });
      r.on("end", () => res.end());
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port: own } = server.address() as AddressInfo;
  return {
    hostPort: `127.0.0.1:${own}`,
    objectReads: counts.objectReads,
    get listings() {
      return counts.listings;
    },
    ranges: counts.ranges,
    cutNext(bytes) {
      counts.cut = bytes;
    },
    reset() {
      counts.objectReads.clear();
      counts.listings = 0;
      counts.ranges.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
