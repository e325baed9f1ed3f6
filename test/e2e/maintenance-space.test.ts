/**
 * What maintenance gives back, through the BUILT binary (run `npm run build`
 * first): after removing half the snapshots of a repository and running
 * maintenance (twice: marks, then deletions), the repository is within 10%
 * of a fresh repository holding only the kept snapshots. The figures are in
 * docs/PERFORMANCE.md ("Garbage collection").
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsStore } from "../../src/connectors/fs/store.js";
import { Repository } from "../../src/repository/repository.js";
import { coffer, describeRun, EXIT, parseJson } from "../helpers/cli.js";
import { writeSeededFile } from "../helpers/tree.js";

const KiB = 1024;
const PASS = "maintenance space";
const SNAPSHOTS = 8;
let base: string;
const env = () => ({ COFFER_PASSPHRASE: PASS, XDG_CACHE_HOME: path.join(base, "cache") });

async function run(repo: string, args: string[]) {
  const r = await coffer(["at", repo, ...args], { env: env(), timeoutMs: 60_000 });
  expect(r.exitCode, describeRun(r)).toBe(EXIT.OK);
  return r;
}

async function createRepo(name: string): Promise<string> {
  const repo = path.join(base, name);
  await Repository.create(new FsStore(repo), { passphrase: PASS, packSize: 256 * KiB, chunking: { min: 4 * KiB, avg: 16 * KiB, max: 64 * KiB }, kdf: { memory: 8, passes: 1, parallelism: 1 } });
  return repo;
}

/** Bytes of a repository's packfiles and state deltas on disk. */
async function size(repo: string): Promise<number> {
  let n = 0;
  for (const sub of ["packfiles", "states"]) {
    for (const e of await fsp.readdir(path.join(repo, sub), { recursive: true, withFileTypes: true })) {
      if (e.isFile()) n += (await fsp.stat(path.join(e.parentPath, e.name))).size;
    }
  }
  return n;
}

/** Version `v` of a tree: files kept from the start, files that change every other version, and new files of its own. */
async function version(v: number): Promise<string> {
  const dir = path.join(base, `v${v}`);
  await fsp.mkdir(path.join(dir, "docs"), { recursive: true });
  for (let i = 0; i < 4; i++) await writeSeededFile(path.join(dir, `stable-${i}.bin`), `stable:${i}`, 96 * KiB);
  await writeSeededFile(path.join(dir, "docs", "log.bin"), `log:${v >> 1}`, 128 * KiB);
  for (let i = 0; i < 3; i++) await writeSeededFile(path.join(dir, "docs", `new-${i}.bin`), `new:${v}:${i}`, 64 * KiB);
  return dir;
}

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-maintenance-space-"));
}, 60_000);

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

describe("space given back by maintenance", () => {
  it("after removing half the snapshots, the repository is within 10% of a fresh one holding the kept snapshots", async () => {
    const repo = await createRepo("repo");
    const dirs: string[] = [];
    const ids: string[] = [];
    for (let v = 0; v < SNAPSHOTS; v++) {
      dirs.push(await version(v));
      ids.push(parseJson<{ id: string }>(await run(repo, ["backup", "--json", dirs[v]!])).id);
    }
    const full = await size(repo);
    await run(repo, ["rm", ...ids.filter((_, v) => v % 2 === 0)]);
    await run(repo, ["maintenance", "--grace", "0"]);
    await run(repo, ["maintenance", "--grace", "0"]);
    const after = await size(repo);
    const fresh = await createRepo("fresh");
    for (let v = 1; v < SNAPSHOTS; v += 2) await run(fresh, ["backup", "--json", dirs[v]!]);
    const kept = await size(fresh);
    const figures = `all ${SNAPSHOTS} snapshots ${full} bytes; half removed and maintenance run twice ${after}; a fresh repository of the kept ones ${kept} (${((after / kept - 1) * 100).toFixed(1)}% more)`;
    expect(after, figures).toBeLessThanOrEqual(kept * 1.1);
    expect(after, figures).toBeLessThan(full);
    expect(parseJson<{ problems: unknown[] }>(await run(repo, ["check", "--read-data", "--json"])).problems).toEqual([]);
  }, 120_000);
});
