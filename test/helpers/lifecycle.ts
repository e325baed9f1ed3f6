/**
 * A repository's lifecycle through the built CLI, the same on every store a
 * test gives it (an s3:// or sftp:// location on a real server): three
 * backups of a tree whose big file changes each time, `prune --keep-last 1`,
 * `maintenance --grace 0` run twice (marking, then deleting), and then
 * `check --read-data` and a restore of the kept snapshot equal to the tree.
 */
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { expect } from "vitest";
import { type CofferResult, parseJson } from "./cli.js";
import { compareTrees, writeSeededFile } from "./tree.js";

/** Runs `coffer ARGS` with the test's environment, expecting exit 0. */
export type RunOk = (args: string[]) => Promise<CofferResult>;

interface Info {
  snapshots: number;
  packfiles: number;
  size: number;
}

/** The scenario at `repo` (created here), in the scratch directory `dir`. */
export async function pruneAndMaintain(run: RunOk, repo: string, dir: string): Promise<void> {
  const src = path.join(dir, "src");
  await fsp.mkdir(path.join(src, "sub"), { recursive: true });
  await fsp.writeFile(path.join(src, "sub", "kept.txt"), "in every version\n");
  await run(["at", repo, "create", "--kdf-memory", "1", "--kdf-passes", "1"]);
  for (let v = 1; v <= 3; v++) {
    await fsp.rm(path.join(src, `v${v - 1}.bin`), { force: true });
    await writeSeededFile(path.join(src, `v${v}.bin`), `lifecycle-${v}`, 3 * 1024 * 1024 + v);
    await run(["at", repo, "backup", "-q", src]);
  }
  const info = async () => parseJson<Info>(await run(["at", repo, "info", "--json"]));
  const before = await info();
  expect(before.snapshots).toBe(3);

  await run(["at", repo, "prune", "--keep-last", "1"]);
  expect((await info()).snapshots).toBe(1);
  await run(["at", repo, "maintenance", "--grace", "0"]);
  await run(["at", repo, "maintenance", "--grace", "0"]);
  const after = await info();
  expect(after.packfiles).toBeLessThan(before.packfiles);
  // The two removed versions' big files (3 MiB each, random) are gone.
  expect(before.size - after.size).toBeGreaterThan(2 * 3 * 1024 * 1024);

  await run(["at", repo, "check", "--read-data"]);
  const target = path.join(dir, "restored");
  await run(["at", repo, "restore", "-q", "--to", target]);
  expect(await compareTrees(src, target, { rootMeta: false })).toEqual([]);
}
