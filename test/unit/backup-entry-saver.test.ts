/**
 * Records into entries (src/snapshot/backup/entry-saver.ts): what is stored
 * synchronously (saveNow) and what waits (save), the entry's metadata, a
 * file's content or its failure, and each entry reported and answered once.
 */
import { describe, expect, it } from "vitest";
import type { ImportRecord } from "../../src/connectors/records.js";
import type { ChunkRef } from "../../src/snapshot/tree.js";
import { CofferError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";
import { dirRecord, fileRecord, info, makeParts, makeRepo, settle, snapshotOf } from "../helpers/backup-parts.js";
import { prng } from "../helpers/prng.js";

const content = prng(1, 5000);
const parentTree = (): ImportRecord[] => [dirRecord("/"), dirRecord("/d"), fileRecord("/d/a", content, { ino: 1n }), fileRecord("/d/b", content, { ino: 2n })];

describe("EntrySaver.saveNow", () => {
  it("stores at once anything but a file to read: directories, symlinks, entries the importer failed", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    expect(p.entries.saveNow(dirRecord("/"))).toBe(true);
    expect(p.entries.saveNow({ pathname: "/s", fileInfo: info("s", "symlink"), target: "../t" })).toBe(true);
    expect(p.entries.saveNow({ ...fileRecord("/bad", content), error: "permission denied" })).toBe(true);
    expect(p.cache.get("/")).toMatchObject({ name: "", info: { kind: "dir", name: "" } });
    expect(p.cache.get("/s")).toMatchObject({ name: "s", target: "../t" });
    expect(p.cache.get("/bad")).toMatchObject({ name: "bad", error: "permission denied" });
    expect(p.events.map((e) => [e.type, "path" in e ? e.path : ""])).toEqual([["stored", "/"], ["stored", "/s"], ["failed", "/bad"]]);
    expect(p.tally.summary).toMatchObject({ dirs: 1, symlinks: 1, files: 1, errors: 1 });
    await settle();
    expect(p.answers.map((a) => [a.record.pathname, a.error])).toEqual([["/", undefined], ["/s", undefined], ["/bad", "permission denied"]]);
    await p.close();
    await repo.close();
  });

  it("leaves to save() a file to read, a link, an attribute record; and, with a parent, a file whose listing is not loaded yet", async () => {
    const repo = await makeRepo();
    const none = makeParts(repo);
    expect(none.entries.saveNow(fileRecord("/f", content))).toBe(false);
    expect(none.entries.saveNow({ pathname: "/f", fileInfo: info("f", "file"), xattrName: "user.a" })).toBe(false);
    await none.close();

    const parent = await snapshotOf(repo, parentTree());
    const p = makeParts(repo, { parent });
    expect(p.entries.saveNow(fileRecord("/d/a", content, { ino: 1n })), "listing of /d not loaded").toBe(false);
    await p.parent!.entry("/d/a");
    expect(p.entries.saveNow({ ...fileRecord("/d/a", content, { ino: 1n }), linkTarget: "/x" })).toBe(false);
    expect(p.entries.saveNow(fileRecord("/d/b", content, { ino: 2n, mtimeNs: 7n })), "changed").toBe(false);
    expect(p.events).toEqual([]);
    await p.close();
    await repo.close();
  });

  it("stores a file unchanged since the parent at once, with the parent's chunks, reported as unchanged", async () => {
    const repo = await makeRepo();
    const parent = await snapshotOf(repo, parentTree());
    const p = makeParts(repo, { parent });
    await p.parent!.entry("/d/a");
    const r = fileRecord("/d/a", content, { ino: 1n });
    expect(p.entries.saveNow(r)).toBe(true);
    expect(r.opened).toBe(0);
    const macs = (cs: ChunkRef[] | undefined) => cs?.map((c) => `${toHex(c.mac)}:${c.length}`);
    expect(macs(p.cache.get("/d/a")?.chunks)).toEqual(macs((await p.parent!.entry("/d/a"))!.chunks));
    expect(p.events).toMatchObject([{ type: "unchanged", path: "/d/a", size: content.byteLength, files: 1, bytes: content.byteLength, readBytes: 0 }]);
    await p.close();
    await repo.close();
  });
});

describe("EntrySaver.save", () => {
  it("reads a file and stores it with its chunks and size; the size the walk saw is replaced by what was read", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    const r = fileRecord("/f", content, { size: 1 });
    await p.entries.save(r);
    const e = p.cache.get("/f")!;
    expect(e.info.size).toBe(content.byteLength);
    expect(e.chunks!.reduce((n, c) => n + c.length, 0)).toBe(content.byteLength);
    expect(p.events).toMatchObject([{ type: "stored", path: "/f", kind: "file", size: content.byteLength, readBytes: content.byteLength }]);
    await p.close();
    await repo.close();
  });

  it("a file found unchanged once its listing loaded is reported as unchanged", async () => {
    const repo = await makeRepo();
    const parent = await snapshotOf(repo, parentTree());
    const p = makeParts(repo, { parent });
    const r = fileRecord("/d/b", content, { ino: 2n });
    await p.entries.save(r);
    expect(r.opened).toBe(0);
    expect(p.events).toMatchObject([{ type: "unchanged", path: "/d/b" }]);
    await p.close();
    await repo.close();
  });

  it("a file whose content cannot be read (IO) is stored as failed and answered with the error; other errors stop the run", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    const gone: ImportRecord = { ...fileRecord("/gone", content), open: async () => Promise.reject(new CofferError("IO", "vanished")) };
    await p.entries.save(gone);
    expect(p.cache.get("/gone")).toMatchObject({ error: "cannot read: vanished" });
    expect(p.tally.errors).toEqual([["/gone", "cannot read: vanished"]]);
    expect(p.events).toMatchObject([{ type: "failed", path: "/gone", message: "cannot read: vanished", errors: 1 }]);
    await settle();
    expect(p.answers).toEqual([{ record: gone, error: "cannot read: vanished" }]);

    const corrupt: ImportRecord = { ...fileRecord("/c", content), open: async () => Promise.reject(new CofferError("CORRUPT", "bad")) };
    await expect(p.entries.save(corrupt)).rejects.toMatchObject({ code: "CORRUPT" });
    expect(p.cache.get("/c")).toBeUndefined();
    await p.close();
    await repo.close();
  });

  it("a link yielded while its target is being read waits for it and shares its chunks", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    const target = fileRecord("/t", content);
    const link: ImportRecord = { ...fileRecord("/l", new Uint8Array(0)), linkTarget: "/t" };
    await Promise.all([p.entries.save(target), p.entries.save(link)]);
    const macs = (cs: ChunkRef[] | undefined) => cs?.map((c) => `${toHex(c.mac)}:${c.length}`);
    expect(macs(p.cache.get("/l")?.chunks)).toEqual(macs(p.cache.get("/t")?.chunks));
    expect(p.cache.get("/t")?.chunks?.length).toBeGreaterThan(0);
    expect(p.cache.get("/l")?.info.size).toBe(content.byteLength);
    expect(p.tally.summary.readBytes).toBe(content.byteLength);
    await p.close();
    await repo.close();
  });

  it("an attribute record goes to its entry", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    expect(p.entries.saveNow(dirRecord("/d"))).toBe(true);
    const value = new Uint8Array([1, 2]);
    await p.entries.save({ pathname: "/d", fileInfo: info("d", "dir"), xattrName: "user.a", open: async () => (async function* () { yield value; })() });
    expect(p.cache.get("/d")?.xattrs).toEqual([{ name: "user.a", value }]);
    await p.close();
    await repo.close();
  });
});
