/**
 * The Importer conformance kit. An importer plugin runs it from its own test
 * file, with vitest or node:test, on a source whose content it knows:
 *
 *   import { afterEach, describe, it } from "vitest"; // or "node:test"
 *   import { importerKit } from "coffer/sdk";
 *   importerKit({ describe, it, afterEach }, "myproto", async () => ({
 *     importer: new MyImporter(url),          // a fresh instance each time
 *     expected: [{ pathname: "/", kind: "dir" }, { pathname: "/a.txt", kind: "file", content: "hi\n" }],
 *     cleanup: async () => {},
 *   }));
 *
 * make() is called once per test and must return a fresh importer over the
 * same source (STREAM sources: a fresh stream) with every entry the import
 * yields listed in `expected` (see ExpectedEntry: only the fields given are
 * compared).
 *
 * The kit drives import() as the core does: several workers call next() on
 * one iterator concurrently, each opens and reads the content of the file
 * records it gets, and answers every record once on the `results` stream
 * (a ResultChannel) when done with it. It checks:
 * - origin, type and root are non-empty strings; flags only known bits;
 *   ping() resolves;
 * - every record is well-formed: a normalised '/'-rooted pathname, no
 *   duplicates, a complete fileInfo, symlinks with a target, a linkTarget
 *   naming an earlier record; a "/" record is among them;
 * - exactly the expected entries, with their kinds, sizes, modes, mtimes,
 *   targets, xattrs and hard links, and content equal to the expected bytes
 *   (localPath, when given, holds the same bytes as open());
 * - error records (`error` set) for the entries expected as errors, without
 *   ending the import;
 * - records answered on `results` without being opened do not stall it;
 * - with every answer withheld until the iteration ends (NEEDACK answers
 *   come at checkpoints, the last one after the iteration), the iteration
 *   still ends; every record then gets exactly one answer and close()
 *   resolves, and a NEEDACK importer has read every answer by then;
 * - a second import() on the same instance: rejects for STREAM importers
 *   (their source can be read once; it is the only time the kit calls
 *   import() twice on one), yields the same entries for the others (the core
 *   may make a counting pass);
 * - an abort mid-import ends the iteration with code INTERRUPTED, or ends
 *   it promptly (at most one record per waiting next() after the abort);
 *   an already-aborted signal yields nothing; close() resolves afterwards;
 * - close() resolves after a complete import and after the consumer gave up
 *   early.
 */
import { AssertionError } from "node:assert";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { isAbsolute } from "node:path";
import { LocationFlag } from "../../connectors/flags.js";
import type { Importer, ImportRecord, ImportResult } from "../../connectors/records.js";
import {
  assertPathname,
  checkExpected,
  codeOf,
  DEFAULT_TEST_TIMEOUT_MS,
  DEFAULT_TIMEOUT_MS,
  digestBytes,
  digestStream,
  errorText,
  expectedDigest,
  fixtureTests,
  isEntryKind,
  octal,
  userXattrs,
  within,
} from "./harness.js";
import type { Digest, ExpectedEntry, Harness, KitOptions } from "./harness.js";

export interface ImporterFixture {
  /** A fresh importer (never imported yet). */
  importer: Importer;
  /** Every entry the import must yield, "/" included. */
  expected: ExpectedEntry[];
  cleanup(): Promise<void>;
}

export interface ImporterKitOptions extends KitOptions {
  /** Workers calling next() at once (default 8; the core uses up to 64). */
  concurrency?: number | undefined;
}

/**
 * A results stream for ImportOptions.results: push() answers, end() when
 * every record is answered (or the run failed). One consumer; answers pushed
 * before it iterates are buffered; after the consumer stops early (return())
 * further answers are dropped.
 */
export class ResultChannel<T = ImportResult> implements AsyncIterable<T> {
  private readonly queue: T[] = [];
  private readonly waiting: ((r: IteratorResult<T>) => void)[] = [];
  private closed = false;
  private stopped = false;
  private iterated = false;
  /** Answers pushed so far. */
  pushed = 0;
  /** Answers the consumer has taken so far. */
  taken = 0;

