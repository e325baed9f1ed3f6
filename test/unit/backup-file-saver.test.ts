/**
 * A file's chunks (src/snapshot/backup/file-saver.ts), on the main thread:
 * read through open() with the new chunks stored, shared between the links
 * of one inode (read once), taken from a `linkTarget`, or reused from the
 * parent snapshot when the file is unchanged.
 */
import { describe, expect, it } from "vitest";
import { BlobType } from "../../src/repository/codec.js";
import type { Repository } from "../../src/repository/repository.js";
import type { FileContent } from "../../src/snapshot/backup/file-saver.js";
import type { ChunkRef } from "../../src/snapshot/tree.js";
import { CofferError } from "../../src/util/errors.js";
import { dirRecord, fileRecord, makeParts, makeRepo, snapshotOf } from "../helpers/backup-parts.js";
import { prng } from "../helpers/prng.js";

const total = (c: ChunkRef[]) => c.reduce((n, x) => n + x.length, 0);

async function bytesOf(repo: Repository, c: FileContent): Promise<Buffer> {
  return Buffer.concat(await Promise.all(c.chunks.map((x) => repo.getBlob(BlobType.CHUNK, x.mac))));
}

describe("FileSaver", () => {
  it("reads a file through open(): its chunks cover the content, new ones are stored, the bytes read are counted", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    const content = prng(1, 2_500_000); // several chunks
    const r = fileRecord("/f", content);
    const got = await p.files.save(r);
    expect(got.source).toBe("read");
    expect(got.chunks.length).toBeGreaterThan(1);
    expect(total(got.chunks)).toBe(content.byteLength);
    expect(p.tally.summary.readBytes).toBe(content.byteLength);
    for (const c of got.chunks) expect(repo.has(BlobType.CHUNK, c.mac)).toBe(true);
    await repo.flush();
    expect((await bytesOf(repo, got)).equals(content)).toBe(true);
    // The same content again: read and counted, nothing new stored.
    const blobs = repo.written.blobs;
    expect((await p.files.save(fileRecord("/g", content))).chunks).toEqual(got.chunks);
    expect(repo.written.blobs).toBe(blobs);
    expect(p.tally.summary.readBytes).toBe(2 * content.byteLength);
    await p.close();
    await repo.close();
  });

  it("a file with neither open() nor a local path has no chunks", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    expect(await p.files.save({ pathname: "/x", fileInfo: fileRecord("/x", new Uint8Array(0)).fileInfo })).toEqual({ chunks: [], source: "read" });
    await p.close();
    await repo.close();
  });

  it("the links of one inode share the chunks of the first, which alone is read (also while it is being read)", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    const content = prng(2, 70_000);
    const a = fileRecord("/a", content, { nlink: 2, ino: 7n });
    const b = fileRecord("/b", content, { nlink: 2, ino: 7n });
    const [ga, gb] = await Promise.all([p.files.save(a), p.files.save(b)]);
    expect(ga.source).toBe("read");
    expect(gb).toEqual({ chunks: ga.chunks, source: "linked" });
    expect([a.opened, b.opened]).toEqual([1, 0]);
    expect(p.tally.summary.readBytes).toBe(content.byteLength);
    await p.close();
    await repo.close();
  });

  it("a record with linkTarget takes its target's chunks without being opened", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    const target = fileRecord("/t", prng(3, 5000));
    const give = p.links.begin("/t");
    const link = { ...fileRecord("/l", new Uint8Array(0)), linkTarget: "/t" };
    const linked = p.files.save(link);
    const stored = await p.files.save(target);
    give(stored.chunks);
    p.links.end("/t", give);
    expect(await linked).toEqual({ chunks: stored.chunks, source: "linked" });
    expect(link.opened).toBe(0);
    await p.close();
    await repo.close();
  });

  it("a file unchanged since the parent snapshot reuses its chunks unread; a changed one is read", async () => {
    const repo = await makeRepo();
    const content = prng(4, 9000);
    const parent = await snapshotOf(repo, [dirRecord("/"), fileRecord("/f", content, { ino: 3n }), fileRecord("/g", content, { ino: 4n })]);
    const p = makeParts(repo, { parent });
    const same = fileRecord("/f", content, { ino: 3n });
    const got = await p.files.save(same);
    expect(got.source).toBe("unchanged");
    expect(same.opened).toBe(0);
    const touched = fileRecord("/g", content, { ino: 4n, mtimeNs: 5n });
    expect((await p.files.save(touched)).source).toBe("read");
    expect(touched.opened).toBe(1);
    expect(p.tally.summary.readBytes).toBe(content.byteLength);
    await p.close();
    await repo.close();
  });

  it("a source that fails, and an abort, fail the file (the entry saver decides what that means)", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    const failing = { ...fileRecord("/f", new Uint8Array(0)), open: async () => Promise.reject(new CofferError("IO", "gone")) };
    await expect(p.files.save(failing)).rejects.toMatchObject({ code: "IO", message: "gone" });
    await p.close();

    const stop = new AbortController();
    const q = makeParts(repo, { signal: stop.signal });
    stop.abort();
    await expect(q.files.save(fileRecord("/g", prng(5, 1000)))).rejects.toMatchObject({ code: "INTERRUPTED" });
    await q.close();
    await repo.close();
  });
});
