/**
 * One damaged object never blocks a repository, and `repair` heals it.
 * Through the built CLI, each case starts from the exact damage (a packfile
 * deleted, a byte flipped in a chunk, in a snapshot header, in a state
 * delta) and asserts the exit code, the message naming the object, and that
 * nothing intact is lost:
 * - `check` names the damage and records it in the state, so that a backup
 *   stores the lost blobs again instead of deduplicating against them;
 * - `ls`, `restore`, `backup` work around what they do not need;
 * - `repair index` drops damaged and missing packfiles (storing their intact
 *   blobs again), `repair snapshots` marks the affected files damaged, a
 *   backup afterwards stores them again, and `check --read-data` passes;
 * - `--dry-run` writes nothing, `--json` reports what was done.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CofferResult, describeRun, type Env, EXIT, expectExit, expectNoStackTrace, FAST_KDF, parseJson } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";
import { deltasNaming, fileChunks, flipByte, headerBlob, objectPath, snapshotOfFiles, treeBlob } from "../helpers/inspect.js";
import { compareTrees, writeSeededFile } from "../helpers/tree.js";

const PASS = "damage-e2e";
const MiB = 1024 * 1024;
let base: string;
let n = 0;

const env = (): Env => ({ HOME: base, TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: PASS });
const fresh = (what: string) => path.join(base, `${what}-${++n}`);

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-damage-"));
  await fsp.mkdir(path.join(base, "tmp"));
});

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

async function run(args: string[], ...codes: number[]): Promise<CofferResult> {
  const r = await cofferInProcess(args, { env: env(), cwd: base });
  expectNoStackTrace(r);
  return expectExit(r, ...(codes.length ? codes : [EXIT.OK]));
}

interface BackupJson {
  id: string;
  short: string;
  readBytes: number;
  newBytes: number;
}

async function backup(repo: string, src: string, ...extra: string[]): Promise<BackupJson> {
  return parseJson<BackupJson>(await run(["at", repo, "backup", "--json", ...extra, src]));
}

async function expectRestoresIdentical(repo: string, snap: string, src: string): Promise<void> {
  const dir = fresh("restore");
  await run(["at", repo, "restore", "--to", dir, snap]);
  expect(await compareTrees(src, dir, { rootMeta: false })).toEqual([]);
}

/**
 * Two sources backed up into one repository: each backup's packfiles hold
 * only its own content. With `bigSize` over the packfile size (32 MiB), the
 * first chunks of big.bin fill a packfile of their own (the trees come last).
 */
async function twoSources(bigSize = 3 * MiB): Promise<{ repo: string; keep: string; hurt: string; kept: BackupJson; hurtSnap: BackupJson }> {
  const repo = fresh("repo");
  await run(["at", repo, "create", ...FAST_KDF]);
  const keep = fresh("keep");
  await fsp.mkdir(keep);
  await writeSeededFile(path.join(keep, "k.bin"), `${repo}-k`, 2 * MiB);
  const hurt = fresh("hurt");
  await fsp.mkdir(hurt);
  await writeSeededFile(path.join(hurt, "big.bin"), `${repo}-big`, bigSize);
  await fsp.writeFile(path.join(hurt, "note.txt"), "a small file stored with the trees\n");
  const kept = await backup(repo, keep);
  const hurtSnap = await backup(repo, hurt);
  return { repo, keep, hurt, kept, hurtSnap };
}

