/**
 * The Exporter conformance kit. An exporter plugin runs it from its own test
 * file, with vitest or node:test, on a target it can read back:
 *
 *   import { afterEach, describe, it } from "vitest"; // or "node:test"
 *   import { exporterKit } from "coffer/sdk";
 *   exporterKit({ describe, it, afterEach }, "myproto", async () => ({
 *     exporter: new MyExporter(url),            // a fresh, empty target each time
 *     readBack: async () => listTarget(url),    // ExpectedEntry[] ("/" = the target)
 *     supports: { symlinks: true, hardlinks: false },
 *     cleanup: async () => {},
 *   }));
 *
 * readBack() describes what the exporter wrote, after finish(): for a tree
 * target, one ExpectedEntry per entry (fields left out are not compared,
 * except that files need content or sha256 and symlinks a target; mtimes
 * are compared within 1 ms, after rounding down to `mtimeResolutionNs`
 * when the target keeps no finer); for an exporter that keeps only file
 * content (stdout), `{ concatenated }`: every byte written, which must be the
 * content of the files exported, in the order export() was called.
 * `supports` says which optional kinds to export (default none); xattrs
 * default to the EXPORTXATTR flag. escaped(), when given, lists what the
 * exporter created outside its target (it must stay empty).
 *
 * The kit exports records as the core does (directories before their
 * children and awaited, files a few at a time, hard links one at a time)
 * and checks:
 * - origin, type and root are non-empty strings, flags known bits, ping();
 * - a standard set (root, nested directories, empty, small and 3 MiB files,
 *   the big one as pieces with zero pieces without data, one trailing,
 *   odd names, modes, mtimes; symlinks, hard links, a FIFO and xattrs on a
 *   file, a read-only file and a directory when supported) gets exactly one
 *   successful result per record, finish() and close() resolve, and
 *   readBack() gives back what was exported;
 * - unsafe pathnames ("/../evil", "/a/../../evil", relative, NUL; and a file
 *   under a symlink pointing out of the target) get an error (a rejection
 *   or an error result), nothing lands outside the target, later records
 *   still succeed;
 * - a content source that fails gives that record an error, later records
 *   succeed;
 * - an already-aborted signal makes export() reject with INTERRUPTED
 *   without reading content or writing anything; an abort during a file's
 *   content makes it reject with INTERRUPTED, and close() still resolves;
 * - finish() and close() resolve when nothing was exported.
 */
import { AssertionError } from "node:assert";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { LocationFlag } from "../../connectors/flags.js";
import type { ContentPiece, ExportRecord, ExportResult, Exporter, FileInfo, Xattr } from "../../connectors/records.js";
import {
  checkExpected,
  codeOf,
  DEFAULT_TEST_TIMEOUT_MS,
  DEFAULT_TIMEOUT_MS,
  digestBytes,
  errorText,
  expectedDigest,
  fixtureTests,
  linkGroups,
  octal,
  userXattrs,
  within,
} from "./harness.js";
import type { ExpectedEntry, Harness, KitOptions } from "./harness.js";

export interface ExporterSupports {
  symlinks?: boolean | undefined;
  hardlinks?: boolean | undefined;
  fifos?: boolean | undefined;
  /** Default: whether the exporter has the EXPORTXATTR flag. */
  xattrs?: boolean | undefined;
  /** The target keeps mtimes rounded down to this many nanoseconds (SFTP: 1 s); default exact. */
  mtimeResolutionNs?: bigint | undefined;
}

/** What a content-only exporter (stdout) can give back: every byte it wrote. */
export interface ContentOnly {
  concatenated: Uint8Array;
}

export interface ExporterFixture {
  /** A fresh exporter on an empty target. */
  exporter: Exporter;
  /** What is at the target now (see the file comment). */
  readBack(): Promise<ExpectedEntry[] | ContentOnly>;
  /** What the exporter created outside its target, as paths; [] when nothing. */
  escaped?(): Promise<string[]>;
  supports?: ExporterSupports | undefined;
  cleanup(): Promise<void>;
}

export type ExporterKitOptions = KitOptions;

const KNOWN_FLAGS = Object.values(LocationFlag).reduce((a, b) => a | b, 0);
const KiB = 1024;
const MiB = 1024 * KiB;
/** Tolerance on mtimes read back (Node's utimes takes seconds as a double). */
const MTIME_SLACK_NS = 1_000_000n;

