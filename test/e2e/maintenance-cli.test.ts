/**
 * `coffer maintenance` as a user runs it, in process on the BUILT CLI (run
 * `npm run build` first): its options, its report in words and in JSON,
 * a dry run, and that a backup holding its lock does not stop it (nor it a
 * backup). The mechanism in depth: test/integration/maintenance.test.ts.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsStore } from "../../src/connectors/fs/store.js";
import { Repository } from "../../src/repository/repository.js";
import { describeRun, EXIT, FAST_KDF, parseJson } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";
import { writeSeededFile } from "../helpers/tree.js";

const PASS = "maintenance cli";
let base: string;
let repo: string;
let ids: string[];
const env = () => ({ COFFER_PASSPHRASE: PASS, XDG_CACHE_HOME: path.join(base, "cache") });

async function run(args: string[], code: number = EXIT.OK) {
  const r = await cofferInProcess(["at", repo, ...args], { env: env() });
  expect(r.exitCode, describeRun(r)).toBe(code);
  return r;
}

interface Report {
  dryRun: boolean;
  freed: { packs: number };
  marked: { packs: number };
  keptForGrace: { packs: number };
  removedInGrace: number;
}

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-maintenance-cli-"));
  repo = path.join(base, "repo");
  await run(["create", ...FAST_KDF]);
  ids = [];
  for (const v of [1, 2]) {
    const dir = path.join(base, `src${v}`);
    await fsp.mkdir(dir);
    await writeSeededFile(path.join(dir, "f.bin"), `v${v}`, 200_000);
    ids.push(parseJson<{ id: string }>(await run(["backup", "--json", dir])).id);
  }
  await run(["rm", ids[0]!]);
}, 60_000);

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

describe("coffer maintenance", () => {
  it("refuses bad options as usage errors", async () => {
    for (const args of [["--grace", "soon"], ["--max-unused", "150%"], ["--max-unused", "lots"], ["--max-repack-size", "big"]]) {
      const r = await run(["maintenance", ...args], EXIT.USAGE);
      expect(r.stderr).toContain(args[0]);
    }
  });

  it("with the default grace period, keeps a removed snapshot's data; a dry run says so and writes nothing", async () => {
    const states = async () => (await fsp.readdir(path.join(repo, "states"), { recursive: true })).sort();
    const before = await states();
    const dry = await run(["maintenance", "--dry-run"]);
    expect(dry.stdout).toMatch(/^live: 2 snapshots, of which 1 removed but inside the grace period$/m);
    expect(dry.stdout).toMatch(/dry run: nothing written/);
    expect(await states()).toEqual(before);
    const r = parseJson<Report>(await run(["maintenance", "--json"]));
    expect(r).toMatchObject({ dryRun: false, removedInGrace: 1, freed: { packs: 0 } });
  });

  it("with --grace 0, marks the removed snapshot's data, then frees it on the next run, while a backup holds its lock", async () => {
    const holder = await Repository.open(new FsStore(repo), { passphrase: async () => PASS });
    await holder.acquire("shared", "backup (test)");
    try {
      const first = parseJson<Report>(await run(["maintenance", "--grace", "0", "--json"]));
      expect(first.marked.packs).toBeGreaterThanOrEqual(1);
      const text = (await run(["maintenance", "--grace", "0"])).stdout;
      expect(text).toMatch(/^kept for running backups: \d+ packfiles/m);
    } finally {
      await holder.close();
    }
    const freed = parseJson<Report>(await run(["maintenance", "--grace", "0", "--json"]));
    expect(freed.freed.packs).toBeGreaterThanOrEqual(1);
    expect(parseJson<{ problems: unknown[] }>(await run(["check", "--read-data", "--json"])).problems).toEqual([]);
    expect(parseJson<{ id: string }[]>(await run(["ls", "--json"])).map((s) => s.id)).toEqual([ids[1]]);
  });
});