  push(value: T): void {
    if (this.closed) throw new Error("ResultChannel: push() after end()");
    this.pushed++;
    if (this.stopped) return;
    const w = this.waiting.shift();
    if (w !== undefined) {
      this.taken++;
      w({ done: false, value });
    } else this.queue.push(value);
  }

  end(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiting.splice(0)) w({ done: true, value: undefined });
  }

  get ended(): boolean {
    return this.closed;
  }

  /** Whether the importer asked for the stream's iterator. */
  get consumed(): boolean {
    return this.iterated;
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterated) throw new Error("ResultChannel can be iterated once");
    this.iterated = true;
    return {
      next: () => {
        if (this.queue.length > 0) {
          this.taken++;
          return Promise.resolve({ done: false, value: this.queue.shift() as T });
        }
        if (this.closed || this.stopped) return Promise.resolve({ done: true, value: undefined });
        return new Promise((resolve) => this.waiting.push(resolve));
      },
      return: () => {
        this.stopped = true;
        this.queue.length = 0;
        for (const w of this.waiting.splice(0)) w({ done: true, value: undefined });
        return Promise.resolve({ done: true, value: undefined });
      },
    };
  }
}

const KNOWN_FLAGS = Object.values(LocationFlag).reduce((a, b) => a | b, 0);

interface Seen {
  record: ImportRecord;
  /** The content read (open() or localPath), when it was read. */
  content?: Digest;
  contentError?: unknown;
}

interface DriveOptions {
  workers: number;
  /** Open and read file content. */
  read: boolean;
  /** Send no answer before the iteration has ended. */
  withhold: boolean;
  signal?: AbortSignal | undefined;
  onRecord?: ((s: Seen) => void) | undefined;
}

interface Drive {
  seen: Seen[];
  byPath: Map<string, Seen>;
  /** Extended attributes yielded as records of their own (xattrName), by pathname; values when read. */
  xattrRecords: Map<string, { name: string; value?: Uint8Array }[]>;
  xattrCount: number;
  /** What the iteration rejected with, if it did. */
  error?: unknown;
  channel: ResultChannel;
}

