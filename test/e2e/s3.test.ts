/**
 * The built CLI on an S3 repository (an s3+http:// location on the run's
 * radosgw, test/helpers/radosgw.ts): create makes the bucket, then backup,
 * restore and check, prune and maintenance; bad parameters, a missing bucket and refused
 * credentials end with their documented exit codes and a message naming
 * the bucket, never a stack trace.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILT_MAIN, builtCliExists, coffer, type CofferResult, type Env, EXIT, expectExit, expectNoStackTrace, FAST_KDF, parseJson } from "../helpers/cli.js";
import { pruneAndMaintain } from "../helpers/lifecycle.js";
import { lacks } from "../helpers/prerequisites.js";
import { freshBucketName, hasCeph, type Radosgw, radosgw } from "../helpers/radosgw.js";
import { compareTrees, writeSeededFile } from "../helpers/tree.js";

const PASS = "s3-e2e";

describe.skipIf(lacks(hasCeph(), "ceph-mon, ceph-osd, radosgw, ceph (Debian's ceph-mon ceph-osd radosgw ceph-common)"))("an S3 repository through the CLI", () => {
  let server: Radosgw;
  let base: string;
  beforeAll(async () => {
    if (!builtCliExists()) throw new Error(`${BUILT_MAIN} is missing: run \`npm run build\` before the e2e tests`);
    server = await radosgw();
    base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-s3-"));
  });
  afterAll(async () => {
    await fsp.rm(base, { recursive: true, force: true });
  });

  async function run(args: string[], o: { code?: number; env?: Env } = {}): Promise<CofferResult> {
    const r = await coffer(args, { env: { HOME: base, COFFER_PASSPHRASE: PASS, ...server.env, ...o.env }, cwd: base });
    expectNoStackTrace(r);
    return expectExit(r, o.code ?? EXIT.OK);
  }

  it("create (making the bucket), backup, restore and check", async () => {
    const src = path.join(base, "src");
    await fsp.mkdir(path.join(src, "sub"), { recursive: true });
    await writeSeededFile(path.join(src, "big.bin"), "s3-big", 9 * 1024 * 1024 + 17);
    await fsp.writeFile(path.join(src, "sub", "a.txt"), "hello s3\n");
    await fsp.writeFile(path.join(src, "empty"), "");
    const repo = `s3+http://${server.hostPort}/${freshBucketName("e2e")}/laptop`;
    await run(["at", repo, "create", ...FAST_KDF]);
    const again = await run(["at", repo, "create", ...FAST_KDF], { code: EXIT.ERROR });
    expect(again.stderr).toContain("already exists");
    const first = parseJson<{ id: string; files: number; errors: number }>(await run(["at", repo, "backup", "--json", src]));
    expect(first.files).toBe(3);
    expect(first.errors).toBe(0);
    await fsp.appendFile(path.join(src, "sub", "a.txt"), "more\n");
    const second = parseJson<{ id: string }>(await run(["at", repo, "backup", "--json", src]));
    const target = path.join(base, "restored");
    await run(["at", repo, "restore", "-q", "--to", target, second.id.slice(0, 8)]);
    expect(await compareTrees(src, target, { rootMeta: false })).toEqual([]);
    await run(["at", repo, "check"]);
    const snaps = parseJson<unknown[]>(await run(["at", repo, "ls", "--json"]));
    expect(snaps).toHaveLength(2);
  });

  it("prune and maintenance: removed snapshots' packfiles deleted, the kept one checked and restored", async () => {
    const dir = await fsp.mkdtemp(path.join(base, "lifecycle-"));
    await pruneAndMaintain((args) => run(args), `s3+http://${server.hostPort}/${freshBucketName("life")}/repo`, dir);
  });

  it("bad parameters, a missing bucket and refused credentials: exit codes and messages naming them", async () => {
    const bad = await run(["--store-opt", "connections=0", "at", `s3+http://${server.hostPort}/some-bucket`, "ls"], { code: EXIT.USAGE });
    expect(bad.stderr).toContain("connections");
    const noName = await run(["at", `s3+http://${server.hostPort}/`, "ls"], { code: EXIT.USAGE });
    expect(noName.stderr).toContain("names no bucket");
    const missing = freshBucketName("missing");
    const absent = await run(["at", `s3+http://${server.hostPort}/${missing}/p`, "ls"], { code: EXIT.NO_REPOSITORY });
    expect(absent.stderr).toContain(missing);
    const repo = `s3+http://${server.hostPort}/${freshBucketName("creds")}`;
    await run(["at", repo, "create", ...FAST_KDF]);
    const refused = await run(["at", repo, "ls"], { code: EXIT.ERROR, env: { AWS_ACCESS_KEY_ID: "NOSUCHKEY", AWS_SECRET_ACCESS_KEY: "wrong" } });
    expect(refused.stderr).toMatch(/refused the credentials|access denied/);
    expect(refused.stderr).toContain(repo.replace("s3+http://", "").split("/")[1]!);
  });
});
