/**
 * A radosgw that dies mid-backup (test/helpers/radosgw.ts, ownRadosgw: a
 * daemon of this file's own on the run's cluster, so the other files'
 * server stays up). It is killed once the backup has stored a packfile and
 * started again at once (the backup retries and succeeds, or fails cleanly:
 * exit 1 naming the bucket, no stack trace, and the next backup reuses the
 * packfiles stored before), or only once the backup gave up (it fails
 * cleanly and the next one reuses them); restore and `check --read-data`
 * succeed.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILT_MAIN, builtCliExists, coffer, type CofferResult, type Env, EXIT, expectExit, expectNoStackTrace, FAST_KDF, parseJson, type RunningCoffer, startCoffer } from "../helpers/cli.js";
import { lacks } from "../helpers/prerequisites.js";
import { freshBucketName, hasCeph, type OwnRadosgw, ownRadosgw, type Radosgw, radosgw } from "../helpers/radosgw.js";
import { compareTrees, writeSeededFile } from "../helpers/tree.js";

const PASS = "s3-faults";
/** Several packfiles (32 MiB each), so that the backup has more to store once the first is there. */
const DATA_BYTES = 160 * 1024 * 1024;

describe.skipIf(lacks(hasCeph(), "ceph-mon, ceph-osd, radosgw, ceph (Debian's ceph-mon ceph-osd radosgw ceph-common)"))("radosgw stopped mid-backup", () => {
  let cluster: Radosgw;
  let gw: OwnRadosgw | undefined;
  let s3: S3Client;
  let base: string;
  const bucket = freshBucketName("fault");
  beforeAll(async () => {
    if (!builtCliExists()) throw new Error(`${BUILT_MAIN} is missing: run \`npm run build\` before the e2e tests`);
    cluster = await radosgw();
    gw = await ownRadosgw(cluster);
    s3 = new S3Client({
      region: "us-east-1",
      endpoint: gw.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: cluster.accessKeyId, secretAccessKey: cluster.secretAccessKey },
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      maxAttempts: 1,
    });
    base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-s3-fault-"));
  });
  afterAll(async () => {
    s3?.destroy();
    await gw?.stop();
    if (base !== undefined) await fsp.rm(base, { recursive: true, force: true });
  });

  const env = (): Env => ({ HOME: base, COFFER_PASSPHRASE: PASS, ...cluster.env });

  async function run(args: string[], code: number = EXIT.OK): Promise<CofferResult> {
    const r = await coffer(args, { env: env(), cwd: base, timeoutMs: 300_000 });
    expectNoStackTrace(r);
    return expectExit(r, code);
  }

  async function packfileKeys(prefix: string): Promise<string[]> {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/packfiles/` }));
    return (r.Contents ?? []).map((o) => o.Key!);
  }

  /** A repository under `prefix` and a backup of `src` into it, running, once its first packfile is stored. */
  async function backupUntilFirstPackfile(prefix: string, src: string): Promise<{ repo: string; backup: RunningCoffer; stored: string[] }> {
    const repo = `s3+http://${gw!.hostPort}/${bucket}/${prefix}`;
    await run(["at", repo, "create", ...FAST_KDF]);
    const backup = startCoffer(["--store-opt", "connections=1", "at", repo, "backup", "--json", src], { env: env(), cwd: base, timeoutMs: 300_000 });
    for (;;) {
      if (backup.child.exitCode !== null) throw new Error(`the backup ended before a packfile was listed: ${(await backup.result).stderr}`);
      const stored = await packfileKeys(prefix);
      if (stored.length > 0) return { repo, backup, stored };
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** The next backup reuses what the failed one stored; the snapshot restores whole and checks. */
  async function expectCleanFailureThenReuse(failed: CofferResult, repo: string, src: string): Promise<string> {
    expectExit(failed, EXIT.ERROR);
    expect(failed.stderr).toContain(bucket);
    const next = parseJson<{ id: string; bytes: number; newBytes: number }>(await run(["at", repo, "backup", "--json", src]));
    expect(next.newBytes).toBeLessThan(next.bytes);
    return next.id;
  }

  async function expectRestoresAndChecks(repo: string, src: string, id: string, stored: string[], prefix: string): Promise<void> {
    const keys = await packfileKeys(prefix);
    for (const k of stored) expect(keys).toContain(k);
    const target = path.join(base, `restored-${prefix}`);
    await run(["at", repo, "restore", "-q", "--to", target, id.slice(0, 8)]);
    expect(await compareTrees(src, target, { rootMeta: false })).toEqual([]);
    await run(["at", repo, "check", "--read-data"]);
  }

  let src: string;
  beforeAll(async () => {
    src = path.join(base, "src");
    await fsp.mkdir(src, { recursive: true });
    await writeSeededFile(path.join(src, "big.bin"), "s3-fault", DATA_BYTES);
    await fsp.writeFile(path.join(src, "small.txt"), "small\n");
  });

  it("restarted at once: the backup retries and succeeds, or fails cleanly and the next one reuses what was stored", { timeout: 600_000 }, async () => {
    const { repo, backup, stored } = await backupUntilFirstPackfile("restarted", src);
    await gw!.stop();
    // Killed while the backup had more to store, or the test proves nothing.
    expect(backup.child.exitCode).toBeNull();
    await gw!.start();
    const interrupted = await backup.result;
    expectNoStackTrace(interrupted);
    const id = interrupted.exitCode === EXIT.OK ? parseJson<{ id: string }>(interrupted).id : await expectCleanFailureThenReuse(interrupted, repo, src);
    await expectRestoresAndChecks(repo, src, id, stored, "restarted");
  });

  it("down until the backup gives up: it fails cleanly, and the next one reuses what was stored", { timeout: 600_000 }, async () => {
    const { repo, backup, stored } = await backupUntilFirstPackfile("down", src);
    await gw!.stop();
    expect(backup.child.exitCode).toBeNull();
    const failed = await backup.result;
    await gw!.start();
    expectNoStackTrace(failed);
    const id = await expectCleanFailureThenReuse(failed, repo, src);
    await expectRestoresAndChecks(repo, src, id, stored, "down");
  });
});
