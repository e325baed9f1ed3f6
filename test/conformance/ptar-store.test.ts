/**
 * Runs the Store conformance suite against the ptar store (a fresh archive
 * path in a temp directory per test), plus what only a single-file archive
 * can show: one file on disk, atomic commits across a SIGKILL, merging of
 * concurrent writers, damage detection, the sidecar commit lock, stale
 * temps, compaction. The format checks use an independent reader written
 * from docs/FORMAT.md ("Single-file repositories (ptar)").
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it, vi } from "vitest";
import { LocationFlag, Resource, StoreMode } from "../../src/connectors/flags.js";
import type { Store } from "../../src/connectors/store.js";
import { PtarStore } from "../../src/connectors/ptar/store.js";
import { BlobType } from "../../src/repository/codec.js";
import { Repository } from "../../src/repository/repository.js";
import { equalBytes, toHex } from "../../src/util/hex.js";
import { storeConformance } from "./store.js";

const MiB = 1024 * 1024;
const WRITER = fileURLToPath(new URL("../fixtures/ptar-writer.ts", import.meta.url));

async function tempDir(): Promise<string> {
  return fsp.mkdtemp(path.join(tmpdir(), "coffer-ptar-store-"));
}

storeConformance("ptar", async () => {
  const dir = await tempDir();
  const file = path.join(dir, "repo.ptar");
  const store = new PtarStore(file);
  const opened: PtarStore[] = [store];
  return {
    store,
    // Another store sees what the writer committed: commit first.
    readOnly: async () => {
      await store.sync();
      const ro = new PtarStore(file, { readOnly: true });
      opened.push(ro);
      return ro;
    },
    cleanup: async () => {
      for (const s of opened) await s.close().catch(() => undefined);
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}, { replaceConfig: true });

// --- an independent reader, from docs/FORMAT.md ---

interface Parsed {
  version: number;
  generation: bigint;
  lineage: string;
  dataEnd: number;
  entries: { resource: number; mac: string; offset: number; length: number }[];
  config: Uint8Array;
}

const HEADER = 16;
const TRAILER = 104;
const ENTRY = 49;

function parsePtar(b: Buffer): Parsed {
  expect(b.subarray(0, 8).toString("latin1")).toBe("COFFPTAR");
  const t = b.subarray(b.byteLength - TRAILER);
  expect(t.subarray(0, 8).toString("latin1")).toBe("COFFPEND");
  const dataEnd = Number(t.readBigUInt64LE(40));
  const count = Number(t.readBigUInt64LE(48));
  const configOffset = Number(t.readBigUInt64LE(56));
  const configLength = Number(t.readBigUInt64LE(64));
  expect(configOffset).toBe(dataEnd + count * ENTRY);
  expect(configOffset + configLength).toBe(b.byteLength - TRAILER);
  const sum = createHash("sha256")
    .update(b.subarray(0, HEADER))
    .update(b.subarray(dataEnd, b.byteLength - TRAILER))
    .update(t.subarray(0, 72))
    .digest();
  expect(sum.equals(t.subarray(72))).toBe(true);
  const entries = [];
  for (let i = 0; i < count; i++) {
    const e = b.subarray(dataEnd + i * ENTRY, dataEnd + (i + 1) * ENTRY);
    entries.push({
      resource: e.readUInt8(0),
      mac: e.toString("hex", 1, 33),
      offset: Number(e.readBigUInt64LE(33)),
      length: Number(e.readBigUInt64LE(41)),
    });
  }
  return {
    version: b.readUInt32LE(8),
    generation: t.readBigUInt64LE(16),
    lineage: t.toString("hex", 24, 40),
    dataEnd,
    entries,
    config: new Uint8Array(b.subarray(configOffset, configOffset + configLength)),
  };
}

/** Recomputes the trailer checksum after a deliberate edit (a forged, internally consistent archive). */
function reseal(b: Buffer): void {
  const t = b.subarray(b.byteLength - TRAILER);
  const dataEnd = Number(t.readBigUInt64LE(40));
  createHash("sha256")
    .update(b.subarray(0, HEADER))
    .update(b.subarray(dataEnd, b.byteLength - TRAILER))
    .update(t.subarray(0, 72))
    .digest()
    .copy(t, 72);
}

