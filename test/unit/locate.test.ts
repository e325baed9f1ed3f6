/**
 * src/snapshot/locate.ts over trees built by hand: the paths that match,
 * by name or by full path, in byte order; a subtree that several snapshots
 * share is read once per run (counted through a recording repository),
 * also when its matches are memoised by path; and with a memo too small to
 * hold a tree, the same answers from more reads.
 */
import { describe, expect, it } from "vitest";
import { Locator } from "../../src/snapshot/locate.js";
import type { Entry } from "../../src/snapshot/tree.js";
import { compileGlob } from "../../src/util/glob.js";
import { nameFromBytes } from "../../src/util/names.js";
import { file, RecordingTrees, symlink } from "../helpers/fake-trees.js";

const paths = async (l: Locator, root: Entry) => (await l.find(root)).map((m) => m.path);

/** Three snapshots: the second changes one file of the first, the third moves the shared tree "lib" to another path. */
function history(t: RecordingTrees) {
  const lib = () => t.dir("lib", [file("a.ts", ["a"]), file("b.js", ["b"]), t.dir("deep", [file("c.ts", ["c"])])]);
  const s1 = t.dir("", [lib(), file("top.ts", ["1"]), symlink("link.ts", "top.ts")]);
  const s2 = t.dir("", [lib(), file("top.ts", ["2"]), symlink("link.ts", "top.ts")]);
  const s3 = t.dir("", [t.dir("vendor", [lib()]), file("top.ts", ["2"])]);
  return { s1, s2, s3, lib: lib() };
}

describe("Locator", () => {
  it("finds the entries whose name matches, below the root, in byte order of their paths", async () => {
    const t = new RecordingTrees();
    const { s1 } = history(t);
    const l = new Locator(t, [compileGlob("*.ts")]);
    expect(await paths(l, s1)).toEqual(["/lib/a.ts", "/lib/deep/c.ts", "/link.ts", "/top.ts"]);
    const found = await l.find(s1);
    expect(found.find((m) => m.path === "/link.ts")!.entry).toMatchObject({ target: "top.ts", info: { kind: "symlink" } });
    // the memo keeps no chunk lists
    expect(found.find((m) => m.path === "/top.ts")!.entry.chunks).toBeUndefined();
  });

  it("takes a match of any of several patterns, directories included", async () => {
    const t = new RecordingTrees();
    const { s1 } = history(t);
    expect(await paths(new Locator(t, [compileGlob("deep"), compileGlob("b.*")]), s1)).toEqual(["/lib/b.js", "/lib/deep"]);
  });

  it("reads a tree that snapshots share once per run", async () => {
    const t = new RecordingTrees();
    const { s1, s2, s3, lib } = history(t);
    const l = new Locator(t, [compileGlob("*.ts")]);
    expect(await paths(l, s1)).toEqual(["/lib/a.ts", "/lib/deep/c.ts", "/link.ts", "/top.ts"]);
    expect(await paths(l, s2)).toEqual(["/lib/a.ts", "/lib/deep/c.ts", "/link.ts", "/top.ts"]);
    expect(await paths(l, s3)).toEqual(["/top.ts", "/vendor/lib/a.ts", "/vendor/lib/deep/c.ts"]);
    expect(t.readsOf(lib)).toBe(1);
    // s1, lib, deep; s2; s3, vendor
    expect(t.reads).toHaveLength(6);
    expect(l.treesRead).toBe(6);
    expect(new Set(t.reads).size).toBe(t.reads.length);
  });

  it("with a full-path pattern, shares a tree's matches where it lies at the same path only", async () => {
    const t = new RecordingTrees();
    const { s1, s2, s3, lib } = history(t);
    const l = new Locator(t, [compileGlob("lib/*.ts")]);
    expect(await paths(l, s1)).toEqual(["/lib/a.ts"]);
    expect(await paths(l, s2)).toEqual(["/lib/a.ts"]);
    expect(t.readsOf(lib)).toBe(1);
    expect(await paths(l, s3)).toEqual(["/vendor/lib/a.ts"]);
    expect(t.readsOf(lib)).toBe(2);
    expect(await paths(new Locator(t, [compileGlob("/lib/**")]), s3)).toEqual([]);
  });

  it("gives the same answers with a memo too small to keep a tree, reading again", async () => {
    const t = new RecordingTrees();
    const { s1, s2, lib } = history(t);
    const l = new Locator(t, [compileGlob("*.ts")], { memoWeight: 1 });
    expect(await paths(l, s1)).toEqual(await paths(new Locator(t, [compileGlob("*.ts")]), s1));
    const before = t.readsOf(lib);
    expect(await paths(l, s2)).toEqual(["/lib/a.ts", "/lib/deep/c.ts", "/link.ts", "/top.ts"]);
    expect(t.readsOf(lib)).toBe(before + 1);
  });

  it("drops the least recently used trees first when the memo is full", async () => {
    const t = new RecordingTrees();
    const x = t.dir("x", [file("m", ["1"])]);
    const y = t.dir("y", [file("m", ["2"])]);
    const rx = t.dir("", [x]);
    const ry = t.dir("", [y]);
    // each of x and y weighs 2 (itself and its match), a root 2 as well: the memo holds two of them
    const l = new Locator(t, [compileGlob("m")], { memoWeight: 4 });
    await l.find(rx); // memo: x, rx
    await l.find(ry); // reads y, then ry: x and rx dropped
    expect(await paths(l, ry)).toEqual(["/y/m"]);
    expect(t.readsOf(ry)).toBe(1);
    await l.find(rx);
    expect(t.readsOf(rx)).toBe(2);
    expect(t.readsOf(x)).toBe(2);
  });

  it("matches names that are not UTF-8 by the escaped form the CLI prints", async () => {
    const t = new RecordingTrees();
    const raw = nameFromBytes(Buffer.from("r\xe9sum\xe9.pdf", "latin1"));
    const root = t.dir("", [t.dir("docs", [file(raw, ["cv"]), file("other.pdf", ["o"])])]);
    expect(await paths(new Locator(t, [compileGlob("r\\351sum\\351.*")]), root)).toEqual([`/docs/${raw}`]);
    expect(await paths(new Locator(t, [compileGlob("r?sum?.pdf")]), root)).toEqual([`/docs/${raw}`]);
  });
});
