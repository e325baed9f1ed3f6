/**
 * restore() (src/snapshot/restore/restore.ts) in process, from a memory store under
 * the fault kit (test/helpers/faults.ts), to a temporary directory: every
 * read goes through the store (the decorators have no localPath(), so no
 * worker reads packfiles behind them), a chunk whose reads fail fails its
 * file only, and a packfile gone from the store fails exactly the files
 * with content in it.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { FsExporter } from "../../src/connectors/fs/exporter.js";
import { FsImporter } from "../../src/connectors/fs/importer.js";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import type { Store } from "../../src/connectors/store.js";
import { BlobType } from "../../src/repository/codec.js";
import { Repository } from "../../src/repository/repository.js";
import { backup } from "../../src/snapshot/backup/backup.js";
import type { SnapshotHeader } from "../../src/snapshot/header.js";
import { readChunks } from "../../src/snapshot/restore/content.js";
import { restore, type RestoreEvent } from "../../src/snapshot/restore/restore.js";
import { TreeReader } from "../../src/snapshot/tree-reader.js";
import { CorruptError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";
import { failing, faults, recording } from "../helpers/faults.js";
import { compareTrees, writeSeededFile } from "../helpers/tree.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };
let base: string;
let src: string;
let mem: MemoryStore;
let snap: SnapshotHeader;
let n = 0;
const FILES = ["a.bin", "b.bin", "sub/c.bin", "sub/deeper/d.txt"];

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-restore-"));
  src = path.join(base, "src");
  await fsp.mkdir(path.join(src, "sub", "deeper"), { recursive: true });
  for (const [i, f] of FILES.entries()) await writeSeededFile(path.join(src, f), `restore-${i}`, 40_000 + i * 20_000);
  mem = new MemoryStore();
  // Small packfiles: the files' chunks land in different ones.
  await Repository.create(mem, { passphrase: null, packSize: 50_000, kdf: KDF });
  const repo = await open(mem);
  snap = (await backup(repo, { importer: new FsImporter(src), hostname: "h", username: "u", os: "linux", arch: "x64", workers: 0 })).header;
  await repo.close();
});

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

function open(store: Store): Promise<Repository> {
  return Repository.open(store, { passphrase: async () => null });
}

/** Restores the snapshot from `store` to a new directory. */
async function restoreFrom(store: Store): Promise<{ out: string; errors: [string, string][]; events: RestoreEvent[] }> {
  const repo = await open(store);
  const out = path.join(base, `out-${++n}`);
  const exporter = new FsExporter(out);
  const events: RestoreEvent[] = [];
  try {
    const r = await restore(repo, snap, "/", exporter, { workers: 2, onEvent: (e) => events.push(e) });
    return { out, errors: r.errors, events };
  } finally {
    await exporter.close();
    await repo.close();
  }
}

/** Where the first chunk of `file` is stored. */
async function firstChunk(file: string): Promise<{ pack: string; offset: number }> {
  const repo = await open(mem);
  const e = await new TreeReader(repo).lookup(snap.root, `/${file}`);
  const loc = repo.locate(BlobType.CHUNK, e!.chunks![0]!.mac);
  return { pack: toHex(loc.pack), offset: loc.offset };
}

describe("restore through the fault kit", () => {
  it("reads every packfile through the store, and restores identical", async () => {
    const store = recording(mem);
    const { out, errors } = await restoreFrom(store);
    expect(errors).toEqual([]);
    expect(await compareTrees(src, out, { rootMeta: false })).toEqual([]);
    const packs = store.entries({ op: "get", resource: Resource.PACKFILE }, "done");
    expect(packs.length).toBeGreaterThanOrEqual(FILES.length);
    expect(packs.every((l) => l.range !== undefined)).toBe(true); // ranged reads, not whole packfiles
    expect(store.entries({}, "failed")).toEqual([]);
  });

  it("a chunk whose reads fail (IO) fails its file only; the others restore identical", async () => {
    const { pack, offset } = await firstChunk("sub/c.bin");
    const store = failing(mem, { op: "get", when: (c) => c.mac === pack && c.range?.offset === offset, times: Infinity, error: faults.io });
    const { out, errors } = await restoreFrom(store);
    expect(store.failed.length).toBeGreaterThan(0);
    expect(errors.map(([p]) => p)).toEqual(["/sub/c.bin"]);
    expect(errors[0]![1]).toMatch(/EIO/);
    expect(await compareTrees(src, out, { rootMeta: false, ignore: (rel) => rel === "sub/c.bin" })).toEqual([]);
  });

  it("a packfile gone from the store (NOT_FOUND) fails exactly the files with content in it", async () => {
    const { pack } = await firstChunk("b.bin");
    const repo = await open(mem);
    const reader = new TreeReader(repo);
    const inPack: string[] = [];
    for await (const { path: p, entry } of reader.walk(snap.root, "/")) {
      if (entry.chunks?.some((c) => toHex(repo.locate(BlobType.CHUNK, c.mac).pack) === pack)) inPack.push(p);
    }
    await repo.close();
    expect(inPack).toContain("/b.bin");
    const store = failing(mem, { op: "get", when: (c) => c.mac === pack, times: Infinity, error: faults.notFound });
    const { errors } = await restoreFrom(store);
    expect(errors.map(([p]) => p).sort()).toEqual(inPack.sort());
    for (const [, why] of errors) expect(why).toMatch(/missing/);
  });
});

describe("damaged content", () => {
  it("a flipped byte in a chunk fails its file with a CorruptError naming the blob; the others restore identical", async () => {
    const { pack, offset } = await firstChunk("sub/deeper/d.txt");
    const repo = await open(mem);
    const e = await new TreeReader(repo).lookup(snap.root, "/sub/deeper/d.txt");
    await repo.close();
    // A copy of the store whose packfile has one byte of that chunk flipped.
    const objects = new Map([...mem.backing.objects].map(([r, m]) => [r, new Map(m)]));
    const packs = objects.get(Resource.PACKFILE)!;
    const damaged = Buffer.from(packs.get(pack)!);
    damaged[offset + 40]! ^= 0x01;
    packs.set(pack, damaged);
    const { out, errors, events } = await restoreFrom(new MemoryStore({ backing: { config: mem.backing.config, objects } }));
    expect(errors.map(([p]) => p)).toEqual(["/sub/deeper/d.txt"]);
    const failed = events.filter((ev) => ev.type === "error");
    expect(failed).toHaveLength(1);
    const error = failed[0]!.error;
    expect(error).toBeInstanceOf(CorruptError);
    expect(error).toMatchObject({ code: "CORRUPT", detail: expect.stringMatching(/authentication failed/), data: { type: BlobType.CHUNK, mac: toHex(e!.chunks![0]!.mac) } });
    expect(failed[0]!.message).toBe(errors[0]![1]);
    expect(await compareTrees(src, out, { rootMeta: false, ignore: (rel) => rel === "sub/deeper/d.txt" })).toEqual([]);
  });

  it("readChunks refuses a chunk whose length is not the one its entry records, with a CorruptError", async () => {
    const repo = await open(mem);
    const e = await new TreeReader(repo).lookup(snap.root, "/a.bin");
    const c = e!.chunks![0]!;
    const read = async () => {
      for await (const _ of readChunks(repo, [{ ...c, length: c.length + 1 }]));
    };
    await expect(read()).rejects.toSatisfy((x) => x instanceof CorruptError && x.data.mac === toHex(c.mac) && x.detail === `has ${c.length} bytes, expected ${c.length + 1}`);
    await repo.close();
  });
});
