/**
 * `coffer key` on an S3 repository through the built CLI (the run's
 * radosgw): `key add` replaces the configuration by a conditional put
 * (S3Store.replaceConfig), after which both passphrases open it and `key
 * list` shows both keys; `passwd` shuts out the old passphrase.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILT_MAIN, builtCliExists, coffer, type CofferResult, type Env, EXIT, expectExit, expectNoStackTrace, FAST_KDF, parseJson } from "../helpers/cli.js";
import { lacks } from "../helpers/prerequisites.js";
import { freshBucketName, hasCeph, type Radosgw, radosgw } from "../helpers/radosgw.js";

describe.skipIf(lacks(hasCeph(), "ceph-mon, ceph-osd, radosgw, ceph (Debian's ceph-mon ceph-osd radosgw ceph-common)"))("coffer key on an S3 repository", () => {
  let server: Radosgw;
  let base: string;
  beforeAll(async () => {
    if (!builtCliExists()) throw new Error(`${BUILT_MAIN} is missing: run \`npm run build\` before the e2e tests`);
    server = await radosgw();
    base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-s3-keys-"));
  });
  afterAll(async () => {
    if (base !== undefined) await fsp.rm(base, { recursive: true, force: true });
  });

  async function run(args: string[], env: Env, code: number = EXIT.OK): Promise<CofferResult> {
    const r = await coffer(args, { env: { HOME: base, ...server.env, ...env }, cwd: base });
    expectNoStackTrace(r);
    return expectExit(r, code);
  }

  it("key add, list and passwd", async () => {
    const repo = `s3+http://${server.hostPort}/${freshBucketName("keys")}/laptop`;
    const src = path.join(base, "src");
    await fsp.mkdir(src, { recursive: true });
    await fsp.writeFile(path.join(src, "a.txt"), "keys on s3\n");
    const first = { COFFER_PASSPHRASE: "first" };
    await run(["at", repo, "create", ...FAST_KDF], first);
    await run(["at", repo, "backup", "-q", src], first);

    const added = parseJson<{ added: { id: string; host: string; user: string }; keys: number }>(
      await run(["at", repo, "key", "add", ...FAST_KDF, "--host", "h2", "--user", "u2", "--json"], { ...first, COFFER_NEW_PASSPHRASE: "second" }),
    );
    expect(added).toMatchObject({ added: { host: "h2", user: "u2" }, keys: 2 });
    const second = { COFFER_PASSPHRASE: "second" };
    const list = await run(["at", repo, "key", "list"], second);
    expect(list.stdout.split("\n").filter((l) => l !== "")).toHaveLength(2);
    expect(list.stdout).toMatch(new RegExp(`^\\* ${added.added.id.slice(0, 8)} {2}u2@h2 `, "m"));
    expect(parseJson<{ keys: unknown[] }>(await run(["at", repo, "key", "list", "--json"], first)).keys).toHaveLength(2);
    expect((await run(["at", repo, "cat", "latest:/a.txt"], second)).stdout).toBe("keys on s3\n");

    await run(["at", repo, "key", "passwd", ...FAST_KDF], { ...second, COFFER_NEW_PASSPHRASE: "third" });
    expect((await run(["at", repo, "ls"], second, EXIT.WRONG_PASSPHRASE)).stderr).toMatch(/wrong passphrase/);
    await run(["at", repo, "ls"], { COFFER_PASSPHRASE: "third" });
    await run(["at", repo, "ls"], first);
  });
});
