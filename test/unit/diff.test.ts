/**
 * The merge walk of src/snapshot/diff.ts over trees built by hand: each of
 * restic's markers, nested additions and removals, a type change of a file
 * into a directory, bitrot (`M?`), names that are not UTF-8, hard links,
 * identical subtrees skipped unread (counted through a recording
 * repository) and the summary's counts and bytes; and bitrot in a snapshot
 * committed to a repository, which is read only where it differs.
 */
import { describe, expect, it, vi } from "vitest";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import { BlobType } from "../../src/repository/codec.js";
import { Repository } from "../../src/repository/repository.js";
import { type Change, SnapshotDiff } from "../../src/snapshot/diff.js";
import { encodeHeader, type SnapshotHeader } from "../../src/snapshot/header.js";
import { resolveSnapshot } from "../../src/snapshot/snapshots.js";
import { type Entry, encodeTree } from "../../src/snapshot/tree.js";
import { fromHex, toHex } from "../../src/util/hex.js";
import { nameFromBytes } from "../../src/util/names.js";
import { file, RecordingTrees, special, symlink } from "../helpers/fake-trees.js";

async function diff(repo: RecordingTrees, before: Entry, after: Entry, metadata = false): Promise<{ lines: string[]; changes: Change[]; d: SnapshotDiff }> {
  const d = new SnapshotDiff(repo, before, after, { metadata });
  const changes: Change[] = [];
  for await (const c of d.changes()) changes.push(c);
  return { lines: changes.map((c) => `${c.modifier} ${c.path}`), changes, d };
}