describe("a deleted packfile", () => {
  /** Deletes the packfile of big.bin's first chunk; `lost` lists the files with content in it (note.txt may be read beside big.bin). */
  async function deleteFirstChunkPack(): Promise<Awaited<ReturnType<typeof twoSources>> & { pack: string; lost: string[] }> {
    const t = await twoSources(34 * MiB);
    const [chunk] = await fileChunks(t.repo, PASS, t.hurtSnap.short, "/big.bin");
    const lost: string[] = [];
    for (const f of ["/big.bin", "/note.txt"]) if ((await fileChunks(t.repo, PASS, t.hurtSnap.short, f)).some((c) => c.pack === chunk!.pack)) lost.push(f);
    await fsp.rm(chunk!.file);
    const c = await run(["at", t.repo, "check"], EXIT.ERROR);
    expect(c.stdout, describeRun(c)).toContain(`packfile ${chunk!.pack} is named in the state but missing`);
    expect(c.stdout, describeRun(c)).toMatch(new RegExp(`snapshot ${t.hurtSnap.short}: /big.bin: .*missing`));
    expect(c.stdout, describeRun(c)).not.toContain(`snapshot ${t.kept.short}`);
    expect(c.stdout).toContain("recorded the damage in the state");
    return { ...t, pack: chunk!.pack, lost };
  }

  it("once check has found it, backup --force stores the lost chunks again instead of deduplicating against them", async () => {
    const { repo, keep, hurt, kept, hurtSnap } = await deleteFirstChunkPack();
    const again = await backup(repo, hurt, "--force");
    expect(again.newBytes).toBeGreaterThanOrEqual(30 * MiB);
    await expectRestoresIdentical(repo, again.short, hurt);
    // Stored again under the same MACs: the old snapshot is whole again too.
    await expectRestoresIdentical(repo, hurtSnap.short, hurt);
    await expectRestoresIdentical(repo, kept.short, keep);
  });

  it("repair index drops it, repair snapshots marks the file damaged and keeps the rest; a backup then heals it", async () => {
    const { repo, hurt, kept, hurtSnap, pack, lost } = await deleteFirstChunkPack();
    // --dry-run says what it would do and writes nothing.
    const before = await snapshotOfFiles(repo);
    const dry = await run(["at", repo, "repair", "index", "--dry-run"]);
    expect(dry.stdout).toContain(`packfile ${pack}: missing from the store; would drop it`);
    const dryJson = parseJson<{ dryRun: boolean; missing: string[] }>(await run(["at", repo, "repair", "index", "--dry-run", "--json"]));
    expect(dryJson).toMatchObject({ dryRun: true, missing: [pack] });
    const drySnaps = parseJson<{ repaired: { from: string; to: null; entries: { path: string }[] }[] }>(await run(["at", repo, "repair", "snapshots", "--dry-run", "--json"]));
    expect(drySnaps.repaired.map((s) => [s.from, s.to, s.entries.map((e) => e.path)])).toEqual([[hurtSnap.id, null, lost]]);
    expect(await snapshotOfFiles(repo)).toEqual(before);

    const ri = parseJson<{ missing: string[]; deltasWritten: number; deltasRemoved: number }>(await run(["at", repo, "repair", "index", "--json"]));
    expect(ri.missing).toEqual([pack]);
    expect(ri.deltasWritten).toBeGreaterThan(0);
    expect(ri.deltasRemoved).toBeGreaterThan(0);

    const rs = await run(["at", repo, "repair", "snapshots"]);
    expect(rs.stdout).toMatch(new RegExp(`snapshot ${hurtSnap.short}: ${lost.length} entries marked damaged; replaced by [0-9a-f]{8}`));
    expect(rs.stdout).toMatch(/ {2}\/big\.bin: damaged: \d+ of \d+ chunks lost/);
    const fixed = /replaced by ([0-9a-f]{8})/.exec(rs.stdout)![1]!;
    const ls = parseJson<{ id: string }[]>(await run(["at", repo, "ls", "--json"])).map((s) => s.id);
    expect(ls).toHaveLength(2);
    expect(ls).toContain(kept.id);
    expect(ls).not.toContain(hurtSnap.id);

    const dir = fresh("restore-repaired");
    const r = await run(["at", repo, "restore", "--to", dir, fixed]);
    for (const f of lost) {
      expect(r.stderr).toContain(`skipped ${f}: not in the snapshot: damaged`);
      await expect(fsp.access(path.join(dir, f))).rejects.toThrow();
    }
    if (!lost.includes("/note.txt")) expect(await fsp.readFile(path.join(dir, "note.txt"), "utf8")).toBe("a small file stored with the trees\n");
    await run(["at", repo, "check", "--read-data"]);

    // The repaired snapshot is the parent: its damaged file is read and stored again.
    const b = await backup(repo, hurt);
    expect(b.newBytes).toBeGreaterThanOrEqual(30 * MiB);
    await expectRestoresIdentical(repo, b.short, hurt);
    const ok = await run(["at", repo, "check", "--read-data"]);
    expect(ok.stdout).toMatch(/checked 3 snapshots, .*no problems/);
  });
});

