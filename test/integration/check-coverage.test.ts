/**
 * `check --read-data-subset`, `--max-duration` and `--coverage` (docs/CLI.md,
 * "check"), the command's own code in process (buildProgram) on an fs
 * repository of many small packfiles, each run's whole-packfile reads seen
 * through a recording store: parts N/M partition the packfiles; shares and
 * sizes read the longest unverified first and successive runs rotate; what
 * was verified is remembered across runs and across two "hosts" (two cache
 * directories) through the state when the store is writable, and in each
 * host's cache when it refuses writes (a fault-kit store); `repair index`
 * keeps it.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifiedCacheFile } from "../../src/cli/verified-cache.js";
import { Resource } from "../../src/connectors/flags.js";
import { FsStore } from "../../src/connectors/fs/store.js";
import { Repository } from "../../src/repository/repository.js";
import { CofferError } from "../../src/util/errors.js";
import { failing, recording, type RecordingStore } from "../helpers/faults.js";
import { runProgram, storeLocation } from "../helpers/program.js";
import { writeSeededFile } from "../helpers/tree.js";

const PASS = "coverage";
const KDF = { memory: 8, passes: 1, parallelism: 1 };
const CHUNKING = { min: 1024, avg: 2048, max: 8192 };

let base: string;
/** The repository every test copies. */
let template: string;
/** Its packfiles (hex). */
let allPacks: string[];
let seq = 0;
const fresh = (what: string) => path.join(base, `${what}-${++seq}`);

interface Run {
  code: number | undefined;
  error?: unknown;
  stdout: string;
  stderr: string;
  /** Packfiles read whole (hex). */
  read: string[];
  /** Store calls that wrote or deleted (and were not refused). */
  writes: number;
}

/** `coffer check ARGS` on `repo` as host `host` (its own cache directory); `readOnly`: the store refuses every write with READ_ONLY, though its mode says it is writable. */
async function cli(repo: string, host: string, argv: string[], o: { readOnly?: boolean } = {}): Promise<Run> {
  let rec: RecordingStore | undefined;
  const loc = storeLocation(() => {
    const fs = new FsStore(repo);
    const inner = o.readOnly ? failing(fs, { op: ["put", "delete", "stage"], times: Infinity, error: (c) => new CofferError("READ_ONLY", `${c.op} refused (injected)`) }) : fs;
    return (rec = recording(inner));
  });
  const home = homeOf(repo, host);
  const r = await runProgram(argv, { at: loc.at, env: { COFFER_PASSPHRASE: PASS, HOME: home, XDG_CACHE_HOME: path.join(home, ".cache") }, cwd: base }).finally(loc.release);
  const log = (rec as RecordingStore | undefined)?.entries({ op: "get", resource: Resource.PACKFILE }) ?? [];
  return {
    ...r,
    code: r.error === undefined ? r.code : undefined,
    read: log.filter((l) => l.range === undefined).map((l) => l.mac!),
    writes: (rec as RecordingStore | undefined)?.entries({ op: ["put", "delete", "commit"] }, "done").length ?? 0,
  };
}

function ok(r: Run, code = 0): Run {
  expect(r.code, `exit ${String(r.code)} ${String(r.error ?? "")}\n${r.stdout}\n${r.stderr}`).toBe(code);
  return r;
}

interface CheckJson {
  problems: unknown[];
  read: { packs: number; bytes: number; of: { packs: number; bytes: number }; stopped: boolean; subset: string | null; maxDurationMs: number | null };
  verified: { packs: number; state: boolean; cache: boolean };
}

interface CoverageJson {
  packs: number;
  bytes: number;
  windows: { window: string; ms: number; packs: number; bytes: number }[];
  never: { packs: number; bytes: number };
  oldest: string | null;
  oldestPack: string | null;
}

const json = <T>(r: Run): T => JSON.parse(r.stdout) as T;

/** A host's home: its own per repository copy, since every copy has the template's repository ID. */
const homeOf = (repo: string, host: string) => `${repo}-home-${host}`;

async function copy(): Promise<string> {
  const to = fresh("repo");
  await fsp.cp(template, to, { recursive: true });
  return to;
}

async function countFiles(dir: string): Promise<number> {
  const entries = await fsp.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).length;
}

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-coverage-"));
  const src = path.join(base, "src");
  await fsp.mkdir(src);
  for (let i = 0; i < 5; i++) await writeSeededFile(path.join(src, `f${i}.bin`), `coverage-${i}`, 16_000);
  template = path.join(base, "template");
  const fs = new FsStore(template);
  await Repository.create(fs, { passphrase: PASS, packSize: 8192, chunking: CHUNKING, kdf: KDF });
  await fs.close();
  ok(await cli(template, "setup", ["backup", "-q", src]));
  const repo = await Repository.open(new FsStore(template), { passphrase: async () => new TextEncoder().encode(PASS) });
  allPacks = [...repo.index.packs.keys()].sort();
  await repo.close();
}, 60_000);

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

