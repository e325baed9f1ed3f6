/**
 * The restore pool (src/snapshot/restore/pool.ts) with real worker threads,
 * running the compiled worker (dist/snapshot/restore/worker.js, built by
 * `npm run build`): a file is written identical, from local packfiles or
 * from stored bytes sent in parts to the one worker that began it; a batch
 * goes to an idle worker without waiting to be flushed; and a worker that
 * meets a damaged blob gives the main thread a CorruptError with its code,
 * detail and data, not a message alone.
 */
import { existsSync, promises as fsp, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsImporter } from "../../src/connectors/fs/importer.js";
import { FsStore } from "../../src/connectors/fs/store.js";
import { BlobType } from "../../src/repository/codec.js";
import { Repository } from "../../src/repository/repository.js";
import { backup } from "../../src/snapshot/backup/backup.js";
import { RestorePool } from "../../src/snapshot/restore/pool.js";
import { chunkJobs } from "../../src/snapshot/restore/via-workers.js";
import { TreeReader } from "../../src/snapshot/tree-reader.js";
import type { Entry } from "../../src/snapshot/tree.js";
import { CorruptError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";
import { nsToSeconds } from "../../src/util/time.js";
import { PROJECT_ROOT } from "../helpers/cli.js";
import { seededBytes } from "../helpers/tree.js";

const WORKER = path.join(PROJECT_ROOT, "dist", "snapshot", "restore", "worker.js");
const KDF = { memory: 8192, passes: 1, parallelism: 1 };
let base: string;
let repo: Repository;
let file: Entry;
let content: Buffer;
let pool: RestorePool;

beforeAll(async () => {
  if (!existsSync(WORKER)) throw new Error(`${WORKER} is missing: run \`npm run build\` first`);
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-restore-worker-"));
  const src = path.join(base, "src");
  await fsp.mkdir(src);
  content = seededBytes("restore-worker", 3 << 20);
  await fsp.writeFile(path.join(src, "f.bin"), content);
  const store = new FsStore(path.join(base, "repo"));
  await Repository.create(store, { passphrase: "pw", kdf: KDF });
  repo = await Repository.open(store, { passphrase: async () => "pw" });
  const { header } = await backup(repo, { importer: new FsImporter(src), hostname: "h", username: "u", os: "linux", arch: "x64", workers: 0 });
  file = (await new TreeReader(repo).lookup(header.root, "/f.bin"))!;
  expect(file.chunks!.length).toBeGreaterThan(1);
  pool = (await RestorePool.start(repo, 2, pathToFileURL(WORKER)))!;
  expect(pool).not.toBeNull();
});

afterAll(async () => {
  await pool?.close();
  await repo?.close();
  await fsp.rm(base, { recursive: true, force: true });
});

function write(to: string, chunks = chunkJobs(repo, file)) {
  return pool.write({ path: path.join(base, to), size: file.info.size, mode: file.info.mode, mtime: nsToSeconds(file.info.mtimeNs), owner: null, chunks });
}

describe("restore workers", () => {
  it("write a file identical", async () => {
    const { done } = await write("ok.bin");
    pool.flush();
    expect(await done).toBeUndefined();
    expect(Buffer.compare(await fsp.readFile(path.join(base, "ok.bin")), content)).toBe(0);
  });

  it("start a file's batch at once on an idle worker (no flush) and take its parts on that worker, in order", async () => {
    const first = await write("idle.bin");
    expect(await first.done).toBeUndefined(); // never flushed
    expect(Buffer.compare(await fsp.readFile(path.join(base, "idle.bin")), content)).toBe(0);

    // Each chunk's stored bytes sent along, one part per chunk, the file kept open between parts on one worker.
    const jobs = chunkJobs(repo, file).map((c) => ({ ...c, pack: path.basename(c.pack), data: new Uint8Array(readFileSync(c.pack).subarray(c.offset, c.offset + c.length)) }));
    const fileNo = pool.fileNumber();
    const to = path.join(base, "parts.bin");
    const job = { path: to, size: file.info.size, mode: file.info.mode, mtime: nsToSeconds(file.info.mtimeNs), owner: null };
    const dones: Promise<Error | undefined>[] = [];
    let worker: number | undefined;
    for (let i = 0; i < jobs.length; i++) {
      const queued = await pool.write({ ...job, chunks: [jobs[i]!], part: { file: fileNo, first: i === 0, last: i === jobs.length - 1 } }, worker);
      if (worker !== undefined) expect(queued.worker).toBe(worker);
      worker = queued.worker;
      dones.push(queued.done);
    }
    expect(await Promise.all(dones)).toEqual(jobs.map(() => undefined));
    expect(jobs.map((c) => c.data!.byteLength)).toEqual(jobs.map(() => 0)); // transferred with their batches, not copied
    expect(Buffer.compare(await fsp.readFile(to), content)).toBe(0);
  });

  it("give a damaged blob to the main thread as a CorruptError with its code, detail and data", async () => {
    // The second chunk's packfile, copied with one byte of that chunk flipped (named by its ID, as in the store).
    const jobs = chunkJobs(repo, file);
    const c = jobs[1]!;
    const pack = path.basename(c.pack);
    await fsp.mkdir(path.join(base, "damaged"));
    const bytes = await fsp.readFile(c.pack);
    bytes[c.offset + (c.length >> 1)]! ^= 0x10;
    await fsp.writeFile(path.join(base, "damaged", pack), bytes);
    jobs[1] = { ...c, pack: path.join(base, "damaged", pack) };

    const { done } = await write("damaged.bin", jobs);
    pool.flush();
    const error = await done;
    expect(error).toBeInstanceOf(CorruptError);
    const e = error as CorruptError;
    expect(e.code).toBe("CORRUPT");
    expect(e.detail).toMatch(/authentication failed/);
    expect(e.message).toContain(`packfile ${pack}`);
    expect(e.data).toEqual({ type: BlobType.CHUNK, mac: toHex(file.chunks![1]!.mac), pack });
  });
});
