/**
 * Trees and the header commit (src/snapshot/backup/tree-saver.ts): the
 * directories built bottom-up from the scan cache (made-up parents where the
 * importer sent none, a single-file source, an empty one), and the header:
 * checkpoint number, parent, prior snapshots, the ERRORS blob, the counts.
 */
import { decode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { BlobType } from "../../src/repository/codec.js";
import { ScanCache } from "../../src/snapshot/backup/scancache.js";
import { buildTrees } from "../../src/snapshot/backup/tree-saver.js";
import type { Entry } from "../../src/snapshot/tree.js";
import { listSnapshots } from "../../src/snapshot/snapshots.js";
import { TreeReader } from "../../src/snapshot/tree-reader.js";
import { toHex } from "../../src/util/hex.js";
import { dirRecord, info, makeParts, makeRepo, snapshotOf } from "../helpers/backup-parts.js";

const file = (name: string, size = 1): Entry => ({ name, info: info(name, "file", { size, mode: 0o600 }), chunks: [] });
const dir = (name: string, mode = 0o700): Entry => ({ name, info: info(name, "dir", { mode }) });

async function listing(reader: TreeReader, root: Entry, path: string): Promise<string[]> {
  const d = await reader.lookup(root, path);
  return (await reader.children(d!)).map((e) => `${e.name}:${e.info.kind}:${e.info.mode.toString(8)}`);
}

describe("buildTrees", () => {
  it("builds each directory from its children, in name order, with made-up directories the importer did not send", async () => {
    const repo = await makeRepo();
    const cache = new ScanCache(undefined, 0);
    // Put in no particular order: the cache's scan gives them in tree order.
    cache.put("/b/z", file("z"));
    cache.put("/", dir("", 0o750));
    cache.put("/a", dir("a"));
    cache.put("/b/y/deep", file("deep"));
    cache.put("/a/f", file("f", 5));
    cache.put("/c", file("c"));
    const root = await buildTrees(repo, cache);
    cache.close();
    await repo.flush();
    expect(root.info.mode).toBe(0o750);
    const reader = new TreeReader(repo);
    expect(await listing(reader, root, "/")).toEqual(["a:dir:700", "b:dir:755", "c:file:600"]);
    expect(await listing(reader, root, "/a")).toEqual(["f:file:600"]);
    expect(await listing(reader, root, "/b")).toEqual(["y:dir:755", "z:file:600"]);
    expect(await listing(reader, root, "/b/y")).toEqual(["deep:file:600"]);
    expect((await reader.lookup(root, "/a/f"))?.info.size).toBe(5);
    await repo.close();
  });

  it("a single-file source's root is the file; an empty source's is an empty directory", async () => {
    const repo = await makeRepo();
    const one = new ScanCache(undefined, 0);
    one.put("/", file("", 9));
    expect(await buildTrees(repo, one)).toMatchObject({ info: { kind: "file", size: 9 } });
    one.close();
    const none = new ScanCache(undefined, 0);
    const root = await buildTrees(repo, none);
    none.close();
    await repo.flush();
    expect(root.info.kind).toBe("dir");
    expect(await new TreeReader(repo).children(root)).toEqual([]);
    await repo.close();
  });
});

describe("TreeSaver", () => {
  it("commits a header with the counts, parent, prior snapshots and checkpoint number; the errors as a blob", async () => {
    const repo = await makeRepo();
    const parent = await snapshotOf(repo, [dirRecord("/")]);
    const p = makeParts(repo, { parent });
    expect(p.entries.saveNow(dirRecord("/"))).toBe(true);
    expect(p.entries.saveNow({ ...dirRecord("/bad"), error: "permission denied" })).toBe(true);
    const cp = await p.trees.commit(await p.trees.build(undefined), 1, undefined);
    expect(cp.checkpoint).toBe(1);
    const h = await p.trees.commitFinal(undefined);
    expect(h.checkpoint).toBeUndefined();
    expect(toHex(h.parent!)).toBe(toHex(parent.id));
    expect(toHex(h.run!)).toBe(toHex(cp.run!));
    expect(h.summary).toMatchObject({ dirs: 2, errors: 1 });
    expect(h.summary.newBlobs).toBeGreaterThan(0);
    expect(decode(await repo.getBlob(BlobType.ERRORS, h.errors!))).toEqual([["/bad", "permission denied"]]);
    const all = (await listSnapshots(repo, undefined, { superseded: true })).snapshots.map((s) => toHex(s.id));
    expect(all.sort()).toEqual([parent, cp, h].map((s) => toHex(s.id)).sort());
    expect(await listing(new TreeReader(repo), h.root, "/")).toEqual(["bad:dir:755"]);
    await p.close();
    await repo.close();
  });
});