describe("SnapshotDiff", () => {
  it("reports nothing for two equal roots, without reading a tree", async () => {
    const t = new RecordingTrees();
    const a = t.dir("", [file("f", ["x"]), t.dir("d", [file("g", ["y"])])]);
    const b = t.dir("", [file("f", ["x"]), t.dir("d", [file("g", ["y"])])]);
    const { lines, d } = await diff(t, a, b);
    expect(lines).toEqual([]);
    expect(t.reads).toEqual([]);
    expect(d.summary.added).toMatchObject({ files: 0, dataBlobs: 0, treeBlobs: 0, bytes: 0 });
  });

  it("gives each marker, in byte order of the paths, relative to the compared directories", async () => {
    const t = new RecordingTrees();
    const a = t.dir("", [
      file("changed", ["old"], { mtimeNs: 1n }),
      file("gone", ["bye"]),
      file("mode", ["same"], { mode: 0o644 }),
      symlink("link", "to/a"),
      file("becomes-dir", ["f"]),
      file("same", ["s"]),
    ]);
    const b = t.dir("", [
      file("changed", ["new"], { mtimeNs: 2n }),
      file("added", ["hi"]),
      file("mode", ["same"], { mode: 0o600 }),
      symlink("link", "to/b"),
      t.dir("becomes-dir", [file("inner", ["i"])]),
      file("same", ["s"]),
    ]);
    const { lines, d } = await diff(t, a, b, true);
    expect(lines).toEqual(["+ /added", "T /becomes-dir/", "+ /becomes-dir/inner", "M /changed", "- /gone", "M /link", "U /mode"]);
    expect(d.summary.markers).toEqual({ "+": 2, "-": 1, M: 2, U: 1, T: 1, "?": 0 });
    expect(d.summary.changedFiles).toBe(1);
    expect(d.summary.added).toMatchObject({ files: 2, dirs: 0, others: 0 });
    expect(d.summary.removed).toMatchObject({ files: 1, dirs: 0, others: 0 });
  });

  it("lists metadata-only changes (U) only when asked, as restic's --metadata", async () => {
    const t = new RecordingTrees();
    const a = t.dir("", [file("f", ["x"], { uid: 1 }), special("fifo", "fifo", { mode: 0o600 })]);
    const b = t.dir("", [file("f", ["x"], { uid: 2 }), special("fifo", "fifo", { mode: 0o640 })]);
    expect((await diff(t, a, b)).lines).toEqual([]);
    expect((await diff(t, a, b, true)).lines).toEqual(["U /f", "U /fifo"]);
  });

  it("takes a change of extended attributes alone as metadata (U)", async () => {
    const t = new RecordingTrees();
    const a = t.dir("", [file("f", ["x"], {}, { xattrs: [{ name: "user.a", value: Uint8Array.of(1) }] })]);
    const b = t.dir("", [file("f", ["x"], {}, { xattrs: [{ name: "user.a", value: Uint8Array.of(2) }] })]);
    const reordered = t.dir("", [file("f", ["x"], {}, { xattrs: [{ name: "user.a", value: Uint8Array.of(1) }] })]);
    expect((await diff(t, a, b, true)).lines).toEqual(["U /f"]);
    expect((await diff(t, a, reordered, true)).lines).toEqual([]);
  });

  it("marks content that changed under unchanged size, mtime and ctime as bitrot (M?)", async () => {
    const t = new RecordingTrees();
    const meta = { size: 3, mtimeNs: 5n, ctimeNs: 6n };
    const a = t.dir("", [file("rot", ["abc"], meta), file("touched", ["abc"], meta), file("unread", ["abc"], meta)]);
    const b = t.dir("", [
      file("rot", ["abd"], meta),
      file("touched", ["abd"], { ...meta, ctimeNs: 7n }),
      // read in part the second time: a changed content there is no sign of rot
      file("unread", ["ab"], meta, { error: "EIO" }),
    ]);
    const { lines, d } = await diff(t, a, b);
    expect(lines).toEqual(["M? /rot", "M /touched", "M /unread"]);
    expect(d.summary.markers).toMatchObject({ M: 2, "?": 1 });
    expect(d.summary.changedFiles).toBe(3);
  });

  it("does not take a ctime that one side lacks for a change (bitrot still found)", async () => {
    const t = new RecordingTrees();
    const a = t.dir("", [file("f", ["one"], { ctimeNs: undefined })]);
    const b = t.dir("", [file("f", ["two"])]);
    expect((await diff(t, a, b)).lines).toEqual(["M? /f"]);
  });

  it("lists everything below an added or removed directory, nested, with its counts", async () => {
    const t = new RecordingTrees();
    const a = t.dir("", [t.dir("old", [t.dir("deep", [file("x", ["1"]), symlink("l", "x")]), file("y", ["2"])])]);
    const b = t.dir("", [t.dir("new", [t.dir("deeper", [t.dir("deepest", [file("z", ["3"])])])])]);
    const { lines, d } = await diff(t, a, b);
    expect(lines).toEqual(["+ /new/", "+ /new/deeper/", "+ /new/deeper/deepest/", "+ /new/deeper/deepest/z", "- /old/", "- /old/deep/", "- /old/deep/l", "- /old/deep/x", "- /old/y"]);
    expect(d.summary.added).toMatchObject({ files: 1, dirs: 3, others: 0, dataBlobs: 1, treeBlobs: 4 });
    expect(d.summary.removed).toMatchObject({ files: 2, dirs: 2, others: 1, dataBlobs: 2, treeBlobs: 3 });
  });

  it("lists a directory that became a file as T, with what it held as removed", async () => {
    const t = new RecordingTrees();
    const a = t.dir("", [t.dir("x", [file("in", ["1"]), t.dir("sub", [file("deep", ["2"])])])]);
    const b = t.dir("", [file("x", ["3"])]);
    expect((await diff(t, a, b)).lines).toEqual(["T /x", "- /x/in", "- /x/sub/", "- /x/sub/deep"]);
  });

  it("skips subdirectories with the same tree MAC without reading them, at any depth", async () => {
    const t = new RecordingTrees();
    const big = () => t.dir("big", [file("a", ["a"]), t.dir("inner", [file("b", ["b"])])]);
    const sharedA = big();
    const sharedB = big();
    const a = t.dir("", [sharedA, t.dir("work", [file("f", ["1"]), big()])]);
    const b = t.dir("", [sharedB, t.dir("work", [file("f", ["2"], { mtimeNs: 2n }), big()])]);
    const { lines } = await diff(t, a, b);
    expect(lines).toEqual(["M /work/f"]);
    // The two roots and the two /work listings: nothing of "big" (the same MAC on both sides).
    expect(t.reads).toHaveLength(4);
    expect(t.readsOf(sharedA)).toBe(0);
    expect(t.readsOf(a)).toBe(1);
    expect(t.readsOf(b)).toBe(1);
  });

  it("merges names in byte order, not UTF-16 order, and keeps names that are not UTF-8", async () => {
    const t = new RecordingTrees();
    const raw = nameFromBytes(Buffer.from("lat\xe9", "latin1"));
    // U+FF5E (bytes EF BD 9E) sorts before U+1F600 (F0 9F 98 80) as bytes, after it as UTF-16.
    const a = t.dir("", [file("\uff5e", ["1"]), file("\u{1f600}", ["1"]), file(raw, ["old"])]);
    const b = t.dir("", [file("\uff5e", ["1"]), file("\u{1f600}", ["1"]), file(raw, ["new"], { mtimeNs: 2n }), t.dir(raw + "d", [file(raw, ["x"])])]);
    const { lines } = await diff(t, a, b);
    expect(lines).toEqual([`M /${raw}`, `+ /${raw}d/`, `+ /${raw}d/${raw}`]);
  });

  it("shows a hard link's content change on each of its names, and its link count as metadata", async () => {
    const t = new RecordingTrees();
    const link = { ino: 42n, nlink: 2 };
    const a = t.dir("", [file("one", ["v1"], link), file("two", ["v1"], link)]);
    const b = t.dir("", [file("one", ["v2"], { ...link, mtimeNs: 9n }), file("two", ["v2"], { ...link, mtimeNs: 9n })]);
    expect((await diff(t, a, b)).lines).toEqual(["M /one", "M /two"]);
    const c = t.dir("", [file("one", ["v1"], { ...link, nlink: 3 }), file("two", ["v1"], { ...link, nlink: 3 }), file("three", ["v1"], { ...link, nlink: 3 })]);
    expect((await diff(t, a, c, true)).lines).toEqual(["U /one", "+ /three", "U /two"]);
  });

  it("counts data and tree blobs and their bytes once per side, shared chunks not at all", async () => {
    const t = new RecordingTrees();
    const a = t.dir("", [file("f", ["keep", "drop1"]), file("g", ["drop2"])]);
    const b = t.dir("", [file("f", ["keep", "add1"]), file("copy", ["add1"]), file("g2", ["keep"])]);
    const { d } = await diff(t, a, b);
    const treeBytes = async (e: Entry) => (await t.getBlob(BlobType.TREE, e.tree!)).byteLength;
    expect(d.summary.removed).toMatchObject({ files: 1, dataBlobs: 2, treeBlobs: 1, bytes: "drop1".length + "drop2".length + (await treeBytes(a)) });
    expect(d.summary.added).toMatchObject({ files: 2, dataBlobs: 1, treeBlobs: 1, bytes: "add1".length + (await treeBytes(b)) });
    expect(d.summary.changedFiles).toBe(1);
  });

  it("compares two files given as the roots", async () => {
    const t = new RecordingTrees();
    expect((await diff(t, file("f", ["a"], { mtimeNs: 1n }), file("f", ["b"], { mtimeNs: 2n }))).lines).toEqual(["M /"]);
    expect((await diff(t, file("f", ["a"]), file("f", ["a"]))).lines).toEqual([]);
  });

  it("stops when aborted", async () => {
    const t = new RecordingTrees();
    const a = t.dir("", [file("a", ["1"]), file("b", ["1"])]);
    const b = t.dir("", [file("a", ["2"]), file("b", ["2"])]);
    const ac = new AbortController();
    const d = new SnapshotDiff(t, a, b, { signal: ac.signal });
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const c of d.changes()) {
          seen.push(c.path);
          ac.abort();
        }
      })(),
    ).rejects.toThrow();
    expect(seen).toEqual(["/a"]);
  });
});

