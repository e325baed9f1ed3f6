/**
 * Runs the Store conformance suite against the fs store (a fresh temp
 * directory per test), plus what only a directory can show: the on-disk
 * layout, temp files, partial writes.
 */
import { randomBytes } from "node:crypto";
import { constants as fsConstants, promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { FsStore } from "../../src/connectors/fs/store.js";
import { LocationFlag } from "../../src/connectors/flags.js";
import { toHex } from "../../src/util/hex.js";
import { storeConformance } from "./store.js";

async function tempDir(): Promise<string> {
  return fsp.mkdtemp(path.join(tmpdir(), "coffer-fs-store-"));
}

storeConformance("fs", async () => {
  const root = await tempDir();
  const stores = [new FsStore(root)];
  return {
    store: stores[0]!,
    readOnly: async () => {
      stores.push(new FsStore(root, { readOnly: true }));
      return stores.at(-1)!;
    },
    cleanup: async () => {
      await Promise.all(stores.map((s) => s.close()));
      await fsp.rm(root, { recursive: true, force: true });
    },
  };
}, { replaceConfig: true, stage: true });

describe("FsStore on disk", () => {
  const dirs: string[] = [];
  const opened: FsStore[] = [];
  afterEach(async () => {
    // Their cached read handles are closed, not left to the garbage collector.
    await Promise.all(opened.splice(0).map((s) => s.close()));
    await Promise.all(dirs.splice(0).map((d) => fsp.rm(d, { recursive: true, force: true })));
  });

  async function repo(sub = ""): Promise<{ root: string; store: FsStore }> {
    const dir = await tempDir();
    dirs.push(dir);
    const root = path.join(dir, sub);
    const store = new FsStore(root);
    opened.push(store);
    await store.create(new Uint8Array([1, 2, 3]));
    return { root, store };
  }

  const mac = () => new Uint8Array(randomBytes(32));
  const bytes = (n: number) => new Uint8Array(randomBytes(n));

  async function* pieces(n: number, size: number): AsyncIterable<Uint8Array> {
    for (let i = 0; i < n; i++) yield bytes(size);
  }

  /** Every file under dir, relative, sorted. */
  async function files(dir: string): Promise<string[]> {
    const entries = await fsp.readdir(dir, { recursive: true, withFileTypes: true });
    return entries
      .filter((e) => e.isFile())
      .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
      .sort();
  }

  it("describes itself", async () => {
    const { root, store } = await repo();
    expect(store.type).toBe("fs");
    expect(store.root).toBe(path.resolve(root));
    expect(store.flags & LocationFlag.LOCALFS).toBe(LocationFlag.LOCALFS);
    expect(store.origin.length).toBeGreaterThan(0);
  });

  it("writes the fan-out layout", async () => {
    const { root, store } = await repo();
    const p = mac();
    const s = mac();
    const l = mac();
    await store.put(Resource.PACKFILE, p, bytes(10));
    await store.put(Resource.STATE, s, bytes(10));
    await store.put(Resource.LOCK, l, bytes(10));
    const [ph, sh, lh] = [toHex(p), toHex(s), toHex(l)];
    expect(await files(root)).toEqual(
      [
        "CONFIG",
        path.join("packfiles", ph.slice(0, 2), ph),
        path.join("states", sh.slice(0, 2), sh),
        path.join("locks", lh),
      ].sort(),
    );
    expect([...(await fsp.readFile(path.join(root, "CONFIG")))]).toEqual([1, 2, 3]);
  });

  it("leaves no temp files after puts, failed puts and aborted puts", async () => {
    const { root, store } = await repo();
    for (let i = 0; i < 20; i++) await store.put(Resource.PACKFILE, mac(), bytes(i * 100));
    await store.put(Resource.STATE, mac(), pieces(50, 1000));
    async function* failing(): AsyncIterable<Uint8Array> {
      yield bytes(1000);
      throw new Error("source failed");
    }
    await expect(store.put(Resource.PACKFILE, mac(), failing())).rejects.toThrow();
    const ac = new AbortController();
    async function* aborting(): AsyncIterable<Uint8Array> {
      yield bytes(1000);
      ac.abort();
      yield bytes(1000);
    }
    await expect(store.put(Resource.PACKFILE, mac(), aborting(), { signal: ac.signal })).rejects.toMatchObject({
      code: "INTERRUPTED",
    });
    expect(await fsp.readdir(path.join(root, "tmp"))).toEqual([]);
  });

  it("a put whose source throws half-way leaves no object and no visible partial file", async () => {
    const { root, store } = await repo();
    const m = mac();
    const hex = toHex(m);
    const before = await files(root);
    async function* failing(): AsyncIterable<Uint8Array> {
      yield* pieces(8, 64 * 1024);
      throw new Error("source failed half-way");
    }
    await expect(store.put(Resource.PACKFILE, m, failing())).rejects.toThrow("source failed half-way");
    await expect(fsp.stat(path.join(root, "packfiles", hex.slice(0, 2), hex))).rejects.toMatchObject({ code: "ENOENT" });
    expect(await files(root)).toEqual(before);
  });

  it("is readable while a put is in progress only once the put is complete", async () => {
    const { store } = await repo();
    const m = mac();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    async function* slow(): AsyncIterable<Uint8Array> {
      yield bytes(1000);
      await gate;
      yield bytes(1000);
    }
    const put = store.put(Resource.PACKFILE, m, slow());
    await new Promise((r) => setTimeout(r, 20));
    await expect(store.get(Resource.PACKFILE, m)).rejects.toMatchObject({ code: "NOT_FOUND" });
    const listed: Uint8Array[] = [];
    for await (const x of store.list(Resource.PACKFILE)) listed.push(x);
    expect(listed).toEqual([]);
    release();
    expect(await put).toBe(2000);
    expect((await store.get(Resource.PACKFILE, m)).byteLength).toBe(2000);
  });

  it("list skips stray names in the resource directories", async () => {
    const { root, store } = await repo();
    const m = mac();
    const hex = toHex(m);
    await store.put(Resource.PACKFILE, m, bytes(5));
    const fan = path.join(root, "packfiles", hex.slice(0, 2));
    await fsp.writeFile(path.join(fan, `${hex}.tmp`), "x");
    await fsp.writeFile(path.join(fan, "notes.txt"), "x");
    await fsp.writeFile(path.join(fan, hex.toUpperCase()), "x");
    const misplaced = (hex.startsWith("00") ? "ff" : "00") + hex.slice(2);
    await fsp.mkdir(path.join(root, "packfiles", "zz"));
    await fsp.writeFile(path.join(root, "packfiles", "zz", hex), "x");
    await fsp.writeFile(path.join(fan, misplaced), "x");
    await fsp.writeFile(path.join(root, "locks", "README"), "x");
    const listed: string[] = [];
    for await (const x of store.list(Resource.PACKFILE)) listed.push(toHex(x));
    expect(listed).toEqual([hex]);
    const locks: string[] = [];
    for await (const x of store.list(Resource.LOCK)) locks.push(toHex(x));
    expect(locks).toEqual([]);
  });

  it("create makes a missing root with its parents; open of a missing root is NO_REPOSITORY", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const root = path.join(dir, "a", "b", "repo");
    await expect(new FsStore(root).open()).rejects.toMatchObject({ code: "NO_REPOSITORY" });
    await expect(new FsStore(root).ping()).rejects.toMatchObject({ code: "NO_REPOSITORY" });
    await new FsStore(root).create(new Uint8Array([9]));
    expect([...(await new FsStore(root).open())]).toEqual([9]);
    expect((await fsp.readdir(root)).sort()).toEqual(["CONFIG", "locks", "packfiles", "states", "tmp"]);
  });

  it("a half-created repository (directories, no CONFIG) is no repository and can be created", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    for (const d of ["packfiles", "states", "locks", "tmp"]) await fsp.mkdir(path.join(dir, d));
    const store = new FsStore(dir);
    await expect(store.open()).rejects.toMatchObject({ code: "NO_REPOSITORY" });
    await store.create(new Uint8Array([7]));
    expect([...(await store.open())]).toEqual([7]);
  });

  it("concurrent creates: exactly one wins", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => new FsStore(dir).create(new Uint8Array([i]))),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const r of results) {
      if (r.status === "rejected") expect(r.reason).toMatchObject({ code: "REPOSITORY_EXISTS" });
    }
    expect(await fsp.readdir(path.join(dir, "tmp"))).toEqual([]);
  });

  it("open removes temp files older than an hour and keeps recent ones", async () => {
    const { root } = await repo();
    const tmp = path.join(root, "tmp");
    await fsp.writeFile(path.join(tmp, "old.tmp"), "x");
    await fsp.writeFile(path.join(tmp, "new.tmp"), "x");
    const twoHoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
    await fsp.utimes(path.join(tmp, "old.tmp"), twoHoursAgo, twoHoursAgo);
    await new FsStore(root, { readOnly: true }).open();
    expect((await fsp.readdir(tmp)).sort()).toEqual(["new.tmp", "old.tmp"]);
    await new FsStore(root).open();
    expect(await fsp.readdir(tmp)).toEqual(["new.tmp"]);
  });

  it("put recreates a missing tmp directory", async () => {
    const { root, store } = await repo();
    await fsp.rm(path.join(root, "tmp"), { recursive: true });
    const m = mac();
    await store.put(Resource.LOCK, m, bytes(3));
    expect((await store.get(Resource.LOCK, m)).byteLength).toBe(3);
  });

  describe("stage (a put named at the end)", () => {
    it("writes parts to a temp file as they come; commit makes them the object, abort leaves nothing", async () => {
      const { root, store } = await repo();
      const tmp = path.join(root, "tmp");
      const staged = await store.stage(Resource.PACKFILE);
      const parts = [bytes(10), bytes(0), bytes(70_000), bytes(1)];
      await staged.write(parts.slice(0, 2));
      await staged.write(parts.slice(2));
      // on disk already, not visible
      const temps = await fsp.readdir(tmp);
      expect(temps).toHaveLength(1);
      expect((await fsp.stat(path.join(tmp, temps[0]!))).size).toBe(70_011);
      expect(await files(path.join(root, "packfiles"))).toEqual([]);
      const m = mac();
      expect(await staged.commit(m)).toBe(70_011);
      expect(Buffer.from(await store.get(Resource.PACKFILE, m)).equals(Buffer.concat(parts))).toBe(true);
      expect(await fsp.readdir(tmp)).toEqual([]);
      await expect(staged.write([bytes(1)])).rejects.toMatchObject({ code: "IO" });
      await expect(staged.commit(mac())).rejects.toMatchObject({ code: "IO" });

      const dropped = await store.stage(Resource.PACKFILE);
      await dropped.write([bytes(5000)]);
      await dropped.abort();
      expect(await fsp.readdir(tmp)).toEqual([]);
      expect(await files(path.join(root, "packfiles"))).toHaveLength(1);
    });

    it("with the direct hint: the same objects, whatever the sizes, across staging-buffer boundaries; O_DIRECT where the file system takes it", async () => {
      const { root, store } = await repo();
      const MiB = 1 << 20;
      let directOk = true;
      const probe = path.join(root, "probe");
      await fsp.writeFile(probe, "");
      try {
        await (await fsp.open(probe, fsConstants.O_WRONLY | (fsConstants.O_DIRECT ?? 0))).close();
      } catch {
        directOk = false;
      }
      const cases: number[][] = [
        [],
        [1],
        [4095, 1],
        [4 * MiB],
        [1, 4 * MiB - 4097, 4096, 5],
        [3 * MiB, 3 * MiB, 17, 0, 2 * MiB + 4095],
        [9 * MiB + 3],
      ];
      for (const [i, sizes] of cases.entries()) {
        const parts = sizes.map((n, j) => randomBytes(n).fill(i + j, 0, Math.min(n, 1)));
        const staged = await store.stage(Resource.PACKFILE, { direct: true });
        // in two calls, the second starting mid-buffer
        await staged.write(parts.slice(0, 1));
        await staged.write(parts.slice(1));
        const m = mac();
        const total = sizes.reduce((a, b) => a + b, 0);
        expect(await staged.commit(m)).toBe(total);
        const back = Buffer.from(await store.get(Resource.PACKFILE, m));
        expect(back.byteLength, `case ${i}`).toBe(total);
        expect(back.equals(Buffer.concat(parts)), `case ${i}`).toBe(true);
      }
      expect(await fsp.readdir(path.join(root, "tmp"))).toEqual([]);
      // 4 MiB staged at a time: 1 + 1 + 2 + 2 whole buffers written directly
      if (process.platform === "linux" && directOk) expect(store.direct.writes).toBeGreaterThanOrEqual(6);

      const dropped = await store.stage(Resource.PACKFILE, { direct: true });
      await dropped.write([randomBytes(5 * MiB)]);
      await dropped.abort();
      expect(await fsp.readdir(path.join(root, "tmp"))).toEqual([]);
      // without the hint: no direct writes
      const before = store.direct.writes;
      const plain = await store.stage(Resource.PACKFILE);
      await plain.write([randomBytes(5 * MiB)]);
      await plain.commit(mac());
      expect(store.direct.writes).toBe(before);
    });

    it("takes more buffers than one writev call does (IOV_MAX), in order", async () => {
      const { store } = await repo();
      const staged = await store.stage(Resource.PACKFILE);
      const parts = Array.from({ length: 2500 }, (_, i) => bytes(i % 5));
      await staged.write(parts);
      const m = mac();
      await staged.commit(m);
      expect(Buffer.from(await store.get(Resource.PACKFILE, m)).equals(Buffer.concat(parts))).toBe(true);
    });

    it("is refused by a read-only store, and by an aborted signal at commit (nothing left)", async () => {
      const { root, store } = await repo();
      await expect(new FsStore(root, { readOnly: true }).stage(Resource.PACKFILE)).rejects.toMatchObject({ code: "READ_ONLY" });
      const staged = await store.stage(Resource.PACKFILE);
      await staged.write([bytes(100)]);
      const ac = new AbortController();
      ac.abort();
      const m = mac();
      await expect(staged.commit(m, { signal: ac.signal })).rejects.toMatchObject({ code: "INTERRUPTED" });
      expect(await fsp.readdir(path.join(root, "tmp"))).toEqual([]);
      await expect(store.get(Resource.PACKFILE, m)).rejects.toMatchObject({ code: "NOT_FOUND" });
    });
  });

  it("filesystem failures are IO errors naming the path", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const file = path.join(dir, "not-a-dir");
    await fsp.writeFile(file, "x");
    const err: unknown = await new FsStore(file).create(new Uint8Array([1])).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "IO" });
    expect(String((err as Error).message)).toContain(file);
  });
});
