/**
 * backup() (src/snapshot/backup/backup.ts) against scripted importers on a
 * memory store: the result stream (one answer per record), NEEDACK
 * acknowledgements released only by committed checkpoints, checkpoints
 * superseded by the final snapshot, resuming from a checkpoint, STREAM
 * sources imported once, hard links given by linkTarget, and stores that
 * fail or lag behind (test/helpers/faults.ts).
 */
import { describe, expect, it } from "vitest";
import { LocationFlag, Resource } from "../../src/connectors/flags.js";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import type { FileInfo, ImportOptions, Importer, ImportRecord, ImportResult } from "../../src/connectors/records.js";
import { Repository } from "../../src/repository/repository.js";
import { backup } from "../../src/snapshot/backup/backup.js";
import type { CheckpointPolicy } from "../../src/snapshot/backup/checkpointer.js";
import type { BackupEvent } from "../../src/snapshot/backup/events.js";
import { isPartial } from "../../src/snapshot/header.js";
import { fileBytes } from "../../src/snapshot/restore/content.js";
import { listSnapshots, resolveSnapshot } from "../../src/snapshot/snapshots.js";
import { TreeReader } from "../../src/snapshot/tree-reader.js";
import { CofferError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";
import { BlobType } from "../../src/repository/codec.js";
import { check } from "../../src/snapshot/check.js";
import { eventuallyConsistent, failing, recording } from "../helpers/faults.js";
import { prng } from "../helpers/prng.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };

async function makeRepo(store = new MemoryStore()): Promise<{ repo: Repository; store: MemoryStore }> {
  await Repository.create(store, { passphrase: null, packSize: 256 * 1024, kdf: KDF });
  return { repo: await Repository.open(store, { passphrase: async () => null }), store };
}

async function reopen(store: MemoryStore): Promise<Repository> {
  return Repository.open(store.view({ readOnly: true }), { passphrase: async () => null });
}

function info(name: string, kind: "dir" | "file", ino = 0): FileInfo {
  return { name, kind, size: 0, mode: kind === "dir" ? 0o755 : 0o644, mtimeNs: 1_700_000_000_000_000_000n, dev: 0n, ino: BigInt(ino), uid: 0, gid: 0, nlink: 1 };
}

interface Planned {
  pathname: string;
  kind: "dir" | "file";
  content?: Uint8Array;
  error?: string;
  openFails?: boolean;
  linkTarget?: string;
}

function plan(files: number, size = 40_000): Planned[] {
  const out: Planned[] = [{ pathname: "/", kind: "dir" }, { pathname: "/d", kind: "dir" }];
  for (let i = 0; i < files; i++) out.push({ pathname: `/d/f${String(i).padStart(3, "0")}`, kind: "file", content: prng(i + 1, size + i) });
  return out;
}

/** An importer yielding planned records (optionally slowly, optionally failing after some), collecting the answers it gets. */
class ScriptedImporter implements Importer {
  readonly origin = "test";
  readonly type = "scripted";
  readonly root = "/scripted";
  readonly results: ImportResult[] = [];
  resultsEnded = false;
  imports = 0;
  closed = false;
  /** Called with each answer as it arrives. */
  onResult: ((r: ImportResult) => Promise<void> | void) | null = null;

  constructor(
    readonly flags: number,
    private readonly records: Planned[],
    private readonly o: { failAfter?: number; failWhen?: () => boolean; hold?: { after: number; until: Promise<void> } } = {},
  ) {}

  async ping(): Promise<void> {}

  async *import(opts: ImportOptions = {}): AsyncGenerator<ImportRecord> {
    this.imports++;
    if (this.flags & LocationFlag.STREAM && this.imports > 1) throw new Error("STREAM importer imported twice");
    const collecting = (async () => {
      if (!opts.results) return;
      for await (const r of opts.results) {
        this.results.push(r);
        await this.onResult?.(r);
      }
      this.resultsEnded = true;
    })();
    collecting.catch(() => {});
    let n = 0;
    for (const p of this.records) {
      if (this.o.failAfter !== undefined && n >= this.o.failAfter) throw new CofferError("IO", "source went away");
      n++;
      if (this.o.failWhen?.()) throw new CofferError("IO", "source went away");
      if (this.o.hold && n === this.o.hold.after) await this.o.hold.until; // a gate the test opens
      const rec: ImportRecord = { pathname: p.pathname, fileInfo: { ...info(p.pathname.split("/").at(-1) ?? "", p.kind), size: p.content?.byteLength ?? 0 } };
      if (p.error) rec.error = p.error;
      if (p.linkTarget) rec.linkTarget = p.linkTarget;
      if (p.kind === "file") {
        rec.open = async () => {
          if (p.openFails || p.linkTarget) throw new CofferError("IO", `cannot open ${p.pathname}`);
          return (async function* () {
            yield p.content!;
          })();
        };
      }
      yield rec;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** A checkpoint as soon as content was read since the last one (and none is committing): no timer involved. */
const EVERY_FILE: CheckpointPolicy = { intervalMs: 0, bytes: 1 };

async function run(repo: Repository, imp: Importer, checkpoints?: CheckpointPolicy) {
  return backup(repo, { importer: imp, hostname: "h", username: "u", os: "linux", arch: "x64", workers: 0, checkpoints });
}

async function contentAt(repo: Repository, snapId: Uint8Array, path: string): Promise<Uint8Array | undefined> {
  const header = (await listSnapshots(repo, undefined, { superseded: true })).snapshots.find((h) => toHex(h.id) === toHex(snapId))!;
  const e = await new TreeReader(repo).lookup(header.root, path);
  if (!e || e.info.kind !== "file" || e.error !== undefined) return undefined;
  const parts: Uint8Array[] = [];
  for await (const b of fileBytes(repo, e)) parts.push(b);
  return Buffer.concat(parts);
}

describe("backup: the result stream", () => {
  it("answers every record exactly once: ok when stored, the error when not", async () => {
    const { repo } = await makeRepo();
    const records = plan(30);
    records.push({ pathname: "/bad", kind: "file", error: "permission denied" });
    records.push({ pathname: "/unopenable", kind: "file", openFails: true });
    const imp = new ScriptedImporter(LocationFlag.NEEDACK, records);
    const { header } = await run(repo, imp, EVERY_FILE);
    await new Promise((r) => setImmediate(r));
    expect(imp.resultsEnded).toBe(true);
    const byPath = new Map<string, ImportResult[]>();
    for (const r of imp.results) byPath.set(r.record.pathname, [...(byPath.get(r.record.pathname) ?? []), r]);
    expect([...byPath.keys()].sort()).toEqual(records.map((r) => r.pathname).sort());
    for (const [p, rs] of byPath) {
      expect(rs, p).toHaveLength(1);
      const failing = p === "/bad" || p === "/unopenable";
      expect(rs[0]!.error !== undefined, p).toBe(failing);
    }
    expect(byPath.get("/bad")![0]!.error).toContain("permission denied");
    expect(header.summary.errors).toBe(2);
    for (const r of records.filter((x) => x.content)) expect(Buffer.from((await contentAt(repo, header.id, r.pathname))!).equals(r.content!)).toBe(true);
    await repo.close();
  });

  it("an importer without NEEDACK that reads the stream gets its answers right away", async () => {
    const { repo } = await makeRepo();
    const records = plan(5);
    const imp = new ScriptedImporter(0, records);
    await run(repo, imp);
    expect(imp.results.map((r) => r.record.pathname).sort()).toEqual(records.map((r) => r.pathname).sort());
    expect(imp.results.every((r) => r.error === undefined)).toBe(true);
    await repo.close();
  });
});

describe("backup: NEEDACK and checkpoints", () => {
  it("an ack arrives only once a committed snapshot holds the record's data", async () => {
    const { repo, store } = await makeRepo();
    const records = plan(40);
    // The source holds its last 20 records until the first ack has been checked,
    // so that check runs while the backup cannot have finished.
    let firstChecked!: () => void;
    const until = new Promise<void>((r) => (firstChecked = r));
    const imp = new ScriptedImporter(LocationFlag.NEEDACK, records, { hold: { after: 22, until } });
    const checks: Promise<void>[] = [];
    const seenPartial: string[] = [];
    imp.onResult = (r) => {
      const p = records.find((x) => x.pathname === r.record.pathname)!;
      if (!p.content || r.error) return;
      // What another process would see right now: the record must be there, whole.
      checks.push(
        (async () => {
          const other = await reopen(store);
          const visible = (await listSnapshots(other)).snapshots;
          expect(visible.length).toBeGreaterThan(0);
          const latest = visible.at(-1)!;
          if (isPartial(latest)) seenPartial.push(p.pathname);
          const got = await contentAt(other, latest.id, p.pathname);
          expect(got && Buffer.from(got).equals(p.content!), p.pathname).toBe(true);
          await other.close();
        })().finally(firstChecked),
      );
    };
    const { header } = await run(repo, imp, EVERY_FILE);
    await Promise.all(checks);
    // Acks came during the backup, from checkpoints, not all at the end.
    expect(seenPartial.length).toBeGreaterThan(0);
    expect(imp.results.filter((r) => !r.error)).toHaveLength(records.length);

    // After the run, its checkpoints are superseded: only the final snapshot is listed.
    const all = (await listSnapshots(repo, undefined, { superseded: true })).snapshots;
    const visible = (await listSnapshots(repo)).snapshots;
    expect(all.filter(isPartial).length).toBeGreaterThan(0);
    expect(all.filter(isPartial).every((h) => toHex(h.run!) === toHex(header.run!))).toBe(true);
    expect(visible.map((h) => toHex(h.id))).toEqual([toHex(header.id)]);
    await repo.close();
  });

  it("a failed backup leaves one partial snapshot with every acked record; the next backup resumes from it", async () => {
    const { repo, store } = await makeRepo();
    const records = plan(60);
    const imp = new ScriptedImporter(LocationFlag.NEEDACK, records, { failAfter: 45 });
    await expect(run(repo, imp, EVERY_FILE)).rejects.toMatchObject({ code: "IO" });
    await new Promise((r) => setImmediate(r));
    expect(imp.resultsEnded).toBe(true);
    const acked = imp.results.filter((r) => !r.error).map((r) => r.record.pathname);
    expect(acked.length).toBeGreaterThan(0);
    expect(acked.length).toBeLessThan(46);
    await repo.close();

    const other = await reopen(store);
    const visible = (await listSnapshots(other)).snapshots;
    expect(visible).toHaveLength(1);
    expect(isPartial(visible[0]!)).toBe(true);
    for (const p of acked) {
      const want = records.find((x) => x.pathname === p)!;
      if (!want.content) continue;
      expect(Buffer.from((await contentAt(other, visible[0]!.id, p))!).equals(want.content)).toBe(true);
    }
    // "latest" means complete: there is none yet.
    await expect(resolveSnapshot(other, undefined)).rejects.toMatchObject({ code: "SNAPSHOT_NOT_FOUND" });
    await other.close();

    // Resume: the partial snapshot is the parent, unchanged files are not read again.
    const again = await Repository.open(store, { passphrase: async () => null });
    const imp2 = new ScriptedImporter(LocationFlag.NEEDACK, records);
    const { header, parent } = await run(again, imp2, EVERY_FILE);
    expect(parent && toHex(parent.id)).toBe(toHex(visible[0]!.id));
    const ackedFiles = acked.filter((p) => records.find((x) => x.pathname === p)!.content);
    const readAgain = records.filter((x) => x.content && !ackedFiles.includes(x.pathname)).reduce((n, x) => n + x.content!.byteLength, 0);
    expect(header.summary.readBytes).toBe(readAgain);
    // The interrupted run's checkpoint stays listed (it may hold the only copy of what it acked).
    expect((await listSnapshots(again)).snapshots.map((h) => toHex(h.id))).toEqual([toHex(visible[0]!.id), toHex(header.id)]);
    await again.close();
  });
});

describe("backup: a failure while a checkpoint commits", () => {
  it("lets the checkpoint finish and answers its records before the results end; no worker runs on", async () => {
    const { repo, store } = await makeRepo();
    const records = plan(80);
    // The first checkpoint's commit is held until the source has failed (a gate, not a delay).
    let committing = false;
    let sourceFailed!: () => void;
    const failed = new Promise<void>((r) => (sourceFailed = r));
    const commit = repo.commitSnapshot.bind(repo);
    repo.commitSnapshot = async (...a: Parameters<Repository["commitSnapshot"]>) => {
      committing = true;
      await failed;
      try {
        await commit(...a);
      } finally {
        committing = false;
      }
    };
    const failWhen = () => {
      if (committing) sourceFailed();
      return committing;
    };
    const imp = new ScriptedImporter(LocationFlag.NEEDACK, records, { failWhen });
    await expect(run(repo, imp, EVERY_FILE)).rejects.toMatchObject({ code: "IO", message: /source went away/ });
    await new Promise((r) => setImmediate(r));
    expect(imp.resultsEnded).toBe(true);
    const acked = imp.results.filter((r) => !r.error).map((r) => r.record.pathname).filter((p) => p.startsWith("/d/f")).sort();
    expect(acked.length).toBeGreaterThan(0);
    const stored = async () => {
      let n = 0;
      for (const r of [Resource.PACKFILE, Resource.STATE]) for await (const _ of store.list(r)) n++;
      return n;
    };
    const before = await stored();
    await new Promise((r) => setImmediate(r));
    expect(await stored(), "nothing is stored after backup() returned").toBe(before);
    await repo.close();

    // The checkpoint that was committing is the one listed, and it holds exactly the acked files.
    const other = await reopen(store);
    const [partial, ...more] = (await listSnapshots(other)).snapshots;
    expect(more).toHaveLength(0);
    expect(isPartial(partial!)).toBe(true);
    const held: string[] = [];
    for (const r of records) if (r.content && (await contentAt(other, partial!.id, r.pathname))) held.push(r.pathname);
    expect(held.sort()).toEqual(acked);
    await other.close();
  });
});

describe("backup: extended attributes as records of their own (Kloset)", () => {
  it("attaches each to its entry, before or after the entry arrives; one for a missing entry is an error", async () => {
    const { repo } = await makeRepo();
    const value = (s: string) => (async () => (async function* () { yield new Uint8Array(Buffer.from(s)); })()) as ImportRecord["open"];
    const records: ImportRecord[] = [
      { pathname: "/", fileInfo: info("", "dir") },
      { pathname: "/g", fileInfo: info("g", "file"), xattrName: "user.early", open: value("before its entry") },
      { pathname: "/f", fileInfo: { ...info("f", "file"), size: 3 }, open: async () => (async function* () { yield new Uint8Array([1, 2, 3]); })() },
      { pathname: "/f", fileInfo: info("f", "file"), xattrName: "user.a", open: value("alpha") },
      { pathname: "/f", fileInfo: info("f", "file"), xattrName: "user.b", open: value("") },
      { pathname: "/g", fileInfo: info("g", "file"), open: async () => (async function* () {})() },
      { pathname: "/nope", fileInfo: info("nope", "file"), xattrName: "user.lost", open: value("x") },
    ];
    const answers: ImportResult[] = [];
    const imp: Importer = {
      origin: "t", type: "xattr-records", root: "/x", flags: LocationFlag.NEEDACK,
      ping: async () => {}, close: async () => {},
      async *import(o: ImportOptions = {}) {
        void (async () => { for await (const r of o.results!) answers.push(r); })();
        yield* records;
      },
    };
    // Twice: the second time, the files are found unchanged in the parent snapshot.
    for (const round of [1, 2]) {
      answers.length = 0;
      const { header } = await run(repo, imp, EVERY_FILE);
      expect(header.summary.readBytes).toBe(round === 1 ? 3 : 0);
      const reader = new TreeReader(repo);
      const f = await reader.lookup(header.root, "/f");
      expect(f?.xattrs?.map((x) => [x.name, Buffer.from(x.value).toString()])).toEqual([["user.a", "alpha"], ["user.b", ""]]);
      const g = await reader.lookup(header.root, "/g");
      expect(g?.xattrs?.map((x) => [x.name, Buffer.from(x.value).toString()])).toEqual([["user.early", "before its entry"]]);
      expect(await reader.lookup(header.root, "/nope")).toBeUndefined();
      expect(header.summary.errors).toBe(1);
      expect(header.summary.files).toBe(2);
      await new Promise((r) => setImmediate(r));
      expect(answers).toHaveLength(records.length);
      expect(answers.filter((a) => a.error !== undefined).map((a) => [a.record.pathname, a.record.xattrName])).toEqual([["/nope", "user.lost"]]);
    }
    await repo.close();
  });
});

describe("backup: STREAM and hard links", () => {
  it("imports a STREAM source exactly once", async () => {
    const { repo } = await makeRepo();
    const imp = new ScriptedImporter(LocationFlag.STREAM, plan(3));
    await run(repo, imp);
    expect(imp.imports).toBe(1);
    await repo.close();
  });

  it("a record with linkTarget shares its target's chunks without being opened", async () => {
    const { repo } = await makeRepo();
    const records = plan(3);
    records.push({ pathname: "/link", kind: "file", linkTarget: "/d/f001" });
    records.push({ pathname: "/dangling", kind: "file", linkTarget: "/nowhere" });
    const imp = new ScriptedImporter(0, records);
    const { header } = await run(repo, imp);
    const want = records.find((r) => r.pathname === "/d/f001")!.content!;
    expect(Buffer.from((await contentAt(repo, header.id, "/link"))!).equals(want)).toBe(true);
    const dangling = await new TreeReader(repo).lookup(header.root, "/dangling");
    expect(dangling?.error).toContain("/nowhere");
    await repo.close();
  });
});

describe("backup: a source unchanged since the parent snapshot", () => {
  it("reads nothing and stores the same trees; a file changed since is read", async () => {
    const { repo } = await makeRepo();
    const records = plan(40, 3000);
    records.splice(2, 0, { pathname: "/d/a", kind: "dir" }, { pathname: "/d/a/x", kind: "file", content: prng(99, 5000) });
    const first = (await run(repo, new ScriptedImporter(0, records))).header;
    expect(first.summary.readBytes).toBeGreaterThan(0);
    // Most entries are found unchanged without waiting (their directory's
    // listing is loaded by then); the first of each directory waits for it.
    const again = (await run(repo, new ScriptedImporter(0, records))).header;
    expect(again.parent && toHex(again.parent)).toBe(toHex(first.id));
    expect(again.summary.readBytes).toBe(0);
    expect(again.summary.files).toBe(first.summary.files);
    expect(toHex(again.root.tree!)).toBe(toHex(first.root.tree!));

    const changed = records.map((r) => (r.pathname === "/d/f007" ? { ...r, content: prng(7, 3001) } : r));
    const third = (await run(repo, new ScriptedImporter(0, changed))).header;
    expect(third.summary.readBytes).toBe(3001);
    expect(Buffer.from((await contentAt(repo, third.id, "/d/f007"))!).equals(prng(7, 3001))).toBe(true);
    expect(Buffer.from((await contentAt(repo, third.id, "/d/f008"))!).equals(records.find((r) => r.pathname === "/d/f008")!.content!)).toBe(true);
    await repo.close();
  });
});

describe("backup: a store that fails or lags (the fault kit, test/helpers/faults.ts)", () => {
  it("parent listings whose reads fail (IO) are worked around: the files are read again, with a warning, and nothing new is stored", async () => {
    const mem = new MemoryStore();
    const { repo } = await makeRepo(mem);
    const records = plan(12, 5000);
    const first = (await run(repo, new ScriptedImporter(0, records))).header;
    await repo.close();
    // Every packfile read fails but the one of the first snapshot's header: its trees cannot be read.
    const headerPack = toHex((await reopen(mem)).locate(BlobType.SNAPSHOT, first.id).pack);
    const store = recording(failing(mem, { op: "get", resource: Resource.PACKFILE, when: (c) => c.mac !== headerPack, times: Infinity }));
    const again = await Repository.open(store, { passphrase: async () => null });
    const warnings: string[] = [];
    const { header, parent } = await backup(again, {
      importer: new ScriptedImporter(0, records),
      hostname: "h", username: "u", os: "linux", arch: "x64", workers: 0,
      onEvent: (e) => e.type === "warning" && warnings.push(`${e.path}: ${e.message}`),
    });
    expect(parent && toHex(parent.id)).toBe(toHex(first.id));
    expect(store.entries({ op: "get" }, "failed").length).toBeGreaterThan(0);
    expect(warnings.join("\n")).toMatch(/listing is unreadable/);
    expect(header.summary.readBytes).toBe(first.summary.readBytes);
    expect(header.summary.newBlobs).toBe(0); // the chunks and trees were all there
    expect(toHex(header.root.tree!)).toBe(toHex(first.root.tree!));
    await again.close();
    const other = await reopen(mem);
    for (const r of records.filter((x) => x.content)) expect(Buffer.from((await contentAt(other, header.id, r.pathname))!).equals(r.content!)).toBe(true);
  });

  it("a repository opened while listings lag behind the last backup (eventual consistency) still backs up whole", async () => {
    const mem = new MemoryStore();
    const ec = eventuallyConsistent(mem, { seed: 5 });
    await Repository.create(ec, { passphrase: null, packSize: 256 * 1024, kdf: KDF });
    const records = plan(12, 30_000);
    const r1 = await Repository.open(ec, { passphrase: async () => null });
    const first = (await run(r1, new ScriptedImporter(0, records))).header;
    await r1.close();
    // Not settled: a new open lists none of the state deltas just stored, so sees no snapshot and no blob.
    const r2 = await Repository.open(ec, { passphrase: async () => null });
    expect(r2.snapshotIds()).toEqual([]);
    const changed = records.map((r) => (r.pathname === "/d/f003" ? { ...r, content: prng(3, 777) } : r));
    const { header, parent } = await run(r2, new ScriptedImporter(0, changed));
    expect(parent).toBeUndefined();
    expect(header.summary.readBytes).toBeGreaterThan(first.summary.readBytes - 30_000);
    await r2.close();
    ec.settle();
    const r3 = await Repository.open(ec, { passphrase: async () => null });
    expect((await listSnapshots(r3)).snapshots.map((h) => toHex(h.id))).toEqual([toHex(first.id), toHex(header.id)]);
    for (const [snap, recs] of [[first, records], [header, changed]] as const) {
      for (const r of recs.filter((x) => x.content)) expect(Buffer.from((await contentAt(r3, snap.id, r.pathname))!).equals(r.content!)).toBe(true);
    }
    expect((await check(r3)).problems).toEqual([]);
    await r3.close();
  });
});

describe("backup: events", () => {
  it("reports each entry once (stored, then unchanged on the next run), failures with their message, and the summary last", async () => {
    const { repo } = await makeRepo();
    const records = plan(6, 2000);
    records.push({ pathname: "/bad", kind: "file", error: "permission denied" });
    for (const round of [1, 2]) {
      const events: BackupEvent[] = [];
      const { header } = await backup(repo, {
        importer: new ScriptedImporter(0, records),
        hostname: "h", username: "u", os: "linux", arch: "x64", workers: 0,
        onEvent: (e) => events.push(e),
      });
      const entryEvents = events.filter((e) => e.type === "stored" || e.type === "unchanged" || e.type === "failed");
      expect(entryEvents.map((e) => e.path).sort()).toEqual(records.map((r) => r.pathname).sort());
      const files = entryEvents.filter((e) => e.path.startsWith("/d/f"));
      expect(files.every((e) => e.type === (round === 1 ? "stored" : "unchanged")), `round ${round}`).toBe(true);
      expect(entryEvents.find((e) => e.path === "/bad")).toMatchObject({ type: "failed", message: "permission denied" });
      // The counters only grow, and end at the summary's figures.
      for (let i = 1; i < entryEvents.length; i++) expect(entryEvents[i]!.entries).toBe(entryEvents[i - 1]!.entries + 1);
      const last = entryEvents.at(-1)!;
      const s = header.summary;
      expect(last).toMatchObject({ entries: s.files + s.dirs, files: s.files, bytes: s.bytes, readBytes: s.readBytes, errors: 1 });
      // Added so far: the chunks; the trees and the header come after the last entry.
      expect(last.addedBytes).toBe(round === 1 ? s.readBytes : 0);
      expect(last.addedBytes).toBeLessThanOrEqual(s.newBytes);
      expect(events.at(-1)).toEqual({ type: "summary", id: toHex(header.id), parent: header.parent && toHex(header.parent), summary: s, durationNs: header.durationNs });
    }
    await repo.close();
  });
});
