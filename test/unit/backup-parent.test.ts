/**
 * The parent snapshot a backup starts from (src/snapshot/backup/parent.ts):
 * which snapshot is the parent, the parent's entries by path (loaded per
 * directory, worked around when unreadable), unchanged-file detection and
 * unchanged extended attributes.
 */
import { describe, expect, it } from "vitest";
import type { ImportRecord } from "../../src/connectors/records.js";
import { backup } from "../../src/snapshot/backup/backup.js";
import { attrsUnchanged, findParent, NOT_LOADED, ParentIndex } from "../../src/snapshot/backup/parent.js";
import type { SnapshotHeader } from "../../src/snapshot/header.js";
import type { Entry } from "../../src/snapshot/tree.js";
import { toHex } from "../../src/util/hex.js";
import { dirRecord, fileRecord, info, listImporter, makeRepo, snapshotOf } from "../helpers/backup-parts.js";
import { prng } from "../helpers/prng.js";

const tree = (): ImportRecord[] => [
  dirRecord("/"),
  dirRecord("/d"),
  fileRecord("/d/a", prng(1, 3000), { ino: 11n, ctimeNs: 5n }),
  fileRecord("/d/b", prng(2, 4000), { ino: 12n }),
  dirRecord("/e"),
  fileRecord("/e/c", prng(3, 100), { ino: 13n }),
];

function index(repo: Awaited<ReturnType<typeof makeRepo>>, header: SnapshotHeader, warnings: string[] = []): ParentIndex {
  return new ParentIndex(repo, header, new AbortController().signal, (p, m) => warnings.push(`${p}: ${m}`));
}

describe("findParent", () => {
  it("takes the latest snapshot of the same host, importer type and root, none with force; prior lists the latest of all", async () => {
    const repo = await makeRepo();
    const made: SnapshotHeader[] = [];
    for (const hostname of ["h", "h", "other"]) {
      made.push((await backup(repo, { importer: listImporter([dirRecord("/")]), hostname, username: "u", os: "linux", arch: "x64", workers: 0 })).header);
    }
    const { parent, prior } = await findParent(repo, { hostname: "h", type: "list", root: "/list" });
    expect(parent && toHex(parent.id)).toBe(toHex(made[1]!.id));
    expect(prior.map(toHex)).toEqual(made.map((h) => toHex(h.id)));
    expect((await findParent(repo, { hostname: "h", type: "list", root: "/elsewhere" })).parent).toBeUndefined();
    expect((await findParent(repo, { hostname: "h", type: "list", root: "/list", force: true })).parent).toBeUndefined();
    await repo.close();
  });
});

