/**
 * Maintenance under concurrency, through the BUILT binary (run `npm run
 * build` first): two backup loops in separate processes (overlapping data,
 * new data each round, data of its own in each snapshot) while snapshots
 * are removed (`coffer rm` for loop a's, `coffer prune` by tag for loop
 * b's) and `maintenance --grace 0` runs again and again. What is
 * asserted does not depend on the interleaving: afterwards `check
 * --read-data` passes, the kept snapshots are exactly those not removed,
 * each restores identical to what it backed up, and maintenance finishes
 * with nothing left to free.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsStore } from "../../src/connectors/fs/store.js";
import { Repository } from "../../src/repository/repository.js";
import { coffer, describeRun, EXIT, parseJson } from "../helpers/cli.js";
import { compareTrees, writeSeededFile } from "../helpers/tree.js";

const KiB = 1024;
const PASS = "maintenance concurrency";
const ROUNDS = 8;
const LOOPS = ["a", "b"] as const;
let base: string;
let repo: string;
const env = () => ({ COFFER_PASSPHRASE: PASS, XDG_CACHE_HOME: path.join(base, "cache") });

async function run(args: string[], code: number = EXIT.OK) {
  const r = await coffer(["at", repo, ...args], { env: env(), timeoutMs: 60_000 });
  expect(r.exitCode, describeRun(r)).toBe(code);
  return r;
}

/** The tree loop `loop` backs up in `round`: a file all share, last round's new file, this round's, and one no other snapshot has. */
async function source(loop: string, round: number): Promise<string> {
  const dir = path.join(base, `src-${loop}-${round}`);
  await fsp.mkdir(path.join(dir, "sub"), { recursive: true });
  await writeSeededFile(path.join(dir, "common.bin"), "common", 160 * KiB);
  if (round > 0) await writeSeededFile(path.join(dir, "prev.bin"), `${loop}:${round - 1}`, 96 * KiB);
  await writeSeededFile(path.join(dir, "new.bin"), `${loop}:${round}`, 96 * KiB);
  await writeSeededFile(path.join(dir, "sub", "only.bin"), `${loop}:${round}:only`, 64 * KiB);
  return dir;
}

/** Snapshots of even rounds are removed once committed (loop a's by rm, loop b's by prune); odd rounds are kept. */
const removed = (round: number) => round % 2 === 0;

/** Loop a's snapshots carry tag a; loop b's tag keep or temp: prune keeps tags a and keep, and so removes exactly b's even rounds. */
const tagOf = (loop: string, round: number) => (loop === "a" ? "a" : removed(round) ? "temp" : "keep");
const PRUNE = ["prune", "--keep-tag", "a", "--keep-tag", "keep", "--group-by", "", "--json"];

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-maintenance-e2e-"));
  repo = path.join(base, "repo");
  // Small packfiles and chunks, so that snapshots share and leave packfiles partly used.
  await Repository.create(new FsStore(repo), { passphrase: PASS, packSize: 64 * KiB, chunking: { min: 4 * KiB, avg: 16 * KiB, max: 64 * KiB }, kdf: { memory: 8, passes: 1, parallelism: 1 } });
}, 60_000);

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

describe("maintenance while two hosts back up", () => {
  it("loses nothing: check --read-data passes and every kept snapshot restores as it was", async () => {
    const taken: { loop: string; round: number; id: string; dir: string }[] = [];
    const toRemove: string[] = [];
    let loopsRunning = LOOPS.length;
    const backupLoop = async (loop: string) => {
      try {
        for (let round = 0; round < ROUNDS; round++) {
          const dir = await source(loop, round);
          const { id } = parseJson<{ id: string }>(await run(["backup", "--json", "--tag", tagOf(loop, round), dir]));
          taken.push({ loop, round, id, dir });
          if (loop === "a" && removed(round)) toRemove.push(id);
        }
      } finally {
        loopsRunning--;
      }
    };
    const pruned: number[] = [];
    const reports: { freed: { packs: number; bytes: number }; marked: { packs: number } }[] = [];
    const maintain = async () => {
      const gc = async () => reports.push(parseJson(await run(["maintenance", "--grace", "0", "--json"])));
      while (loopsRunning > 0) {
        const ids = toRemove.splice(0);
        if (ids.length > 0) await run(["rm", ...ids]);
        // Keep-min 1 may keep a temp snapshot that is the newest for now; a later prune removes it.
        if (taken.length > 0) pruned.push(parseJson<{ remove: number }>(await run(PRUNE)).remove);
        await gc();
      }
      const last = toRemove.splice(0);
      if (last.length > 0) await run(["rm", ...last]);
      pruned.push(parseJson<{ remove: number }>(await run(PRUNE)).remove);
      // Once the backups have ended, two runs free all they left: marks, then deletions.
      await gc();
      await gc();
    };
    await Promise.all([...LOOPS.map(backupLoop), maintain()]);

    expect(reports.length).toBeGreaterThanOrEqual(3);
    // prune removed each of loop b's even rounds once.
    expect(pruned.reduce((a, b) => a + b, 0)).toBe(ROUNDS / 2);
    const freed = reports.reduce((n, r) => n + r.freed.bytes, 0);
    // At least each removed snapshot's own file was freed.
    const removedCount = taken.filter((t) => removed(t.round)).length;
    expect(freed).toBeGreaterThanOrEqual(removedCount * 64 * KiB);
    const dry = parseJson<{ freed: { packs: number }; marked: { packs: number }; keptForLocks: { packs: number } }>(await run(["maintenance", "--grace", "0", "--dry-run", "--json"]));
    expect([dry.freed.packs, dry.marked.packs, dry.keptForLocks.packs]).toEqual([0, 0, 0]);

    const c = parseJson<{ problems: unknown[] }>(await run(["check", "--read-data", "--json"]));
    expect(c.problems).toEqual([]);
    const kept = taken.filter((t) => !removed(t.round));
    const listed = parseJson<{ id: string }[]>(await run(["ls", "--json"]));
    expect(listed.map((s) => s.id).sort()).toEqual(kept.map((t) => t.id).sort());
    for (const t of kept) {
      const to = path.join(base, `restore-${t.loop}-${t.round}`);
      await run(["restore", "--to", to, t.id]);
      expect(await compareTrees(t.dir, to, { rootMeta: false }), `${t.loop} round ${t.round}`).toEqual([]);
    }
  }, 120_000);
});
