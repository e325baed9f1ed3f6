/**
 * The built CLI backing up an S3 bucket and restoring into another, on the
 * run's radosgw (test/helpers/radosgw.ts), the repository itself in a
 * third bucket: more than 1,000 keys under nested prefixes, listed in one
 * request per 1,000 keys; a no-change backup that reads no object (counted
 * by a proxy in front of the source, test/helpers/counting-proxy.ts); a
 * restore whose objects equal the source's; a denied object, named,
 * failing only its own entry; and the AWS SDK loaded for s3 locations only.
 */
import { execFileSync } from "node:child_process";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { DeleteBucketPolicyCommand, PutBucketPolicyCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILT_MAIN, PROJECT_ROOT, builtCliExists, coffer, type CofferResult, type Env, EXIT, expectExit, expectNoStackTrace, FAST_KDF, parseJson } from "../helpers/cli.js";
import { type CountingProxy, countingProxy } from "../helpers/counting-proxy.js";
import { lacks } from "../helpers/prerequisites.js";
import { freshBucketName, hasCeph, type Radosgw, radosgw } from "../helpers/radosgw.js";
import { listAll, makeBucket, putObjects, rawClient, readTree } from "../helpers/s3-objects.js";

const PASS = "s3-io-e2e";
/** Keys of the source: 1,150 small objects over nested prefixes, a few larger ones, an empty one. */
function sourceObjects(): Map<string, Uint8Array | string> {
  const m = new Map<string, Uint8Array | string>();
  for (let i = 0; i < 1150; i++) m.set(`photos/${String(i % 7)}/${String(i % 3)}/img-${String(i).padStart(4, "0")}.txt`, `object ${i}\n`);
  m.set("top.bin", randomBytes(9 * 1024 * 1024 + 17));
  m.set("docs/a/b/c/deep.bin", randomBytes(300_000));
  m.set("docs/empty", "");
  m.set("docs/folder/", "");
  return m;
}