interface Item {
  record: ExportRecord;
  expect: ExpectedEntry;
  /** A regular file's full content. */
  bytes?: Uint8Array;
}

interface Outcome {
  item: Item;
  result?: ExportResult;
  rejection?: unknown;
}

/** Builds records and what reading them back must give. */
class Records {
  readonly items: Item[] = [];
  private ino = 1000n;
  private tick = 0n;
  private readonly uid = process.getuid?.() ?? 0;
  private readonly gid = process.getgid?.() ?? 0;

  private info(pathname: string, kind: FileInfo["kind"], mode: number, size = 0, nlink = 1, ino?: bigint): FileInfo {
    // Distinct mtimes, with a sub-second part that is not a whole millisecond.
    const mtimeNs = 1_600_000_000_000_000_000n + this.tick++ * 86_400_000_000_000n + 123_456_789n;
    return {
      name: pathname === "/" ? "" : pathname.slice(pathname.lastIndexOf("/") + 1),
      kind,
      size,
      mode,
      mtimeNs,
      dev: 1n,
      ino: ino ?? this.ino++,
      uid: this.uid,
      gid: this.gid,
      nlink,
    };
  }

  private add(record: ExportRecord, bytes?: Uint8Array, sameAs?: string): Item {
    const fi = record.fileInfo;
    const expect: ExpectedEntry = { pathname: record.pathname, kind: fi.kind, mode: fi.mode, mtimeNs: fi.mtimeNs, xattrs: record.xattrs ?? [] };
    if (record.target !== undefined) expect.target = record.target;
    if (bytes !== undefined) {
      expect.size = bytes.byteLength;
      expect.sha256 = digestBytes(bytes).sha256;
    }
    if (sameAs !== undefined) expect.sameAs = sameAs;
    const item: Item = bytes !== undefined ? { record, expect, bytes } : { record, expect };
    this.items.push(item);
    return item;
  }

  dir(pathname: string, mode: number, xattrs?: Xattr[]): Item {
    const record: ExportRecord = { pathname, fileInfo: this.info(pathname, "dir", mode) };
    if (xattrs !== undefined) record.xattrs = xattrs;
    return this.add(record);
  }

  file(pathname: string, content: Uint8Array | string, mode: number, o: { pieces?: ContentPiece[]; xattrs?: Xattr[] } = {}): Item {
    const bytes = typeof content === "string" ? new Uint8Array(Buffer.from(content, "utf8")) : content;
    const pieces = o.pieces ?? (bytes.byteLength === 0 ? [] : [{ offset: 0, length: bytes.byteLength, data: bytes }]);
    const record: ExportRecord = { pathname, fileInfo: this.info(pathname, "file", mode, bytes.byteLength), content: () => iterate(pieces) };
    if (o.xattrs !== undefined) record.xattrs = o.xattrs;
    return this.add(record, bytes);
  }

  /** A file whose content() is `content` (given as is), recorded as expected `bytes`. */
  custom(pathname: string, bytes: Uint8Array, content: () => AsyncIterable<ContentPiece>): Item {
    return this.add({ pathname, fileInfo: this.info(pathname, "file", 0o644, bytes.byteLength), content }, bytes);
  }

  symlink(pathname: string, target: string): Item {
    return this.add({ pathname, fileInfo: this.info(pathname, "symlink", 0o777, target.length), target });
  }

  fifo(pathname: string, mode: number): Item {
    return this.add({ pathname, fileInfo: this.info(pathname, "fifo", mode) });
  }

  /** Regular files sharing one inode (as the core gives them: each with the whole content). */
  hardlinks(pathnames: string[], content: Uint8Array, mode: number): void {
    const ino = this.ino++;
    const first = this.info(pathnames[0] as string, "file", mode, content.byteLength, pathnames.length, ino);
    pathnames.forEach((pathname, i) => {
      const fileInfo = { ...first, name: pathname.slice(pathname.lastIndexOf("/") + 1) };
      const pieces = [{ offset: 0, length: content.byteLength, data: content }];
      this.add({ pathname, fileInfo, content: () => iterate(pieces) }, content, i === 0 ? undefined : pathnames[0]);
    });
  }
}

async function* iterate(pieces: readonly ContentPiece[]): AsyncGenerator<ContentPiece> {
  for (const p of pieces) {
    await Promise.resolve();
    yield p;
  }
}

function bytes(n: number): Uint8Array {
  const b = randomBytes(n);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function text(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, "utf8"));
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

