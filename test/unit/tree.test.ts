/**
 * Tests of the snapshot encodings: trees and entries (src/snapshot/tree.ts),
 * snapshot headers (src/snapshot/header.ts) and the scan cache's ordering
 * (src/snapshot/backup/scancache.ts). Round trips are properties over arbitrary
 * entries (unicode and newline names, int64 times, u64 device/inode numbers,
 * optional fields present or absent); malformed maps must be CorruptError.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encode } from "@msgpack/msgpack";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import type { EntryKind, FileInfo } from "../../src/connectors/records.js";
import { decodeHeader, encodeHeader, HEADER_VERSION, type SnapshotHeader } from "../../src/snapshot/header.js";
import { pathKey, SCAN_CACHE_MEMORY, ScanCache } from "../../src/snapshot/backup/scancache.js";
import { MAX_RAW_BLOB } from "../../src/repository/codec.js";
import type { Repository } from "../../src/repository/repository.js";
import { TreeReader } from "../../src/snapshot/tree-reader.js";
import { compareNames, decodeEntry, decodeTree, encodeEntry, encodeTree, encodeTreeOf, type Entry, packEntry, TREE_VERSION, unpackEntry } from "../../src/snapshot/tree.js";
import { CofferError, CorruptError } from "../../src/util/errors.js";

const KINDS: EntryKind[] = ["file", "dir", "symlink", "fifo", "socket", "chardev", "blockdev", "other"];
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const U64_MAX = 2n ** 64n - 1n;

function expectCorrupt(e: unknown): void {
  expect(e).toBeInstanceOf(CorruptError);
  expect((e as CofferError).code).toBe("CORRUPT");
}

function errorOf(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** Deep copy without undefined properties and with plain Uint8Arrays, for toStrictEqual. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return Array.from(v);
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === "object" && v !== null) {
    return Object.fromEntries(
      Object.entries(v)
        .filter(([, x]) => x !== undefined)
        .map(([k, x]) => [k, plain(x)]),
    );
  }
  return v;
}

const arbName = fc.oneof(
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.constantFrom("", "a", "a b", "a-b", "a\nb", "line\r\nbreak", "tab\there", "é", "e\u0301", "日本語", "🙂", "\u0000x", "x".repeat(300)),
);
const arbBytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

const arbEntry: fc.Arbitrary<Entry> = fc
  .record(
    {
      name: arbName,
      kind: fc.constantFrom(...KINDS),
      size: fc.oneof(fc.nat(), fc.maxSafeNat()),
      mode: fc.integer({ min: 0, max: 0o7777 }),
      mtimeNs: fc.oneof(fc.bigInt({ min: I64_MIN, max: I64_MAX }), fc.constantFrom(0n, -1n, 2n ** 53n + 1n, I64_MIN, I64_MAX)),
      ctimeNs: fc.bigInt({ min: I64_MIN, max: I64_MAX }),
      dev: fc.bigInt({ min: 0n, max: U64_MAX }),
      ino: fc.bigInt({ min: 0n, max: U64_MAX }),
      rdev: fc.bigInt({ min: 1n, max: U64_MAX }),
      uid: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      gid: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      nlink: fc.nat(),
      username: arbName,
      groupname: arbName,
      target: arbName,
      xattrs: fc.array(fc.record({ name: arbName, value: fc.uint8Array({ maxLength: 40 }) }), { minLength: 1, maxLength: 3 }),
      chunks: fc.array(fc.record({ mac: arbBytes32, length: fc.oneof(fc.nat({ max: MAX_RAW_BLOB }), fc.constant(MAX_RAW_BLOB)) }), { maxLength: 4 }),
      tree: arbBytes32,
      error: arbName,
    },
    {
      requiredKeys: ["name", "kind", "size", "mode", "mtimeNs", "dev", "ino", "uid", "gid", "nlink"],
    },
  )
  .map((r) => {
    const info: FileInfo = { name: r.name, kind: r.kind, size: r.size, mode: r.mode, mtimeNs: r.mtimeNs, dev: r.dev, ino: r.ino, uid: r.uid, gid: r.gid, nlink: r.nlink };
    if (r.ctimeNs !== undefined) info.ctimeNs = r.ctimeNs;
    if (r.rdev !== undefined) info.rdev = r.rdev;
    if (r.username !== undefined) info.username = r.username;
    if (r.groupname !== undefined) info.groupname = r.groupname;
    const e: Entry = { name: r.name, info };
    if (r.target !== undefined) e.target = r.target;
    if (r.xattrs !== undefined) e.xattrs = r.xattrs;
    if (r.chunks !== undefined) e.chunks = r.chunks;
    if (r.tree !== undefined) e.tree = r.tree;
    if (r.error !== undefined) e.error = r.error;
    return e;
  });

function minimalEntry(name = "f"): Entry {
  return { name, info: { name, kind: "file", size: 3, mode: 0o644, mtimeNs: 1n, dev: 1n, ino: 2n, uid: 0, gid: 0, nlink: 1 } };
}

describe("encodeTree / decodeTree", () => {
  it("round trip with arbitrary entries (property)", () => {
    fc.assert(
      fc.property(fc.array(arbEntry, { maxLength: 8 }), (entries) => {
        const back = decodeTree(encodeTree(entries), "tree");
        expect(plain(back)).toStrictEqual(plain(entries));
        // bigints stay bigints
        for (const [i, e] of back.entries()) {
          expect(typeof e.info.mtimeNs).toBe("bigint");
          expect(e.info.mtimeNs).toBe(entries[i]!.info.mtimeNs);
          expect(e.info.dev).toBe(entries[i]!.info.dev);
          expect(e.info.ino).toBe(entries[i]!.info.ino);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("keeps the int64 extremes, negative and > 2^53 times exactly", () => {
    for (const t of [I64_MIN, I64_MAX, -1n, 2n ** 53n + 1n, -(2n ** 53n) - 1n, 0n]) {
      const e = minimalEntry();
      e.info.mtimeNs = t;
      e.info.ctimeNs = t;
      const back = decodeTree(encodeTree([e]), "tree")[0]!;
      expect(back.info.mtimeNs).toBe(t);
      expect(back.info.ctimeNs).toBe(t);
    }
  });

  it("an empty tree round trips; the body is {v: 1, e: [...]} with short keys", () => {
    expect(decodeTree(encodeTree([]), "tree")).toEqual([]);
    const o = encodeEntry(minimalEntry("x"));
    expect(Object.keys(o).sort()).toEqual(["d", "g", "i", "k", "l", "m", "n", "s", "t", "u"]);
    expect(o.k).toBe(0);
    expect(TREE_VERSION).toBe(1);
  });

  it("rdev 0 and an empty xattr list are left out (documented normalisation)", () => {
    const e = minimalEntry();
    e.info.rdev = 0n;
    e.xattrs = [];
    const o = encodeEntry(e);
    expect("r" in o).toBe(false);
    expect("x" in o).toBe(false);
    const back = decodeEntry(o, "entry");
    expect(back.info.rdev).toBeUndefined();
    expect(back.xattrs).toBeUndefined();
  });

  it("rejects bad tree structure with CorruptError", () => {
    const ok = encodeTree([minimalEntry()]);
    expect(decodeTree(ok, "tree")).toHaveLength(1);
    for (const v of [null, 1, "tree", [], {}, { v: 2, e: [] }, { v: 1 }, { v: 1, e: {} }, { e: [] }, { v: 1, e: [null] }, { v: 1, e: [[]] }]) {
      expectCorrupt(errorOf(() => decodeTree(encode(v), "tree")));
    }
    expectCorrupt(errorOf(() => decodeTree(new Uint8Array(0), "tree")));
    expectCorrupt(errorOf(() => decodeTree(Buffer.concat([ok, Buffer.from([0xc0])]), "tree")));
  });

  it("random bytes never throw anything but CorruptError (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (raw) => {
        const e = errorOf(() => decodeTree(raw, "tree"));
        if (e !== undefined) expectCorrupt(e);
      }),
      { numRuns: 1000 },
    );
  });

  it("any msgpack value as a tree entry either decodes or is CorruptError (property)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.dictionary(fc.constantFrom("n", "k", "s", "m", "t", "d", "i", "u", "g", "l", "c", "r", "L", "x", "ch", "T", "e"), fc.anything())), (v) => {
        const e = errorOf(() => decodeTree(encode({ v: 1, e: [v] }, { useBigInt64: true }), "tree"));
        if (e !== undefined) expectCorrupt(e);
      }),
      { numRuns: 500 },
    );
  });
});

describe("decodeEntry", () => {
  const base = encodeEntry(minimalEntry());

  it("accepts the reference map", () => {
    expect(decodeEntry(base, "entry").name).toBe("f");
  });

  it("rejects non-maps and each missing or mistyped required field with CorruptError", () => {
    for (const v of [null, undefined, 1, "f", [], [base], true]) expectCorrupt(errorOf(() => decodeEntry(v, "entry")));
    for (const f of ["n", "k", "s", "m", "t", "d", "i", "u", "g", "l"]) {
      const o: Record<string, unknown> = { ...base };
      delete o[f];
      expectCorrupt(errorOf(() => decodeEntry(o, "entry")));
      for (const wrong of ["x", null, 1.5, new Uint8Array(1), {}]) {
        if (f === "n" && (typeof wrong === "string" || wrong instanceof Uint8Array)) continue; // a name is str or bin
        expectCorrupt(errorOf(() => decodeEntry({ ...base, [f]: wrong }, "entry")));
      }
    }
  });

  it("rejects unknown kinds", () => {
    for (const k of [-1, 8, 100, 2 ** 40]) expectCorrupt(errorOf(() => decodeEntry({ ...base, k }, "entry")));
  });

  it("rejects bad targets, xattrs, chunks and tree MACs", () => {
    const m32 = new Uint8Array(32);
    const bad: Record<string, unknown>[] = [
      { L: 5 },
      { L: null },
      { x: "xattrs" },
      { x: [["name"]] },
      { x: [[1, new Uint8Array(1)]] },
      { x: [["name", "value"]] },
      { x: [null] },
      { ch: "chunks" },
      { ch: [[m32]] },
      { ch: [[new Uint8Array(31), 10]] },
      { ch: [[m32, "10"]] },
      { ch: [[m32, 1.5]] },
      { ch: [[m32, -1]] },
      { ch: [[m32, MAX_RAW_BLOB + 1]] },
      { ch: [[m32, 2n ** 60n]] },
      { s: -1 },
      { s: 2n ** 60n },
      { ch: [null] },
      { T: new Uint8Array(31) },
      { T: "tree" },
      { T: [m32] },
    ];
    for (const b of bad) expectCorrupt(errorOf(() => decodeEntry({ ...base, ...b }, "entry")));
    // and the well-formed versions of the same fields decode
    const good = decodeEntry({ ...base, L: "t", x: [["user.a", new Uint8Array([1])]], ch: [[m32, 10]], T: m32 }, "entry");
    expect(good.target).toBe("t");
    expect(good.xattrs).toHaveLength(1);
    expect(good.chunks).toEqual([{ mac: m32, length: 10 }]);
    expect(good.tree).toEqual(m32);
  });

  it("ignores keys it does not know (FORMAT.md: readers ignore unknown keys)", () => {
    expect(decodeEntry({ ...base, zz: [1, 2, 3], future: { a: 1 } }, "entry").name).toBe("f");
  });
});

// ---- snapshot headers ----

const arbSummary = fc.record({
  files: fc.nat(),
  dirs: fc.nat(),
  symlinks: fc.nat(),
  others: fc.nat(),
  bytes: fc.maxSafeNat(),
  errors: fc.nat(),
  readBytes: fc.maxSafeNat(),
  newBlobs: fc.nat(),
  newBytes: fc.maxSafeNat(),
});

const arbHeader: fc.Arbitrary<SnapshotHeader> = fc
  .record(
    {
      id: arbBytes32,
      timeNs: fc.bigInt({ min: I64_MIN, max: I64_MAX }),
      durationNs: fc.bigInt({ min: 0n, max: I64_MAX }),
      hostname: arbName,
      username: arbName,
      os: arbName,
      arch: arbName,
      importer: fc.record({ type: arbName, origin: arbName, root: arbName }),
      tags: fc.array(arbName, { maxLength: 4 }),
      parent: arbBytes32,
      root: arbEntry,
      summary: arbSummary,
      errors: arbBytes32,
    },
    { requiredKeys: ["id", "timeNs", "durationNs", "hostname", "username", "os", "arch", "importer", "tags", "root", "summary"] },
  )
  .map((h) => {
    const out: SnapshotHeader = { ...h };
    if (h.parent === undefined) delete out.parent;
    if (h.errors === undefined) delete out.errors;
    return out;
  });

function sampleHeader(): SnapshotHeader {
  return fc.sample(arbHeader, { numRuns: 1, seed: 42 })[0]!;
}

/** The msgpack map of a header, for crafting malformed ones. */
function headerMap(h: SnapshotHeader): Record<string, unknown> {
  return {
    v: 1,
    id: h.id,
    time: h.timeNs,
    duration: h.durationNs,
    host: h.hostname,
    user: h.username,
    os: h.os,
    arch: h.arch,
    importer: h.importer,
    tags: h.tags,
    root: encodeEntry(h.root),
    summary: h.summary,
  };
}

