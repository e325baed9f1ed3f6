/**
 * A partial check (src/snapshot/check.ts): it reads whole only the
 * packfiles it is given, in that order, starts none once the time limit has
 * passed (on an injected clock: no timing here), and returns the packfiles
 * it found intact, not the damaged ones.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { FsImporter } from "../../src/connectors/fs/importer.js";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import { Repository } from "../../src/repository/repository.js";
import { backup } from "../../src/snapshot/backup/backup.js";
import { check } from "../../src/snapshot/check.js";
import { toHex } from "../../src/util/hex.js";
import { writeSeededFile } from "../helpers/tree.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };
const CHUNKING = { min: 1024, avg: 2048, max: 8192 };
let base: string;
let mem: MemoryStore;
/** Every packfile's name, in the order the tests give them to check. */
let packs: Uint8Array[];

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-check-partial-"));
  for (let i = 0; i < 4; i++) await writeSeededFile(path.join(base, `f${i}.bin`), `partial-${i}`, 20_000);
  mem = new MemoryStore();
  await Repository.create(mem, { passphrase: null, packSize: 8192, chunking: CHUNKING, kdf: KDF });
  const repo = await Repository.open(mem, { passphrase: async () => null });
  await backup(repo, { importer: new FsImporter(base), hostname: "h", username: "u", os: "linux", arch: "x64", workers: 0 });
  packs = [...repo.index.packs.values()].sort((a, b) => Buffer.compare(b, a));
  await repo.close();
});

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

/** A repository on a copy of the store, its packfile `damaged` (hex) cut short if given. */
async function copy(damaged?: string): Promise<Repository> {
  const objects = new Map([...mem.backing.objects].map(([r, m]) => [r, new Map(m)]));
  if (damaged !== undefined) {
    const p = objects.get(Resource.PACKFILE)!;
    p.set(damaged, p.get(damaged)!.subarray(0, 100));
  }
  return Repository.open(new MemoryStore({ backing: { config: mem.backing.config, objects } }), { passphrase: async () => null });
}

describe("a partial check", () => {
  it("has packfiles enough to test", () => {
    expect(packs.length).toBeGreaterThanOrEqual(6);
  });

  it("reads only the packfiles it is given and returns them as verified, at the clock's time", async () => {
    const repo = await copy();
    try {
      const given = packs.slice(0, 3);
      const r = await check(repo, { readPacks: given, clock: () => 1234 });
      expect(r.problems).toEqual([]);
      expect(r.read).toMatchObject({ packs: 3, stopped: false, of: { packs: packs.length } });
      expect(r.read.bytes).toBe(given.reduce((n, m) => n + repo.index.packBytes.get(toHex(m))!, 0));
      expect(r.read.of.bytes).toBe([...repo.index.packBytes.values()].reduce((a, b) => a + b, 0));
      expect(r.verified.map((v) => toHex(v.pack)).sort()).toEqual(given.map(toHex).sort());
      for (const v of r.verified) expect(v.timeMs).toBe(1234);
      expect(r.blobs).toBe(given.reduce((n, m) => n + repo.index.blobsOfPack(m).length, 0));
    } finally {
      await repo.close();
    }
  });

  it("a full check reads every packfile and verifies them all", async () => {
    const repo = await copy();
    try {
      const r = await check(repo);
      expect(r.read).toMatchObject({ packs: packs.length, stopped: false });
      expect(r.verified).toHaveLength(packs.length);
    } finally {
      await repo.close();
    }
  });

  it("--fast verifies nothing", async () => {
    const repo = await copy();
    try {
      const r = await check(repo, { fast: true });
      expect(r.read.packs).toBe(0);
      expect(r.verified).toEqual([]);
    } finally {
      await repo.close();
    }
  });

  // The clock moves 10 ms each time a packfile read starts: a read may start while less than the limit has passed.
  for (const [limit, expected] of [
    [0, 1],
    [5, 1],
    [10, 1],
    [25, 3],
    [40, 4],
    [1e9, Infinity],
  ] as const) {
    it(`a time limit of ${limit} ms on a clock moving 10 ms per packfile started reads ${expected === Infinity ? "all" : expected}, in the order given`, async () => {
      const repo = await copy();
      try {
        let t = 0;
        const r = await check(repo, { readPacks: packs, maxDurationMs: limit, clock: () => t, onProgress: (what) => void (what.startsWith("packfile") && (t += 10)) });
        const n = Math.min(expected, packs.length);
        expect(r.read.packs).toBe(n);
        expect(r.read.stopped).toBe(n < packs.length);
        expect(r.verified.map((v) => toHex(v.pack)).sort()).toEqual(packs.slice(0, n).map(toHex).sort());
        expect(r.problems).toEqual([]);
      } finally {
        await repo.close();
      }
    });
  }

  it("a damaged packfile is reported and not returned as verified", async () => {
    const bad = toHex(packs[1]!);
    const repo = await copy(bad);
    try {
      const r = await check(repo, { readPacks: packs.slice(0, 3) });
      expect(r.problems.some((p) => p.message.includes(bad))).toBe(true);
      expect(r.verified.map((v) => toHex(v.pack)).sort()).toEqual([packs[0]!, packs[2]!].map(toHex).sort());
    } finally {
      await repo.close();
    }
  });
});
