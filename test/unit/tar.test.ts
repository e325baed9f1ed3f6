/**
 * TarImporter and TarExporter against archives made (and read back) by GNU
 * tar, in temporary directories: records and contents, hard links, unsafe
 * names, damaged archives, standard input, the gating of a sequential
 * stream under concurrent consumers (with and without a results channel),
 * cancellation, atomic writes, and standard output.
 */

import { execFileSync, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmod, link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { readdirSync, readlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { gunzipSync } from "node:zlib";
import { pack } from "tar-stream";
import type { Header } from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { devNumbers } from "../../src/connectors/fs/exporter.js";
import { xattrSyscalls } from "../../src/connectors/fs/xattr-native.js";
import { setXattr } from "../helpers/tree.js";
import { LocationFlag } from "../../src/connectors/flags.js";
import { builtinRegistry } from "../../src/connectors/builtins.js";
import type { ConnectorOptions, ContentPiece, ExportRecord, FileInfo, ImportRecord, ImportResult } from "../../src/connectors/records.js";
import { TarExporter } from "../../src/connectors/tar/exporter.js";
import { decodeXattrName, encodeXattrName, fitsUstarName, formatPaxTime, makedev, normaliseName, parsePaxTime, paxRecord, ustarStandIn } from "../../src/connectors/tar/format.js";
import { TarImporter } from "../../src/connectors/tar/importer.js";
import { parsePaxRecords } from "../../src/connectors/tar/reader.js";
import { isCofferError } from "../../src/util/errors.js";

const MiB = 1 << 20;
const temps: string[] = [];
const LONG = `${"long-name-".repeat(14)}0123456789`; // 150 bytes
const UNI = "héllo wörld ✓.txt";

async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "coffer-tar-"));
  temps.push(d);
  return d;
}

function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }).toString("utf8");
}

/** GNU tar, which must succeed without a word on stderr (no ignored pax keyword, no bad header). */
function quietTar(...args: string[]): void {
  const r = spawnSync("tar", args, { stdio: ["ignore", "pipe", "pipe"] });
  expect(r.status, `tar ${args.join(" ")}: ${r.stderr.toString()}`).toBe(0);
  expect(r.stderr.toString()).toBe("");
}

/** The user.* extended attributes of a file (not following a symlink): name -> value in hex, sorted by name. */
function getfattr(path: string): Map<string, string> {
  const sys = xattrSyscalls();
  const p = Buffer.from(path);
  const names = sys.list(p).filter((n) => n.toString("latin1").startsWith("user."));
  return new Map(names.map((n) => [n.toString("utf8"), sys.get(p, n).toString("hex")] as [string, string]).sort(([a], [b]) => (a < b ? -1 : 1)));
}

function sha(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

async function readContent(r: ImportRecord): Promise<Buffer> {
  if (r.open === undefined) throw new Error(`${r.pathname}: no content`);
  const parts: Buffer[] = [];
  for await (const p of await r.open()) parts.push(Buffer.from(p));
  return Buffer.concat(parts);
}

interface Got {
  rec: ImportRecord;
  content?: Buffer;
}

/** A sequential consumer that reads every file's content before asking for the next record. */
async function importAll(imp: TarImporter, signal?: AbortSignal): Promise<Map<string, Got>> {
  const out = new Map<string, Got>();
  for await (const rec of imp.import({ signal })) {
    const g: Got = { rec };
    if (rec.open !== undefined) g.content = await readContent(rec);
    out.set(rec.pathname, g);
  }
  return out;
}

function get(m: Map<string, Got>, p: string): Got {
  const g = m.get(p);
  if (g === undefined) throw new Error(`no record ${p} (have ${[...m.keys()].join(", ")})`);
  return g;
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `expected a ${code} error`).toBeDefined();
  expect(isCofferError(err) ? err.code : String(err)).toBe(code);
}

/** An unbounded channel, like the core's results stream. */
class Chan<T> implements AsyncIterable<T> {
  private readonly queue: T[] = [];
  private readonly waiters: ((r: IteratorResult<T>) => void)[] = [];
  private ended = false;
  push(v: T): void {
    const w = this.waiters.shift();
    if (w) w({ value: v, done: false });
    else this.queue.push(v);
  }
  end(): void {
    this.ended = true;
    for (const w of this.waiters.splice(0)) w({ value: undefined, done: true });
  }
  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.queue.length > 0) return Promise.resolve({ value: this.queue.shift() as T, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((res) => this.waiters.push(res));
      },
    };
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

/** An archive made with tar-stream's packer (for entries GNU tar would not write). */
async function packed(entries: { header: Partial<Header> & { name: string }; data?: Buffer }[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const c of p as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const e of entries) {
    await new Promise<void>((res, rej) => {
      if (e.data !== undefined) p.entry({ ...e.header, size: e.data.length }, e.data, (err) => (err ? rej(err) : res()));
      else p.entry(e.header, (err) => (err ? rej(err) : res())).end(undefined);
    });
  }
  p.finalize();
  await collected;
  return Buffer.concat(chunks);
}

/** The hard-linked pair's first name (the one with content) in GNU tar's order. */
function isBigContent(r: ImportRecord): boolean {
  return (r.pathname === "/big.bin" || r.pathname === "/d1/big-link") && r.open !== undefined;
}

/** Open descriptors of this process that point at `path`. */
function fdsOn(path: string): number {
  let n = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) n++;
    } catch {
      /* closed meanwhile */
    }
  }
  return n;
}

// ---- the source tree and its archives ----

let base: string;
let src: string;
let bigData: Buffer;
let gnuTar: string;
let paxTar: string;
let gzTar: string;
let xattrsOk = false;
/** Times as the filesystem stored them (utimes is not exact to the ns). */
let smallMtimeNs: bigint;
let bigMtimeNs: bigint;
const T_SMALL = new Date("2001-02-03T04:05:06.500Z");
const T_DIR = new Date("2010-01-01T00:00:00Z");
const T_BIG = new Date("2020-06-07T08:09:10.123Z");