describe("ParentIndex", () => {
  it("gives NOT_LOADED while a directory's listing loads, then its entries at once", async () => {
    const repo = await makeRepo();
    const header = await snapshotOf(repo, tree());
    const p = index(repo, header);
    expect(p.entryNow("/")).toBe(header.root);
    expect(p.entryNow("/d/a")).toBe(NOT_LOADED);
    expect((await p.entry("/d/a"))?.info.size).toBe(3000);
    // Loaded now: the rest of the directory without waiting.
    expect((p.entryNow("/d/b") as Entry).info.size).toBe(4000);
    expect(p.entryNow("/d/nothing")).toBeUndefined();
    expect(await p.entry("/e/c")).toMatchObject({ name: "c" });
    expect(await p.entry("/nowhere/x")).toBeUndefined();
    await repo.close();
  });

  it("finds a file unchanged only with the same size, mtime, inode, and ctime where both know it, and all its chunks stored", async () => {
    const repo = await makeRepo();
    const header = await snapshotOf(repo, tree());
    const p = index(repo, header);
    const old = (await p.entry("/d/a"))!;
    const same = fileRecord("/d/a", new Uint8Array(0), { size: 3000, ino: 11n, ctimeNs: 5n });
    expect(p.unchangedChunks(old, same)).toBe(old.chunks);
    expect(await p.unchanged(same)).toBe(old.chunks);
    const noCtime = fileRecord("/d/a", new Uint8Array(0), { size: 3000, ino: 11n });
    expect(p.unchangedChunks(old, noCtime), "ctime unknown on one side").toBe(old.chunks);
    for (const over of [{ size: 3001 }, { mtimeNs: 2n }, { ino: 99n }, { ctimeNs: 6n }]) {
      const changed = fileRecord("/d/a", new Uint8Array(0), { size: 3000, ino: 11n, ctimeNs: 5n, ...over });
      expect(p.unchangedChunks(old, changed), JSON.stringify(over, (_k, v) => (typeof v === "bigint" ? String(v) : v))).toBeUndefined();
    }
    // A content tag (S3's ETag): the same on both sides, or none on both.
    const tagged: Entry = { ...old, info: { ...old.info, contentTag: '"e1"' } };
    const withTag = (contentTag: string) => fileRecord("/d/a", new Uint8Array(0), { size: 3000, ino: 11n, ctimeNs: 5n, contentTag });
    expect(p.unchangedChunks(tagged, withTag('"e1"')), "the same tag").toBe(old.chunks);
    expect(p.unchangedChunks(tagged, withTag('"e2"')), "another tag").toBeUndefined();
    expect(p.unchangedChunks(old, withTag('"e1"')), "a tag where the parent has none").toBeUndefined();
    expect(p.unchangedChunks(tagged, same), "no tag where the parent has one").toBeUndefined();
    expect(p.unchangedChunks({ ...old, error: "cannot read" }, same), "an entry recorded as failed").toBeUndefined();
    expect(p.unchangedChunks((await p.entry("/d"))!, same), "not a file").toBeUndefined();
    expect(p.unchangedChunks(undefined, same)).toBeUndefined();
    // The same entry against a repository that lacks its chunks.
    const empty = await makeRepo();
    expect(index(empty, header).unchangedChunks(old, same)).toBeUndefined();
    await empty.close();
    await repo.close();
  });

  it("an unreadable listing: no entries below it (the files are read again), one warning per unreadable tree", async () => {
    const repo = await makeRepo();
    const header = await snapshotOf(repo, tree());
    // A root whose tree is not in the repository.
    const broken = { ...header, root: { ...header.root, tree: new Uint8Array(32).fill(7) } };
    const warnings: string[] = [];
    const p = index(repo, broken, warnings);
    expect(await p.entry("/d/a")).toBeUndefined();
    expect(await p.entry("/e/c")).toBeUndefined();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^\/d: the parent snapshot's listing is unreadable .*: reading the files below it again$/);
    await repo.close();
  });
});

describe("attrsUnchanged", () => {
  const old: Entry = { name: "f", info: info("f", "file", { ino: 5n, ctimeNs: 9n }), xattrs: [{ name: "user.a", value: new Uint8Array([1]) }] };
  const rec = (over: Parameters<typeof info>[2]): ImportRecord => ({ pathname: "/f", fileInfo: info("f", "file", over) });

  it("is the parent's entry for the same kind, inode and ctime", () => {
    expect(attrsUnchanged(old, rec({ ino: 5n, ctimeNs: 9n }))).toBe(old);
  });

  it("is undefined when ctime differs or is unknown, the inode or kind differs, the entry failed or is not loaded", () => {
    expect(attrsUnchanged(old, rec({ ino: 5n, ctimeNs: 10n }))).toBeUndefined();
    expect(attrsUnchanged(old, rec({ ino: 6n, ctimeNs: 9n }))).toBeUndefined();
    expect(attrsUnchanged({ ...old, info: { ...old.info, ctimeNs: undefined } }, rec({ ino: 5n }))).toBeUndefined();
    expect(attrsUnchanged({ ...old, info: { ...old.info, kind: "dir" } }, rec({ ino: 5n, ctimeNs: 9n }))).toBeUndefined();
    expect(attrsUnchanged({ ...old, error: "x" }, rec({ ino: 5n, ctimeNs: 9n }))).toBeUndefined();
    expect(attrsUnchanged(NOT_LOADED, rec({ ino: 5n, ctimeNs: 9n }))).toBeUndefined();
    expect(attrsUnchanged(undefined, rec({ ino: 5n, ctimeNs: 9n }))).toBeUndefined();
  });
});
