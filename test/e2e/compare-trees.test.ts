/**
 * The oracle of the end-to-end suite checked on its own: compareTrees finds
 * nothing between the awkward tree and a faithful copy (GNU cp -a), and
 * finds each kind of damage a restore could do.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lacks } from "../helpers/prerequisites.js";
import { compareTrees, copyTree, makeAwkwardTree, setMtimeNs, setXattr, touchAt, walkTree } from "../helpers/tree.js";

const isRoot = process.getuid?.() === 0;

describe.skipIf(lacks(isRoot, "root"))("compareTrees", () => {
  let base: string;
  let src: string;

  beforeAll(async () => {
    base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-compare-"));
    src = path.join(base, "src");
    await makeAwkwardTree(src);
  });
  afterAll(async () => {
    if (base) await fsp.rm(base, { recursive: true, force: true });
  });

  async function freshCopy(name: string): Promise<string> {
    const dst = path.join(base, name);
    copyTree(src, dst);
    return dst;
  }

  it("builds the awkward tree as described", async () => {
    const t = await walkTree(src);
    const get = (rel: string) => t.get(rel);
    expect(get("empty")?.size).toBe(0n);
    expect(get("one-byte")?.size).toBe(1n);
    expect(get("random-20MiB.bin")?.size).toBe(20n * 1024n * 1024n);
    expect(get("special/fifo")?.kind).toBe("fifo");
    expect(get("links/dangling")?.kind).toBe("symlink");
    expect(get("modes/mode-000")?.mode).toBe(0o000);
    expect(get("modes/setuid-4755")?.mode).toBe(0o4755);
    expect(get("modes/setgid-2750")?.mode).toBe(0o2750);
    expect(get("modes/sticky-1777")?.mode).toBe(0o1777);
    expect(get("times/ns-precise.txt")?.mtimeNs).toBe(1_234_567_890_123_456_789n);
    expect(get("times/1e9.txt")?.mtimeNs).toBe(1_000_000_000_000_000_000n);
    expect(get("names/new\nline")?.kind).toBe("file");
    expect(get("hard/c/three-third")?.nlink).toBe(3);
    expect(get("owners/u1234-g5678")?.uid).toBe(1234);
    const sparse = get("sparse-holes.bin");
    expect(sparse && Number(sparse.blocks) * 512 < Number(sparse.size) / 4).toBe(true);
    const deepest = [...t.keys()].find((k) => k.endsWith("/d30/leaf.txt"));
    expect(deepest).toBeDefined();
  });

  it("finds no difference between a tree and a faithful copy", async () => {
    const dst = await freshCopy("same");
    expect(await compareTrees(src, dst)).toEqual([]);
  });

  it("detects a changed byte, mode, mtime, owner, xattr, target, extra file and broken hardlink", async () => {
    const dst = await freshCopy("changed");
    const f = path.join(dst, "chunks", `size-${512 * 1024}`);
    const st = await fsp.stat(f, { bigint: true });
    const fh = await fsp.open(f, "r+");
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 1000);
    b[0] = (b[0] as number) ^ 1;
    await fh.write(b, 0, 1, 1000);
    await fh.close();
    setMtimeNs(f, st.mtimeNs); // same size and mtime: only the content differs

    await fsp.chmod(path.join(dst, "text/small.md"), 0o644);
    touchAt(path.join(dst, "times/ns-precise.txt"), "1234567890.123458789"); // +2 µs
    await fsp.chown(path.join(dst, "owners/u1234-g5678"), 1234, 1234);
    setXattr(path.join(dst, "xattr/file.bin"), "user.text", "hello World");
    await fsp.unlink(path.join(dst, "links/dangling"));
    await fsp.symlink("does/not/exist2", path.join(dst, "links/dangling"));
    await fsp.writeFile(path.join(dst, "extra"), "x");
    await fsp.rm(path.join(dst, "hard/b/two-again"));
    await fsp.copyFile(path.join(dst, "hard/a/two"), path.join(dst, "hard/b/two-again"));

    const diffs = await compareTrees(src, dst, { rootMeta: false });
    const has = (re: RegExp) => expect(diffs.some((d) => re.test(d)), `${re} in\n${diffs.join("\n")}`).toBe(true);
    has(/"\/chunks\/size-524288": content sha256/);
    has(/"\/text\/small.md": mode 0o640 != 0o644/);
    has(/"\/times\/ns-precise.txt": mtime/);
    has(/"\/owners\/u1234-g5678": owner 1234:5678 != 1234:1234/);
    has(/"\/xattr\/file.bin": xattrs/);
    has(/"\/links\/dangling": symlink target/);
    has(/"\/extra": unexpected/);
    has(/hardlink group missing: \/hard\/a\/two = \/hard\/b\/two-again/);
    expect(diffs.some((d) => d.includes("mtime") && d.includes("size-524288"))).toBe(false);
  });

  it("tolerates sub-microsecond mtime differences and honours ignore", async () => {
    const dst = await freshCopy("subus");
    touchAt(path.join(dst, "times/ns-precise.txt"), "1234567890.123457000"); // +211 ns
    await fsp.writeFile(path.join(dst, "names/日本/extra"), "x");
    expect(await compareTrees(src, dst, { rootMeta: false, ignore: (rel) => rel === "names/日本" })).toEqual([]);
  });
});