describe("encodeHeader / decodeHeader", () => {
  it("round trip (property)", () => {
    fc.assert(
      fc.property(arbHeader, (h) => {
        const back = decodeHeader(encodeHeader(h), new Uint8Array(h.id));
        expect(plain(back)).toStrictEqual(plain(h));
        expect(back.timeNs).toBe(h.timeNs);
        expect(back.durationNs).toBe(h.durationNs);
      }),
      { numRuns: 200 },
    );
  });

  it("a mismatching id is CorruptError (property)", () => {
    fc.assert(
      fc.property(arbHeader, arbBytes32, (h, other) => {
        fc.pre(Buffer.compare(h.id, other) !== 0);
        expectCorrupt(errorOf(() => decodeHeader(encodeHeader(h), other)));
      }),
      { numRuns: 100 },
    );
  });

  it("an id differing in one byte, or a prefix of it, is CorruptError", () => {
    const h = sampleHeader();
    const raw = encodeHeader(h);
    for (let i = 0; i < 32; i++) {
      const id = new Uint8Array(h.id);
      id[i]! ^= 0x01;
      expectCorrupt(errorOf(() => decodeHeader(raw, id)));
    }
    expectCorrupt(errorOf(() => decodeHeader(raw, h.id.subarray(0, 31))));
    expectCorrupt(errorOf(() => decodeHeader(raw, new Uint8Array(0))));
  });

  it("malformed headers are CorruptError", () => {
    const h = sampleHeader();
    const map = headerMap(h);
    expect(decodeHeader(encode(map, { useBigInt64: true }), h.id).hostname).toBe(h.hostname);
    const bad: Record<string, unknown>[] = [
      { v: 2 },
      { v: undefined },
      { id: "id" },
      { id: undefined },
      { importer: undefined },
      { importer: { type: "fs", origin: "o" } },
      { importer: { type: 1, origin: "o", root: "/" } },
      { tags: "tag" },
      { tags: ["ok", 1] },
      { summary: undefined },
      { summary: { ...h.summary, files: "1" } },
      { summary: { files: 1 } },
      { time: undefined },
      { time: "now" },
      { duration: null },
      { host: 1 },
      { user: undefined },
      { os: null },
      { arch: [] },
      { root: null },
      { root: { n: "" } },
      { parent: "p" },
      { parent: null },
      { parent: new Uint8Array(31) },
      { errors: 5 },
      { errors: new Uint8Array(0) },
      { summary: { ...h.summary, files: -1 } },
      { summary: { ...h.summary, bytes: 1.5 } },
      { summary: { ...h.summary, newBytes: NaN } },
    ];
    for (const b of bad) {
      expectCorrupt(errorOf(() => decodeHeader(encode({ ...map, ...b }, { useBigInt64: true, ignoreUndefined: true }), h.id)));
    }
    for (const v of [null, 1, "header", [], {}]) expectCorrupt(errorOf(() => decodeHeader(encode(v), h.id)));
    expectCorrupt(errorOf(() => decodeHeader(new Uint8Array(0), h.id)));
    expect(HEADER_VERSION).toBe(1);
  });

  it("times written as plain integers (not int64) still decode", () => {
    const h = sampleHeader();
    const back = decodeHeader(encode({ ...headerMap(h), time: 1_700_000_000, duration: 5 }, { useBigInt64: true }), h.id);
    expect(back.timeNs).toBe(1_700_000_000n);
    expect(back.durationNs).toBe(5n);
  });

  // Regression (fixed): src/snapshot/header.ts line 83: `t()` converts any number with BigInt(v), so a header whose
  // time or duration is a non-integer float (1.5, NaN, Infinity) makes decodeHeader throw a RangeError
  // instead of CorruptError (tree.ts's `big()` checks Number.isInteger first; header.ts does not).
  it("times that are non-integer numbers are CorruptError, not a RangeError", () => {
    const h = sampleHeader();
    for (const bad of [{ time: 1.5 }, { duration: Number.NaN }, { time: Number.POSITIVE_INFINITY }]) {
      expectCorrupt(errorOf(() => decodeHeader(encode({ ...headerMap(h), ...bad }, { useBigInt64: true }), h.id)));
    }
  });

  it("random bytes never throw anything but CorruptError (property)", () => {
    const id = new Uint8Array(32);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (raw) => {
        const e = errorOf(() => decodeHeader(raw, id));
        if (e !== undefined) expectCorrupt(e);
      }),
      { numRuns: 1000 },
    );
  });
});