const sorted = (l: Iterable<string>) => [...l].sort();

describe("check --read-data-subset", () => {
  it("the repository has packfiles enough to test", () => {
    expect(allPacks.length).toBeGreaterThanOrEqual(8);
  });

  it("N/M: parts 1/M..M/M read every packfile exactly once, whatever was verified before", async () => {
    const repo = await copy();
    for (const m of [1, 3, 4]) {
      const seen: string[] = [];
      for (let n = 1; n <= m; n++) {
        const r = ok(await cli(repo, "a", ["check", "--json", "--read-data-subset", `${n}/${m}`]));
        expect(json<CheckJson>(r).read).toMatchObject({ packs: r.read.length, subset: `${n}/${m}`, stopped: false });
        seen.push(...r.read);
      }
      expect(sorted(seen)).toEqual(allPacks);
    }
  });

  it("SIZE: one packfile at least, the never verified first by name, and successive runs rotate through the repository", async () => {
    const repo = await copy();
    const order: string[] = [];
    for (let i = 0; i < allPacks.length; i++) {
      const r = ok(await cli(repo, "a", ["check", "--read-data-subset", "1"]));
      expect(r.read).toHaveLength(1);
      expect(r.stdout).toMatch(/read 1 of \d+ packfiles .*the longest unverified first/);
      order.push(r.read[0]!);
    }
    expect(order).toEqual(allPacks);
    // Every packfile verified once: the next run reads the one verified longest ago.
    expect(ok(await cli(repo, "a", ["check", "--read-data-subset", "1"])).read).toEqual([allPacks[0]]);
    // A size reads packfiles while they fit.
    const total = json<CheckJson>(ok(await cli(repo, "a", ["check", "--json", "--fast"]))).read.of.bytes;
    const half = json<CheckJson>(ok(await cli(repo, "a", ["check", "--json", "--read-data-subset", String(Math.floor(total / 2))]))).read;
    expect(half.packs).toBeGreaterThan(1);
    expect(half.packs).toBeLessThan(allPacks.length);
    expect(half.bytes).toBeLessThanOrEqual(total / 2);
  });

  it("P%: that share, the longest unverified first; two hosts share what was verified through the state", async () => {
    const repo = await copy();
    const a = ok(await cli(repo, "a", ["check", "--json", "--read-data-subset", "50%"]));
    const half = Math.ceil(allPacks.length / 2);
    expect(sorted(a.read)).toEqual(allPacks.slice(0, half));
    expect(json<CheckJson>(a).verified).toEqual({ packs: half, state: true, cache: true });
    // Another host (its own cache) learns from the state what host a verified, and reads the rest.
    const b = ok(await cli(repo, "b", ["check", "--json", "--read-data-subset", "50%"]));
    for (const p of allPacks.slice(half)) expect(b.read).toContain(p);
    const c = json<CoverageJson>(ok(await cli(repo, "c", ["check", "--coverage", "--json"])));
    expect(c.packs).toBe(allPacks.length);
    expect(c.windows.map((w) => [w.window, w.packs, w.bytes])).toEqual(["day", "week", "month"].map((w) => [w, allPacks.length, c.bytes]));
    expect(c.never).toEqual({ packs: 0, bytes: 0 });
    expect(Date.now() - Date.parse(c.oldest!)).toBeLessThan(24 * 3600_000);
    expect(allPacks).toContain(c.oldestPack);
  });
});