export function importerKit(h: Harness, name: string, make: () => Promise<ImporterFixture>, opts: ImporterKitOptions = {}): void {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const workers = Math.max(1, opts.concurrency ?? 8);

  /** Runs one import to its end as the core does; assertion failures propagate, the iteration's own rejection is returned. */
  async function drive(imp: Importer, o: DriveOptions): Promise<Drive> {
    const channel = new ResultChannel();
    const seen: Seen[] = [];
    const byPath = new Map<string, Seen>();
    const held: ImportResult[] = [];
    const out: Drive = { seen, byPath, channel, xattrRecords: new Map(), xattrCount: 0 };
    let failure: unknown;
    let stop = false;
    const it = imp.import({ signal: o.signal, results: channel })[Symbol.asyncIterator]();

    const worker = async (): Promise<void> => {
      while (!stop) {
        let n: IteratorResult<ImportRecord>;
        try {
          n = await within(it.next(), timeoutMs, `${name}: import() next()`);
        } catch (e) {
          if (e instanceof AssertionError) throw e;
          if (!("error" in out)) out.error = e;
          return;
        }
        if (n.done === true) return;
        if (n.value !== null && typeof n.value === "object" && n.value.xattrName !== undefined) {
          await xattrRecord(n.value, out, o.read);
          const answer: ImportResult = { record: n.value };
          if (o.withhold) held.push(answer);
          else channel.push(answer);
          continue;
        }
        const s: Seen = { record: n.value };
        checkRecord(n.value, byPath);
        seen.push(s);
        byPath.set(n.value.pathname, s);
        o.onRecord?.(s);
        if (o.read) await readContent(s);
        const answer: ImportResult = { record: s.record };
        if (s.record.error !== undefined) answer.error = s.record.error;
        else if (s.contentError !== undefined) answer.error = `cannot read: ${errorText(s.contentError)}`;
        if (o.withhold) held.push(answer);
        else channel.push(answer);
      }
    };
    const guarded = async (): Promise<void> => {
      try {
        await worker();
      } catch (e) {
        stop = true;
        failure ??= e;
      }
    };
    try {
      await Promise.all(Array.from({ length: o.workers }, guarded));
      if (failure !== undefined) throw failure;
    } finally {
      for (const a of held) channel.push(a);
      channel.end();
    }
    assert.equal(channel.pushed, seen.length + out.xattrCount, `${name}: the kit answers every record once`);
    return out;
  }

  /** An extended attribute sent as a record of its own (Kloset's way): kept for its entry. */
  async function xattrRecord(r: ImportRecord, out: Drive, read: boolean): Promise<void> {
    assertPathname(r.pathname, `${name}: xattr record`);
    assert.ok(typeof r.xattrName === "string" && r.xattrName !== "", `${r.pathname}: xattrName must be a non-empty string`);
    assert.ok(r.open === undefined || typeof r.open === "function", `${r.pathname}: open must be a function when set`);
    out.xattrCount++;
    const x: { name: string; value?: Uint8Array } = { name: r.xattrName };
    if (read) {
      const parts: Uint8Array[] = [];
      if (r.open !== undefined) {
        const src = await within(r.open(), timeoutMs, `${r.pathname}: open() of xattr ${r.xattrName}`);
        for await (const b of src) parts.push(b);
      }
      x.value = new Uint8Array(Buffer.concat(parts));
    }
    out.xattrRecords.set(r.pathname, [...(out.xattrRecords.get(r.pathname) ?? []), x]);
  }

  function checkRecord(r: ImportRecord, byPath: Map<string, Seen>): void {
    assert.ok(r !== null && typeof r === "object", `${name}: import() yielded ${String(r)}, not a record`);
    assertPathname(r.pathname, `${name}: record`);
    const p = r.pathname;
    assert.ok(!byPath.has(p), `${name}: ${p} yielded twice`);
    const fi = r.fileInfo;
    assert.ok(fi !== null && typeof fi === "object", `${p}: no fileInfo`);
    assert.equal(typeof fi.name, "string", `${p}: fileInfo.name must be a string`);
    assert.ok(isEntryKind(fi.kind), `${p}: fileInfo.kind ${String(fi.kind)} is not an EntryKind`);
    assert.ok(Number.isSafeInteger(fi.size) && fi.size >= 0, `${p}: fileInfo.size ${String(fi.size)} must be a non-negative integer`);
    assert.ok(Number.isInteger(fi.mode) && fi.mode >= 0 && fi.mode <= 0o7777, `${p}: fileInfo.mode ${String(fi.mode)} must be within 0..0o7777`);
    for (const k of ["mtimeNs", "dev", "ino"] as const) assert.equal(typeof fi[k], "bigint", `${p}: fileInfo.${k} must be a bigint`);
    for (const k of ["ctimeNs", "rdev"] as const) {
      assert.ok(fi[k] === undefined || typeof fi[k] === "bigint", `${p}: fileInfo.${k} must be a bigint when set`);
    }
    for (const k of ["uid", "gid", "nlink"] as const) {
      assert.ok(Number.isInteger(fi[k]) && fi[k] >= 0, `${p}: fileInfo.${k} ${String(fi[k])} must be a non-negative integer`);
    }
    if (r.error !== undefined) {
      assert.ok(typeof r.error === "string" && r.error !== "", `${p}: error must be a non-empty string when set`);
      return;
    }
    if (fi.kind === "symlink") assert.ok(typeof r.target === "string" && r.target !== "", `${p}: a symlink record needs a target`);
    assert.ok(r.open === undefined || typeof r.open === "function", `${p}: open must be a function when set`);
    if (r.localPath !== undefined) {
      assert.ok(typeof r.localPath === "string" && isAbsolute(r.localPath), `${p}: localPath must be an absolute path`);
    }
    if (r.linkTarget !== undefined) {
      assertPathname(r.linkTarget, `${p}: linkTarget`);
      const first = byPath.get(r.linkTarget);
      assert.ok(first !== undefined, `${p}: linkTarget ${r.linkTarget} is not an earlier record of this import`);
      assert.equal(first.record.fileInfo.kind, "file", `${p}: linkTarget ${r.linkTarget} is not a regular file`);
    }
    if (r.xattrs !== undefined) {
      assert.ok(Array.isArray(r.xattrs), `${p}: xattrs must be an array`);
      for (const x of r.xattrs) {
        assert.ok(typeof x.name === "string" && x.name !== "" && x.value instanceof Uint8Array, `${p}: malformed xattr`);
      }
    }
  }

  async function readContent(s: Seen): Promise<void> {
    const r = s.record;
    if (r.error !== undefined || r.fileInfo.kind !== "file" || r.linkTarget !== undefined) return;
    let digest: Digest | undefined;
    try {
      if (r.open !== undefined) {
        const src = await within(r.open(), timeoutMs, `${r.pathname}: open()`);
        digest = await digestStream(src, timeoutMs, r.pathname);
      }
      if (r.localPath !== undefined) {
        const local = await within(digestFile(r.localPath), timeoutMs, `${r.pathname}: reading localPath`);
        if (digest !== undefined) assert.deepEqual(local, digest, `${r.pathname}: localPath ${r.localPath} does not hold the bytes open() gives`);
        digest = local;
      }
    } catch (e) {
      if (e instanceof AssertionError) throw e;
      s.contentError = e;
      return;
    }
    s.content = digest ?? digestBytes(new Uint8Array(0)); // no content source: an empty file, as for the core
  }

  /** The content of a file record, through its linkTarget when it has one. */
  function contentOf(s: Seen, byPath: Map<string, Seen>): Seen {
    let cur = s;
    for (let i = 0; i < 100 && cur.record.linkTarget !== undefined; i++) {
      const next = byPath.get(cur.record.linkTarget);
      if (next === undefined) break;
      cur = next;
    }
    return cur;
  }

  function compare(expected: Map<string, ExpectedEntry>, d: Drive, read: boolean): void {
    assert.ok(d.byPath.has("/"), `${name}: the import yields no "/" record`);
    const missing = [...expected.keys()].filter((p) => !d.byPath.has(p)).sort();
    const unexpected = d.seen.map((s) => s.record.pathname).filter((p) => !expected.has(p)).sort();
    assert.deepEqual({ missing, unexpected }, { missing: [], unexpected: [] }, `${name}: the import yields exactly the expected pathnames`);
    for (const e of expected.values()) {
      const s = d.byPath.get(e.pathname) as Seen;
      const r = s.record;
      const p = e.pathname;
      assert.equal(r.fileInfo.kind, e.kind, `${p}: kind`);
      if (e.error === true) {
        assert.ok(r.error !== undefined, `${p}: expected an error record, got none`);
        continue;
      }
      assert.equal(r.error, undefined, `${p}: unexpected error record: ${String(r.error)}`);
      if (e.size !== undefined) assert.equal(r.fileInfo.size, e.size, `${p}: fileInfo.size`);
      if (e.mode !== undefined && e.kind !== "symlink") assert.equal(octal(r.fileInfo.mode), octal(e.mode), `${p}: mode`);
      if (e.mtimeNs !== undefined) assert.equal(r.fileInfo.mtimeNs, e.mtimeNs, `${p}: mtimeNs`);
      if (e.target !== undefined) assert.equal(r.target, e.target, `${p}: symlink target`);
      if (e.xattrs !== undefined) {
        const separate = d.xattrRecords.get(p) ?? [];
        // Values of attributes sent as records are known only when the content was read.
        if (read || separate.length === 0) {
          const all = [...(r.xattrs ?? []), ...separate.map((x) => ({ name: x.name, value: x.value ?? new Uint8Array(0) }))];
          assert.deepEqual(userXattrs(all), userXattrs(e.xattrs), `${p}: user.* xattrs`);
        }
      }
      if (e.sameAs !== undefined) {
        const other = d.byPath.get(e.sameAs);
        assert.ok(other !== undefined, `${p}: sameAs ${e.sameAs} was not imported`);
        const linked =
          r.linkTarget === e.sameAs ||
          other.record.linkTarget === p ||
          (r.fileInfo.nlink > 1 && r.fileInfo.dev === other.record.fileInfo.dev && r.fileInfo.ino === other.record.fileInfo.ino);
        assert.ok(linked, `${p}: expected a hard link to ${e.sameAs} (linkTarget, or the same dev/ino with nlink > 1)`);
      }
      if (!read || e.kind !== "file") continue;
      const c = contentOf(s, d.byPath);
      if (e.contentError === true) {
        assert.ok(c.contentError !== undefined, `${p}: expected reading the content to fail, it gave ${c.content?.size ?? 0} bytes`);
        continue;
      }
      assert.equal(c.contentError, undefined, `${p}: reading the content failed: ${errorText(c.contentError)}`);
      const got = c.content as Digest;
      if (e.size !== undefined) assert.equal(got.size, e.size, `${p}: content size`);
      const want = expectedDigest(e);
      if (want !== undefined) {
        if (want.size !== undefined) assert.equal(got.size, want.size, `${p}: content size`);
        assert.equal(got.sha256, want.sha256, `${p}: content (${got.size} bytes) differs from the expected bytes`);
      }
    }
  }

  async function closes(imp: Importer, when: string): Promise<void> {
    await within(imp.close(), timeoutMs, `${name}: close() ${when}`);
  }

  function isInterrupted(e: unknown): boolean {
    return e instanceof Error && codeOf(e) === "INTERRUPTED";
  }

  h.describe(`Importer conformance: ${name}`, () => {
    const test = fixtureTests(h, make, opts.testTimeoutMs ?? DEFAULT_TEST_TIMEOUT_MS);

    test("describes itself: origin, type and root are non-empty strings, flags known LocationFlag bits; ping() resolves", async (fresh) => {
      const { importer: imp } = await fresh();
      for (const k of ["origin", "type", "root"] as const) {
        assert.ok(typeof imp[k] === "string" && imp[k] !== "", `${name}: ${k} must be a non-empty string, got ${JSON.stringify(imp[k])}`);
      }
      assert.ok(Number.isInteger(imp.flags) && imp.flags >= 0 && imp.flags <= 0xffffffff, `${name}: flags ${imp.flags} must be a uint32`);
      assert.equal(imp.flags & ~KNOWN_FLAGS, 0, `${name}: flags 0x${imp.flags.toString(16)} has bits LocationFlag does not define`);
      await within(imp.ping(), timeoutMs, `${name}: ping()`);
      await closes(imp, "after ping()");
    });

    test(`imports exactly the expected entries with their content, read by ${workers} concurrent workers answering each record on results; error records do not end the import; close() resolves`, async (fresh) => {
      const f = await fresh();
      const expected = checkExpected(f.expected, name);
      const d = await drive(f.importer, { workers, read: true, withhold: false });
      assert.equal(d.error, undefined, `${name}: the import failed: ${errorText(d.error)}`);
      compare(expected, d, true);
      await closes(f.importer, "after an import");
    });

    test("records answered on results without ever being opened do not stall the import", async (fresh) => {
      const f = await fresh();
      const expected = checkExpected(f.expected, name);
      const d = await drive(f.importer, { workers, read: false, withhold: false });
      assert.equal(d.error, undefined, `${name}: the import failed: ${errorText(d.error)}`);
      compare(expected, d, false);
      await closes(f.importer, "after an import whose files were never opened");
    });

    test("with every answer withheld until the iteration ends (NEEDACK answers come at checkpoints), a single reader's iteration ends; then each record gets exactly one answer, close() resolves, and NEEDACK importers have read them all", async (fresh) => {
      const f = await fresh();
      const expected = checkExpected(f.expected, name);
      const d = await drive(f.importer, { workers: 1, read: true, withhold: true });
      assert.equal(d.error, undefined, `${name}: the import failed: ${errorText(d.error)}`);
      compare(expected, d, true);
      await closes(f.importer, "after the results stream ended");
      if ((f.importer.flags & LocationFlag.NEEDACK) !== 0) {
        assert.ok(d.channel.consumed, `${name}: a NEEDACK importer must read its results`);
        assert.equal(d.channel.taken, d.channel.pushed, `${name}: a NEEDACK importer must have read every answer by the time close() resolves`);
      }
    });

    test("a second import(): STREAM importers reject it, others yield the same entries again", async (fresh) => {
      const f = await fresh();
      const first = await drive(f.importer, { workers, read: true, withhold: false });
      assert.equal(first.error, undefined, `${name}: the first import failed: ${errorText(first.error)}`);
      if ((f.importer.flags & LocationFlag.STREAM) !== 0) {
        let yielded = 0;
        const again = async (): Promise<void> => {
          for await (const _r of f.importer.import({ results: new ResultChannel() })) yielded++;
        };
        const err = await within(
          again().then(
            () => undefined,
            (e: unknown) => e ?? new Error(String(e)),
          ),
          timeoutMs,
          `${name}: second import()`,
        );
        assert.ok(err !== undefined, `${name}: a STREAM importer must reject a second import(); it yielded ${yielded} records`);
        assert.equal(yielded, 0, `${name}: a STREAM importer yielded ${yielded} records on its second import()`);
      } else {
        const second = await drive(f.importer, { workers, read: true, withhold: false });
        assert.equal(second.error, undefined, `${name}: the second import failed: ${errorText(second.error)}`);
        compare(checkExpected(f.expected, name), second, true);
      }
      await closes(f.importer, "after two imports");
    });

    test("an abort mid-import ends the iteration with INTERRUPTED, or promptly; close() still resolves", async (fresh) => {
      const f = await fresh();
      const ac = new AbortController();
      let afterAbort = 0;
      const d = await drive(f.importer, {
        workers,
        read: false,
        withhold: false,
        signal: ac.signal,
        onRecord: () => {
          if (ac.signal.aborted) afterAbort++;
          else ac.abort();
        },
      });
      assert.ok(d.seen.length >= 1, `${name}: nothing was imported before the abort`);
      if (d.error !== undefined) {
        assert.ok(isInterrupted(d.error), `${name}: an aborted import must end with code INTERRUPTED, got ${errorText(d.error)} (code ${String(codeOf(d.error))})`);
      } else {
        assert.ok(
          afterAbort <= workers,
          `${name}: the import went on for ${afterAbort} records after the abort (${workers} next() calls were waiting)`,
        );
      }
      await closes(f.importer, "after an aborted import");
    });

    test("import() with an already-aborted signal yields nothing (INTERRUPTED); close() resolves", async (fresh) => {
      const f = await fresh();
      const ac = new AbortController();
      ac.abort();
      const d = await drive(f.importer, { workers: 1, read: false, withhold: false, signal: ac.signal });
      assert.equal(d.seen.length, 0, `${name}: an import with an aborted signal yielded ${d.seen.map((s) => s.record.pathname).join(", ")}`);
      if (d.error !== undefined) {
        assert.ok(isInterrupted(d.error), `${name}: expected code INTERRUPTED, got ${errorText(d.error)} (code ${String(codeOf(d.error))})`);
      }
      await closes(f.importer, "after an aborted import");
    });

    test("close() resolves after the consumer gave up early (the backup failed)", async (fresh) => {
      const f = await fresh();
      const channel = new ResultChannel();
      const it = f.importer.import({ results: channel })[Symbol.asyncIterator]();
      const n = await within(it.next(), timeoutMs, `${name}: import() next()`);
      assert.ok(n.done !== true, `${name}: the import yields nothing`);
      await within(Promise.resolve(it.return?.()), timeoutMs, `${name}: the iterator's return()`);
      channel.end(); // a failed backup: the first record was never answered
      await closes(f.importer, "after the consumer stopped early");
    });
  });
}

async function digestFile(path: string): Promise<Digest> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const piece of createReadStream(path)) {
    hash.update(piece as Buffer);
    size += (piece as Buffer).byteLength;
  }
  return { size, sha256: hash.digest("hex") };
}
