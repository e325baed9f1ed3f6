/**
 * `sync` through the built CLI in process (run `npm run build` first):
 * snapshots copied between repositories with other passphrases, MACs and
 * chunking restore equal to their source trees and keep their metadata; a
 * second sync skips and stores nothing; a snapshot whose data the
 * destination mostly holds adds little; and the destination after syncing
 * N snapshots is within 5% of a direct backup of the same trees
 * (docs/PERFORMANCE.md, "Sync").
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsStore } from "../../src/connectors/fs/store.js";
import type { ChunkingParams } from "../../src/repository/chunker.js";
import { Repository } from "../../src/repository/repository.js";
import { coffer, type CofferResult, describeRun, EXIT, parseJson } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";
import { compareTrees, compressibleText, copyTree, setMtimeNs, setXattr, writeSeededFile } from "../helpers/tree.js";

const KiB = 1024;
const KDF = { memory: 8, passes: 1, parallelism: 1 };
const SOURCE_PASS = "sync source passphrase";
const DEST_PASS = "sync destination passphrase";
/** The source chunks coarser than the destination, and MACs with another algorithm. */
const SOURCE = { chunking: { min: 16 * KiB, avg: 64 * KiB, max: 256 * KiB }, mac: "hmac-sha256" as const };
/**
 * Small chunks in the destination: what a changed piece costs varies with
 * where the chunk boundaries around it fall (each repository's own keys),
 * which small chunks keep well below the 5% the size check allows.
 */
const DEST = { chunking: { min: 1 * KiB, avg: 4 * KiB, max: 16 * KiB }, mac: "blake3" as const };
/** The large file of the test tree, and the piece of it each version changes: about 1% of the tree's content. */
const BIG = 4 * 1024 * KiB;
const CHANGE = 72 * KiB;

let base: string;
const at = (...p: string[]) => path.join(base, ...p);

interface SnapJson {
  id: string;
  importer: { type: string; origin: string; root: string };
  time: string;
  hostname: string;
  username: string;
  source: string;
  tags: string[];
  files: number;
  bytes: number;
  syncOf?: { repo: string; id: string };
}
interface SyncJson {
  snapshots: { source: string; copy: string; skipped: boolean; newBytes?: number; readBytes?: number }[];
  copied: number;
  skipped: number;
  newBytes: number;
}

async function run(args: string[], env: Record<string, string>, code: number = EXIT.OK): Promise<CofferResult> {
  const r = await cofferInProcess(args, { env: { HOME: base, ...env }, cwd: base });
  expect(r.exitCode, describeRun(r)).toBe(code);
  return r;
}
const inSource = (args: string[], code?: number) => run(["at", at("source"), ...args], { COFFER_PASSPHRASE: SOURCE_PASS }, code);
const inDest = (repo: string, args: string[], code?: number) => run(["at", at(repo), ...args], { COFFER_PASSPHRASE: DEST_PASS }, code);
/** `sync from the source` run in a destination, the source's passphrase from a file. */
const syncFrom = async (repo: string, snaps: string[] = []) =>
  parseJson<SyncJson>(await inDest(repo, ["sync", "--json", "--other-passphrase-file", at("source-pass"), "from", at("source"), ...snaps]));
const snapshotsOf = async (r: Promise<CofferResult>) => parseJson<SnapJson[]>(await r);

async function createRepo(dir: string, passphrase: string, o: { chunking: ChunkingParams; mac: "blake3" | "hmac-sha256" }): Promise<void> {
  const store = new FsStore(dir);
  try {
    await Repository.create(store, { passphrase, kdf: KDF, ...o });
  } finally {
    await store.close();
  }
}

/** Bytes of every file of a repository (configuration, packfiles, state): what it costs. */
async function repoBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fsp.readdir(dir, { recursive: true, withFileTypes: true })) if (e.isFile()) n += (await fsp.stat(path.join(e.parentPath, e.name))).size;
  return n;
}

/** The path of the file in `dir` whose name is not UTF-8 (Latin-1 e-acute). */
const latin1 = (dir: string) => Buffer.concat([Buffer.from(`${dir}/lat`), Buffer.from([0xe9]), Buffer.from("n.txt")]);

/** Removes that file, keeping its directory's mtime. */
async function withoutLatin1(dir: string): Promise<void> {
  const { mtimeNs } = await fsp.lstat(dir, { bigint: true });
  await fsp.rm(latin1(dir));
  setMtimeNs(dir, mtimeNs);
}

