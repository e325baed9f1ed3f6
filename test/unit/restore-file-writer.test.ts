/**
 * What a restore worker does with a file (src/snapshot/restore/file-writer.ts),
 * run in process: chunks read straight from the fs store's packfiles
 * (jobs made by via-workers.ts's chunkJobs) or sent along as stored bytes
 * (a remote store's, whole or in parts), the file identical with its
 * holes, mode and mtime; a damaged or truncated packfile, or damaged bytes
 * sent along, is a CorruptError naming the blob and the packfile.
 */
import { promises as fsp, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { FsImporter } from "../../src/connectors/fs/importer.js";
import { FsStore } from "../../src/connectors/fs/store.js";
import { BlobType, Codec } from "../../src/repository/codec.js";
import { Repository } from "../../src/repository/repository.js";
import { backup } from "../../src/snapshot/backup/backup.js";
import { FileWriter } from "../../src/snapshot/restore/file-writer.js";
import type { ChunkJob, FileJob } from "../../src/snapshot/restore/protocol.js";
import { chunkJobs } from "../../src/snapshot/restore/via-workers.js";
import { TreeReader } from "../../src/snapshot/tree-reader.js";
import type { Entry } from "../../src/snapshot/tree.js";
import { CorruptError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";
import { nsToSeconds } from "../../src/util/time.js";
import { seededBytes } from "../helpers/tree.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };
const MiB = 1 << 20;
let base: string;
let repo: Repository;
let file: Entry;
let content: Buffer;
let writer: FileWriter;
let n = 0;

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-file-writer-"));
  const src = path.join(base, "src");
  await fsp.mkdir(src);
  // Several chunks, with 1 MiB of zeros in the middle (holes when restored).
  content = Buffer.concat([seededBytes("fw-a", 2 * MiB), Buffer.alloc(MiB), seededBytes("fw-b", 2 * MiB)]);
  await fsp.writeFile(path.join(src, "f.bin"), content, { mode: 0o640 });
  const store = new FsStore(path.join(base, "repo"));
  await Repository.create(store, { passphrase: "pw", kdf: KDF });
  repo = await Repository.open(store, { passphrase: async () => "pw" });
  const { header } = await backup(repo, { importer: new FsImporter(src), hostname: "h", username: "u", os: "linux", arch: "x64", workers: 0 });
  file = (await new TreeReader(repo).lookup(header.root, "/f.bin"))!;
  expect(file.chunks!.length).toBeGreaterThan(2);
  writer = new FileWriter(new Codec({ keys: repo.keys, encrypted: true, compression: repo.config.compression }));
});

afterAll(async () => {
  writer?.close();
  await repo?.close();
  await fsp.rm(base, { recursive: true, force: true });
});

function job(chunks = chunkJobs(repo, file)): FileJob {
  return { id: 1, path: path.join(base, `out-${++n}`), size: file.info.size, mode: file.info.mode, mtime: nsToSeconds(file.info.mtimeNs), owner: null, chunks };
}

/** The chunk jobs with each blob's stored bytes sent along, as from a remote store (`pack` then names the packfile by ID). */
function inlineJobs(): ChunkJob[] {
  return chunkJobs(repo, file).map((c) => ({ ...c, pack: path.basename(c.pack), data: new Uint8Array(readFileSync(c.pack).subarray(c.offset, c.offset + c.length)) }));
}

/** A copy of the packfile holding chunk `i`, in a folder of its own, with `damage` applied; the chunk jobs pointing into it. */
async function damagedCopy(i: number, damage: (pack: Buffer, at: { offset: number; length: number }) => Buffer) {
  const jobs = chunkJobs(repo, file);
  const c = jobs[i]!;
  const dir = path.join(base, `damaged-${++n}`);
  await fsp.mkdir(dir);
  const copy = path.join(dir, path.basename(c.pack)); // named by the packfile's ID, as in the store
  await fsp.writeFile(copy, damage(await fsp.readFile(c.pack), c));
  jobs[i] = { ...c, pack: copy };
  return { jobs, pack: path.basename(c.pack), mac: toHex(file.chunks![i]!.mac) };
}