describe("SnapshotDiff on snapshots committed to a repository", () => {
  const KDF = { memory: 8192, passes: 1, parallelism: 1 };
  const summary = { files: 0, dirs: 1, symlinks: 0, others: 0, bytes: 0, errors: 0, readBytes: 0, newBlobs: 0, newBytes: 0 };

  it("finds bitrot in a file stored with the same metadata and other chunks, reading only the trees that differ", async () => {
    const mem = new MemoryStore();
    await Repository.create(mem, { passphrase: null, kdf: KDF });
    const repo = await Repository.open(mem, { passphrase: async () => null });
    const chunk = async (text: string) => ({ mac: (await repo.putBlob(BlobType.CHUNK, Buffer.from(text))).mac, length: text.length });
    const tree = async (entries: Entry[]) => (await repo.putBlob(BlobType.TREE, encodeTree(entries))).mac;
    const meta = { name: "data.bin", kind: "file" as const, size: 8, mode: 0o644, mtimeNs: 5n, ctimeNs: 6n, dev: 1n, ino: 2n, uid: 0, gid: 0, nlink: 1 };
    const dirInfo = (name: string) => ({ ...meta, name, kind: "dir" as const, size: 0 });
    const shared: Entry = { name: "shared", info: dirInfo("shared"), tree: await tree([{ name: "x", info: { ...meta, name: "x" }, chunks: [await chunk("same old")] }]) };
    const good: Entry = { name: "data.bin", info: meta, chunks: [await chunk("original")] };
    const rotten: Entry = { name: "data.bin", info: meta, chunks: [await chunk("0riginal")] };
    const ids: Uint8Array[] = [];
    for (const [n, file] of [good, rotten].entries()) {
      const root: Entry = { name: "", info: dirInfo(""), tree: await tree([file, shared]) };
      const id = fromHex(`${n + 1}`.repeat(64));
      const h: SnapshotHeader = { id, timeNs: BigInt(n + 1), durationNs: 1n, hostname: "h", username: "u", os: "linux", arch: "x64", importer: { type: "fs", origin: "h", root: "/src" }, tags: [], root, summary };
      await repo.commitSnapshot(id, encodeHeader(h));
      ids.push(id);
    }
    const [a, b] = await Promise.all(ids.map((id) => resolveSnapshot(repo, { idPrefix: toHex(id).slice(0, 8) })));
    const reads = vi.spyOn(repo, "getBlob");
    const d = new SnapshotDiff(repo, a!.root, b!.root);
    const lines: string[] = [];
    for await (const c of d.changes()) lines.push(`${c.modifier} ${c.path}`);
    expect(lines).toEqual(["M? /data.bin"]);
    expect(reads.mock.calls.map(([type, mac]) => [type, toHex(mac)])).toEqual([
      [BlobType.TREE, toHex(a!.root.tree!)],
      [BlobType.TREE, toHex(b!.root.tree!)],
    ]);
    expect(d.summary).toMatchObject({ changedFiles: 1, markers: { M: 0, "?": 1 }, added: { dataBlobs: 1, treeBlobs: 1 }, removed: { dataBlobs: 1, treeBlobs: 1 } });
    expect(d.summary.added.bytes).toBe(8 + repo.locate(BlobType.TREE, b!.root.tree!).rawLength);
  });
});