/**
 * Version `v` of the test tree: random and text files, a hard link, a
 * symlink, extended attributes, a name that is not UTF-8, a sparse file, a
 * FIFO and an empty directory. Each version changes about 1% of the
 * content (CHANGE bytes of the large file) and a file's mode and mtime.
 */
async function makeTree(dir: string, v: number): Promise<void> {
  await fsp.mkdir(path.join(dir, "docs", "deep"), { recursive: true });
  await fsp.mkdir(path.join(dir, "empty"));
  const big = path.join(dir, "big.bin");
  await writeSeededFile(big, "sync-big", BIG);
  if (v > 0) {
    const fh = await fsp.open(big, "r+");
    await fh.write(Buffer.alloc(CHANGE, v), 0, CHANGE, (v * 997 * KiB) % (BIG - CHANGE));
    await fh.close();
  }
  await writeSeededFile(path.join(dir, "docs", "a.bin"), "sync-a", 300 * KiB);
  await fsp.writeFile(path.join(dir, "docs", "deep", "text.txt"), compressibleText(200 * KiB, "sync"));
  await fsp.link(path.join(dir, "docs", "a.bin"), path.join(dir, "docs", "a-link.bin"));
  await fsp.symlink("docs/a.bin", path.join(dir, "to-a"));
  await fsp.writeFile(latin1(dir), `not UTF-8, version ${v}`);
  setXattr(path.join(dir, "docs", "a.bin"), "user.origin", "sync test");
  setXattr(path.join(dir, "docs"), "user.dir", Buffer.from([0, 1, 2, 255]));
  const sparse = await fsp.open(path.join(dir, "sparse.img"), "w");
  await sparse.write("head");
  await sparse.truncate(2 * 1024 * KiB);
  await sparse.close();
  const { execFileSync } = await import("node:child_process");
  execFileSync("mkfifo", [path.join(dir, "fifo")]);
  await fsp.chmod(path.join(dir, "docs", "deep", "text.txt"), v % 2 ? 0o600 : 0o644);
  setMtimeNs(path.join(dir, "docs", "deep", "text.txt"), 1_600_000_000_123_456_789n + BigInt(v) * 1_000_000_000n);
}

const TREES = 4;


beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-sync-e2e-"));
  await fsp.writeFile(at("source-pass"), `${SOURCE_PASS}\n`);
  await createRepo(at("source"), SOURCE_PASS, SOURCE);
  // Every version backed up from the same directory (one source, as a nightly backup sees it), then kept aside.
  for (let v = 0; v < TREES; v++) {
    await makeTree(at("tree"), v);
    await inSource(["backup", "-q", "--tag", `v${v}`, "--tag", "sync-test", at("tree")]);
    await fsp.rename(at("tree"), at(`tree${v}`));
  }
}, 120_000);

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

