/**
 * What check() (src/snapshot/check.ts) reports about damaged packfiles in a
 * memory repository: every problem from a failed read carries the error
 * behind it, a CorruptError with the blob's type, MAC and packfile, and the
 * files that depend on the damaged blob are named.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { FsImporter } from "../../src/connectors/fs/importer.js";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import { BlobType } from "../../src/repository/codec.js";
import { Repository } from "../../src/repository/repository.js";
import { backup } from "../../src/snapshot/backup/backup.js";
import { check } from "../../src/snapshot/check.js";
import type { SnapshotHeader } from "../../src/snapshot/header.js";
import { TreeReader } from "../../src/snapshot/tree-reader.js";
import { CorruptError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";
import { writeSeededFile } from "../helpers/tree.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };
let base: string;
let mem: MemoryStore;
let snap: SnapshotHeader;

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-check-"));
  await writeSeededFile(path.join(base, "a.bin"), "check-a", 60_000);
  await writeSeededFile(path.join(base, "b.bin"), "check-b", 60_000);
  mem = new MemoryStore();
  await Repository.create(mem, { passphrase: null, packSize: 50_000, kdf: KDF });
  const repo = await Repository.open(mem, { passphrase: async () => null });
  snap = (await backup(repo, { importer: new FsImporter(base), hostname: "h", username: "u", os: "linux", arch: "x64", workers: 0 })).header;
  await repo.close();
});

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

/** check() over a copy of the repository whose packfile holding a.bin's first chunk is passed through `damage`. */
async function checkDamaged(damage: (pack: Buffer, at: { offset: number; length: number }) => Buffer) {
  const objects = new Map([...mem.backing.objects].map(([r, m]) => [r, new Map(m)]));
  const repo = await Repository.open(new MemoryStore({ backing: { config: mem.backing.config, objects } }), { passphrase: async () => null });
  const mac = (await new TreeReader(repo).lookup(snap.root, "/a.bin"))!.chunks![0]!.mac;
  const loc = repo.locate(BlobType.CHUNK, mac);
  const pack = toHex(loc.pack);
  const packs = objects.get(Resource.PACKFILE)!;
  packs.set(pack, damage(Buffer.from(packs.get(pack)!), loc));
  try {
    return { report: await check(repo), mac: toHex(mac), pack };
  } finally {
    await repo.close();
  }
}

describe("check of damaged packfiles", () => {
  it("a flipped byte in a chunk: a CorruptError naming the blob and its packfile, and the file that needs it", async () => {
    const { report, mac, pack } = await checkDamaged((b, at) => {
      b[at.offset + 20]! ^= 0x08;
      return b;
    });
    const blobProblem = report.problems.find((p) => p.snapshot === undefined && p.error?.data.mac === mac)!;
    expect(blobProblem.error).toBeInstanceOf(CorruptError);
    expect(blobProblem.error).toMatchObject({ code: "CORRUPT", detail: expect.stringMatching(/authentication failed/), data: { type: BlobType.CHUNK, mac, pack } });
    expect(blobProblem.message).toBe(blobProblem.error!.message);
    expect(report.problems.filter((p) => p.snapshot !== undefined).map((p) => p.path)).toEqual(["/a.bin"]);
  });

  it("a packfile cut short: its own CorruptError, and one per blob now beyond its end", async () => {
    const { report, mac, pack } = await checkDamaged((b, at) => b.subarray(0, at.offset + 10));
    const own = report.problems.find((p) => p.message.startsWith(`packfile ${pack}:`))!;
    expect(own.error).toBeInstanceOf(CorruptError);
    const beyond = report.problems.find((p) => p.error?.data.mac === mac)!;
    expect(beyond.error).toBeInstanceOf(CorruptError);
    expect(beyond.error).toMatchObject({ detail: "beyond the end of its packfile", data: { type: BlobType.CHUNK, mac, pack } });
    for (const p of report.problems.filter((x) => x.snapshot === undefined && x.error)) expect(p.error).toBeInstanceOf(CorruptError);
  });
});