describe("a flipped byte in a chunk", () => {
  it("once check has found it, a plain backup reads the file again instead of reusing the damaged chunk", async () => {
    const { repo, hurt, hurtSnap } = await twoSources();
    const chunks = await fileChunks(repo, PASS, hurtSnap.short, "/big.bin");
    const last = chunks.at(-1)!;
    await flipByte(last.file, last.offset + (last.length >> 1));

    const c = await run(["at", repo, "check", "--read-data"], EXIT.ERROR);
    expect(c.stdout, describeRun(c)).toContain(`in packfile ${last.pack.slice(0, 12)}: authentication failed`);
    expect(c.stdout).toMatch(new RegExp(`snapshot ${hurtSnap.short}: /big.bin: `));

    const b = await backup(repo, hurt);
    expect(b.readBytes, "big.bin is read again although unchanged").toBeGreaterThanOrEqual(3 * MiB);
    await expectRestoresIdentical(repo, b.short, hurt);
    // The chunk is stored again under its MAC: the old snapshot is whole again too.
    await expectRestoresIdentical(repo, hurtSnap.short, hurt);

    // Until repair index drops the damaged packfile (storing its intact blobs again), check says so.
    const still = await run(["at", repo, "check", "--fast"], EXIT.ERROR);
    expect(still.stdout).toContain(`packfile ${last.pack}: 1 blobs recorded as damaged`);
    const ri = await run(["at", repo, "repair", "index"]);
    expect(ri.stdout).toMatch(new RegExp(`packfile ${last.pack}: damaged \\(content does not match its name\\); stored \\d+ intact blobs again, [01] lost; dropped it`));
    const rs = parseJson<{ repaired: unknown[] }>(await run(["at", repo, "repair", "snapshots", "--json"]));
    expect(rs.repaired).toEqual([]);
    await run(["at", repo, "check", "--read-data"]);
  });
});

describe("a flipped byte in one snapshot's header", () => {
  it("ls lists the others and names it (exit 3); backup and restore go on; repair removes it", async () => {
    const { repo, keep, hurt, kept, hurtSnap } = await twoSources();
    const third = await backup(repo, keep, "--tag", "third");
    const h = await headerBlob(repo, PASS, hurtSnap.short);
    await flipByte(h.file, h.offset + (h.length >> 1));

    const ls = await run(["at", repo, "ls"], EXIT.PARTIAL);
    expect(ls.stdout).toContain(kept.short);
    expect(ls.stdout).toContain(third.short);
    expect(ls.stdout).not.toContain(hurtSnap.short);
    expect(ls.stderr).toContain(`snapshot ${hurtSnap.id} cannot be read`);
    expect(ls.stderr).toContain("authentication failed");
    const lsJson = await run(["at", repo, "ls", "--json"], EXIT.PARTIAL);
    expect(parseJson<{ id: string }[]>(lsJson).map((s) => s.id)).toEqual([kept.id, third.id]);

    await expectRestoresIdentical(repo, third.short, keep);
    const b = await run(["at", repo, "backup", "--json", hurt]);
    expect(b.stderr).toContain(`warning: ${hurtSnap.id}:`);
    await expectRestoresIdentical(repo, parseJson<BackupJson>(b).short, hurt);

    const c = await run(["at", repo, "check"], EXIT.ERROR);
    expect(c.stdout).toContain(`snapshot ${hurtSnap.short}: header unreadable`);
    // The header cannot be salvaged: repair index removes the snapshot, with a record saying why.
    const ri = await run(["at", repo, "repair", "index"]);
    expect(ri.stdout).toContain(`snapshot ${hurtSnap.id}: its header is lost; removed`);
    const ls2 = await run(["at", repo, "ls", "--json"]);
    expect(parseJson<{ id: string }[]>(ls2).map((s) => s.id)).not.toContain(hurtSnap.id);
    expect(parseJson<{ id: string }[]>(ls2)).toHaveLength(3);
    await run(["at", repo, "check", "--read-data"]);
  });
});

