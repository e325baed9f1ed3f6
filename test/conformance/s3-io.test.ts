/**
 * The importer and exporter kits on the S3 importer and exporter, made
 * through the registry from s3+http:// locations on the run's radosgw
 * (test/helpers/radosgw.ts), plus what only S3 shows: keys that are no
 * pathname or are a file and a directory at once, multipart uploads that
 * complete or leave nothing, and errors naming the bucket and the key.
 */
import { createHash, randomBytes } from "node:crypto";
import { arch, hostname, platform } from "node:os";
import { AbortMultipartUploadCommand, ListMultipartUploadsCommand, PutBucketPolicyCommand, DeleteBucketPolicyCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { builtinRegistry } from "../../src/connectors/builtins.js";
import type { ConnectorOptions, ContentPiece, Exporter, Importer, ImportRecord } from "../../src/connectors/records.js";
import { exporterKit, type ExpectedEntry, importerKit } from "../../src/sdk/kits/index.js";
import { countingProxy } from "../helpers/counting-proxy.js";
import { lacks } from "../helpers/prerequisites.js";
import { freshBucketName, hasCeph, type Radosgw, radosgw } from "../helpers/radosgw.js";
import { listAll, makeBucket, putObjects, rawClient, readTree } from "../helpers/s3-objects.js";
import { vitestHarness } from "./harness.js";

const ceph = !lacks(hasCeph(), "ceph-mon, ceph-osd, radosgw, ceph (Debian's ceph-mon ceph-osd radosgw ceph-common)");
const bucket = freshBucketName("io");
const KIT = { timeoutMs: 30_000, testTimeoutMs: 120_000 };

let started: Promise<{ server: Radosgw; client: ReturnType<typeof rawClient> }> | undefined;
/** The server and the shared bucket, made by the first test that needs them. */
function setup(): Promise<{ server: Radosgw; client: ReturnType<typeof rawClient> }> {
  started ??= (async () => {
    const server = await radosgw();
    const client = rawClient(server);
    await makeBucket(client, bucket);
    return { server, client };
  })();
  return started;
}

function options(server: Radosgw, warnings: string[] = []): ConnectorOptions {
  return { hostname: hostname(), os: platform(), arch: arch(), cwd: "/", maxConcurrency: 8, excludes: [], noXattr: false, env: server.env, onWarning: (m) => warnings.push(m) };
}

async function importerAt(location: string, o: { warnings?: string[]; config?: Record<string, string> } = {}): Promise<Importer> {
  const { server } = await setup();
  return builtinRegistry().make("importer", location, o.config ?? {}, options(server, o.warnings));
}

async function exporterAt(location: string): Promise<Exporter> {
  const { server } = await setup();
  return builtinRegistry().make("exporter", location, {}, options(server));
}

const sha256 = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

/** The source tree of the importer kit, written once: what each import must give. */
let source: Promise<{ prefix: string; expected: ExpectedEntry[] }> | undefined;
function sourceTree(): Promise<{ prefix: string; expected: ExpectedEntry[] }> {
  source ??= (async () => {
    const { client } = await setup();
    const prefix = `src-${randomBytes(4).toString("hex")}/`;
    const big = randomBytes(3 * 1024 * 1024 + 5);
    const files = new Map<string, Uint8Array | string>([
      ["a.txt", "hello, s3\n"],
      ["empty", ""],
      ["dir/big.bin", big],
      ["dir/sub/deep.txt", "deep down\n"],
      ["name with spaces é/ünïcödé ✓ #1.txt", "odd names\n"],
      ["clash/inner.txt", "the directory wins\n"],
    ]);
    const skipped = new Map<string, string>([
      ["folder-only/", ""],
      ["clash", "a file where a directory is"],
      ["bad//key", "no pathname"],
    ]);
    await putObjects(
      client,
      bucket,
      new Map([...files, ...skipped].map(([k, v]) => [prefix + k, v])),
    );
    const listed = new Map((await listAll(client, bucket, prefix)).map((o) => [o.Key!.slice(prefix.length), BigInt(o.LastModified!.getTime()) * 1_000_000n]));
    const expected = new Map<string, ExpectedEntry>();
    const dirMtime = (p: string, t: bigint) => {
      const e = expected.get(p) ?? { pathname: p, kind: "dir" as const, size: 0, mode: 0o755, mtimeNs: 0n };
      if (t > e.mtimeNs!) e.mtimeNs = t;
      expected.set(p, e);
    };
    const up = (rel: string, t: bigint) => {
      const parts = rel.split("/");
      for (let i = parts.length - 1; i >= 0; i--) dirMtime(i === 0 ? "/" : `/${parts.slice(0, i).join("/")}`, t);
    };
    for (const [rel, body] of files) {
      const t = listed.get(rel)!;
      const content = typeof body === "string" ? Buffer.from(body) : body;
      expected.set(`/${rel}`, { pathname: `/${rel}`, kind: "file", size: content.byteLength, mode: 0o644, mtimeNs: t, sha256: sha256(content) });
      up(rel, t);
    }
    up("folder-only/x", listed.get("folder-only/")!);
    return { prefix, expected: [...expected.values()] };
  })();
  return source;
}

describe.skipIf(!ceph)("S3 importer and exporter on radosgw", () => {
  afterAll(async () => {
    (await started)?.client.destroy();
  });

  importerKit(
    vitestHarness(),
    "s3",
    async () => {
      const { server } = await setup();
      const { prefix, expected } = await sourceTree();
      return { importer: await importerAt(`s3+http://${server.hostPort}/${bucket}/${prefix}`), expected, cleanup: async () => {} };
    },
    KIT,
  );

  exporterKit(
    vitestHarness(),
    "s3",
    async () => {
      const { server, client } = await setup();
      const prefix = `out-${randomBytes(4).toString("hex")}/`;
      return {
        exporter: await exporterAt(`s3+http://${server.hostPort}/${bucket}/${prefix}`),
        readBack: () => readTree(client, bucket, prefix, { content: true }),
        cleanup: async () => {},
      };
    },
    KIT,
  );

  describe("beyond the kits", () => {
    let server: Radosgw;
    let client: ReturnType<typeof rawClient>;
    beforeAll(async () => {
      ({ server, client } = await setup());
    });

    async function importAll(imp: Importer): Promise<Map<string, ImportRecord>> {
      const out = new Map<string, ImportRecord>();
      for await (const r of imp.import()) out.set(r.pathname, r);
      return out;
    }

    it("skips, naming them, keys that are no pathname and files where a directory is; empty folder objects are directories", async () => {
      const { prefix } = await sourceTree();
      const warnings: string[] = [];
      const imp = await importerAt(`s3+http://${server.hostPort}/${bucket}/${prefix}`, { warnings });
      const got = await importAll(imp);
      await imp.close();
      expect(got.get("/clash")?.fileInfo.kind).toBe("dir");
      expect(got.get("/folder-only")?.fileInfo.kind).toBe("dir");
      expect([...got.keys()].filter((p) => p.startsWith("/bad"))).toEqual([]);
      expect(warnings.sort()).toEqual([
        expect.stringContaining(`key "${prefix}bad//key" skipped: it has an empty path component`),
        expect.stringContaining(`key "${prefix}clash" skipped: it is also the directory of key "${prefix}clash/inner.txt"`),
      ]);
      // Each file carries its ETag as its content tag, for the next backup.
      const listed = new Map((await listAll(client, bucket, prefix)).map((o) => [o.Key!, o.ETag]));
      expect(got.get("/a.txt")?.fileInfo.contentTag).toBe(listed.get(`${prefix}a.txt`));
    });

    it("honours excludes, as for a directory tree", async () => {
      const { prefix } = await sourceTree();
      const imp = await builtinRegistry().make("importer", `s3+http://${server.hostPort}/${bucket}/${prefix}`, {}, { ...options(server), excludes: ["dir/", "*.txt"] });
      const got = await importAll(imp);
      await imp.close();
      // Directories are their keys': one whose every key is excluded is not there. With clash/inner.txt excluded, clash is a file.
      expect([...got.keys()].sort()).toEqual(["/", "/clash", "/empty", "/folder-only"]);
      expect(got.get("/clash")?.fileInfo.kind).toBe("file");
    });

    it("a large file goes up in parts and reads back whole; a failure mid-way leaves no object and no upload", async () => {
      const prefix = `mp-${randomBytes(4).toString("hex")}/`;
      const exp = await exporterAt(`s3+http://${server.hostPort}/${bucket}/${prefix}`);
      await exp.ping();
      const big = randomBytes(21 * 1024 * 1024 + 3);
      const info = (name: string, size: number) => ({ name, kind: "file" as const, size, mode: 0o644, mtimeNs: 1_700_000_000_123_456_789n, dev: 0n, ino: 0n, uid: 0, gid: 0, nlink: 1 });
      async function* pieces(fail: boolean): AsyncGenerator<ContentPiece> {
        for (let at = 0; at < big.byteLength; at += 1024 * 1024) {
          if (fail && at >= 17 * 1024 * 1024) throw new Error("the content broke off");
          const length = Math.min(1024 * 1024, big.byteLength - at);
          // A hole as a zero piece: written as zeros.
          if (at === 4 * 1024 * 1024) {
            big.fill(0, at, at + length);
            yield { offset: at, length, zero: true };
          } else yield { offset: at, length, data: big.subarray(at, at + length) };
        }
      }
      expect(await exp.export({ pathname: "/", fileInfo: { ...info("", 0), kind: "dir" } })).toEqual({ pathname: "/" });
      expect(await exp.export({ pathname: "/big.bin", fileInfo: info("big.bin", big.byteLength), content: () => pieces(false) })).toEqual({ pathname: "/big.bin" });
      await expect(exp.export({ pathname: "/broken.bin", fileInfo: info("broken.bin", big.byteLength), content: () => pieces(true) })).rejects.toThrow("the content broke off");
      await exp.finish();
      await exp.close();
      const tree = await readTree(client, bucket, prefix, { content: true });
      expect(tree).toEqual([
        { pathname: "/", kind: "dir" },
        { pathname: "/big.bin", kind: "file", size: big.byteLength, sha256: sha256(big), mtimeNs: 1_700_000_000_123_456_789n },
      ]);
      const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
      for (const u of uploads.Uploads ?? []) await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }));
      expect(uploads.Uploads ?? []).toEqual([]);
    });

    it("a read whose connection drops goes on from where it stopped, for the same version of the object", async () => {
      const { prefix, expected } = await sourceTree();
      const proxy = await countingProxy(server);
      try {
        const imp = await importerAt(`s3+http://${proxy.hostPort}/${bucket}/${prefix}`);
        const got = await importAll(imp);
        proxy.cutNext(1024 * 1024 + 7);
        const hash = createHash("sha256");
        for await (const c of await got.get("/dir/big.bin")!.open!()) hash.update(c);
        await imp.close();
        expect(hash.digest("hex")).toBe(expected.find((e) => e.pathname === "/dir/big.bin")!.sha256);
        expect(proxy.ranges).toEqual(["", expect.stringMatching(/^bytes=\d+-$/)]);
        expect(Number(/\d+/.exec(proxy.ranges[1]!)![0])).toBeLessThanOrEqual(1024 * 1024 + 7);
      } finally {
        await proxy.close();
      }
    });

    it("a missing bucket and a denied object are errors naming the bucket and the key", async () => {
      const missing = freshBucketName("missing");
      const gone = await importerAt(`s3+http://${server.hostPort}/${missing}/p`);
      const pinged = await gone.ping().catch((e: unknown) => e);
      expect(pinged).toMatchObject({ code: "IO", data: { bucket: missing } });
      expect(String((pinged as Error).message)).toContain(`bucket "${missing}" does not exist`);
      const listing = await importAll(gone).catch((e: unknown) => e);
      expect(listing).toMatchObject({ code: "IO", data: { bucket: missing } });
      await gone.close();

      // A bucket policy that denies reading one object, even to its owner.
      const denied = freshBucketName("denied");
      await makeBucket(client, denied);
      await putObjects(client, denied, new Map([["ok.txt", "fine\n"], ["secret.txt", "no\n"]]));
      const Policy = JSON.stringify({
        Version: "2012-10-17",
        Statement: [{ Effect: "Deny", Principal: "*", Action: ["s3:GetObject"], Resource: [`arn:aws:s3:::${denied}/secret.txt`] }],
      });
      await client.send(new PutBucketPolicyCommand({ Bucket: denied, Policy }));
      try {
        const imp = await importerAt(`s3+http://${server.hostPort}/${denied}`);
        const got = await importAll(imp);
        const read = async (p: string) => {
          const parts: Buffer[] = [];
          for await (const c of await got.get(p)!.open!()) parts.push(Buffer.from(c));
          return Buffer.concat(parts).toString();
        };
        expect(await read("/ok.txt")).toBe("fine\n");
        const refused = await read("/secret.txt").catch((e: unknown) => e);
        expect(refused).toMatchObject({ code: "IO", data: { bucket: denied, key: "secret.txt" } });
        expect(String((refused as Error).message)).toContain(`access denied: the credentials may not read key "secret.txt" in bucket "${denied}"`);
        await imp.close();
      } finally {
        await client.send(new DeleteBucketPolicyCommand({ Bucket: denied }));
      }
    });
  });
});