// ---- scan cache order ----

const tmpParents: string[] = [];
afterAll(() => {
  for (const d of tmpParents) rmSync(d, { recursive: true, force: true });
});
function parentDir(): string {
  const d = mkdtempSync(join(tmpdir(), "coffer-scancache-test-"));
  tmpParents.push(d);
  return d;
}

/** The order a tree walk needs: component-wise byte order, a directory before everything under it. */
function comparePaths(a: string[], b: string[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = compareNames(a[i]!, b[i]!);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

function isPrefix(p: string[], of: string[]): boolean {
  return p.length < of.length && p.every((c, i) => c === of[i]);
}

/** Component names: tricky neighbours of "a" and arbitrary unicode without '/' or NUL. */
const arbComponent = fc.oneof(
  fc.constantFrom("a", "a b", "a-b", "a.b", "a0", "ab", "a\tb", "a\nb", "A", "b", "é", "e\u0301", "~", "!", "\u007f", "日本", "🙂", "\u0001"),
  fc.string({ unit: "binary", minLength: 1, maxLength: 6 }).filter((s) => !s.includes("/") && !s.includes("\0")),
);
const arbPathSet = fc.uniqueArray(fc.array(arbComponent, { minLength: 1, maxLength: 4 }), {
  maxLength: 40,
  selector: (p) => p.join("/"),
});

/** The cache's three states: all in memory, on disk from the first entry, moved to disk midway (a budget of a few entries). */
const scanCacheModes: [string, number][] = [
  ["in memory", SCAN_CACHE_MEMORY],
  ["on disk", 0],
  ["moving to disk midway", 1500],
];

describe.each(scanCacheModes)("ScanCache order (%s)", (_mode, budget) => {
  it("scan() yields every directory before its subtree, subtrees contiguous, siblings in byte order (property)", () => {
    fc.assert(
      fc.property(arbPathSet, fc.boolean(), fc.boolean(), (paths, withRoot, withAncestors) => {
        let all = paths;
        if (withAncestors) {
          const seen = new Map(paths.map((p) => [p.join("/"), p]));
          for (const p of paths) for (let i = 1; i < p.length; i++) seen.set(p.slice(0, i).join("/"), p.slice(0, i));
          all = [...seen.values()];
        }
        if (withRoot) all = [[], ...all];
        const cache = new ScanCache(parentDir(), budget);
        try {
          // put in a random (shuffled by fast-check's generation) order, with absolute paths
          all.forEach((p, i) => {
            const e = minimalEntry(p.at(-1) ?? "");
            e.info.ino = BigInt(i);
            cache.put("/" + p.join("/"), e);
          });
          const got = [...cache.scan()];
          expect(got).toHaveLength(all.length);
          const order = got.map((g) => g.parts);
          // each entry is the one put under that path
          for (const g of got) {
            const i = Number(g.entry.info.ino);
            expect(g.parts).toEqual(all[i]);
            expect(g.entry.name).toBe(all[i]!.at(-1) ?? "");
          }
          // the whole order is the component-wise byte order
          expect(order).toEqual([...all].sort(comparePaths));
          // spelled out: ancestors first, and a subtree is contiguous
          for (let i = 0; i < order.length; i++) {
            for (let j = i + 1; j < order.length; j++) {
              expect(isPrefix(order[j]!, order[i]!)).toBe(false);
              if (isPrefix(order[i]!, order[j]!)) for (let k = i + 1; k < j; k++) expect(isPrefix(order[i]!, order[k]!)).toBe(true);
            }
          }
        } finally {
          cache.close();
        }
      }),
      { numRuns: 60 },
    );
  });

  it("orders the classic trap a, a/b, a b, a-b, a/b/c as a, a/b, a/b/c, a b, a-b", () => {
    const cache = new ScanCache(parentDir(), budget);
    try {
      for (const p of ["/a-b", "/a b", "/a/b/c", "/a", "/a/b", "/ab", "/"]) cache.put(p, minimalEntry(p.split("/").at(-1)));
      expect([...cache.scan()].map((g) => "/" + g.parts.join("/"))).toEqual(["/", "/a", "/a/b", "/a/b/c", "/a b", "/a-b", "/ab"]);
    } finally {
      cache.close();
    }
  });

  it("normalises paths (double and trailing slashes) and keeps the last put of a path", () => {
    const cache = new ScanCache(parentDir(), budget);
    try {
      const first = minimalEntry("b");
      const second = minimalEntry("b");
      second.info.size = 99;
      cache.put("/a//b/", first);
      cache.put("/a/b", second);
      const got = [...cache.scan()];
      expect(got).toHaveLength(1);
      expect(got[0]!.parts).toEqual(["a", "b"]);
      expect(got[0]!.entry.info.size).toBe(99);
      expect(pathKey("/a//b/").equals(pathKey("a/b"))).toBe(true);
      expect(pathKey("/").byteLength).toBe(0);
      // However written, a path's key is its components joined by NUL bytes.
      fc.assert(
        fc.property(fc.array(fc.string({ minLength: 1, unit: "grapheme" }).filter((c) => !c.includes("/")), { maxLength: 6 }), fc.array(fc.nat(2), { minLength: 8, maxLength: 8 }), (parts, extra) => {
          const path = parts.map((c, i) => "/".repeat(1 + extra[i]!) + c).join("") + "/".repeat(extra[7]!);
          expect(pathKey(path).equals(Buffer.from(parts.join("\0"), "utf8"))).toBe(true);
          expect(pathKey(`/${parts.join("/")}`).equals(Buffer.from(parts.join("\0"), "utf8"))).toBe(true);
        }),
      );
    } finally {
      cache.close();
    }
  });

  it("works across batch commits (more than 2000 entries) and round trips entries", () => {
    const cache = new ScanCache(parentDir(), budget);
    try {
      const n = 2600;
      const names = Array.from({ length: n }, (_, i) => `f${String((i * 7919) % n).padStart(5, "0")}`);
      for (const name of names) cache.put(`/d/${name}`, minimalEntry(name));
      cache.put("/d", minimalEntry("d"));
      const got = [...cache.scan()];
      expect(got).toHaveLength(n + 1);
      expect(got[0]!.parts).toEqual(["d"]);
      expect(got.slice(1).map((g) => g.entry.name)).toEqual([...names].sort());
      // scanning twice gives the same answer, and more puts after a scan are seen
      expect([...cache.scan()]).toHaveLength(n + 1);
      cache.put("/e", minimalEntry("e"));
      expect([...cache.scan()].at(-1)!.parts).toEqual(["e"]);
    } finally {
      cache.close();
    }
  });

  it("round trips arbitrary entries through the cache (property)", () => {
    fc.assert(
      fc.property(fc.array(arbEntry, { minLength: 1, maxLength: 5 }), (entries) => {
        const cache = new ScanCache(parentDir(), budget);
        try {
          entries.forEach((e, i) => cache.put(`/p${i}`, e));
          const got = [...cache.scan()];
          expect(plain(got.map((g) => g.entry))).toStrictEqual(plain(entries));
        } finally {
          cache.close();
        }
      }),
      { numRuns: 30 },
    );
  });

  it("close() removes its temporary directory, made only once entries are on disk", () => {
    const parent = parentDir();
    const cache = new ScanCache(parent, budget);
    cache.put("/x", minimalEntry("x"));
    for (let i = 0; i < 50; i++) cache.put(`/y${i}`, minimalEntry(`y${i}`));
    expect(cache.onDisk).toBe(budget < SCAN_CACHE_MEMORY);
    expect(readdirSync(parent)).toHaveLength(budget < SCAN_CACHE_MEMORY ? 1 : 0);
    expect(cache.get("/x")?.name).toBe("x");
    cache.close();
    expect(readdirSync(parent)).toHaveLength(0);
  });
});

describe("TreeReader.walk (src/snapshot/tree-reader.ts)", () => {
  const entry = (name: string, kind: EntryKind, tree?: Uint8Array): Entry => ({
    name,
    info: { name, kind, size: 0, mode: kind === "dir" ? 0o755 : 0o644, mtimeNs: 1n, dev: 1n, ino: 2n, uid: 0, gid: 0, nlink: 1 },
    ...(tree ? { tree } : {}),
  });
  /** A repository that serves trees from a map, slowly, counting loads in flight. */
  function fakeRepo(trees: Map<string, Uint8Array>) {
    const stats = { loads: 0, inFlight: 0, maxInFlight: 0 };
    const repo = {
      async getBlob(_type: number, mac: Uint8Array): Promise<Uint8Array> {
        stats.loads++;
        stats.inFlight++;
        stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
        await new Promise((r) => setTimeout(r, 2));
        stats.inFlight--;
        const t = trees.get(Buffer.from(mac).toString("hex"));
        if (!t) throw new CofferError("NOT_FOUND", `tree ${Buffer.from(mac).toString("hex")} missing`);
        return t;
      },
    };
    return { repo: repo as unknown as Repository, stats };
  }
  const macOf = (i: number) => new Uint8Array(32).fill(i);

  it("yields every entry depth-first in name order with several listings loading at once, each loaded once; a missing listing fails where the walk reaches it", async () => {
    // root: d00..d19 (each with files a, b and a subdirectory s holding file x), then file z
    const trees = new Map<string, Uint8Array>();
    const put = (i: number, entries: Entry[]) => trees.set(Buffer.from(macOf(i)).toString("hex"), encodeTree(entries));
    const want: string[] = ["/"];
    const top: Entry[] = [];
    for (let d = 0; d < 20; d++) {
      const name = `d${String(d).padStart(2, "0")}`;
      put(100 + d, [entry("x", "file")]);
      put(d + 1, [entry("a", "file"), entry("b", "file"), entry("s", "dir", macOf(100 + d))]);
      top.push(entry(name, "dir", macOf(d + 1)));
      want.push(`/${name}`, `/${name}/a`, `/${name}/b`, `/${name}/s`, `/${name}/s/x`);
    }
    top.push(entry("z", "file"));
    want.push("/z");
    put(200, top);
    const root = entry("", "dir", macOf(200));

    const { repo, stats } = fakeRepo(trees);
    const got: string[] = [];
    for await (const { path } of new TreeReader(repo).walk(root, "/")) got.push(path);
    expect(got).toEqual(want);
    expect(stats.loads).toBe(41);
    expect(stats.maxInFlight).toBeGreaterThan(1);

    // d05/s's listing is missing: everything before it is walked, then its error.
    trees.delete(Buffer.from(macOf(105)).toString("hex"));
    const { repo: repo2 } = fakeRepo(trees);
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const { path } of new TreeReader(repo2).walk(root, "/")) seen.push(path);
      })(),
    ).rejects.toThrow(/tree (69){32} missing/);
    expect(seen).toEqual(want.slice(0, want.indexOf("/d05/s") + 1));
  });
});