beforeAll(async () => {
  base = await tmp();
  src = join(base, "src");
  await mkdir(join(src, "d1", "d2"), { recursive: true });
  await writeFile(join(src, "empty"), "");
  await writeFile(join(src, "small.txt"), "hello tar\n");
  await chmod(join(src, "small.txt"), 0o640);
  bigData = randomBytes(3 * MiB);
  await writeFile(join(src, "big.bin"), bigData);
  await writeFile(join(src, UNI), "unicode\n");
  await writeFile(join(src, "d1", "d2", LONG), "long name\n");
  await writeFile(join(src, "suid"), "#!/bin/sh\n");
  await chmod(join(src, "suid"), 0o4755);
  await symlink("small.txt", join(src, "sym"));
  await link(join(src, "big.bin"), join(src, "d1", "big-link"));
  sh("mkfifo", join(src, "pipe"));
  try {
    setXattr(join(src, "small.txt"), "user.comment", "a note");
    xattrsOk = true;
  } catch {
    xattrsOk = false; // no user xattrs on this file system
  }
  await utimes(join(src, "small.txt"), T_SMALL, T_SMALL);
  await utimes(join(src, "big.bin"), T_BIG, T_BIG);
  for (const d of ["d1/d2", "d1", "."]) await utimes(join(src, d), T_DIR, T_DIR);
  smallMtimeNs = (await lstat(join(src, "small.txt"), { bigint: true })).mtimeNs;
  bigMtimeNs = (await lstat(join(src, "big.bin"), { bigint: true })).mtimeNs;
  gnuTar = join(base, "gnu.tar");
  paxTar = join(base, "pax.tar");
  gzTar = join(base, "x.tar.gz");
  sh("tar", "-C", src, "-cf", gnuTar, ".");
  sh("tar", "--format=pax", "--xattrs", "-C", src, "-cf", paxTar, ".");
  sh("tar", "-C", src, "-czf", gzTar, ".");
});

afterAll(async () => {
  for (const d of temps) await rm(d, { recursive: true, force: true });
});

const EXPECTED = ["/", "/empty", "/small.txt", "/big.bin", `/${UNI}`, "/d1", "/d1/d2", `/d1/d2/${LONG}`, "/suid", "/sym", "/d1/big-link", "/pipe"];

function checkTree(m: Map<string, Got>, o: { subSecond: boolean }): void {
  expect([...m.keys()].sort()).toEqual([...EXPECTED].sort());
  expect([...m.keys()][0]).toBe("/");
  const root = get(m, "/").rec.fileInfo;
  expect(root.kind).toBe("dir");
  expect(root.mtimeNs).toBe(BigInt(T_DIR.getTime()) * 1_000_000n);

  expect(get(m, "/empty").content?.length).toBe(0);
  const small = get(m, "/small.txt");
  expect(small.content?.toString()).toBe("hello tar\n");
  expect(small.rec.fileInfo.mode).toBe(0o640);
  expect(small.rec.fileInfo.kind).toBe("file");
  expect(small.rec.fileInfo.size).toBe(10);
  expect(small.rec.fileInfo.uid).toBe(process.getuid?.());
  expect(small.rec.fileInfo.username).toBeTypeOf("string");
  const ns = smallMtimeNs;
  expect(ns % 1_000_000_000n).not.toBe(0n);
  expect(small.rec.fileInfo.mtimeNs).toBe(o.subSecond ? ns : (ns / 1_000_000_000n) * 1_000_000_000n);

  expect(sha(get(m, `/${UNI}`).content!)).toBe(sha(Buffer.from("unicode\n")));
  expect(get(m, `/d1/d2/${LONG}`).content?.toString()).toBe("long name\n");
  expect(get(m, "/d1").rec.fileInfo.kind).toBe("dir");
  expect(get(m, "/suid").rec.fileInfo.mode).toBe(0o4755);
  const sym = get(m, "/sym").rec;
  expect(sym.fileInfo.kind).toBe("symlink");
  expect(sym.target).toBe("small.txt");
  expect(get(m, "/pipe").rec.fileInfo.kind).toBe("fifo");

  // The hard link pair: whichever name came first holds the content, the other links to it.
  const a = get(m, "/big.bin");
  const b = get(m, "/d1/big-link");
  const [target, lnk] = a.rec.linkTarget === undefined ? [a, b] : [b, a];
  expect(lnk.rec.linkTarget).toBe(target.rec.pathname);
  expect(target.rec.linkTarget).toBeUndefined();
  expect(sha(target.content!)).toBe(sha(bigData));
  expect(lnk.rec.open).toBeUndefined();
  for (const r of [target.rec, lnk.rec]) {
    expect(r.fileInfo.nlink).toBe(2);
    expect(r.fileInfo.dev).toBe(1n);
    expect(r.fileInfo.kind).toBe("file");
    expect(r.fileInfo.size).toBe(3 * MiB);
  }
  expect(lnk.rec.fileInfo.ino).toBe(target.rec.fileInfo.ino);
  // Other records have distinct synthetic inodes.
  const inos = [...m.values()].filter((g) => g !== lnk).map((g) => g.rec.fileInfo.ino);
  expect(new Set(inos).size).toBe(inos.length);
  for (const g of m.values()) if (g !== target && g !== lnk) expect(g.rec.fileInfo.nlink).toBe(1);
}

