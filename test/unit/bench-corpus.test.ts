/**
 * The bench's data (bench/seeded.ts, corpus.ts, change.ts): the same seed
 * gives the same corpus and big file on every run, so tools and runs are
 * compared on the same bytes; the corpus holds the kinds of entries it
 * promises; the change phase changes the chosen files and puts them back
 * exactly, times included.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { zstdCompressSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { applyChange, pickChanged, revertChange } from "../../bench/change.ts";
import { corpusStats, generateBigFile, generateCorpus, walk } from "../../bench/corpus.ts";
import { RandomStream, Rng } from "../../bench/seeded.ts";
import { KiB, MiB } from "../../bench/units.ts";

let dir = "";
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-corpus-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Every entry with its type and content (or link target): equal listings mean equal trees. */
function listing(root: string): string[] {
  const out: string[] = [];
  walk(root, (rel, st) => {
    const abs = path.join(root, rel);
    if (st.isFile()) out.push(`f ${rel} ${st.mode.toString(8)} ${fs.readFileSync(abs).toString("base64")}`);
    else if (st.isSymbolicLink()) out.push(`l ${rel} ${fs.readlinkSync(abs)}`);
    else out.push(`d ${rel}`);
  });
  return out;
}

describe("Rng and RandomStream", () => {
  it("give the same sequence for the same seed and another for another seed", () => {
    const seq = (seed: string): number[] => {
      const r = new Rng(seed);
      return Array.from({ length: 8 }, () => r.next());
    };
    expect(seq("a")).toEqual(seq("a"));
    expect(seq("a")).not.toEqual(seq("b"));
    expect(new RandomStream("a").bytes(64)).toEqual(new RandomStream("a").bytes(64));
    expect(new RandomStream("a").bytes(64)).not.toEqual(new RandomStream("b").bytes(64));
  });

  it("draw integers in [0, n) and log-uniform values within their bounds", () => {
    const r = new Rng("range");
    for (let i = 0; i < 1000; i++) {
      const n = r.int(7);
      expect(Number.isInteger(n) && n >= 0 && n < 7).toBe(true);
      const v = r.logUniform(100, 48 * KiB);
      expect(v >= 100 && v <= 48 * KiB).toBe(true);
    }
  });
});

describe("generateCorpus", () => {
  it("generates the same tree for the same seed, and another for another seed", () => {
    const a = path.join(dir, "a");
    const b = path.join(dir, "b");
    const c = path.join(dir, "c");
    for (const [root, seed] of [[a, "s"], [b, "s"], [c, "t"]] as const) {
      fs.mkdirSync(root);
      generateCorpus(root, 2 * MiB, seed);
    }
    expect(listing(b)).toEqual(listing(a));
    expect(listing(c)).not.toEqual(listing(a));
  });

  it("comes close to its target size and holds every kind of entry it promises", () => {
    generateCorpus(dir, 4 * MiB, "kinds");
    const s = corpusStats(dir);
    expect(s.bytes).toBeGreaterThan(3.5 * MiB);
    expect(s.bytes).toBeLessThan(5 * MiB);
    expect(s.hardlinks).toBe(3);
    expect(s.symlinks).toBeGreaterThanOrEqual(1);
    expect(fs.readlinkSync(path.join(dir, "logs", "dangling-link"))).toBe("../does-not-exist");
    expect(fs.readdirSync(path.join(dir, "empty-dirs"))).toHaveLength(5);
    expect(fs.existsSync(path.join(dir, "names", "with space and ümlaut — ✓.txt"))).toBe(true);
    const empty: string[] = [];
    walk(dir, (rel, st) => {
      if (st.isFile() && st.size === 0) empty.push(rel);
    });
    expect(empty.length).toBe(20);
    expect(fs.readdirSync(path.join(dir, "backup")).length).toBeGreaterThan(0); // exact duplicates
  });
});

describe("generateBigFile", () => {
  it("writes exactly the size asked, the same bytes for the same seed: text, then random", async () => {
    const a = path.join(dir, "a.bin");
    const b = path.join(dir, "b.bin");
    await generateBigFile(a, 2 * MiB + 10, "s");
    await generateBigFile(b, 2 * MiB + 10, "s");
    const data = fs.readFileSync(a);
    expect(data.length).toBe(2 * MiB + 10);
    expect(data.equals(fs.readFileSync(b))).toBe(true);
    const half = Math.floor(data.length / 2);
    const text = data.subarray(0, half);
    expect(text.every((c) => c === 0x0a || (c >= 0x20 && c < 0x7f))).toBe(true);
    expect(zstdCompressSync(text).length).toBeLessThan(text.length / 2);
    const random = data.subarray(half);
    expect(zstdCompressSync(random).length).toBeGreaterThan(0.99 * random.length);
  });
});

describe("the change phase", () => {
  beforeEach(() => {
    fs.mkdirSync(path.join(dir, "tree", "sub"), { recursive: true });
    const old = new Date("2020-01-02T03:04:05.678Z"); // a revert that missed the times would show
    for (let i = 0; i < 200; i++) {
      const f = path.join(dir, "tree", i % 2 ? "sub" : "", `f${i}`);
      fs.writeFileSync(f, Buffer.alloc(i < 100 ? 1000 : 10, i));
      fs.utimesSync(f, old, old);
    }
    fs.symlinkSync("f0", path.join(dir, "tree", "link"));
  });

  it("picks the seeded share of the regular files, at least one, in name order", () => {
    const root = path.join(dir, "tree");
    const picked = pickChanged(root, 1, "s");
    expect(picked).toHaveLength(2);
    expect(pickChanged(root, 1, "s")).toEqual(picked);
    expect([...picked].sort()).toEqual(picked);
    expect(pickChanged(root, 10, "s")).toHaveLength(20);
    expect(pickChanged(root, 100, "s")).toHaveLength(200);
    expect(pickChanged(root, 0.01, "s")).toHaveLength(1);
    for (const rel of pickChanged(root, 50, "s")) expect(fs.lstatSync(path.join(root, rel)).isFile()).toBe(true);
  });

  it("overwrites 32 bytes and appends 32 in place, and puts every file back with its times", () => {
    const root = path.join(dir, "tree");
    const rels = pickChanged(root, 100, "s");
    const before = listing(root);
    const mtimes = (): number[] => rels.map((rel) => fs.statSync(path.join(root, rel)).mtime.getTime()); // to the ms, as kept
    const times = mtimes();
    expect(new Set(times)).toEqual(new Set([Date.parse("2020-01-02T03:04:05.678Z")]));
    const changes = applyChange(root, rels, path.join(dir, "stash"), "s");
    for (const rel of rels) {
      const st = fs.statSync(path.join(root, rel));
      const i = Number(path.basename(rel).slice(1));
      const size = i < 100 ? 1000 : 10;
      expect(st.size).toBe(size + 32);
      const now = fs.readFileSync(path.join(root, rel));
      expect(now.subarray(0, size).equals(Buffer.alloc(size, i))).toBe(size < 64); // a small file only grows
    }
    revertChange(root, changes);
    expect(listing(root)).toEqual(before);
    expect(mtimes()).toEqual(times);
    expect(fs.readdirSync(path.join(dir, "stash"))).toEqual([]);
  });
});