// --- helpers ---

const mac = () => new Uint8Array(randomBytes(32));
const bytes = (n: number) => new Uint8Array(randomBytes(n));

/** The content ptar-writer.ts stores under a MAC. */
function content(m: Uint8Array): Uint8Array {
  const size = 1 + ((m[0]! | (m[1]! << 8)) * 3);
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i += m.byteLength) out.set(m.subarray(0, Math.min(m.byteLength, size - i)), i);
  return out;
}

async function listHex(store: PtarStore, r: Resource): Promise<string[]> {
  const out: string[] = [];
  for await (const m of store.list(r)) out.push(toHex(m));
  return out.sort();
}

function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.byteLength).toBe(expected.byteLength);
  if (!equalBytes(actual, expected)) expect.fail(`bytes differ (${actual.byteLength} bytes)`);
}

async function codeOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => "resolved",
    (e: unknown) => (e as { code?: unknown }).code,
  );
}

/** Every packfile of the archive holds the content ptar-writer.ts derives from its MAC. */
async function checkWriterObjects(file: string): Promise<number> {
  const ro = new PtarStore(file, { readOnly: true });
  try {
    const macs = await listHex(ro, Resource.PACKFILE);
    for (const hex of macs) {
      const m = new Uint8Array(Buffer.from(hex, "hex"));
      expectBytes(await ro.get(Resource.PACKFILE, m), content(m));
    }
    return macs.length;
  } finally {
    await ro.close();
  }
}

interface Child {
  pid: number | undefined;
  lines: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  kill: (sig: NodeJS.Signals) => void;
  /** Resolves once a line matching `re` was printed. */
  waitFor: (re: RegExp) => Promise<string>;
}

/** Writers still running: a failed test's are killed by afterEach. */
const running = new Set<ChildProcess>();

function writer(...args: string[]): Child {
  const child = spawn(process.execPath, ["--experimental-strip-types", "--no-warnings", WRITER, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  child.on("exit", () => running.delete(child));
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  let out = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    out += d;
    let nl: number;
    while ((nl = out.indexOf("\n")) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      lines.push(line);
      for (const w of waiters.splice(0)) {
        if (w.re.test(line)) w.resolve(line);
        else waiters.push(w);
      }
    }
  });
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal, stderr })),
  );
  return {
    pid: child.pid,
    lines,
    exited,
    kill: (sig) => child.kill(sig),
    waitFor: (re) =>
      new Promise((resolve, reject) => {
        const hit = lines.find((l) => re.test(l));
        if (hit !== undefined) return resolve(hit);
        waiters.push({ re, resolve });
        void exited.then((x) => reject(new Error(`writer exited (${x.code ?? x.signal}) before ${re}: ${x.stderr}`)));
      }),
  };
}

