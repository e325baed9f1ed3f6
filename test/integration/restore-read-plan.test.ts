/**
 * Restore's planned reads (src/repository/blob-reader.ts through
 * src/snapshot/restore/): a restore of many small files from a store that
 * reads like a remote one (a counting wrapper around a memory store, no
 * localPath) does far fewer reads than there are chunks, and gives the same
 * files; a serial exporter with a budget far below the data restores them
 * all the same.
 */
import { createHash } from "node:crypto";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsExporter } from "../../src/connectors/fs/exporter.js";
import { FsImporter } from "../../src/connectors/fs/importer.js";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import type { ExportRecord, ExportResult, Exporter } from "../../src/connectors/records.js";
import type { Store } from "../../src/connectors/store.js";
import { Repository } from "../../src/repository/repository.js";
import { backup } from "../../src/snapshot/backup/backup.js";
import type { SnapshotHeader } from "../../src/snapshot/header.js";
import { restore } from "../../src/snapshot/restore/restore.js";
import { TreeReader } from "../../src/snapshot/tree-reader.js";
import { CountingStore } from "../helpers/counting-store.js";
import { compareTrees, seededBytes } from "../helpers/tree.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };
let base: string;
let src: string;
let mem: MemoryStore;
let snap: SnapshotHeader;
let chunks = 0;
let bytes = 0;
const sums = new Map<string, string>();

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-read-plan-"));
  src = path.join(base, "src");
  for (let d = 0; d < 6; d++) {
    await fsp.mkdir(path.join(src, `d${d}`, "sub"), { recursive: true });
    for (let f = 0; f < 60; f++) {
      const rel = path.join(`d${d}`, f % 3 === 0 ? "sub" : "", `f${f}.bin`);
      const data = seededBytes(`plan-${d}-${f}`, 500 + ((d * 61 + f * 37) % 9000));
      await fsp.writeFile(path.join(src, rel), data);
      sums.set(`/${rel}`, createHash("sha256").update(data).digest("hex"));
    }
  }
  const big = seededBytes("plan-big", 3 << 20);
  await fsp.writeFile(path.join(src, "big.bin"), big);
  sums.set("/big.bin", createHash("sha256").update(big).digest("hex"));
  mem = new MemoryStore();
  await Repository.create(mem, { passphrase: null, packSize: 1 << 20, kdf: KDF });
  const repo = await open(mem);
  snap = (await backup(repo, { importer: new FsImporter(src), hostname: "h", username: "u", os: "linux", arch: "x64", workers: 0 })).header;
  for await (const { entry } of new TreeReader(repo).walk(snap.root, "/")) {
    chunks += entry.chunks?.length ?? 0;
    if (entry.info.kind === "file") bytes += entry.info.size;
  }
  await repo.close();
});

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

function open(store: Store): Promise<Repository> {
  return Repository.open(store, { passphrase: async () => null });
}

describe("restore with planned reads", () => {
  it("reads many small files with far fewer reads than chunks, and restores them identical", async () => {
    const store = new CountingStore(mem);
    const repo = await open(store);
    const out = path.join(base, "out-fs");
    const exporter = new FsExporter(out);
    try {
      const r = await restore(repo, snap, "/", exporter, { workers: 0 });
      expect(r.errors).toEqual([]);
    } finally {
      await exporter.close();
      await repo.close();
    }
    expect(await compareTrees(src, out, { rootMeta: false })).toEqual([]);
    expect(chunks).toBeGreaterThan(360);
    // Trees and chunks together: a read per few dozen chunks at most.
    expect(store.reads.length).toBeLessThan(chunks / 10);
  });

  it("a serial exporter restores every file through a budget far below the data", async () => {
    const store = new CountingStore(mem);
    const repo = await open(store);
    const exporter = new SerialExporter();
    try {
      const r = await restore(repo, snap, "/", exporter, { readBudget: 64 << 10 });
      expect(r.errors).toEqual([]);
    } finally {
      await repo.close();
    }
    expect(bytes).toBeGreaterThan(40 * (64 << 10));
    expect(exporter.sums).toEqual(sums);
  });
});

/** Takes one file at a time, content whole before the next (as a tar archive does), and keeps each file's SHA-256. */
class SerialExporter implements Exporter {
  readonly origin = "test";
  readonly type = "serial";
  readonly root = "/";
  readonly flags = 0;
  readonly sums = new Map<string, string>();
  #turn: Promise<unknown> = Promise.resolve();

  async ping(): Promise<void> {}

  export(record: ExportRecord): Promise<ExportResult> {
    const run = async (): Promise<ExportResult> => {
      if (record.content) {
        const h = createHash("sha256");
        for await (const p of record.content()) h.update(p.data ?? new Uint8Array(p.length));
        this.sums.set(record.pathname, h.digest("hex"));
      }
      return { pathname: record.pathname };
    };
    const done = this.#turn.then(run);
    this.#turn = done.catch(() => {});
    return done;
  }

  async finish(): Promise<void> {}
  async close(): Promise<void> {}
}