describe("encodeTreeOf (trees from packed entries, as backups build them)", () => {
  it("gives exactly encodeTree()'s bytes for any entries (property)", () => {
    fc.assert(
      fc.property(fc.array(arbEntry, { maxLength: 40 }), (entries) => {
        const packed = entries.map(packEntry);
        expect(Buffer.from(encodeTreeOf(packed)).equals(Buffer.from(encodeTree(entries)))).toBe(true);
        // and packed bytes that went through the scan cache's decode stay the same
        expect(entries.map((e) => Buffer.from(packEntry(unpackEntry(packEntry(e), "t"))).equals(Buffer.from(packEntry(e))))).not.toContain(false);
      }),
      { numRuns: 100 },
    );
  });

  it("gives encodeTree()'s bytes at the array length boundaries 0, 15, 16, 65535 and 65536", () => {
    for (const n of [0, 15, 16, 65_535, 65_536]) {
      const entries = Array.from({ length: n }, (_, i) => minimalEntry(`f${i}`));
      expect(Buffer.from(encodeTreeOf(entries.map(packEntry))).equals(Buffer.from(encodeTree(entries))), `n=${n}`).toBe(true);
      expect(decodeTree(encodeTreeOf(entries.map(packEntry)), "t")).toHaveLength(n);
    }
  });
});