export function exporterKit(h: Harness, name: string, make: () => Promise<ExporterFixture>, opts: ExporterKitOptions = {}): void {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  function supportsOf(f: ExporterFixture): Required<{ [K in Exclude<keyof ExporterSupports, "mtimeResolutionNs">]: boolean }> & { mtimeResolutionNs: bigint } {
    const s = f.supports ?? {};
    return {
      symlinks: s.symlinks === true,
      hardlinks: s.hardlinks === true,
      fifos: s.fifos === true,
      xattrs: s.xattrs ?? (f.exporter.flags & LocationFlag.EXPORTXATTR) !== 0,
      mtimeResolutionNs: s.mtimeResolutionNs ?? 1n,
    };
  }

  function standard(f: ExporterFixture): Records {
    const sup = supportsOf(f);
    const x = (tag: string): Xattr[] => [
      { name: "user.coffer.kit", value: text(`${tag} ✓`) },
      { name: "user.coffer.bin", value: new Uint8Array([0, 1, 0x3d, 0x0a, 0xff]) },
    ];
    const r = new Records();
    r.dir("/", 0o755);
    r.dir("/dir", 0o750);
    r.dir("/dir/sub", 0o700, sup.xattrs ? x("dir") : undefined);
    r.file("/dir/sub/deep.txt", "deep down\n", 0o644);
    r.file("/empty", new Uint8Array(0), 0o600);
    r.file("/small.txt", "hello, coffer\n", 0o644);
    // 3 MiB: data, data, a 1 MiB zero piece, data, a trailing 512 KiB zero piece (no data in zero pieces).
    const big = bytes(3 * MiB);
    big.fill(0, MiB, 2 * MiB);
    big.fill(0, 2 * MiB + 512 * KiB);
    r.file("/big.bin", big, 0o640, {
      pieces: [
        { offset: 0, length: 512 * KiB, data: big.subarray(0, 512 * KiB) },
        { offset: 512 * KiB, length: 512 * KiB, data: big.subarray(512 * KiB, MiB) },
        { offset: MiB, length: MiB, zero: true },
        { offset: 2 * MiB, length: 512 * KiB, data: big.subarray(2 * MiB, 2 * MiB + 512 * KiB) },
        { offset: 2 * MiB + 512 * KiB, length: 512 * KiB, zero: true },
      ],
    });
    r.file("/exec.sh", "#!/bin/sh\necho hi\n", 0o755);
    r.file("/setuid", "suid\n", 0o4755);
    r.dir("/name with spaces é", 0o755);
    r.file("/name with spaces é/ünïcödé ✓ #1.txt", "odd names\n", 0o644);
    if (sup.symlinks) {
      r.symlink("/dir/link", "../small.txt");
      r.symlink("/dangling", "does/not/exist");
    }
    if (sup.hardlinks) {
      r.dir("/links", 0o755);
      r.hardlinks(["/links/a", "/links/b"], bytes(10_000), 0o644);
    }
    if (sup.fifos) r.fifo("/fifo", 0o640);
    if (sup.xattrs) {
      r.file("/xattr.txt", "with attributes\n", 0o644, { xattrs: x("file") });
      r.file("/xattr-ro.txt", "read-only with attributes\n", 0o444, { xattrs: x("read-only file") });
    }
    return r;
  }

  /** Calls export() once, bounded in time; a rejection is an outcome, not a failure. */
  async function one(exp: Exporter, item: Item, signal?: AbortSignal): Promise<Outcome> {
    const p = item.record.pathname;
    let promise: Promise<ExportResult>;
    try {
      promise = exp.export(item.record, signal !== undefined ? { signal } : {});
    } catch (e) {
      assert.fail(`${name}: export(${JSON.stringify(p)}) threw synchronously instead of returning a rejected promise: ${errorText(e)}`);
    }
    assert.ok(promise !== null && typeof promise === "object" && typeof promise.then === "function", `${name}: export() must return a promise`);
    try {
      const result = await within(promise, timeoutMs, `${name}: export(${JSON.stringify(p)})`);
      assert.ok(result !== null && typeof result === "object", `${name}: export(${JSON.stringify(p)}) resolved to ${String(result)}, not an ExportResult`);
      assert.equal(result.pathname, p, `${name}: the ExportResult names another pathname`);
      assert.ok(result.error === undefined || (typeof result.error === "string" && result.error !== ""), `${name}: ExportResult.error must be a non-empty string when set`);
      return { item, result };
    } catch (e) {
      if (e instanceof AssertionError) throw e;
      return { item, rejection: e };
    }
  }

  /** Exports items as the core does: directories awaited, files up to 4 at once, hard-linked files alone. */
  async function exportAll(exp: Exporter, items: readonly Item[], signal?: AbortSignal): Promise<Outcome[]> {
    const outcomes: Outcome[] = [];
    const inflight = new Set<Promise<void>>();
    const start = (item: Item): Promise<void> => {
      const p: Promise<void> = one(exp, item, signal).then((o) => {
        outcomes.push(o);
      });
      const tracked = p.finally(() => inflight.delete(tracked));
      inflight.add(tracked);
      return tracked;
    };
    const drain = async (): Promise<void> => {
      while (inflight.size > 0) await Promise.all([...inflight]);
    };
    try {
      for (const item of items) {
        const fi = item.record.fileInfo;
        if (fi.kind === "dir" || (fi.kind === "file" && fi.nlink > 1)) {
          await drain();
          await start(item);
          continue;
        }
        while (inflight.size >= 4) await Promise.race([...inflight]);
        void start(item);
      }
      await drain();
    } catch (e) {
      await Promise.allSettled([...inflight]);
      throw e;
    }
    return items.map((item) => outcomes.find((o) => o.item === item) as Outcome);
  }

  function failure(o: Outcome): string | undefined {
    if ("rejection" in o) return `rejected: ${errorText(o.rejection)}`;
    return o.result?.error;
  }

  function assertSucceeded(outcomes: readonly Outcome[]): void {
    const failed = outcomes.filter((o) => failure(o) !== undefined).map((o) => `${o.item.record.pathname}: ${failure(o) as string}`);
    assert.deepEqual(failed, [], `${name}: every record should be exported`);
  }

  async function finishAndClose(exp: Exporter, when: string): Promise<void> {
    await within(exp.finish(), timeoutMs, `${name}: finish() ${when}`);
    await within(exp.close(), timeoutMs, `${name}: close() ${when}`);
  }

  async function readBack(f: ExporterFixture): Promise<ExpectedEntry[] | ContentOnly> {
    const got = await within(f.readBack(), timeoutMs, `${name}: the fixture's readBack()`);
    if (!Array.isArray(got)) {
      assert.ok(got !== null && typeof got === "object" && got.concatenated instanceof Uint8Array, `${name}: readBack() must give ExpectedEntry[] or { concatenated }`);
    }
    return got;
  }

  /** What a content-only exporter must have written for these items. */
  function concatenation(items: readonly Item[]): Uint8Array {
    return concat(items.filter((i) => i.bytes !== undefined).map((i) => i.bytes as Uint8Array));
  }

  function assertConcatenated(got: ContentOnly, want: Uint8Array, what: string): void {
    const g = digestBytes(got.concatenated);
    const w = digestBytes(want);
    assert.equal(g.size, w.size, `${name}: ${what}: ${g.size} bytes written, expected ${w.size}`);
    assert.equal(g.sha256, w.sha256, `${name}: ${what}: the bytes written differ from the files' content in export order`);
  }

  function compareTree(items: readonly Item[], got: ExpectedEntry[], sup: ReturnType<typeof supportsOf>): void {
    const have = checkExpected(got, `${name}: readBack()`);
    const want = new Map(items.map((i) => [i.record.pathname, i.expect]));
    const missing = [...want.keys()].filter((p) => !have.has(p)).sort();
    const unexpected = [...have.keys()].filter((p) => !want.has(p)).sort();
    assert.deepEqual({ missing, unexpected }, { missing: [], unexpected: [] }, `${name}: the target holds exactly the exported entries`);
    for (const e of want.values()) {
      const g = have.get(e.pathname) as ExpectedEntry;
      const p = e.pathname;
      assert.equal(g.kind, e.kind, `${p}: kind`);
      if (e.kind === "file") {
        const gd = expectedDigest(g);
        assert.ok(gd !== undefined, `${p}: readBack() must give the content (or sha256) of regular files`);
        const size = g.size ?? gd.size;
        if (size !== undefined) assert.equal(size, e.size, `${p}: size`);
        assert.equal(gd.sha256, e.sha256, `${p}: content differs`);
      }
      if (e.kind === "symlink") assert.equal(g.target, e.target, `${p}: symlink target`);
      if (g.mode !== undefined && e.kind !== "symlink") assert.equal(octal(g.mode), octal(e.mode), `${p}: mode`);
      if (g.mtimeNs !== undefined && e.mtimeNs !== undefined) {
        const want = e.mtimeNs - (((e.mtimeNs % sup.mtimeResolutionNs) + sup.mtimeResolutionNs) % sup.mtimeResolutionNs);
        const diff = g.mtimeNs > want ? g.mtimeNs - want : want - g.mtimeNs;
        assert.ok(diff <= MTIME_SLACK_NS, `${p}: mtime ${g.mtimeNs} ns, expected ${want} ns (within 1 ms)`);
      }
      if (sup.xattrs) assert.deepEqual(userXattrs(g.xattrs), userXattrs(e.xattrs), `${p}: user.* xattrs`);
    }
    if (sup.hardlinks) assert.deepEqual(linkGroups(got), linkGroups([...want.values()]), `${name}: hard links`);
  }

  h.describe(`Exporter conformance: ${name}`, () => {
    const test = fixtureTests(h, make, opts.testTimeoutMs ?? DEFAULT_TEST_TIMEOUT_MS);

    test("describes itself: origin, type and root are non-empty strings, flags known LocationFlag bits; ping() resolves", async (fresh) => {
      const { exporter: exp } = await fresh();
      for (const k of ["origin", "type", "root"] as const) {
        assert.ok(typeof exp[k] === "string" && exp[k] !== "", `${name}: ${k} must be a non-empty string, got ${JSON.stringify(exp[k])}`);
      }
      assert.ok(Number.isInteger(exp.flags) && exp.flags >= 0 && exp.flags <= 0xffffffff, `${name}: flags ${exp.flags} must be a uint32`);
      assert.equal(exp.flags & ~KNOWN_FLAGS, 0, `${name}: flags 0x${exp.flags.toString(16)} has bits LocationFlag does not define`);
      await within(exp.ping(), timeoutMs, `${name}: ping()`);
      await within(exp.close(), timeoutMs, `${name}: close() after ping()`);
    });

    test("exports the standard records (one successful result each), finish() and close() resolve, and reads them back", async (fresh) => {
      const f = await fresh();
      const { items } = standard(f);
      const outcomes = await exportAll(f.exporter, items);
      assertSucceeded(outcomes);
      await finishAndClose(f.exporter, "after the standard records");
      const got = await readBack(f);
      if (Array.isArray(got)) compareTree(items, got, supportsOf(f));
      else assertConcatenated(got, concatenation(items), "standard records");
    });

    test("unsafe pathnames get an error, nothing is written outside the target, and later records still succeed", async (fresh) => {
      const f = await fresh();
      const sup = supportsOf(f);
      const r = new Records();
      const marker = `EVIL-${randomBytes(8).toString("hex")}\n`;
      const safe: Item[] = [r.dir("/", 0o755), r.file("/before.txt", "before\n", 0o644)];
      const unsafe: Item[] = [
        r.file("/../evil", marker, 0o644),
        r.file("/inside/../../evil2", marker, 0o644),
        r.file("relative-evil", marker, 0o644),
        r.file("/nul\0evil", marker, 0o644),
        r.dir("/../evil-dir", 0o755),
      ];
      if (sup.symlinks) {
        safe.push(r.symlink("/up", ".."));
        unsafe.push(r.file("/up/evil-through-symlink", marker, 0o644));
      }
      safe.push(r.file("/after.txt", "after\n", 0o644));
      // One at a time: the symlink is in place before a record tries to write through it.
      const outcomes: Outcome[] = [];
      for (const item of r.items) outcomes.push(await one(f.exporter, item));
      for (const o of outcomes) {
        const p = JSON.stringify(o.item.record.pathname);
        if (unsafe.includes(o.item)) assert.ok(failure(o) !== undefined, `${name}: ${p} is unsafe and must get an error (a rejection or an ExportResult with error); it was exported`);
        else assert.equal(failure(o), undefined, `${name}: ${p} should be exported`);
      }
      await finishAndClose(f.exporter, "after unsafe records");
      if (f.escaped !== undefined) assert.deepEqual(await within(f.escaped(), timeoutMs, `${name}: escaped()`), [], `${name}: written outside the target`);
      const got = await readBack(f);
      if (Array.isArray(got)) compareTree(safe, got, sup);
      else assertConcatenated(got, concatenation(safe), "safe records around unsafe ones");
    });

    test("a content source that fails gives that record an error; later records still succeed", async (fresh) => {
      const f = await fresh();
      const r = new Records();
      r.dir("/", 0o755);
      const broken = r.custom("/broken.bin", bytes(256 * KiB), async function* () {
        yield { offset: 0, length: 64 * KiB, data: bytes(64 * KiB) };
        throw new Error("the repository failed mid-file");
      });
      const after = r.file("/after.txt", "after the failure\n", 0o644);
      const [, b, a] = await exportAll(f.exporter, r.items);
      assert.ok(failure(b as Outcome) !== undefined, `${name}: a file whose content failed must get an error; it was reported exported`);
      assert.equal(failure(a as Outcome), undefined, `${name}: /after.txt should be exported`);
      await finishAndClose(f.exporter, "after a failed file");
      const got = await readBack(f);
      if (Array.isArray(got)) {
        // The failed file may be left partly written; everything else must be right.
        compareTree(
          r.items.filter((i) => i !== broken),
          got.filter((g) => g.pathname !== "/broken.bin"),
          supportsOf(f),
        );
      } else {
        const want = after.bytes as Uint8Array;
        const tail = got.concatenated.subarray(Math.max(0, got.concatenated.byteLength - want.byteLength));
        assert.deepEqual(Buffer.from(tail), Buffer.from(want), `${name}: the output must end with /after.txt's content`);
      }
    });

    test("an already-aborted signal: export() rejects with INTERRUPTED, reads no content and writes nothing", async (fresh) => {
      const f = await fresh();
      const r = new Records();
      const root = r.dir("/", 0o755);
      let pulled = false;
      const aborted = [
        r.dir("/aborted-dir", 0o755),
        r.custom("/aborted.txt", text("never\n"), async function* () {
          pulled = true;
          yield { offset: 0, length: 6, data: text("never\n") };
        }),
      ];
      assertSucceeded(await exportAll(f.exporter, [root]));
      const ac = new AbortController();
      ac.abort();
      for (const item of aborted) {
        const o = await one(f.exporter, item, ac.signal);
        const p = item.record.pathname;
        assert.ok("rejection" in o, `${name}: export(${p}) with an aborted signal must reject; it resolved ${JSON.stringify(o.result)}`);
        assert.equal(codeOf(o.rejection), "INTERRUPTED", `${name}: export(${p}) with an aborted signal: expected code INTERRUPTED, got ${errorText(o.rejection)}`);
      }
      assert.equal(pulled, false, `${name}: content was read for an aborted export`);
      await finishAndClose(f.exporter, "after aborted exports");
      const got = await readBack(f);
      if (Array.isArray(got)) compareTree([root], got, supportsOf(f));
      else assertConcatenated(got, new Uint8Array(0), "aborted exports");
    });

    test("an abort during a file's content makes export() reject with INTERRUPTED; close() still resolves", async (fresh) => {
      const f = await fresh();
      const r = new Records();
      const root = r.dir("/", 0o755);
      const ac = new AbortController();
      const file = r.custom("/interrupted.bin", bytes(512 * KiB), async function* () {
        yield { offset: 0, length: 128 * KiB, data: bytes(128 * KiB) };
        ac.abort();
        for (let i = 1; i < 4; i++) yield { offset: i * 128 * KiB, length: 128 * KiB, data: bytes(128 * KiB) };
      });
      assertSucceeded(await exportAll(f.exporter, [root]));
      const o = await one(f.exporter, file, ac.signal);
      assert.ok("rejection" in o, `${name}: an export aborted mid-content must reject; it resolved ${JSON.stringify(o.result)}`);
      assert.equal(codeOf(o.rejection), "INTERRUPTED", `${name}: expected code INTERRUPTED, got ${errorText(o.rejection)}`);
      await within(f.exporter.close(), timeoutMs, `${name}: close() after an interrupted export`);
    });

    test("finish() and close() resolve when nothing was exported, and nothing is written", async (fresh) => {
      const f = await fresh();
      await finishAndClose(f.exporter, "with nothing exported");
      const got = await readBack(f);
      if (Array.isArray(got)) {
        assert.deepEqual(
          got.map((g) => g.pathname).filter((p) => p !== "/"),
          [],
          `${name}: entries appeared although nothing was exported`,
        );
      } else assertConcatenated(got, new Uint8Array(0), "nothing exported");
    });
  });
}