describe("FileWriter", () => {
  it("writes the file identical from local packfiles, its zero run as a hole, with mode and mtime", () => {
    const j = job();
    expect(j.chunks[0]!.pack).toBe(repo.store.localPath!(Resource.PACKFILE, repo.locate(BlobType.CHUNK, file.chunks![0]!.mac).pack));
    writer.write(j);
    expect(Buffer.compare(readFileSync(j.path), content)).toBe(0);
    const st = statSync(j.path);
    expect(st.mode & 0o7777).toBe(0o640);
    expect(st.mtimeMs).toBeCloseTo(j.mtime * 1000, 0);
    expect(st.blocks * 512).toBeLessThan(content.byteLength); // the zeros were not written
  });

  it("a flipped byte in a chunk is a CorruptError naming the chunk blob and its packfile", async () => {
    const { jobs, pack, mac } = await damagedCopy(1, (b, at) => {
      b[at.offset + (at.length >> 1)]! ^= 0x40;
      return b;
    });
    const j = job(jobs);
    let thrown: unknown;
    try {
      writer.write(j);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(CorruptError);
    const e = thrown as CorruptError;
    expect(e.code).toBe("CORRUPT");
    expect(e.detail).toMatch(/authentication failed/);
    expect(e.data).toMatchObject({ type: BlobType.CHUNK, mac, pack });
  });

  it("a packfile cut short is a CorruptError (short read) with the blob's type, MAC and packfile", async () => {
    const { jobs, pack, mac } = await damagedCopy(2, (b, at) => b.subarray(0, at.offset + 10));
    let thrown: unknown;
    try {
      writer.write(job(jobs));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(CorruptError);
    expect(thrown).toMatchObject({ code: "CORRUPT", detail: "short read (damaged or truncated packfile)", data: { type: BlobType.CHUNK, mac, pack } });
  });

  it("writes the file identical from stored bytes sent along, whole and in parts (the parts kept open between them)", () => {
    const whole = job(inlineJobs());
    writer.write(whole);
    expect(Buffer.compare(readFileSync(whole.path), content)).toBe(0);
    expect(statSync(whole.path).blocks * 512).toBeLessThan(content.byteLength);

    const chunks = inlineJobs();
    const base = job([]);
    const cut = [0, 1, chunks.length - 1, chunks.length];
    for (let i = 0; i < 3; i++) {
      writer.write({ ...base, chunks: chunks.slice(cut[i], cut[i + 1]), part: { file: 7, first: i === 0, last: i === 2 } });
      // its metadata waits for the last part (created 0600)
      if (i < 2) expect(statSync(base.path).mode & 0o777).toBe(0o600);
    }
    expect(Buffer.compare(readFileSync(base.path), content)).toBe(0);
    expect(statSync(base.path).mode & 0o7777).toBe(0o640);
    expect(statSync(base.path).mtimeMs).toBeCloseTo(base.mtime * 1000, 0);
  });

  it("an abandoned file is closed as it is; a part after a failed first part fails without touching anything", async () => {
    const chunks = inlineJobs();
    const a = job([]);
    writer.write({ ...a, chunks: chunks.slice(0, 1), part: { file: 8, first: true, last: false } });
    writer.write({ ...a, chunks: [], part: { file: 8, first: false, last: true, abandon: true } });
    expect(statSync(a.path).size).toBe(file.chunks![0]!.length); // what was written, no metadata set
    expect(() => writer.write({ ...a, chunks: chunks.slice(1), part: { file: 8, first: false, last: true } })).toThrow(/an earlier part of the file was not written/);

    const b = job([]);
    await fsp.writeFile(b.path, "already here");
    expect(() => writer.write({ ...b, chunks: chunks.slice(0, 1), part: { file: 9, first: true, last: false } })).toThrow(expect.objectContaining({ code: "EEXIST" }));
    expect(() => writer.write({ ...b, chunks: chunks.slice(1), part: { file: 9, first: false, last: true } })).toThrow(/an earlier part/);
    expect(await fsp.readFile(b.path, "utf8")).toBe("already here");
  });

  it("stored bytes sent along that are damaged or of the wrong length are a CorruptError naming the blob and its packfile", () => {
    const flipped = inlineJobs();
    const c = flipped[1]!;
    c.data![c.length >> 1]! ^= 0x02;
    expect(() => writer.write(job(flipped))).toThrow(expect.objectContaining({ code: "CORRUPT", detail: expect.stringMatching(/authentication failed/), data: { type: BlobType.CHUNK, mac: toHex(file.chunks![1]!.mac), pack: c.pack } }));

    const short = inlineJobs();
    short[0] = { ...short[0]!, data: short[0]!.data!.subarray(0, 100) };
    expect(() => writer.write(job(short))).toThrow(expect.objectContaining({ code: "CORRUPT", detail: `came with 100 bytes, expected ${short[0]!.length}` }));
  });

  it("never writes over an existing file (EEXIST, not corruption)", async () => {
    const j = job();
    await fsp.writeFile(j.path, "already here");
    expect(() => writer.write(j)).toThrow(expect.objectContaining({ code: "EEXIST" }));
    expect(await fsp.readFile(j.path, "utf8")).toBe("already here");
  });
});