describe("a flipped byte in the parent snapshot's listing", () => {
  it("backup warns, reads the files below it from the source, and its snapshot restores identical", async () => {
    const { repo, hurt, hurtSnap } = await twoSources();
    const t = await treeBlob(repo, PASS, hurtSnap.short, "/");
    await flipByte(t.file, t.offset + (t.length >> 1));
    const r = await run(["at", repo, "backup", "--json", hurt]);
    expect(r.stderr).toMatch(/warning: \/: the parent snapshot's listing is unreadable \(.*authentication failed\): reading the files below it again/);
    const b = parseJson<BackupJson>(r);
    expect(b.readBytes).toBeGreaterThanOrEqual(3 * MiB);
    await expectRestoresIdentical(repo, b.short, hurt);
  });
});

describe("a flipped byte in a state delta", () => {
  async function flipOneDelta(repo: string): Promise<{ name: string; file: string }> {
    const names: string[] = [];
    for (const d of await fsp.readdir(path.join(repo, "states"))) for (const f of await fsp.readdir(path.join(repo, "states", d))) names.push(f);
    const name = names.sort()[0]!;
    const file = objectPath(repo, "states", name);
    await flipByte(file, (await fsp.stat(file)).size >> 1);
    return { name, file };
  }

  it("ls, restore and check work around it, check names it, repair index replaces it", async () => {
    const { repo, keep, hurt, kept, hurtSnap } = await twoSources();
    const victim = await flipOneDelta(repo);
    const ls = await run(["at", repo, "ls", "--json"]);
    expect(parseJson<{ id: string }[]>(ls).map((s) => s.id).sort()).toEqual([kept.id, hurtSnap.id].sort());
    expect(ls.stderr).toContain(`state delta ${victim.name}: authentication failed`);
    await expectRestoresIdentical(repo, kept.short, keep);
    await expectRestoresIdentical(repo, hurtSnap.short, hurt);
    const c = await run(["at", repo, "check"], EXIT.ERROR);
    expect(c.stdout).toContain(`state delta ${victim.name}`);
    expect(c.stdout).toMatch(/checked 2 snapshots/);

    const ri = await run(["at", repo, "repair", "index"]);
    expect(ri.stdout).toContain(`state delta ${victim.name}: unusable; replaced`);
    await expect(fsp.access(victim.file)).rejects.toThrow();
    const ok = await run(["at", repo, "check", "--read-data"]);
    expect(ok.stderr).not.toContain("warning");
    expect(ok.stdout).toMatch(/checked 2 snapshots, .*no problems/);
  });

  it("backup and backup --force work around it", async () => {
    const { repo, hurt } = await twoSources();
    await flipOneDelta(repo);
    const b = await backup(repo, hurt);
    expect(b.readBytes).toBe(0);
    await expectRestoresIdentical(repo, b.short, hurt);
    const f = await backup(repo, hurt, "--force");
    await expectRestoresIdentical(repo, f.short, hurt);
    // The backup indexed the delta's packfile again, under the same name: nothing is left to repair.
    const ok = await run(["at", repo, "check"]);
    expect(ok.stdout).toMatch(/checked 4 snapshots, .*no problems/);
  });
});

describe("a snapshot deleted behind coffer's back", () => {
  it("check names it as gone without a removal record, from the headers that saw it", async () => {
    const { repo, keep, kept } = await twoSources();
    const victim = await backup(repo, keep, "--tag", "victim");
    const witness = await backup(repo, keep, "--tag", "witness");
    await run(["at", repo, "check"]);
    // What someone who can write the repository does: remove the header's packfile and the delta naming it.
    const h = await headerBlob(repo, PASS, victim.short);
    for (const d of await deltasNaming(repo, PASS, h.pack)) await fsp.rm(objectPath(repo, "states", d));
    await fsp.rm(h.file);
    const ls = parseJson<{ id: string }[]>(await run(["at", repo, "ls", "--json"])).map((s) => s.id);
    expect(ls).toContain(kept.id);
    expect(ls).not.toContain(victim.id);
    const c = await run(["at", repo, "check"], EXIT.ERROR);
    expect(c.stdout).toContain(`snapshot ${victim.id}, which existed when snapshot ${witness.short} was taken, is gone without a removal record`);
  });
});