describe.skipIf(lacks(hasCeph(), "ceph-mon, ceph-osd, radosgw, ceph (Debian's ceph-mon ceph-osd radosgw ceph-common)"))("an S3 bucket as source and target through the CLI", () => {
  let server: Radosgw;
  let base: string;
  let proxy: CountingProxy;
  let client: ReturnType<typeof rawClient>;
  beforeAll(async () => {
    if (!builtCliExists()) throw new Error(`${BUILT_MAIN} is missing: run \`npm run build\` before the e2e tests`);
    server = await radosgw();
    client = rawClient(server);
    proxy = await countingProxy(server);
    base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-s3-io-"));
  });
  afterAll(async () => {
    await proxy?.close();
    client?.destroy();
    await fsp.rm(base, { recursive: true, force: true });
  });

  async function run(args: string[], o: { code?: number; env?: Env } = {}): Promise<CofferResult> {
    const r = await coffer(args, { env: { HOME: base, COFFER_PASSPHRASE: PASS, ...server.env, ...o.env }, cwd: base });
    expectNoStackTrace(r);
    return expectExit(r, o.code ?? EXIT.OK);
  }

  it("backs up a bucket of 1,154 keys, reads nothing when nothing changed, and restores it into another bucket", async () => {
    const source = freshBucketName("src");
    await makeBucket(client, source);
    const objects = sourceObjects();
    await putObjects(client, source, objects);
    const repo = `s3+http://${server.hostPort}/${freshBucketName("repo")}/r`;
    await run(["at", repo, "create", ...FAST_KDF]);
    const from = `s3+http://${proxy.hostPort}/${source}`;

    proxy.reset();
    const first = parseJson<{ id: string; files: number; dirs: number; errors: number }>(await run(["at", repo, "backup", "--json", from]));
    expect(first).toMatchObject({ files: objects.size - 1, errors: 0 });
    // Every object with content read (once, unless a request was retried); one listing per 1,000 keys, not one per directory.
    const withContent = [...objects].filter(([k, v]) => !k.endsWith("/") && v.length > 0).map(([k]) => `${source}/${k}`);
    expect([...proxy.objectReads.keys()].sort()).toEqual(withContent.sort());
    expect(proxy.listings).toBe(2);

    proxy.reset();
    const second = parseJson<{ id: string; files: number; readBytes: number }>(await run(["at", repo, "backup", "--json", from]));
    expect(second.files).toBe(first.files);
    expect(second.readBytes).toBe(0);
    expect(Object.fromEntries(proxy.objectReads)).toEqual({});
    expect(proxy.listings).toBe(2);

    // One object replaced: that one is read again, and only it.
    await client.send(new PutObjectCommand({ Bucket: source, Key: "photos/3/1/img-0010.txt", Body: Buffer.from("object X\n") }));
    proxy.reset();
    const third = parseJson<{ id: string }>(await run(["at", repo, "backup", "--json", from]));
    expect([...proxy.objectReads.keys()]).toEqual([`${source}/photos/3/1/img-0010.txt`]);

    const target = freshBucketName("restored");
    await run(["at", repo, "restore", "-q", "--to", `s3+http://${server.hostPort}/${target}/copy`, third.id.slice(0, 8)]);
    const strip = (t: Awaited<ReturnType<typeof readTree>>) => t.map(({ pathname, kind, size, sha256 }) => ({ pathname, kind, size, sha256 })).sort((a, b) => (a.pathname < b.pathname ? -1 : 1));
    const want = await readTree(client, source, "", { content: true });
    const got = await readTree(client, target, "copy/", { content: true });
    // The files, the root, photos with its 7 and 21 directories, docs with a, a/b, a/b/c and folder.
    expect(got.length).toBe(objects.size - 1 + 1 + 1 + 7 + 21 + 5);
    expect(strip(got)).toEqual(strip(want));
    // Each restored object keeps its source's mtime (LastModified) as metadata.
    const listed = await listAll(client, source, "");
    const restored = new Map(got.map((e) => [e.pathname, e.mtimeNs]));
    for (const o of listed.filter((x) => !x.Key!.endsWith("/")).slice(0, 20)) expect(restored.get(`/${o.Key}`)).toBe(BigInt(o.LastModified!.getTime()) * 1_000_000n);
    await run(["at", repo, "check"]);
  }, 300_000);

  it("the AWS SDK is loaded for an s3 source or target only", () => {
    const script = `
      import { createRequire } from "node:module";
      const { builtinRegistry } = await import(${JSON.stringify(path.join(PROJECT_ROOT, "dist", "connectors", "builtins.js"))});
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes("/node_modules/@aws-sdk/")).length;
      const r = builtinRegistry();
      const o = { hostname: "h", os: "linux", arch: "x64", cwd: "/", maxConcurrency: 1, excludes: [], noXattr: false, env: {} };
      await r.make("importer", ${JSON.stringify(base)}, {}, o);
      await r.make("exporter", ${JSON.stringify(path.join(base, "out"))}, {}, o);
      const before = loaded();
      await (await r.make("importer", "s3+http://127.0.0.1:1/some-bucket", {}, o)).close();
      console.log(JSON.stringify([before, loaded()]));
    `;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    const [before, after] = JSON.parse(out) as [number, number];
    expect(before).toBe(0);
    expect(after).toBeGreaterThan(0);
  });

  it("a missing bucket fails the backup naming it; a denied object fails its own entry, naming its key", async () => {
    const repo = `s3+http://${server.hostPort}/${freshBucketName("repo")}`;
    await run(["at", repo, "create", ...FAST_KDF]);
    const missing = freshBucketName("missing");
    const absent = await run(["at", repo, "backup", `s3+http://${server.hostPort}/${missing}/x`], { code: EXIT.ERROR });
    expect(absent.stderr).toContain(`bucket "${missing}" does not exist`);

    const source = freshBucketName("denied");
    await makeBucket(client, source);
    await putObjects(client, source, new Map([["ok.txt", "fine\n"], ["secret/key.txt", "no\n"]]));
    const Policy = JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Deny", Principal: "*", Action: ["s3:GetObject"], Resource: [`arn:aws:s3:::${source}/secret/*`] }] });
    await client.send(new PutBucketPolicyCommand({ Bucket: source, Policy }));
    try {
      const partial = await run(["at", repo, "backup", `s3+http://${server.hostPort}/${source}`], { code: EXIT.PARTIAL });
      expect(partial.stderr).toContain(`access denied: the credentials may not read key "secret/key.txt" in bucket "${source}"`);
    } finally {
      await client.send(new DeleteBucketPolicyCommand({ Bucket: source }));
    }
  });
});