describe("a store that refuses writes", () => {
  it("a check is the same, writes nothing, and remembers what it verified in this host's cache only", async () => {
    const repo = await copy();
    const states = await countFiles(path.join(repo, "states"));
    const half = Math.ceil(allPacks.length / 2);
    const a1 = ok(await cli(repo, "a", ["check", "--json", "--read-data-subset", "50%"], { readOnly: true }));
    expect(a1.stderr).toBe("");
    expect(json<CheckJson>(a1)).toMatchObject({ problems: [], verified: { packs: half, state: false, cache: true } });
    expect(a1.writes).toBe(0);
    const text = ok(await cli(repo, "a", ["check", "--read-data-subset", "50%"], { readOnly: true }));
    expect(text.stdout).toContain("remembered in this client's cache only");
    for (const p of allPacks.slice(half)) expect(text.read).toContain(p);
    expect(await countFiles(path.join(repo, "states"))).toBe(states);
    expect(await countFiles(path.join(repo, "locks"))).toBe(0);
    // Host a's coverage is whole; host b, with nothing in the state to go by, starts where host a did.
    expect(json<CoverageJson>(ok(await cli(repo, "a", ["check", "--coverage", "--json"], { readOnly: true }))).never.packs).toBe(0);
    expect(json<CoverageJson>(ok(await cli(repo, "b", ["check", "--coverage", "--json"], { readOnly: true }))).never.packs).toBe(allPacks.length);
    const b = ok(await cli(repo, "b", ["check", "--json", "--read-data-subset", "50%"], { readOnly: true }));
    expect(sorted(b.read)).toEqual(sorted(a1.read));
  });

  it("a damaged cache file is a warning, ignored, then rewritten", async () => {
    const repo = await copy();
    ok(await cli(repo, "d", ["check", "--read-data-subset", "1/2"], { readOnly: true }));
    const r = await Repository.open(new FsStore(repo), { passphrase: async () => new TextEncoder().encode(PASS) });
    const file = verifiedCacheFile({ XDG_CACHE_HOME: path.join(homeOf(repo, "d"), ".cache") }, r.config.id);
    await r.close();
    const bytes = await fsp.readFile(file);
    bytes[3]! ^= 1;
    await fsp.writeFile(file, bytes);
    const damaged = ok(await cli(repo, "d", ["check", "--coverage", "--json"]));
    expect(damaged.stderr).toMatch(/warning: ignoring .*verification cache: authentication failed/);
    expect(json<CoverageJson>(damaged).never.packs).toBe(allPacks.length);
    ok(await cli(repo, "d", ["check", "--read-data-subset", "1/2"], { readOnly: true }));
    const again = ok(await cli(repo, "d", ["check", "--coverage", "--json"]));
    expect(again.stderr).toBe("");
    expect(json<CoverageJson>(again).never.packs).toBeLessThan(allPacks.length);
  });
});

describe("check --max-duration", () => {
  it("0 reads one packfile, the longest unverified, then stops cleanly (exit 0)", async () => {
    const repo = await copy();
    const r = ok(await cli(repo, "a", ["check", "--json", "--max-duration", "0"]));
    expect(r.read).toEqual([allPacks[0]]);
    expect(json<CheckJson>(r).read).toMatchObject({ packs: 1, stopped: true, maxDurationMs: 0 });
    const t = ok(await cli(repo, "a", ["check", "--read-data", "--max-duration", "0"]));
    expect(t.read).toEqual([allPacks[1]]);
    expect(t.stdout).toContain(`read 1 of ${allPacks.length} packfiles`);
    expect(t.stdout).toContain("stopped at the time limit (--max-duration 0)");
    // A limit long enough reads everything.
    const all = ok(await cli(repo, "a", ["check", "--json", "--max-duration", "1d"]));
    expect(json<CheckJson>(all).read).toMatchObject({ packs: allPacks.length, stopped: false });
  });
});

describe("check --coverage", () => {
  it("before any check: nothing verified; after a full check: everything, in the text report too", async () => {
    const repo = await copy();
    const before = json<CoverageJson>(ok(await cli(repo, "a", ["check", "--coverage", "--json"])));
    expect(before).toMatchObject({ packs: allPacks.length, never: { packs: allPacks.length, bytes: before.bytes }, oldest: null, oldestPack: null });
    expect(before.windows.map((w) => w.packs)).toEqual([0, 0, 0]);
    const t0 = ok(await cli(repo, "a", ["check", "--coverage"]));
    expect(t0.stdout).toContain(`${allPacks.length} packfiles`);
    expect(t0.stdout).toContain("oldest verification: none");
    ok(await cli(repo, "a", ["check"]));
    const t1 = ok(await cli(repo, "a", ["check", "--coverage"]));
    expect(t1.stdout).toMatch(/in the last day: +\d+ packfiles \(100\.0%\)/);
    expect(t1.stdout).toMatch(/never: +0 packfiles \(0\.0%\)/);
    expect(t1.stdout).toMatch(/oldest verification: \d{4}-\d\d-\d\dT/);
  });

  it("repair index keeps when packfiles were verified", async () => {
    const repo = await copy();
    ok(await cli(repo, "a", ["check"]));
    ok(await cli(repo, "a", ["repair", "index"]));
    expect(json<CoverageJson>(ok(await cli(repo, "fresh", ["check", "--coverage", "--json"]))).never.packs).toBe(0);
  });

  it("usage errors: --coverage or --fast with a partial read, bad subsets and durations", async () => {
    const repo = await copy();
    for (const argv of [
      ["--coverage", "--fast"],
      ["--coverage", "--read-data-subset", "1/2"],
      ["--fast", "--read-data-subset", "1/2"],
      ["--fast", "--max-duration", "1h"],
      ["--read-data-subset", "0/2"],
      ["--read-data-subset", "3/2"],
      ["--read-data-subset", "0%"],
      ["--read-data-subset", "many"],
      ["--max-duration", "5"],
    ]) {
      const r = await cli(repo, "a", ["check", ...argv]);
      expect((r.error as CofferError | undefined)?.code, argv.join(" ")).toBe("USAGE");
    }
  });
});