describe("sync", () => {
  it("from: every snapshot, restoring equal to its tree, metadata kept; a second sync skips and stores nothing", async () => {
    await createRepo(at("dest"), DEST_PASS, DEST);
    const first = await syncFrom("dest");
    expect(first.copied).toBe(TREES);
    expect(first.skipped).toBe(0);
    const sources = await snapshotsOf(inSource(["ls", "--json"]));
    const copies = await snapshotsOf(inDest("dest", ["ls", "--json"]));
    expect(copies).toHaveLength(TREES);
    const sourceId = (await Repository.open(new FsStore(at("source"), { readOnly: true }), { passphrase: async () => SOURCE_PASS }).then(async (r) => (await r.close(), r.id)));
    for (let v = 0; v < TREES; v++) {
      const s = sources[v]!, c = copies[v]!;
      expect(c.id).not.toBe(s.id);
      expect(c.syncOf).toEqual({ repo: sourceId, id: s.id });
      expect({ time: c.time, hostname: c.hostname, username: c.username, source: c.source, tags: c.tags, files: c.files, bytes: c.bytes }).toEqual({
        time: s.time, hostname: s.hostname, username: s.username, source: s.source, tags: s.tags, files: s.files, bytes: s.bytes,
      });
      const to = at(`restored-${v}`);
      await inDest("dest", ["restore", "-q", c.id, "--to", to]);
      // compareTrees reads names as UTF-8: the one that is not is compared here, then left out of copies of both trees.
      expect(await fsp.readFile(latin1(to), "utf8")).toBe(`not UTF-8, version ${v}`);
      const expected = at(`expected-${v}`);
      copyTree(at(`tree${v}`), expected);
      await withoutLatin1(expected);
      await withoutLatin1(to);
      expect(await compareTrees(expected, to, { rootMeta: false })).toEqual([]);
    }
    await inDest("dest", ["check", "--read-data"]);

    const sizeBefore = await repoBytes(at("dest"));
    const again = await syncFrom("dest");
    expect(again).toMatchObject({ copied: 0, skipped: TREES, newBytes: 0 });
    expect(again.snapshots.map((s) => s.copy)).toEqual(copies.map((c) => c.id));
    expect(await repoBytes(at("dest"))).toBe(sizeBefore);
    expect(await snapshotsOf(inDest("dest", ["ls", "--json"]))).toHaveLength(TREES);
  });

  it("to: the named snapshots, the other's passphrase from the environment; a copy synced back is skipped", async () => {
    await createRepo(at("to"), DEST_PASS, DEST);
    const r = await run(["at", at("source"), "sync", "--json", "latest", "to", at("to")], { COFFER_PASSPHRASE: SOURCE_PASS, COFFER_OTHER_PASSPHRASE: DEST_PASS });
    const s = parseJson<SyncJson>(r);
    expect(s.copied).toBe(1);
    const latest = (await snapshotsOf(inSource(["ls", "--json"]))).at(-1)!;
    expect(s.snapshots[0]!.source).toBe(latest.id);
    // Back to the source: the copy names the source's own snapshot, which is held.
    const back = await run(["at", at("to"), "sync", "--json", "latest", "to", at("source")], { COFFER_PASSPHRASE: DEST_PASS, COFFER_OTHER_PASSPHRASE: SOURCE_PASS });
    expect(parseJson<SyncJson>(back)).toMatchObject({ copied: 0, skipped: 1, snapshots: [{ copy: latest.id, skipped: true }] });
    expect(await snapshotsOf(inSource(["ls", "--json"]))).toHaveLength(TREES);
  });

  it("a snapshot whose data the destination mostly holds stores little and reads only what changed", async () => {
    await createRepo(at("incr"), DEST_PASS, DEST);
    const sources = await snapshotsOf(inSource(["ls", "--json"]));
    const first = await syncFrom("incr", [sources[0]!.id]);
    const second = await syncFrom("incr", [sources[1]!.id]);
    expect(first.copied).toBe(1);
    expect(second.copied).toBe(1);
    const bytes = sources[1]!.bytes;
    const [firstNew, secondNew] = [first.newBytes, second.newBytes];
    // About 1% of the content changed: those bytes, the chunks around them and the trees above them.
    expect(CHANGE / bytes).toBeGreaterThan(0.009);
    expect(firstNew).toBeGreaterThan(bytes / 4);
    expect(secondNew, `second copy added ${secondNew} of ${bytes} bytes`).toBeLessThan(0.02 * bytes);
    // Only the large file and the small file naming its version were read again: the rest (the
    // text file's mode and mtime changed, not its content) kept the first copy's chunks.
    expect(second.snapshots[0]!.readBytes).toBe(BIG + "not UTF-8, version 1".length);
    console.log(`sync of a snapshot with ${CHANGE} of ${bytes} bytes changed: added ${secondNew} B (first copy ${firstNew} B), read ${second.snapshots[0]!.readBytes} B`);
  });

  it(`the destination after syncing ${TREES} snapshots is within 5% of a direct backup of the same trees`, async () => {
    await createRepo(at("synced"), DEST_PASS, DEST);
    expect((await syncFrom("synced")).copied).toBe(TREES);
    await createRepo(at("direct"), DEST_PASS, DEST);
    for (let v = 0; v < TREES; v++) {
      await fsp.rename(at(`tree${v}`), at("tree"));
      await inDest("direct", ["backup", "-q", "--tag", `v${v}`, at("tree")]);
      await fsp.rename(at("tree"), at(`tree${v}`));
    }
    const synced = await repoBytes(at("synced"));
    const direct = await repoBytes(at("direct"));
    const source = await repoBytes(at("source"));
    console.log(`sync size check: ${TREES} snapshots; source ${source} B, synced ${synced} B, direct ${direct} B, ratio ${(synced / direct).toFixed(4)}`);
    expect(Math.abs(synced - direct) / direct).toBeLessThan(0.05);
  });

  it("a copy of a copy names the original: the original synced after it is skipped", async () => {
    // "to" holds a copy of the source's latest snapshot; copied on to "onward", it still names the source's.
    await createRepo(at("onward"), DEST_PASS, { ...DEST, chunking: { min: 2 * KiB, avg: 8 * KiB, max: 32 * KiB } });
    const env = { COFFER_PASSPHRASE: DEST_PASS, COFFER_OTHER_PASSPHRASE: DEST_PASS };
    const hop = parseJson<SyncJson>(await run(["at", at("onward"), "sync", "--json", "from", at("to")], env));
    expect(hop.copied).toBe(1);
    const [copy] = await snapshotsOf(inDest("onward", ["ls", "--json"]));
    const latest = (await snapshotsOf(inSource(["ls", "--json"]))).at(-1)!;
    expect(copy!.syncOf!.id).toBe(latest.id);
    const direct = await syncFrom("onward");
    expect(direct.copied).toBe(TREES - 1);
    expect(direct.snapshots.find((x) => x.source === latest.id)).toMatchObject({ skipped: true, copy: copy!.id });
  });

  it("a snapshot of a single file (stdin) is copied, and the built binary does it too", async () => {
    await createRepo(at("one-src"), SOURCE_PASS, SOURCE);
    await createRepo(at("one-dst"), DEST_PASS, DEST);
    const content = compressibleText(300 * KiB, "stdin");
    const b = await cofferInProcess(["at", at("one-src"), "backup", "-q", "--tag", "piped", "stdin:notes.txt"], { env: { HOME: base, COFFER_PASSPHRASE: SOURCE_PASS }, cwd: base, input: content });
    expect(b.exitCode, describeRun(b)).toBe(EXIT.OK);
    const r = await coffer(["at", at("one-src"), "sync", "latest", "to", at("one-dst")], { env: { HOME: base, COFFER_PASSPHRASE: SOURCE_PASS, COFFER_OTHER_PASSPHRASE: DEST_PASS }, cwd: base });
    expect(r.exitCode, describeRun(r)).toBe(EXIT.OK);
    expect(r.stderr).toMatch(/copied as [0-9a-f]{8}/);
    const copyId = r.stdout.trim();
    expect(copyId).toMatch(/^[0-9a-f]{8}$/);
    const cat = await inDest("one-dst", ["cat", `${copyId}:/notes.txt`]);
    expect(cat.stdoutBytes.equals(content)).toBe(true);
    const [copy] = await snapshotsOf(inDest("one-dst", ["ls", "--json"]));
    const [original] = await snapshotsOf(run(["at", at("one-src"), "ls", "--json"], { COFFER_PASSPHRASE: SOURCE_PASS }));
    expect(copy).toMatchObject({ source: original!.source, importer: original!.importer, time: original!.time, tags: ["piped"] });
    expect(original!.source).toMatch(/^stdin:/);
  });

  it("damage in the source stops the sync: exit 1, nothing visible in the destination, which check accepts", async () => {
    await createRepo(at("bad-src"), SOURCE_PASS, SOURCE);
    await createRepo(at("bad-dst"), DEST_PASS, DEST);
    await run(["at", at("bad-src"), "backup", "-q", at("tree0")], { COFFER_PASSPHRASE: SOURCE_PASS });
    // A byte flipped in the middle of the largest packfile: content of the large file.
    const packs = (await fsp.readdir(at("bad-src", "packfiles"), { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
    const sizes = await Promise.all(packs.map(async (e) => ({ file: path.join(e.parentPath, e.name), size: (await fsp.stat(path.join(e.parentPath, e.name))).size })));
    const largest = sizes.sort((a, b) => b.size - a.size)[0]!;
    const bytes = await fsp.readFile(largest.file);
    bytes[bytes.byteLength >> 1]! ^= 1;
    await fsp.writeFile(largest.file, bytes);
    const r = await run(["at", at("bad-dst"), "sync", "--other-passphrase-file", at("source-pass"), "from", at("bad-src")], { COFFER_PASSPHRASE: DEST_PASS }, EXIT.ERROR);
    expect(r.stderr).toMatch(/chunk blob [0-9a-f]+: authentication failed/);
    expect(await snapshotsOf(inDest("bad-dst", ["ls", "--json"]))).toEqual([]);
    await inDest("bad-dst", ["check", "--read-data"]);
  });

  it("usage: `to` needs snapshots; the other repository must be another one", async () => {
    const env = { COFFER_PASSPHRASE: SOURCE_PASS, COFFER_OTHER_PASSPHRASE: SOURCE_PASS };
    expect((await run(["at", at("source"), "sync", "to", at("dest")], env, EXIT.USAGE)).stderr).toContain("name the snapshots");
    expect((await run(["at", at("source"), "sync", "latest", at("dest")], env, EXIT.USAGE)).stderr).toContain("usage: sync");
    expect((await run(["at", at("source"), "sync", "latest", "to", at("source")], env, EXIT.USAGE)).stderr).toContain("the same repository");
  });
});
