/**
 * What docs/CLI.md says of stalled and cancelled S3 requests, on the run's
 * radosgw behind a proxy that stalls chosen requests on real sockets
 * (test/helpers/stalling-proxy.ts): a request that moves no byte for
 * `idle_timeout` is cancelled (the client closes its connection) and
 * retried, whether it stalls before the answer, in the middle of a body or
 * after a put's body was sent; an abort cancels a stalled request at once,
 * in the store and as Ctrl-C of the CLI (exit 130).
 */
import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { parseLocation } from "../../src/connectors/location.js";
import { validateConfig } from "../../src/connectors/params.js";
import { S3_PARAMS, s3Settings } from "../../src/connectors/s3/settings.js";
import { S3Store } from "../../src/connectors/s3/store.js";
import { toHex } from "../../src/util/hex.js";
import { BUILT_MAIN, builtCliExists, coffer, EXIT, expectExit, expectNoStackTrace, FAST_KDF, startCoffer } from "../helpers/cli.js";
import { lacks } from "../helpers/prerequisites.js";
import { freshBucketName, hasCeph, type Radosgw, radosgw } from "../helpers/radosgw.js";
import { type StallingProxy, stallingProxy } from "../helpers/stalling-proxy.js";
import { writeSeededFile } from "../helpers/tree.js";

const PASS = "s3-stalls";
const bucket = freshBucketName("stall");

describe.skipIf(lacks(hasCeph(), "ceph-mon, ceph-osd, radosgw, ceph (Debian's ceph-mon ceph-osd radosgw ceph-common)"))("stalled and cancelled S3 requests", () => {
  let server: Radosgw;
  let proxy: StallingProxy;
  let base: string;
  const stores: S3Store[] = [];
  beforeAll(async () => {
    server = await radosgw();
    proxy = await stallingProxy(Number(server.hostPort.split(":")[1]));
    base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-s3-stalls-"));
  });
  afterAll(async () => {
    for (const s of stores.splice(0)) await s.close();
    await proxy?.close();
    if (base !== undefined) await fsp.rm(base, { recursive: true, force: true });
  });

  /** A store at `prefix` through the proxy. */
  function open(prefix: string, idleTimeout: string): S3Store {
    const loc = parseLocation(`s3+http://${proxy.hostPort}/${bucket}/${prefix}`, { forStore: true });
    const cfg = validateConfig(`store "s3"`, S3_PARAMS, { idle_timeout: idleTimeout, location: loc.raw });
    const store = new S3Store(s3Settings(loc, cfg, server.env), { env: server.env });
    stores.push(store);
    return store;
  }

  /** A request line's method and path, without the query the SDK adds (`?x-id=GetObject`). */
  const request = (l: string) => l.replace(/\?\S*/, "").replace(/ HTTP\/1\.1$/, "");
  const count = (line: string) => proxy.requests.filter((l) => request(l) === line).length;
  const keyLine = (method: string, prefix: string, hex: string) => `${method} /${bucket}/${prefix}/packfiles/${hex.slice(0, 2)}/${hex}`;

  it("a read that stalls before its answer or in its body is cancelled and retried, and returns exactly its bytes", async () => {
    const store = open("reads", "1s");
    await store.create(new Uint8Array([1]));
    const mac = new Uint8Array(randomBytes(32));
    const data = new Uint8Array(randomBytes(1 << 20));
    await store.put(Resource.PACKFILE, mac, data);
    const line = keyLine("GET", "reads", toHex(mac));

    const before = proxy.stall((l) => request(l) === line);
    expect(await store.get(Resource.PACKFILE, mac)).toEqual(data);
    await before.closedByClient;
    expect(count(line)).toBe(2);

    const midBody = proxy.stall((l) => request(l) === line, 200_000);
    const range = { offset: 1000, length: 600_000 };
    expect(await store.get(Resource.PACKFILE, mac, range)).toEqual(data.subarray(range.offset, range.offset + range.length));
    await midBody.closedByClient;
    expect(count(line)).toBe(4);
  });

  it("a put whose answer stalls is cancelled and retried, and the object is stored once, whole", async () => {
    const store = open("puts", "1s");
    await store.create(new Uint8Array([1]));
    const mac = new Uint8Array(randomBytes(32));
    const data = new Uint8Array(randomBytes(300_000));
    const line = keyLine("PUT", "puts", toHex(mac));
    const stalled = proxy.stall((l) => request(l) === line);
    expect(await store.put(Resource.PACKFILE, mac, data)).toBe(data.byteLength);
    await stalled.closedByClient;
    expect(count(line)).toBe(2);
    expect(await store.get(Resource.PACKFILE, mac)).toEqual(data);
  });

  it("an abort cancels a stalled request at once, whatever idle_timeout says", async () => {
    const store = open("abort", "1h");
    await store.create(new Uint8Array([1]));
    const mac = new Uint8Array(randomBytes(32));
    await store.put(Resource.PACKFILE, mac, new Uint8Array(1000));
    const stalled = proxy.stall((l) => request(l) === keyLine("GET", "abort", toHex(mac)));
    const ac = new AbortController();
    const read = store.get(Resource.PACKFILE, mac, undefined, { signal: ac.signal });
    await stalled.matched;
    ac.abort();
    await expect(read).rejects.toMatchObject({ code: "INTERRUPTED" });
    await stalled.closedByClient;
  });

  it("Ctrl-C of a restore whose read stalls cancels it and exits 130", { timeout: 300_000 }, async () => {
    if (!builtCliExists()) throw new Error(`${BUILT_MAIN} is missing: run \`npm run build\` before the e2e tests`);
    const env = { HOME: base, COFFER_PASSPHRASE: PASS, ...server.env };
    const src = path.join(base, "src");
    await fsp.mkdir(src, { recursive: true });
    await writeSeededFile(path.join(src, "data.bin"), "s3-stalls", 3 << 20);
    const repo = `s3+http://${proxy.hostPort}/${bucket}/cli`;
    for (const args of [["create", ...FAST_KDF], ["backup", "-q", src]]) {
      const r = await coffer(["at", repo, ...args], { env, cwd: base });
      expectNoStackTrace(r);
      expectExit(r, EXIT.OK);
    }
    const stalled = proxy.stall((l) => l.startsWith(`GET /${bucket}/cli/packfiles/`));
    // With an hour of idle_timeout, only the interrupt can end the stalled read before the helper's kill.
    const restore = startCoffer(["--store-opt", "idle_timeout=1h", "at", repo, "restore", "-q", "--to", path.join(base, "restored"), "latest"], { env, cwd: base, timeoutMs: 120_000 });
    await stalled.matched;
    restore.child.kill("SIGINT");
    const r = await restore.result;
    expect(r.timedOut).toBe(false);
    expectNoStackTrace(r);
    expectExit(r, EXIT.INTERRUPTED);
    expect(r.stderr).toContain("interrupted");
    await stalled.closedByClient;
  });
});