describe("TarImporter", () => {
  it("imports a GNU tar archive", async () => {
    const imp = new TarImporter(gnuTar, { gzip: false });
    expect(imp.type).toBe("tar");
    expect(imp.root).toBe(gnuTar);
    expect(imp.flags).toBe(LocationFlag.FILE);
    await imp.ping();
    const m = await importAll(imp);
    await imp.close();
    checkTree(m, { subSecond: false });
  });

  it("imports a pax archive: sub-second times and xattrs", async () => {
    const imp = new TarImporter(paxTar, { gzip: false });
    const m = await importAll(imp);
    await imp.close();
    checkTree(m, { subSecond: true });
    expect(get(m, "/big.bin").rec.fileInfo.mtimeNs).toBe(bigMtimeNs);
    if (xattrsOk) {
      const x = get(m, "/small.txt").rec.xattrs ?? [];
      expect(x.map((a) => [a.name, Buffer.from(a.value).toString()])).toEqual([["user.comment", "a note"]]);
    }
    const noX = new TarImporter(paxTar, { gzip: false, noXattr: true });
    const m2 = await importAll(noX);
    await noX.close();
    expect(get(m2, "/small.txt").rec.xattrs).toBeUndefined();
  });

  it("imports a gzipped archive", async () => {
    const imp = new TarImporter(gzTar, { gzip: true });
    expect(imp.type).toBe("tar+gz");
    const m = await importAll(imp);
    await imp.close();
    checkTree(m, { subSecond: false });
  });

  it("applies excludes", async () => {
    const imp = new TarImporter(gnuTar, { gzip: false, excludes: ["d1/", "*.txt"] });
    const m = await importAll(imp);
    await imp.close();
    expect([...m.keys()].sort()).toEqual(["/", "/big.bin", "/empty", "/pipe", "/suid", "/sym"]);
    // The link was excluded with d1: big.bin is a plain file again.
    expect(get(m, "/big.bin").rec.fileInfo.nlink).toBe(1);
    expect(get(m, "/big.bin").rec.fileInfo.dev).toBe(0n);
  });

  it("turns unsafe names into error records inside the root and goes on", async () => {
    const dir = await tmp();
    const file = join(dir, "evil.tar");
    await writeFile(
      file,
      await packed([
        { header: { name: "ok1", mtime: new Date(0) }, data: Buffer.from("one") },
        { header: { name: "../evil" }, data: Buffer.from("nope") },
        { header: { name: "a/../../b", type: "directory" } },
        { header: { name: "x", type: "link", linkname: "../../etc/passwd" } },
        { header: { name: "./dev/null", type: "character-device", devmajor: 1, devminor: 3, mode: 0o666 } },
        { header: { name: "//odd//./path/", type: "directory", mode: 0o700 } },
        { header: { name: "ok2", mtime: new Date(1000) }, data: Buffer.from("two") },
      ]),
    );
    const imp = new TarImporter(file, { gzip: false });
    const m = await importAll(imp);
    await imp.close();
    const recs = [...m.values()].map((g) => g.rec);
    expect(recs[0]?.pathname).toBe("/"); // synthetic
    expect(recs[0]?.fileInfo.mode).toBe(0o755);
    expect(get(m, "/ok1").content?.toString()).toBe("one");
    expect(get(m, "/ok2").content?.toString()).toBe("two");
    const errors = recs.filter((r) => r.error !== undefined);
    expect(errors).toHaveLength(3);
    for (const r of errors) {
      const n = normaliseName(r.pathname);
      expect("path" in n && n.path === r.pathname).toBe(true); // a safe, normalised path
      expect(r.pathname.split("/").includes("..")).toBe(false);
      expect(r.open).toBeUndefined();
    }
    expect(get(m, "/x").rec.error).toMatch(/\.\./);
    const dev = get(m, "/dev/null").rec.fileInfo;
    expect(dev.kind).toBe("chardev");
    expect(devNumbers(dev.rdev ?? 0n)).toEqual([1n, 3n]);
    expect(get(m, "/odd/path").rec.fileInfo.mode).toBe(0o700);
  });

  it("reports damage after stored members in the damaged member, and imports an archive cut between members with a warning", async () => {
    const dir = await tmp();
    const data = await readFile(gnuTar);
    // Cut inside big.bin's content: reading it fails (IO, so the builder records the entry), naming member and offset; the import then ends.
    const cut = data.indexOf(bigData.subarray(0, 64)) + MiB;
    expect(cut).toBeGreaterThan(MiB);
    const t1 = join(dir, "cut.tar");
    await writeFile(t1, data.subarray(0, cut));
    const seen: string[] = [];
    const failures: string[] = [];
    const imp = new TarImporter(t1, { gzip: false });
    for await (const r of imp.import()) {
      seen.push(r.pathname);
      if (r.open !== undefined) {
        try {
          await readContent(r);
        } catch (e) {
          expect(isCofferError(e) && e.code).toBe("IO");
          failures.push((e as Error).message);
        }
      }
    }
    await imp.close();
    expect(seen[0]).toBe("/");
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatch(new RegExp(`archive cut inside the member's data .* at byte offset ${cut} \\(member "(\\./)?(big\\.bin|d1/big-link)"\\)`));

    // Cut between two entries: no end-of-archive marker; everything is there, with a warning.
    const end = data.length - 10240 + 512; // somewhere in the trailer area, past the last entry
    const blocks = Math.floor(data.subarray(0, end).lastIndexOf(Buffer.from("ustar")) / 512) * 512; // the last header
    const t2 = join(dir, "cut2.tar");
    await writeFile(t2, data.subarray(0, blocks));
    const warnings: string[] = [];
    const imp2 = new TarImporter(t2, { gzip: false, onWarning: (w) => warnings.push(w) });
    const m2 = await importAll(imp2);
    await imp2.close();
    // What GNU tar lists of the cut archive (it extracts it silently), all imported.
    const listed = sh("tar", "-tf", t2).split("\n").filter((l) => l !== "").map((l) => (l === "./" ? "/" : l.replace(/^\.\//, "/").replace(/\/$/, "")));
    expect(listed.length).toBeGreaterThan(5);
    expect([...m2.keys()].sort()).toEqual(listed.sort());
    expect([...m2.values()].filter((g) => g.rec.error !== undefined)).toEqual([]);
    expect(warnings.join("\n")).toMatch(/ends without its end-of-archive marker/);

    // A truncated gzip stream; and garbage.
    const gz = await readFile(gzTar);
    const t3 = join(dir, "cut.tar.gz");
    await writeFile(t3, gz.subarray(0, gz.length >> 1));
    const imp3 = new TarImporter(t3, { gzip: true });
    // Cut inside a member's data: reading it fails (IO, the member and the uncompressed offset named).
    await expect(importAll(imp3)).rejects.toThrow(/damaged tar archive: not a valid gzip stream \(unexpected end of file\) at byte offset \d+ \(member "\.\/[^"]+"\)/);
    await imp3.close();
    const t4 = join(dir, "garbage.tar");
    await writeFile(t4, randomBytes(4096));
    const imp4 = new TarImporter(t4, { gzip: false });
    await expectCode(importAll(imp4), "CORRUPT");
    await imp4.close();

    const missing = new TarImporter(join(dir, "nope.tar"), { gzip: false });
    await expectCode(missing.ping(), "IO");
    await expectCode(importAll(missing), "IO");
    await missing.close();
  });

  it("reads standard input once, as a STREAM", async () => {
    const input = new PassThrough();
    input.end(await readFile(gnuTar));
    const imp = new TarImporter("-", { gzip: false, stdin: input });
    expect(imp.root).toBe("-");
    expect(imp.flags).toBe(LocationFlag.FILE | LocationFlag.STREAM);
    await imp.ping();
    const m = await importAll(imp);
    expect([...m.keys()].sort()).toEqual([...EXPECTED].sort());
    // One pass: the target cannot know it has links; the link still points at it.
    const a = get(m, "/big.bin").rec;
    const b = get(m, "/d1/big-link").rec;
    const [target, lnk] = a.linkTarget === undefined ? [a, b] : [b, a];
    expect(lnk.linkTarget).toBe(target.pathname);
    expect(lnk.fileInfo.ino).toBe(target.fileInfo.ino);
    expect(lnk.fileInfo.dev).toBe(target.fileInfo.dev);
    expect(lnk.fileInfo.nlink).toBe(2);
    expect(target.fileInfo.nlink).toBe(1);
    await expectCode(importAll(imp), "USAGE");
    await imp.close();

    const gzInput = new PassThrough();
    gzInput.end(await readFile(gzTar));
    const imp2 = new TarImporter("-", { gzip: true, stdin: gzInput });
    const m2 = await importAll(imp2);
    await imp2.close();
    expect(sha(get(m2, "/small.txt").content!)).toBe(sha(Buffer.from("hello tar\n")));
  });

  it("advances on results under concurrent next() callers, without deadlock", async () => {
    for (const archive of [gnuTar, gzTar]) {
      const results = new Chan<ImportResult>();
      const imp = new TarImporter(archive, { gzip: archive === gzTar });
      const it = imp.import({ results })[Symbol.asyncIterator]();
      const seen: ImportRecord[] = [];
      const read = new Map<string, string>();
      let k = 0;
      const worker = async () => {
        while (true) {
          const n = await it.next();
          if (n.done === true) return;
          const r = n.value;
          seen.push(r);
          // Every other file is read; the others are answered without being opened, some late.
          if (r.open !== undefined && k++ % 2 === 0) read.set(r.pathname, sha(await readContent(r)));
          else await sleep(isBigContent(r) ? 50 : Math.random() * 5);
          results.push({ record: r });
        }
      };
      await within(Promise.all(Array.from({ length: 8 }, worker)), 60_000, "concurrent import");
      results.end();
      await imp.close();
      expect(seen.map((r) => r.pathname).sort()).toEqual([...EXPECTED].sort());
      expect(seen[0]?.pathname).toBe("/");
      expect(read.size).toBeGreaterThan(0);
      const want: Record<string, string> = {
        "/big.bin": sha(bigData),
        "/small.txt": sha(Buffer.from("hello tar\n")),
        "/empty": sha(Buffer.alloc(0)),
        [`/${UNI}`]: sha(Buffer.from("unicode\n")),
        [`/d1/d2/${LONG}`]: sha(Buffer.from("long name\n")),
        "/suid": sha(Buffer.from("#!/bin/sh\n")),
      };
      for (const [p, h] of read) expect(h, p).toBe(want[p]);
    }
  });

  it("holds next() until the current file is read or answered", async () => {
    const results = new Chan<ImportResult>();
    const imp = new TarImporter(gnuTar, { gzip: false });
    const it = imp.import({ results })[Symbol.asyncIterator]();
    let big: ImportRecord | undefined;
    while (big === undefined) {
      const n = await it.next();
      if (n.done === true) throw new Error("no big.bin");
      if (isBigContent(n.value)) big = n.value;
      else results.push({ record: n.value });
    }
    let resolved = false;
    const next = it.next().then((n) => {
      resolved = true;
      return n;
    });
    await sleep(50);
    expect(resolved).toBe(false);
    results.push({ record: big });
    const n = await within(next, 30_000, "next after the answer");
    expect(n.done).toBe(false);
    // Answered without being read: its content is gone.
    await expectCode(big.open!(), "IO");
    // Drain the rest.
    for (let r = n; r.done !== true; r = await it.next()) results.push({ record: r.value });
    results.end();
    await imp.close();
  });

  it("spools unread content when there is no results channel", async () => {
    const spools = () => new Set(readdirSync(tmpdir()).filter((n) => n.startsWith("coffer-tar-spool-")));
    const before = spools();
    const imp = new TarImporter(gnuTar, { gzip: false });
    const recs: ImportRecord[] = [];
    // Several concurrent callers, nobody reads: each entry is spooled as next() passes it.
    const it = imp.import()[Symbol.asyncIterator]();
    await within(
      Promise.all(
        Array.from({ length: 4 }, async () => {
          for (let n = await it.next(); n.done !== true; n = await it.next()) recs.push(n.value);
        }),
      ),
      60_000,
      "import without results",
    );
    expect(recs.map((r) => r.pathname).sort()).toEqual([...EXPECTED].sort());
    const byPath = new Map(recs.map((r) => [r.pathname, r]));
    const bigRec = recs.find(isBigContent)!;
    expect(sha(await readContent(bigRec))).toBe(sha(bigData));
    expect((await readContent(byPath.get("/small.txt")!)).toString()).toBe("hello tar\n");
    await expectCode(byPath.get("/small.txt")!.open!(), "IO"); // once only
    expect([...spools()].filter((n) => !before.has(n))).toHaveLength(1); // big.bin went to a file
    await imp.close();
    expect([...spools()].filter((n) => !before.has(n))).toHaveLength(0);
  });

  it("spools into the run's scratch directory, given through the registry's connector options", async () => {
    const scratch = await tmp();
    const opts: ConnectorOptions = { hostname: "h", os: "linux", arch: "x64", cwd: scratch, maxConcurrency: 4, excludes: [], noXattr: false, tmpDir: scratch };
    const imp = await builtinRegistry().make("importer", `tar:${gnuTar}`, {}, opts);
    const recs: ImportRecord[] = [];
    for await (const r of imp.import()) recs.push(r); // nobody reads as the import passes: content is spooled
    const spooled = readdirSync(scratch).filter((n) => n.startsWith("coffer-tar-spool-"));
    expect(spooled).toHaveLength(1); // big.bin went to a file, there
    expect(readdirSync(join(scratch, spooled[0]!))).toEqual(["spool"]);
    expect(sha(await readContent(recs.find(isBigContent)!))).toBe(sha(bigData));
    await imp.close();
    expect(readdirSync(scratch)).toEqual([]);
  });

  it("stops promptly on abort and closes the archive", async () => {
    const results = new Chan<ImportResult>();
    const ac = new AbortController();
    const imp = new TarImporter(gnuTar, { gzip: false });
    const it = imp.import({ results, signal: ac.signal })[Symbol.asyncIterator]();
    for (let n = await it.next(); n.done !== true && !isBigContent(n.value); n = await it.next()) results.push({ record: n.value });
    expect(fdsOn(gnuTar)).toBe(1);
    const pending = it.next(); // waits for big.bin, which nobody answers
    await sleep(20);
    ac.abort(); // without it the pending next() would wait for ever (the test's timeout)
    await expectCode(pending, "INTERRUPTED");
    expect(fdsOn(gnuTar)).toBe(0);
    expect((await it.next()).done).toBe(true);
    await imp.close();

    const before = new AbortController();
    before.abort();
    const imp2 = new TarImporter(gnuTar, { gzip: false });
    await expectCode(importAll(imp2, before.signal), "INTERRUPTED");
    await imp2.close();
  });
});

// ---- the exporter ----

function info(kind: FileInfo["kind"], o: Partial<FileInfo> = {}): FileInfo {
  return {
    name: "",
    kind,
    size: 0,
    mode: kind === "dir" ? 0o755 : 0o644,
    mtimeNs: 1_600_000_000n * 1_000_000_000n,
    dev: 0n,
    ino: 0n,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    nlink: 1,
    ...o,
  };
}

function fileRec(pathname: string, data: Buffer, o: Partial<FileInfo> = {}, pieceSize = MiB): ExportRecord {
  return {
    pathname,
    fileInfo: info("file", { size: data.length, ...o }),
    content: async function* (): AsyncIterable<ContentPiece> {
      for (let off = 0; off < data.length; off += pieceSize) {
        const d = data.subarray(off, Math.min(data.length, off + pieceSize));
        if (d.every((b) => b === 0)) yield { offset: off, length: d.length, zero: true };
        else yield { offset: off, length: d.length, data: d };
      }
    },
  };
}

const SPARSEISH = Buffer.concat([Buffer.from("head"), Buffer.alloc(2 * 65536), Buffer.from("tail")]);
const BIG = randomBytes(3 * MiB + 17);
const DEEP = `/deep/${"x".repeat(120)}/${"y".repeat(120)}/${LONG}`;

function exportRecords(): ExportRecord[] {
  return [
    { pathname: "/", fileInfo: info("dir") },
    fileRec("/big", BIG, { nlink: 2, dev: 7n, ino: 42n }),
    { pathname: "/d", fileInfo: info("dir", { mode: 0o750, mtimeNs: 1_500_000_000n * 1_000_000_000n }) },
    fileRec("/d/a.txt", Buffer.from("alpha\n"), { mode: 0o640, mtimeNs: 1_234_567_890_123_456_789n, username: "someone", groupname: "somegroup" }),
    fileRec("/d/big-link", BIG, { nlink: 2, dev: 7n, ino: 42n }),
    fileRec("/d/zeros", SPARSEISH, {}, 65536),
    { pathname: "/deep", fileInfo: info("dir") },
    { pathname: `/deep/${"x".repeat(120)}`, fileInfo: info("dir") },
    { pathname: `/deep/${"x".repeat(120)}/${"y".repeat(120)}`, fileInfo: info("dir") },
    fileRec(DEEP, Buffer.from("deep\n")),
    fileRec("/empty", Buffer.alloc(0)),
    { pathname: "/../evil", fileInfo: info("file", { size: 1 }), content: async function* () { yield { offset: 0, length: 1, data: Buffer.from("!") }; } },
    { pathname: "/fifo", fileInfo: info("fifo", { mode: 0o600 }) },
    { pathname: "/longsym", fileInfo: info("symlink", { mode: 0o777 }), target: `${"t".repeat(150)}/ü` },
    fileRec("/noperm", Buffer.from("x"), { mode: 0 }),
    { pathname: "/sym", fileInfo: info("symlink", { mode: 0o777 }), target: "d/a.txt" },
    fileRec("/suid", Buffer.from("#!/bin/sh\n"), { mode: 0o4755 }),
    { ...fileRec("/xattr", Buffer.from("x")), xattrs: [{ name: "user.test", value: new Uint8Array(Buffer.from("value ✓")) }, { name: "user.bin", value: new Uint8Array([0xff, 0x00, 0xfe]) }] },
    fileRec(`/${UNI}`, Buffer.from("unicode\n")),
    { pathname: "/sock", fileInfo: info("socket") },
  ];
}

async function exportAll(exp: TarExporter): Promise<Map<string, string | undefined>> {
  // Concurrent, as the restore core does: the exporter keeps call order.
  const results = await Promise.all(exportRecords().map((r) => exp.export(r)));
  return new Map(results.map((r) => [r.pathname, r.error]));
}

async function checkExtracted(out: string): Promise<void> {
  const st = (p: string) => lstat(join(out, p));
  expect(await readFile(join(out, "d/a.txt"), "utf8")).toBe("alpha\n");
  expect((await st("d/a.txt")).mode & 0o7777).toBe(0o640);
  expect(Math.floor((await st("d/a.txt")).mtimeMs / 1000)).toBe(1_234_567_890);
  expect((await st("d")).mode & 0o7777).toBe(0o750);
  expect(Math.floor((await st("d")).mtimeMs / 1000)).toBe(1_500_000_000);
  expect(sha(await readFile(join(out, "d/zeros")))).toBe(sha(SPARSEISH));
  expect((await readFile(join(out, "empty"))).length).toBe(0);
  expect(sha(await readFile(join(out, "big")))).toBe(sha(BIG));
  expect((await st("big")).ino).toBe((await st("d/big-link")).ino);
  expect((await st("big")).nlink).toBe(2);
  expect(await readFile(join(out, UNI), "utf8")).toBe("unicode\n");
  expect(await readFile(join(out, DEEP.slice(1)), "utf8")).toBe("deep\n");
  expect(await readlink(join(out, "sym"))).toBe("d/a.txt");
  expect(await readlink(join(out, "longsym"))).toBe(`${"t".repeat(150)}/ü`);
  expect((await st("fifo")).isFIFO()).toBe(true);
  expect((await st("suid")).mode & 0o7777).toBe(0o4755);
  expect((await st("noperm")).mode & 0o7777).toBe(0);
  expect(Math.floor((await st("suid")).mtimeMs / 1000)).toBe(1_600_000_000);
  await expect(lstat(join(out, "evil"))).rejects.toThrow();
  await expect(lstat(join(out, "sock"))).rejects.toThrow();
}

describe("TarExporter", () => {
  it("writes an archive GNU tar extracts", async () => {
    const dir = await tmp();
    const file = join(dir, "x.tar");
    const warnings: string[] = [];
    const exp = new TarExporter(file, { gzip: false, onWarning: (m) => warnings.push(m) });
    expect(exp.type).toBe("tar");
    expect(exp.flags).toBe(LocationFlag.FILE | LocationFlag.EXPORTXATTR);
    await exp.ping();
    const res = await exportAll(exp);
    expect(res.get("/../evil")).toMatch(/unsafe/);
    for (const [p, e] of res) if (p !== "/../evil") expect(e, p).toBeUndefined();
    await exp.finish();
    await exp.close();
    expect(await readdir(dir)).toEqual(["x.tar"]);
    expect(warnings.some((w) => w.includes("socket"))).toBe(true);
    expect(warnings.some((w) => w.includes("user.bin"))).toBe(false); // binary values are written as they are

    const list = sh("tar", "-tf", file).split("\n");
    expect(list).toContain("d/");
    expect(list).toContain("d/a.txt");
    // The root is the first member, "./" (as `tar -C DIR -cf X .` writes it); no other name is absolute or dotted.
    expect(list[0]).toBe("./");
    expect(list.slice(1).some((l) => l.startsWith("/") || l.startsWith("./"))).toBe(false);
    const out = join(dir, "out");
    await mkdir(out);
    sh("tar", "--xattrs", "--xattrs-include=*", "-xpf", file, "-C", out);
    await checkExtracted(out);
    if (xattrsOk) {
      expect(xattrSyscalls().get(Buffer.from(join(out, "xattr")), Buffer.from("user.test")).toString("utf8")).toBe("value ✓");
      expect(getfattr(join(out, "xattr"))).toEqual(new Map([["user.bin", "ff00fe"], ["user.test", Buffer.from("value ✓").toString("hex")]]));
    }

    // And back through the importer: exact times, owners' names, both xattrs, the link.
    const imp = new TarImporter(file, { gzip: false });
    const m = await importAll(imp);
    await imp.close();
    const a = get(m, "/d/a.txt").rec.fileInfo;
    expect(a.mtimeNs).toBe(1_234_567_890_123_456_789n);
    expect([a.username, a.groupname]).toEqual(["someone", "somegroup"]);
    expect(get(m, "/d/big-link").rec.linkTarget).toBe("/big");
    expect(get(m, "/noperm").rec.fileInfo.mode).toBe(0);
    const x = get(m, "/xattr").rec.xattrs ?? [];
    expect(Object.fromEntries(x.map((v) => [v.name, Buffer.from(v.value).toString("hex")]))).toEqual({
      "user.test": Buffer.from("value ✓").toString("hex"),
      "user.bin": "ff00fe",
    });
  });

  it("writes a gzipped archive", async () => {
    const dir = await tmp();
    const file = join(dir, "x.tar.gz");
    const exp = new TarExporter(file, { gzip: true });
    expect(exp.type).toBe("tar+gz");
    await exportAll(exp);
    await exp.finish();
    await exp.close();
    expect((await readFile(file)).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    const out = join(dir, "out");
    await mkdir(out);
    sh("tar", "-xzpf", file, "-C", out);
    await checkExtracted(out);
  });

  it("leaves no archive (and no temporary file) without a successful finish", async () => {
    const dir = await tmp();
    const file = join(dir, "x.tar");
    await writeFile(file, "old content");
    const exp = new TarExporter(file, { gzip: false });
    await exp.export(fileRec("/a", Buffer.from("a")));
    expect((await readdir(dir)).length).toBe(2); // the temporary file is there
    await exp.close();
    expect(await readdir(dir)).toEqual(["x.tar"]);
    expect(await readFile(file, "utf8")).toBe("old content");

    // Interrupted mid-export: fatal, and close() cleans up.
    const ac = new AbortController();
    const exp2 = new TarExporter(join(dir, "y.tar"), { gzip: false });
    const slow: ExportRecord = {
      pathname: "/slow",
      fileInfo: info("file", { size: 2 * MiB }),
      content: async function* () {
        yield { offset: 0, length: MiB, data: Buffer.alloc(MiB, 1) };
        ac.abort();
        yield { offset: MiB, length: MiB, data: Buffer.alloc(MiB, 2) };
      },
    };
    await expectCode(exp2.export(slow, { signal: ac.signal }), "INTERRUPTED");
    await expectCode(exp2.finish(), "INTERRUPTED");
    await exp2.close();
    expect(await readdir(dir)).toEqual(["x.tar"]);

    await expectCode(new TarExporter(join(dir, "no", "such", "dir.tar"), { gzip: false }).ping(), "IO");
  });

  it("keeps the archive valid when a file's content fails", async () => {
    const dir = await tmp();
    const file = join(dir, "x.tar");
    const exp = new TarExporter(file, { gzip: false });
    const bad: ExportRecord = {
      pathname: "/bad",
      fileInfo: info("file", { size: 10 }),
      content: async function* () {
        yield { offset: 0, length: 4, data: Buffer.from("good") };
        throw new Error("chunk missing");
      },
    };
    const short = fileRec("/short", Buffer.from("abc"), { size: 5 });
    const r = await Promise.all([exp.export(bad), exp.export(short), exp.export(fileRec("/after", Buffer.from("ok")))]);
    expect(r[0]?.error).toMatch(/chunk missing/);
    expect(r[1]?.error).toMatch(/shorter/);
    expect(r[2]?.error).toBeUndefined();
    await exp.finish();
    await exp.close();
    const out = join(dir, "out");
    await mkdir(out);
    sh("tar", "-xf", file, "-C", out);
    expect(await readFile(join(out, "bad"))).toEqual(Buffer.concat([Buffer.from("good"), Buffer.alloc(6)]));
    expect(await readFile(join(out, "after"), "utf8")).toBe("ok");
  });

  it("refuses paths under a name written as a symlink or another non-directory (extraction would go through it)", async () => {
    const dir = await tmp();
    const file = join(dir, "x.tar");
    const exp = new TarExporter(file, { gzip: false });
    const recs: ExportRecord[] = [
      { pathname: "/", fileInfo: info("dir") },
      { pathname: "/up", fileInfo: info("symlink", { mode: 0o777 }), target: ".." },
      fileRec("/up/evil", Buffer.from("EVIL\n")),
      { pathname: "/up/evil-dir", fileInfo: info("dir") },
      fileRec("/f", Buffer.from("f\n")),
      fileRec("/f/x", Buffer.from("x\n")),
      { pathname: "/ok", fileInfo: info("dir") },
      fileRec("/ok/y", Buffer.from("y\n")),
    ];
    const res = new Map((await Promise.all(recs.map((r) => exp.export(r)))).map((r) => [r.pathname, r.error]));
    expect(res.get("/up/evil")).toMatch(/unsafe path.*\/up is a symlink/);
    expect(res.get("/up/evil-dir")).toMatch(/\/up is a symlink/);
    expect(res.get("/f/x")).toMatch(/\/f is not a directory/);
    for (const p of ["/", "/up", "/f", "/ok", "/ok/y"]) expect(res.get(p), p).toBeUndefined();
    await exp.finish();
    await exp.close();
    expect(sh("tar", "-tf", file).split("\n").filter((l) => l !== "")).toEqual(["./", "up", "f", "ok/", "ok/y"]);
    const out = join(dir, "out");
    await mkdir(out);
    quietTar("-xf", file, "-C", out);
    expect(await readdir(dir)).toEqual(["out", "x.tar"]);
    expect(await readFile(join(out, "ok/y"), "utf8")).toBe("y\n");
  });

  it("waits out a slow standard output at every backpressure without a MaxListenersExceededWarning", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    try {
      // Each write is taken a tick later, so the exporter's 1 MiB buffer fills about once per MiB: some 24 waits for 'drain'.
      let written = 0;
      const stdout = new Writable({
        highWaterMark: 64 << 10,
        write(chunk: Buffer, _enc, cb) {
          written += chunk.length;
          setImmediate(cb);
        },
      });
      const data = randomBytes(24 * MiB);
      const exp = new TarExporter("-", { gzip: false, stdout });
      await exp.export({ pathname: "/", fileInfo: info("dir") });
      expect((await exp.export(fileRec("/big", data, {}, 64 << 10))).error).toBeUndefined();
      await exp.finish();
      await exp.close();
      expect(written).toBeGreaterThan(data.length);
      await new Promise<void>((res) => setImmediate(res));
      expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([]);
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("writes to a given standard output, as a STREAM", async () => {
    for (const gzip of [false, true]) {
      const stdout = new PassThrough();
      const chunks: Buffer[] = [];
      stdout.on("data", (c: Buffer) => chunks.push(c));
      const exp = new TarExporter("-", { gzip, stdout });
      expect(exp.root).toBe("-");
      expect(exp.flags).toBe(LocationFlag.FILE | LocationFlag.EXPORTXATTR | LocationFlag.STREAM);
      await exp.export({ pathname: "/", fileInfo: info("dir") });
      await exp.export({ pathname: "/d", fileInfo: info("dir") });
      await exp.export(fileRec("/d/f", Buffer.from("stdout!")));
      await exp.finish();
      await exp.close();
      expect(stdout.writableEnded).toBe(false); // not ours to end
      const data = Buffer.concat(chunks);
      const dir = await tmp();
      const file = join(dir, "s.tar");
      await writeFile(file, gzip ? gunzipSync(data) : data);
      expect(sh("tar", "-tf", file).split("\n").filter((l) => l !== "")).toEqual(["./", "d/", "d/f"]);
      const out = join(dir, "out");
      await mkdir(out);
      sh("tar", "-xf", file, "-C", out);
      expect(await readFile(join(out, "d/f"), "utf8")).toBe("stdout!");
    }
  });
});

// ---- binary extended attributes, through GNU tar and back ----

const BINARY = Buffer.from([0x00, 0xff, 0x00, 0xfe, 0x0a, 0x0d, 0x3d, 0x5c]);
const LARGE = randomBytes(2048);
const NAME150 = `${"ünïcødé-".repeat(12)}✓✓`; // 150 bytes of UTF-8
const TARGET120 = `${"target/".repeat(17)}x`; // 120 bytes
const MTIME_NS = 1_700_000_000_123_456_789n;
const XATTRS: [string, Buffer][] = [
  ["user.binary", BINARY],
  ["user.empty", Buffer.alloc(0)],
  ["user.large", LARGE],
  ["user.text", Buffer.from("hello world")],
  ["user.eq=sign%25pct", Buffer.from(BINARY).reverse()], // GNU tar writes the name as user.eq%3Dsign%2525pct
];
const xattrHex = (x: { name: string; value: Uint8Array }[] | undefined) => new Map((x ?? []).map((a) => [a.name, Buffer.from(a.value).toString("hex")] as const).sort(([a], [b]) => (a < b ? -1 : 1)));
const XATTRS_HEX = xattrHex(XATTRS.map(([name, value]) => ({ name, value })));

function binaryXattrRecords(): ExportRecord[] {
  const file = `/xd/${NAME150}`;
  return [
    { pathname: "/", fileInfo: info("dir") },
    { pathname: "/xd", fileInfo: info("dir", { mtimeNs: MTIME_NS }), xattrs: [{ name: "user.binary", value: new Uint8Array(BINARY) }] },
    {
      ...fileRec(file, Buffer.from("binary xattrs\n"), { mtimeNs: MTIME_NS, nlink: 2, dev: 9n, ino: 1n, uid: 3_000_000, gid: 3_000_001, username: "u".repeat(40), groupname: "grüppe" }),
      xattrs: XATTRS.map(([name, value]) => ({ name, value: new Uint8Array(value) })),
    },
    fileRec("/xd/hardlink", Buffer.from("binary xattrs\n"), { mtimeNs: MTIME_NS, nlink: 2, dev: 9n, ino: 1n }),
    { pathname: "/xd/symlink", fileInfo: info("symlink", { mode: 0o777, mtimeNs: MTIME_NS }), target: TARGET120 },
  ];
}

/** The typeflags of an uncompressed archive's header blocks, in order (pax and long-name headers included). */
function typeflags(tar: Buffer): string[] {
  const out: string[] = [];
  for (let off = 0; off + 512 <= tar.length; ) {
    const b = tar.subarray(off, off + 512);
    if (b.every((x) => x === 0)) break;
    const size = parseInt(b.toString("latin1", 124, 136).replace(/\0.*$/, "").trim() || "0", 8);
    const flag = String.fromCharCode(b[156] as number);
    out.push(flag);
    const body = flag === "5" || flag === "1" || flag === "2" ? 0 : size;
    off += 512 + Math.ceil(body / 512) * 512;
  }
  return out;
}

describe("TarExporter: binary extended attributes", () => {
  it("writes them as raw SCHILY.xattr records that GNU tar restores byte for byte, and the importer reads back", async () => {
    const dir = await tmp();
    const file = join(dir, "x.tar");
    expect(Buffer.byteLength(NAME150)).toBe(150);
    expect(TARGET120.length).toBe(120);
    const warnings: string[] = [];
    const exp = new TarExporter(file, { gzip: false, onWarning: (m) => warnings.push(m) });
    const res = await Promise.all(binaryXattrRecords().map((r) => exp.export(r)));
    for (const r of res) expect(r.error, r.pathname).toBeUndefined();
    await exp.finish();
    await exp.close();
    expect(warnings).toEqual([]);

    // The archive: GNU tar's records, no libarchive ones, one pax header at most per entry.
    const tar = await readFile(file);
    expect(tar.includes(Buffer.concat([Buffer.from("37 SCHILY.xattr.user.binary="), BINARY, Buffer.from("\n")]))).toBe(true);
    expect(tar.includes(Buffer.from("28 SCHILY.xattr.user.empty=\n"))).toBe(true);
    expect(tar.includes(Buffer.concat([Buffer.from("2078 SCHILY.xattr.user.large="), LARGE, Buffer.from("\n")]))).toBe(true);
    expect(tar.includes(Buffer.from(" SCHILY.xattr.user.eq%3Dsign%2525pct="))).toBe(true);
    expect(tar.includes(Buffer.from("LIBARCHIVE"))).toBe(false);
    expect(typeflags(tar)).toEqual(["5", "x", "5", "x", "0", "x", "1", "x", "2"]); // "./" first, then one pax header per entry

    // GNU tar extracts it all, quietly.
    const out = join(dir, "out");
    await mkdir(out);
    quietTar("--xattrs", "--xattrs-include=*", "-xpf", file, "-C", out);
    const f = join(out, "xd", NAME150);
    expect(await readFile(f, "utf8")).toBe("binary xattrs\n");
    expect((await lstat(f, { bigint: true })).mtimeNs).toBe(MTIME_NS);
    expect((await lstat(join(out, "xd"), { bigint: true })).mtimeNs).toBe(MTIME_NS);
    expect((await lstat(join(out, "xd", "hardlink"))).ino).toBe((await lstat(f)).ino);
    expect(await readlink(join(out, "xd", "symlink"))).toBe(TARGET120);
    if (process.getuid?.() === 0) expect([(await lstat(f)).uid, (await lstat(f)).gid]).toEqual([3_000_000, 3_000_001]);
    if (xattrsOk) {
      expect(getfattr(f)).toEqual(XATTRS_HEX);
      expect(getfattr(join(out, "xd"))).toEqual(new Map([["user.binary", BINARY.toString("hex")]]));
      // The same as a file given those attributes directly.
      const ref = join(dir, "ref");
      await writeFile(ref, "");
      for (const [name, value] of XATTRS) setXattr(ref, name, value);
      expect(getfattr(f)).toEqual(getfattr(ref));
    }

    // Back through the importer: every byte, name, time and id.
    const imp = new TarImporter(file, { gzip: false });
    const m = await importAll(imp);
    await imp.close();
    const rec = get(m, `/xd/${NAME150}`).rec;
    expect(xattrHex(rec.xattrs)).toEqual(XATTRS_HEX);
    expect(rec.fileInfo.mtimeNs).toBe(MTIME_NS);
    expect([rec.fileInfo.uid, rec.fileInfo.gid, rec.fileInfo.username, rec.fileInfo.groupname]).toEqual([3_000_000, 3_000_001, "u".repeat(40), "grüppe"]);
    expect(get(m, `/xd/${NAME150}`).content?.toString()).toBe("binary xattrs\n");
    expect(xattrHex(get(m, "/xd").rec.xattrs)).toEqual(new Map([["user.binary", BINARY.toString("hex")]]));
    expect(get(m, "/xd").rec.fileInfo.mtimeNs).toBe(MTIME_NS);
    expect(get(m, "/xd/hardlink").rec.linkTarget).toBe(`/xd/${NAME150}`);
    const sym = get(m, "/xd/symlink").rec;
    expect(sym.target).toBe(TARGET120);
    expect(sym.fileInfo.mtimeNs).toBe(MTIME_NS);

    if (xattrsOk) {
      // And an archive GNU tar makes of what it extracted: the importer reads its raw values too.
      const again = join(dir, "gnu.tar");
      quietTar("--format=pax", "--xattrs", "--xattrs-include=*", "-C", out, "-cf", again, ".");
      expect((await readFile(again)).includes(Buffer.from(" SCHILY.xattr.user.eq%3Dsign%2525pct="))).toBe(true);
      const imp2 = new TarImporter(again, { gzip: false });
      const m2 = await importAll(imp2);
      await imp2.close();
      expect(xattrHex(get(m2, `/xd/${NAME150}`).rec.xattrs)).toEqual(XATTRS_HEX);
      expect(get(m2, `/xd/${NAME150}`).rec.fileInfo.mtimeNs).toBe(MTIME_NS);
    }
  });

  it("writes them through gzip too", async () => {
    const dir = await tmp();
    const file = join(dir, "x.tar.gz");
    const exp = new TarExporter(file, { gzip: true });
    for (const r of binaryXattrRecords()) expect((await exp.export(r)).error).toBeUndefined();
    await exp.finish();
    await exp.close();
    const imp = new TarImporter(file, { gzip: true });
    const m = await importAll(imp);
    await imp.close();
    expect(xattrHex(get(m, `/xd/${NAME150}`).rec.xattrs)).toEqual(XATTRS_HEX);
    if (xattrsOk) {
      const out = join(dir, "out");
      await mkdir(out);
      quietTar("--xattrs", "--xattrs-include=*", "-xzpf", file, "-C", out);
      expect(getfattr(join(out, "xd", NAME150))).toEqual(XATTRS_HEX);
    }
  });
});

describe("tar format helpers", () => {
  it("writes pax records as GNU tar does, whatever their length", () => {
    // As GNU tar 1.34 wrote it.
    expect(paxRecord("SCHILY.xattr.user.binary", BINARY)).toEqual(Buffer.concat([Buffer.from("37 SCHILY.xattr.user.binary="), BINARY, Buffer.from("\n")]));
    expect(paxRecord("path", "a")).toEqual(Buffer.from("9 path=a\n"));
    // Around the lengths where the length's own digits change (10, 100, 1000 bytes).
    for (const n of [...Array(20).keys(), ...Array.from({ length: 20 }, (_, i) => 85 + i), ...Array.from({ length: 20 }, (_, i) => 985 + i), 70_000]) {
      const value = Buffer.alloc(n, 0x0a);
      const r = paxRecord("k", value);
      expect(parseInt(r.toString("latin1"), 10), `value of ${n} bytes`).toBe(r.length);
      expect(parsePaxRecords(r, 0).last).toEqual(new Map([["k", value]]));
    }
    const many = Buffer.concat([paxRecord("a", BINARY), paxRecord("b", ""), paxRecord("c=d", "e=f")]);
    expect(parsePaxRecords(many, 0).last).toEqual(new Map([["a", BINARY], ["b", Buffer.alloc(0)], ["c", Buffer.from("d=e=f")]]));
  });

  it("escapes xattr names as GNU tar does", () => {
    expect(encodeXattrName("user.a=b%c")).toBe("user.a%3Db%25c");
    expect(decodeXattrName("user.a%3Db%25c")).toBe("user.a=b%c");
    expect(decodeXattrName("user.%253D%41%3d")).toBe("user.%3D%41%3d");
    for (const n of ["user.x", "user.%", "user.%3D", "user.%25=%", "user.=="]) expect(decodeXattrName(encodeXattrName(n))).toBe(n);
  });

  it("knows which names a ustar header holds, and stands in for the others", () => {
    expect(fitsUstarName("a/b")).toBe(true);
    expect(fitsUstarName("x".repeat(100))).toBe(true);
    expect(fitsUstarName("x".repeat(101))).toBe(false);
    expect(fitsUstarName(`${"p".repeat(155)}/${"n".repeat(100)}`)).toBe(true);
    expect(fitsUstarName(`${"p".repeat(156)}/${"n".repeat(100)}`)).toBe(false);
    expect(fitsUstarName(`${"d".repeat(120)}/`)).toBe(false); // the name part would be empty
    expect(fitsUstarName("é")).toBe(false);
    for (const n of [NAME150, `${NAME150}/`, "é", `${"d".repeat(300)}/`, `a/${"b".repeat(200)}`]) {
      const s = ustarStandIn(n);
      expect(fitsUstarName(s), s).toBe(true);
      expect(s.length).toBeLessThanOrEqual(100);
      expect(s.endsWith("/")).toBe(n.endsWith("/"));
    }
  });

  it("normalises names and times", () => {
    expect(normaliseName("./a//b/./c/")).toEqual({ path: "/a/b/c", parts: ["a", "b", "c"] });
    expect(normaliseName("/abs")).toEqual({ path: "/abs", parts: ["abs"] });
    expect(normaliseName("./")).toEqual({ path: "/", parts: [] });
    expect("error" in normaliseName("a/../b")).toBe(true);
    expect("error" in normaliseName("a\0b")).toBe(true);
    for (const ns of [0n, 1n, 1_500_000_000n, -1_500_000_000n, 1_700_000_000_123_456_789n, 99_999_999_999_000_000_000n]) {
      expect(parsePaxTime(formatPaxTime(ns))).toBe(ns);
    }
    expect(formatPaxTime(1_500_000_000n)).toBe("1.5");
    expect(parsePaxTime("1700000000.1234567891")).toBe(1_700_000_000_123_456_789n);
    expect(parsePaxTime("junk")).toBeUndefined();
    for (const [ma, mi] of [[1, 3], [8, 0], [259, 1048575], [4095, 255]] as const) expect(devNumbers(makedev(ma, mi))).toEqual([BigInt(ma), BigInt(mi)]);
  });
});
