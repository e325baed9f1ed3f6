/**
 * `coffer key` through the BUILT binary (run `npm run build` first): a key
 * added with $COFFER_NEW_PASSPHRASE opens the repository, `passwd` from a
 * file shuts out the old passphrase with exit 12, and a plugin's store is
 * refused with exit 1, naming it. The behaviour in depth, in process:
 * test/integration/keys.test.ts.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { coffer, describeRun, type Env, EXIT, FAST_KDF, parseJson } from "../helpers/cli.js";
import { installKillable } from "../helpers/killable.js";
import { writeSeededFile } from "../helpers/tree.js";

let base: string;
let src: string;

async function run(at: string, args: string[], env: Env, code: number = EXIT.OK) {
  const r = await coffer(["at", at, ...args], { env: { XDG_CACHE_HOME: path.join(base, "cache"), ...env } });
  expect(r.exitCode, describeRun(r)).toBe(code);
  return r;
}

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-keys-e2e-"));
  src = path.join(base, "src");
  await fsp.mkdir(src);
  await writeSeededFile(path.join(src, "a.bin"), "keys-e2e", 50_000);
});

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

describe("coffer key through the binary", () => {
  for (const kind of ["fs", "ptar"] as const) {
    it(`${kind}: key add, then the new passphrase opens the repository; passwd shuts out the old one`, async () => {
      const at = kind === "fs" ? path.join(base, "repo") : path.join(base, "repo.ptar");
      const first = { COFFER_PASSPHRASE: "first" };
      await run(at, ["create", ...FAST_KDF], first);
      await run(at, ["backup", "-q", src], first);
      const added = parseJson<{ added: { id: string; host: string; user: string }; keys: number }>(
        await run(at, ["key", "add", ...FAST_KDF, "--host", "h2", "--user", "u2", "--json"], { ...first, COFFER_NEW_PASSPHRASE: "second" }),
      );
      expect(added).toMatchObject({ added: { host: "h2", user: "u2" }, keys: 2 });
      const second = { COFFER_PASSPHRASE: "second" };
      expect((await run(at, ["cat", `${await onlySnapshot(at, second)}:/a.bin`], second)).stdoutBytes.byteLength).toBe(50_000);
      const list = await run(at, ["key", "list"], second);
      expect(list.stdout.split("\n").filter((l) => l !== "")).toHaveLength(2);
      expect(list.stdout).toMatch(new RegExp(`^\\* ${added.added.id.slice(0, 8)} {2}u2@h2 `, "m"));

      const newFile = path.join(base, `${kind}-third`);
      await fsp.writeFile(newFile, "third\n");
      await run(at, ["key", "passwd", ...FAST_KDF, "--new-passphrase-file", newFile], second);
      const refused = await run(at, ["ls"], second, EXIT.WRONG_PASSPHRASE);
      expect(refused.stderr).toMatch(/wrong passphrase/);
      await run(at, ["ls"], { COFFER_PASSPHRASE: "third" });
      await run(at, ["ls"], first);
    });
  }

  it("a plugin's store cannot change keys: exit 1, naming the store, and the repository is as it was", async () => {
    const env = await installKillable(path.join(base, "home"), "plugin pass");
    const at = `killable:${path.join(base, "raw")}`;
    await run(at, ["create", ...FAST_KDF], env);
    const r = await run(at, ["key", "add", ...FAST_KDF], { ...env, COFFER_NEW_PASSPHRASE: "other" }, EXIT.ERROR);
    expect(r.stderr).toMatch(/killable store .* cannot replace the repository configuration/);
    expect(parseJson<{ keys: unknown[] }>(await run(at, ["key", "list", "--json"], env)).keys).toHaveLength(1);
    await run(at, ["ls"], { ...env, COFFER_PASSPHRASE: "other" }, EXIT.WRONG_PASSPHRASE);
  });
});

/** The ID of the repository's one snapshot. */
async function onlySnapshot(at: string, env: Env): Promise<string> {
  const list = parseJson<{ id: string }[]>(await run(at, ["ls", "--json"], env));
  expect(list).toHaveLength(1);
  return list[0]!.id;
}
