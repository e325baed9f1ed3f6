/**
 * Append-only credentials on an S3 repository (docs/CLI.md, "Append-only
 * credentials"), through the built CLI on the run's radosgw: the owner
 * creates the repository and gives a second user, by a bucket policy, get,
 * put and list but not delete. With that user's keys `backup` works and
 * leaves its locks as stale markers; rm, prune, maintenance and repair
 * index fail before they change anything, saying they need delete rights;
 * the owner's next maintenance sweeps the markers.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { DeleteObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutBucketPolicyCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILT_MAIN, builtCliExists, coffer, type CofferResult, type Env, EXIT, expectExit, expectNoStackTrace, FAST_KDF, parseJson } from "../helpers/cli.js";
import { lacks } from "../helpers/prerequisites.js";
import { appendOnlyPolicy, freshBucketName, hasCeph, type Radosgw, radosgw } from "../helpers/radosgw.js";
import { compareTrees } from "../helpers/tree.js";

const PASS = "s3-append-only";
const PREFIX = "laptop";

function client(server: Radosgw, env: Record<string, string>): S3Client {
  return new S3Client({
    region: "us-east-1",
    endpoint: server.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

describe.skipIf(lacks(hasCeph(), "ceph-mon, ceph-osd, radosgw, ceph (Debian's ceph-mon ceph-osd radosgw ceph-common)"))("append-only credentials on an S3 repository", () => {
  let server: Radosgw;
  let base: string;
  let owner: S3Client;
  let appender: S3Client;
  const bucket = freshBucketName("append");
  beforeAll(async () => {
    if (!builtCliExists()) throw new Error(`${BUILT_MAIN} is missing: run \`npm run build\` before the e2e tests`);
    server = await radosgw();
    owner = client(server, server.env);
    appender = client(server, server.appendOnly.env);
    base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-s3-append-"));
  });
  afterAll(async () => {
    owner?.destroy();
    appender?.destroy();
    await fsp.rm(base, { recursive: true, force: true });
  });

  async function run(args: string[], o: { code?: number; env?: Env } = {}): Promise<CofferResult> {
    const r = await coffer(args, { env: { HOME: base, COFFER_PASSPHRASE: PASS, ...server.env, ...o.env }, cwd: base });
    expectNoStackTrace(r);
    return expectExit(r, o.code ?? EXIT.OK);
  }

  async function keysUnder(dir: string): Promise<string[]> {
    const r = await owner.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${PREFIX}/${dir}` }));
    return (r.Contents ?? []).map((o) => o.Key!).sort();
  }
  const lockKeys = async () => (await keysUnder("locks/")).filter((k) => /\/[0-9a-f]{64}$/.test(k));

  it("backup works and leaves stale markers; what deletes or removes is refused; the owner sweeps the markers", async () => {
    const repo = `s3+http://${server.hostPort}/${bucket}/${PREFIX}`;
    const asAppender = { env: server.appendOnly.env };
    await run(["at", repo, "create", ...FAST_KDF]);
    await owner.send(new PutBucketPolicyCommand({ Bucket: bucket, Policy: appendOnlyPolicy(bucket) }));

    // The server refuses the appender's deletes, whatever the object.
    const probe = `${PREFIX}/probe`;
    await appender.send(new PutObjectCommand({ Bucket: bucket, Key: probe, Body: "x" }));
    await expect(appender.send(new DeleteObjectCommand({ Bucket: bucket, Key: probe }))).rejects.toMatchObject({ name: "AccessDenied", $metadata: { httpStatusCode: 403 } });
    await owner.send(new HeadObjectCommand({ Bucket: bucket, Key: probe }));
    await owner.send(new DeleteObjectCommand({ Bucket: bucket, Key: probe }));

    const src = path.join(base, "src");
    await fsp.mkdir(path.join(src, "sub"), { recursive: true });
    await fsp.writeFile(path.join(src, "sub", "a.txt"), "append only\n");
    await fsp.writeFile(path.join(src, "b.bin"), Buffer.alloc(300_000, 7));
    const first = await run(["at", repo, "backup", "--json", src], asAppender);
    expect(parseJson<{ errors: number }>(first).errors).toBe(0);
    expect(first.stderr).toContain("left as a stale marker");
    expect(await lockKeys()).toHaveLength(1);
    const snapshot = parseJson<{ id: string }>(first).id;

    const refusals: [string, string[]][] = [
      ["rm", ["rm", snapshot.slice(0, 8)]],
      ["prune", ["prune", "--keep-last", "0"]],
      ["maintenance", ["maintenance", "--grace", "0"]],
      ["repair index", ["repair", "index"]],
    ];
    const before = { packfiles: await keysUnder("packfiles/"), states: await keysUnder("states/"), locks: await lockKeys() };
    for (const [command, args] of refusals) {
      const r = await run(["at", repo, ...args], { ...asAppender, code: EXIT.ERROR });
      expect(r.stderr).toContain(`${command} needs delete rights`);
      expect(r.stderr).toContain(bucket);
    }
    expect({ packfiles: await keysUnder("packfiles/"), states: await keysUnder("states/"), locks: await lockKeys() }).toEqual(before);

    await fsp.appendFile(path.join(src, "sub", "a.txt"), "more\n");
    await run(["at", repo, "backup", "-q", src], asAppender);
    expect(parseJson<unknown[]>(await run(["at", repo, "ls", "--json"], asAppender))).toHaveLength(2);
    expect(await lockKeys()).toHaveLength(2);

    // The owner's maintenance takes no notice of the markers, then sweeps them.
    await run(["at", repo, "maintenance"]);
    expect(await lockKeys()).toEqual([]);
    const target = path.join(base, "restored");
    await run(["at", repo, "restore", "-q", "--to", target, "latest"]);
    expect(await compareTrees(src, target, { rootMeta: false })).toEqual([]);
    await run(["at", repo, "check", "--read-data"]);
  });
});