describe("PtarStore on disk", () => {
  const dirs: string[] = [];
  const stores: PtarStore[] = [];
  afterEach(async () => {
    vi.restoreAllMocks();
    await Promise.all(
      [...running].map((c) => {
        const gone = new Promise((resolve) => c.once("exit", resolve));
        c.kill("SIGKILL");
        return gone;
      }),
    );
    for (const s of stores.splice(0)) await s.close().catch(() => undefined);
    await Promise.all(dirs.splice(0).map((d) => fsp.rm(d, { recursive: true, force: true })));
  });

  async function archive(opts: { readOnly?: boolean; lockWaitMs?: number } = {}) {
    const dir = await tempDir();
    dirs.push(dir);
    const file = path.join(dir, "repo.ptar");
    const store = open(file, opts);
    if (!opts.readOnly) await store.create(new Uint8Array([1, 2, 3]));
    return { dir, file, store };
  }

  function open(file: string, opts: { readOnly?: boolean; lockWaitMs?: number } = {}): PtarStore {
    const s = new PtarStore(file, opts);
    stores.push(s);
    return s;
  }

  const ls = async (dir: string) => (await fsp.readdir(dir)).sort();

  it("describes itself", async () => {
    const { file, store } = await archive();
    expect(store.type).toBe("ptar");
    expect(store.root).toBe(path.resolve(file));
    expect(store.flags).toBe(LocationFlag.FILE);
    expect(store.origin).toBe(hostname());
    expect((store as Store).localPath).toBeUndefined();
  });

  it("is one file and nothing else after close, in the documented format", async () => {
    const { dir, file, store } = await archive();
    expect(await ls(dir)).toEqual(["repo.ptar"]);
    const created = parsePtar(await fsp.readFile(file));
    expect(created).toMatchObject({ version: 1, generation: 1n, dataEnd: HEADER, entries: [] });
    expect([...created.config]).toEqual([1, 2, 3]);

    const objects = [
      ...Array.from({ length: 5 }, () => ({ r: Resource.PACKFILE, m: mac(), data: bytes(10_000) })),
      ...Array.from({ length: 3 }, () => ({ r: Resource.STATE, m: mac(), data: bytes(300) })),
    ];
    for (const o of objects) await store.put(o.r, o.m, o.data);
    const lock = mac();
    await store.put(Resource.LOCK, lock, bytes(50));
    const during = await ls(dir);
    expect(during).toHaveLength(2); // the archive and this session's temp
    expect(during.find((n) => n !== "repo.ptar")).toMatch(new RegExp(`^\\.repo\\.ptar\\.${process.pid}\\.[0-9a-f]+\\.tmp$`));
    const sizeBefore = await store.size();
    await store.close();
    expect(await ls(dir)).toEqual(["repo.ptar"]);

    const b = await fsp.readFile(file);
    expect(b.byteLength).toBe(sizeBefore);
    const p = parsePtar(b);
    expect(p.generation).toBe(2n);
    // LOCK objects are not in the file.
    expect(p.entries.map((e) => `${e.resource}${e.mac}`)).toEqual(objects.map((o) => `${o.r}${toHex(o.m)}`).sort());
    for (const e of p.entries) {
      const o = objects.find((x) => toHex(x.m) === e.mac)!;
      expectBytes(new Uint8Array(b.subarray(e.offset, e.offset + e.length)), o.data);
    }
    // But this process still sees the lock, through any store on the archive.
    expect(await listHex(open(file, { readOnly: true }), Resource.LOCK)).toEqual([toHex(lock)]);
    await open(file).delete(Resource.LOCK, lock);
  });

  it("data survives close and reopen, across several sessions", async () => {
    const { file, store } = await archive();
    const a = Array.from({ length: 4 }, () => ({ m: mac(), data: bytes(5000) }));
    for (const o of a) await store.put(Resource.PACKFILE, o.m, o.data);
    await store.sync(); // session 1 committed
    const s = mac();
    await store.put(Resource.STATE, s, bytes(7));
    await store.delete(Resource.PACKFILE, a[0]!.m); // session 2
    await store.close();
    expect(parsePtar(await fsp.readFile(file)).generation).toBe(3n);

    const again = open(file);
    expect([...(await again.open())]).toEqual([1, 2, 3]);
    expect(await listHex(again, Resource.PACKFILE)).toEqual(a.slice(1).map((o) => toHex(o.m)).sort());
    expect(await listHex(again, Resource.STATE)).toEqual([toHex(s)]);
    for (const o of a.slice(1)) expectBytes(await again.get(Resource.PACKFILE, o.m), o.data);
    await expect(again.get(Resource.PACKFILE, a[0]!.m)).rejects.toMatchObject({ code: "NOT_FOUND" });
    // A close without changes writes nothing.
    const before = await fsp.stat(file);
    await again.close();
    const after = await fsp.stat(file);
    expect(after.ino).toBe(before.ino);
    expect(after.mtimeMs).toBe(before.mtimeMs);
  });

  it("a reader keeps its version while a writer commits; open() moves it to the new one", async () => {
    const { file, store } = await archive();
    const first = mac();
    await store.put(Resource.PACKFILE, first, bytes(100));
    await store.sync();
    const reader = open(file, { readOnly: true });
    expect(await listHex(reader, Resource.PACKFILE)).toEqual([toHex(first)]);
    const second = mac();
    await store.put(Resource.PACKFILE, second, bytes(100));
    await store.delete(Resource.PACKFILE, first);
    expect(await listHex(reader, Resource.PACKFILE)).toEqual([toHex(first)]); // uncommitted: invisible
    await store.sync();
    expect(await listHex(reader, Resource.PACKFILE)).toEqual([toHex(first)]); // its snapshot, from the old inode
    expect((await reader.get(Resource.PACKFILE, first)).byteLength).toBe(100);
    await reader.open();
    expect(await listHex(reader, Resource.PACKFILE)).toEqual([toHex(second)]);
  });

  it("stores 32 MiB packfiles streamed in pieces; a ranged get reads only its range", async () => {
    const { file, store } = await archive();
    const m = mac();
    const data = bytes(32 * MiB);
    async function* pieces(): AsyncIterable<Uint8Array> {
      for (let at = 0; at < data.byteLength; at += MiB) yield data.subarray(at, at + MiB);
    }
    expect(await store.put(Resource.PACKFILE, m, pieces())).toBe(32 * MiB);
    const small = mac();
    await store.put(Resource.PACKFILE, small, bytes(10));
    expectBytes(await store.get(Resource.PACKFILE, m, { offset: 5 * MiB + 3, length: 1000 }), data.subarray(5 * MiB + 3, 5 * MiB + 1003));
    await store.close();

    const again = open(file, { readOnly: true });
    await again.open();
    const probe = await fsp.open(file);
    await probe.close();
    const proto = Object.getPrototypeOf(probe) as FileHandle;
    const read = vi.spyOn(proto, "read");
    const ranges = [
      { offset: 0, length: 1 },
      { offset: 16 * MiB - 7, length: 100_000 },
      { offset: 32 * MiB - 4096, length: 4096 },
    ];
    for (const r of ranges) expectBytes(await again.get(Resource.PACKFILE, m, r), data.subarray(r.offset, r.offset + r.length));
    // read(buffer, offset, length, position): add up the lengths asked for.
    const asked = read.mock.calls.reduce((n, c) => n + ((c as unknown[])[2] as number), 0);
    expect(asked).toBe(ranges.reduce((n, r) => n + r.length, 0));
    read.mockRestore();
    expectBytes(await again.get(Resource.PACKFILE, m), data);
    await expect(again.get(Resource.PACKFILE, m, { offset: 32 * MiB - 1, length: 2 })).rejects.toMatchObject({ code: "CORRUPT" });
  });

  it("a writer killed at any moment leaves the previous archive intact and readable", async () => {
    const { dir, file, store } = await archive();
    const base = Array.from({ length: 3 }, () => mac());
    for (const m of base) await store.put(Resource.PACKFILE, m, content(m));
    // Big enough that every commit takes a while: kills land inside commits too.
    const big = { m: mac(), data: bytes(24 * MiB) };
    await store.put(Resource.STATE, big.m, big.data);
    await store.close();
    let acknowledged = base.length;
    for (const delayMs of [0, 30, 60, 100, 150, 250]) {
      const child = writer(file, "loop");
      await child.waitFor(/^synced /);
      await new Promise((r) => setTimeout(r, delayMs + Math.random() * 30));
      child.kill("SIGKILL");
      const x = await child.exited;
      expect(x.signal).toBe("SIGKILL");
      const synced = child.lines.filter((l) => l.startsWith("synced ")).map((l) => Number(l.slice(7)));
      acknowledged = Math.max(acknowledged, ...synced);
      // Every committed object is whole, every acknowledged sync is there, the base objects too.
      expect(await checkWriterObjects(file)).toBeGreaterThanOrEqual(acknowledged);
      const ro = open(file, { readOnly: true });
      for (const m of base) expectBytes(await ro.get(Resource.PACKFILE, m), content(m));
      expectBytes(await ro.get(Resource.STATE, big.m), big.data);
      // At most a temp file and the dead writer's commit lock are left over.
      for (const name of await ls(dir)) expect(name).toMatch(/^(repo\.ptar|repo\.ptar\.lock|\.repo\.ptar\.\d+\.[0-9a-f]+\.tmp)$/);
      // A lock left over names its (dead) holder: never an empty file.
      const lock = await fsp.readFile(`${file}.lock`, "utf8").catch(() => undefined);
      if (lock !== undefined) expect(JSON.parse(lock)).toMatchObject({ pid: child.pid, host: hostname() });
    }
    // A new writer takes over a lock left by the dead one (same host, dead pid) and commits.
    const next = open(file, { lockWaitMs: 2000 });
    const m = mac();
    await next.put(Resource.PACKFILE, m, content(m));
    await next.close();
    expect(await checkWriterObjects(file)).toBeGreaterThanOrEqual(acknowledged + 1);
    expect(await ls(dir)).not.toContain("repo.ptar.lock");
  });

  it("two stores writing to the same archive both keep their objects (merge at commit)", async () => {
    const { file, store } = await archive();
    const shared = Array.from({ length: 4 }, () => ({ m: mac(), data: bytes(3000) }));
    for (const o of shared) await store.put(Resource.PACKFILE, o.m, o.data);
    await store.close();

    const a = open(file);
    const b = open(file);
    const ours = { a: [] as { m: Uint8Array; data: Uint8Array }[], b: [] as { m: Uint8Array; data: Uint8Array }[] };
    for (let i = 0; i < 12; i++) {
      const who = i % 3 === 0 ? "b" : "a";
      const o = { m: mac(), data: bytes(1000 + i) };
      ours[who].push(o);
      await (who === "a" ? a : b).put(i % 2 ? Resource.STATE : Resource.PACKFILE, o.m, o.data);
      if (i === 5) await a.sync(); // a commits part-way; b's base is now old
    }
    await a.delete(Resource.PACKFILE, shared[0]!.m);
    await b.delete(Resource.PACKFILE, shared[1]!.m);
    // Each sees only its own uncommitted writes.
    await expect(b.get(Resource.PACKFILE, ours.a[0]!.m)).rejects.toMatchObject({ code: "NOT_FOUND" });
    await Promise.all([a.close(), b.close()]);

    const r = open(file, { readOnly: true });
    const all = [...shared.slice(2), ...ours.a, ...ours.b];
    const listed = [...(await listHex(r, Resource.PACKFILE)), ...(await listHex(r, Resource.STATE))].sort();
    expect(listed).toEqual(all.map((o) => toHex(o.m)).sort());
    for (const o of all) {
      const res = (await listHex(r, Resource.PACKFILE)).includes(toHex(o.m)) ? Resource.PACKFILE : Resource.STATE;
      expectBytes(await r.get(res, o.m), o.data);
    }
    expect(parsePtar(await fsp.readFile(file)).entries).toHaveLength(all.length);
  });

  it("two processes writing to the same archive end with the union of their objects", async () => {
    const { dir, file, store } = await archive();
    await store.close();
    const children = [writer(file, "write", "24"), writer(file, "write", "24")];
    for (const c of children) {
      const x = await c.exited;
      expect(x.stderr).toBe("");
      expect(x.code).toBe(0);
    }
    expect(await checkWriterObjects(file)).toBe(48);
    expect(await ls(dir)).toEqual(["repo.ptar"]);
  });

  describe("damage", () => {
    async function damaged(edit: (b: Buffer) => Buffer): Promise<{ file: string; dir: string }> {
      const { dir, file, store } = await archive();
      for (let i = 0; i < 5; i++) await store.put(Resource.PACKFILE, mac(), bytes(1000));
      await store.close();
      await fsp.writeFile(file, edit(await fsp.readFile(file)));
      return { file, dir };
    }

    async function expectCorrupt(file: string): Promise<void> {
      const err: unknown = await open(file, { readOnly: true })
        .open()
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "CORRUPT" });
      expect(String((err as Error).message)).toContain(file);
    }

    const indexByte = (b: Buffer, at: number) => Number(b.readBigUInt64LE(b.byteLength - TRAILER + 40)) + at;

    it("a flipped byte in the index, the config or the trailer is CORRUPT", async () => {
      for (const where of [
        (b: Buffer) => indexByte(b, 7), // a MAC
        (b: Buffer) => indexByte(b, ENTRY + 40), // an offset
        (b: Buffer) => b.byteLength - TRAILER - 1, // the config
        (b: Buffer) => b.byteLength - TRAILER + 17, // the generation
        (b: Buffer) => b.byteLength - 1, // the checksum
      ]) {
        const { file } = await damaged((b) => {
          b[where(b)]! ^= 0x40;
          return b;
        });
        await expectCorrupt(file);
      }
    });

    it("a truncated file, an empty file, a file that is not a ptar are CORRUPT; a missing one NO_REPOSITORY", async () => {
      for (const cut of [1, TRAILER, 1000]) {
        const { file } = await damaged((b) => b.subarray(0, b.byteLength - cut));
        await expectCorrupt(file);
      }
      const { file } = await damaged((b) => b.subarray(0, 10));
      await expectCorrupt(file);
      const { file: empty } = await damaged(() => Buffer.alloc(0));
      await expectCorrupt(empty);
      const { file: text } = await damaged(() => Buffer.from("this is not a ptar archive, just some text ".repeat(10)));
      await expectCorrupt(text);
      const { dir } = await damaged((b) => b);
      expect(await codeOf(open(path.join(dir, "missing.ptar")).open())).toBe("NO_REPOSITORY");
      expect(await codeOf(open(path.join(dir, "missing.ptar")).ping())).toBe("NO_REPOSITORY");
    });

    it("offsets are checked even when the checksum matches", async () => {
      const { file } = await damaged((b) => {
        b.writeBigUInt64LE(BigInt(b.byteLength), indexByte(b, ENTRY + 41)); // an object's length: past the data region
        reseal(b);
        return b;
      });
      await expectCorrupt(file);
      const { file: huge } = await damaged((b) => {
        b.writeBigUInt64LE(1n << 40n, b.byteLength - TRAILER + 48); // the entry count
        reseal(b);
        return b;
      });
      await expectCorrupt(huge);
    });

    it("a write session on a damaged archive fails with CORRUPT and leaves nothing behind", async () => {
      const { dir, file } = await damaged((b) => {
        b[indexByte(b, 3)]! ^= 1;
        return b;
      });
      const before = await ls(dir);
      const w = open(file);
      expect(await codeOf(w.put(Resource.PACKFILE, mac(), bytes(10)))).toBe("CORRUPT");
      await w.close();
      expect(await ls(dir)).toEqual(before);
    });

    it("another version is UNSUPPORTED", async () => {
      const { file } = await damaged((b) => {
        b.writeUInt32LE(2, 8);
        return b;
      });
      expect(await codeOf(open(file).open())).toBe("UNSUPPORTED");
    });
  });

  it("a read-only store writes nothing", async () => {
    const { dir, file, store } = await archive();
    const m = mac();
    await store.put(Resource.PACKFILE, m, bytes(100));
    await store.close();
    const old = path.join(dir, ".repo.ptar.1.dead.tmp");
    await fsp.writeFile(old, "x");
    const twoHoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
    await fsp.utimes(old, twoHoursAgo, twoHoursAgo);
    const before = await ls(dir);
    const stat = await fsp.stat(file);

    const ro = open(file, { readOnly: true });
    expect((await ro.mode()) & StoreMode.WRITE).toBe(0);
    await ro.open();
    await ro.ping();
    expect(await ro.size()).toBe(stat.size);
    expect((await ro.get(Resource.PACKFILE, m)).byteLength).toBe(100);
    expect(await codeOf(ro.put(Resource.PACKFILE, mac(), bytes(10)))).toBe("READ_ONLY");
    expect(await codeOf(ro.put(Resource.LOCK, mac(), bytes(10)))).toBe("READ_ONLY");
    expect(await codeOf(ro.delete(Resource.PACKFILE, m))).toBe("READ_ONLY");
    expect(await codeOf(ro.create(bytes(5)))).toBe("READ_ONLY");
    await ro.sync();
    await ro.close();
    expect(await ls(dir)).toEqual(before);
    const after = await fsp.stat(file);
    expect([after.ino, after.size, after.mtimeMs]).toEqual([stat.ino, stat.size, stat.mtimeMs]);

    const missing = path.join(dir, "new.ptar");
    expect(await codeOf(open(missing, { readOnly: true }).create(bytes(5)))).toBe("READ_ONLY");
    expect(await ls(dir)).toEqual(before);
  });

  it("a writer session removes this archive's temps older than an hour, and only those", async () => {
    const { dir, store } = await archive();
    const names = {
      old: ".repo.ptar.4242.0123abcd.tmp",
      recent: ".repo.ptar.4243.0123abcd.tmp",
      otherArchive: ".other.ptar.4242.0123abcd.tmp",
    };
    const twoHoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
    for (const n of Object.values(names)) await fsp.writeFile(path.join(dir, n), "x");
    for (const n of [names.old, names.otherArchive]) await fsp.utimes(path.join(dir, n), twoHoursAgo, twoHoursAgo);
    await store.open(); // opening is not a write session
    expect(await ls(dir)).toContain(names.old);
    await store.put(Resource.STATE, mac(), bytes(3));
    await store.close();
    expect(await ls(dir)).toEqual([names.otherArchive, names.recent, "repo.ptar"].sort());
  });

  it("a commit waits for the sidecar lock, then fails with LOCKED and leaves the archive unchanged; a later sync succeeds", async () => {
    const { dir, file, store } = await archive({ lockWaitMs: 300 });
    const lockFile = `${file}.lock`;
    // A live holder: this test's parent process (alive, same host).
    await fsp.writeFile(lockFile, JSON.stringify({ pid: process.ppid, host: hostname(), time: Date.now(), nonce: "x" }));
    const before = await fsp.readFile(file);
    const m = mac();
    await store.put(Resource.PACKFILE, m, bytes(10));
    const t0 = Date.now();
    expect(await codeOf(store.sync())).toBe("LOCKED");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect((await fsp.readFile(file)).equals(before)).toBe(true);
    expect(await fsp.readFile(lockFile, "utf8")).toContain('"nonce":"x"');
    // Still pending, and committed once the lock is gone.
    expect((await store.get(Resource.PACKFILE, m)).byteLength).toBe(10);
    await fsp.rm(lockFile);
    await store.sync();
    expect(parsePtar(await fsp.readFile(file)).entries.map((e) => e.mac)).toEqual([toHex(m)]);
    // A lock of a dead process on this host is broken at once.
    await fsp.writeFile(lockFile, JSON.stringify({ pid: 2 ** 22 + 12345, host: hostname(), time: Date.now(), nonce: "y" }));
    await store.put(Resource.PACKFILE, mac(), bytes(10));
    await store.close();
    expect(await ls(dir)).toEqual(["repo.ptar"]);
  });

  it("a close whose commit fails throws, removes its temp and leaves the archive unchanged", async () => {
    const { dir, file, store } = await archive({ lockWaitMs: 100 });
    await fsp.writeFile(`${file}.lock`, JSON.stringify({ pid: process.ppid, host: hostname(), time: Date.now() }));
    const before = await fsp.readFile(file);
    await store.put(Resource.PACKFILE, mac(), bytes(10));
    expect(await codeOf(store.close())).toBe("LOCKED");
    expect((await fsp.readFile(file)).equals(before)).toBe(true);
    expect(await ls(dir)).toEqual(["repo.ptar", "repo.ptar.lock"]);
  });

  it("compacts at commit once most of the data is dead", async () => {
    const { file, store } = await archive();
    const objs = Array.from({ length: 3 }, () => ({ m: mac(), data: bytes(4 * MiB) }));
    for (const o of objs) await store.put(Resource.PACKFILE, o.m, o.data);
    await store.sync();
    const lineage = parsePtar(await fsp.readFile(file)).lineage;
    await store.delete(Resource.PACKFILE, objs[0]!.m);
    await store.sync();
    expect((await fsp.stat(file)).size).toBeGreaterThan(12 * MiB); // a third dead: kept
    await store.delete(Resource.PACKFILE, objs[1]!.m);
    await store.close();
    const b = await fsp.readFile(file);
    expect(b.byteLength).toBeLessThan(4 * MiB + 4096);
    const p = parsePtar(b);
    expect(p.lineage).not.toBe(lineage);
    expect(p.entries).toEqual([{ resource: Resource.PACKFILE, mac: toHex(objs[2]!.m), offset: HEADER, length: 4 * MiB }]);
    expectBytes(await open(file).get(Resource.PACKFILE, objs[2]!.m), objs[2]!.data);
  });

  it("holds a repository: create, a locked session writing packfiles and states, close, reopen, read", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const file = path.join(dir, "repo.ptar");
    await Repository.create(open(file), { passphrase: null, packSize: 64 * 1024 });
    const repo = await Repository.open(open(file), { passphrase: async () => null });
    await repo.acquire("exclusive", "test");
    expect(await listHex(open(file, { readOnly: true }), Resource.LOCK)).toHaveLength(1); // in this process's memory
    const blobs = Array.from({ length: 40 }, (_, i) => bytes(1000 + i * 500));
    const macs = await Promise.all(blobs.map(async (b) => (await repo.putBlob(BlobType.CHUNK, b)).mac));
    await repo.flush();
    await repo.close();
    expect(await ls(dir)).toEqual(["repo.ptar"]);
    expect(await listHex(open(file, { readOnly: true }), Resource.LOCK)).toEqual([]);

    const again = await Repository.open(open(file, { readOnly: true }), { passphrase: async () => null });
    expect(repo.written.packs).toBeGreaterThan(5);
    expect(await listHex(again.store as PtarStore, Resource.PACKFILE)).toHaveLength(repo.written.packs);
    for (const [i, m] of macs.entries()) expectBytes(await again.getBlob(BlobType.CHUNK, m), blobs[i]!);
    await again.close();
  });

  it("create: refuses an existing archive or file, accepts an empty file, makes missing parents", async () => {
    const { dir, file } = await archive();
    expect(await codeOf(open(file).create(bytes(3)))).toBe("REPOSITORY_EXISTS");
    const other = path.join(dir, "notes.txt");
    await fsp.writeFile(other, "hello");
    // Not an archive: refused as something else in the way, not as a repository.
    expect(await codeOf(open(other).create(bytes(3)))).toBe("NOT_EMPTY");
    expect(await fsp.readFile(other, "utf8")).toBe("hello");
    const empty = path.join(dir, "empty.ptar");
    await fsp.writeFile(empty, "");
    await open(empty).create(new Uint8Array([5]));
    expect([...(await open(empty).open())]).toEqual([5]);
    const deep = path.join(dir, "a", "b", "deep.ptar");
    await open(deep).create(new Uint8Array([6]));
    expect([...(await open(deep).open())]).toEqual([6]);
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) => open(path.join(dir, "race.ptar")).create(new Uint8Array([i]))),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect((await ls(dir)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });
});
