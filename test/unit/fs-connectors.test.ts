/**
 * FsImporter and FsExporter against real temporary trees: walk order,
 * metadata, xattrs, excludes, error records, a full round trip, sparse
 * restore and path safety. Some cases need root (owners, trusted.* xattrs,
 * device nodes) and run only as root.
 */

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, chown, link, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsExporter, devNumbers, safeParts } from "../../src/connectors/fs/exporter.js";
import { FsImporter } from "../../src/connectors/fs/importer.js";
import { groupName, parseIdFile, userName } from "../../src/connectors/fs/users.js";
import type { ContentPiece, ExportRecord, ImportRecord } from "../../src/connectors/records.js";
import { setXattr } from "../helpers/tree.js";

const isRoot = process.getuid?.() === 0;
const MiB = 1 << 20;
const temps: string[] = [];

async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "coffer-fs-"));
  temps.push(d);
  return d;
}

function sh(cmd: string, ...args: string[]): void {
  execFileSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
}

async function collect(it: AsyncIterable<ImportRecord>): Promise<ImportRecord[]> {
  const out: ImportRecord[] = [];
  for await (const r of it) out.push(r);
  return out;
}

async function readAll(r: ImportRecord): Promise<Buffer[]> {
  if (r.open === undefined) throw new Error(`${r.pathname}: no content`);
  const pieces: Buffer[] = [];
  for await (const p of await r.open()) pieces.push(Buffer.from(p.buffer, p.byteOffset, p.byteLength));
  return pieces;
}

function toExport(r: ImportRecord, opened: string[]): ExportRecord {
  const e: ExportRecord = { pathname: r.pathname, fileInfo: r.fileInfo };
  if (r.target !== undefined) e.target = r.target;
  if (r.xattrs !== undefined) e.xattrs = r.xattrs;
  const open = r.open;
  if (open !== undefined) {
    e.content = async function* (): AsyncIterable<ContentPiece> {
      opened.push(r.pathname);
      let offset = 0;
      for await (const data of await open()) {
        yield { offset, length: data.byteLength, data };
        offset += data.byteLength;
      }
    };
  }
  return e;
}

afterAll(async () => {
  for (const d of temps) await rm(d, { recursive: true, force: true });
});

const BIG = 9 * MiB + 123;
const EXPECTED_ORDER = [
  "/", "/Zed", "/a.txt", "/back\\slash sp", "/big.bin", "/dangling", "/dir", "/dir/hard2", "/dir/sub",
  "/dir/sub/deep.txt", "/dir/sub/empty-dir", "/empty", "/fifo", "/hard1", "/link", "/new\nline", "/noperm",
  "/ns.txt", "/old.txt", "/sticky", "/suid", "/unicodé-文件.txt", "/\uFF21", "/\u{1F600}",
];
const NS_MTIME = 1_700_000_000_123_456_789n;
const OLD_MTIME = 164_000_000_000_000_007n; // 1975-03-14

describe("fs connectors", () => {
  let src = "";
  let big: Buffer;

  beforeAll(async () => {
    src = await tmp();
    big = randomBytes(BIG);
    const f = (p: string, data: string | Buffer = p) => writeFile(join(src, p), data);
    await f("Zed");
    await f("a.txt", "hello");
    await f("back\\slash sp");
    await f("big.bin", big);
    await symlink("nowhere/missing", join(src, "dangling"));
    await mkdir(join(src, "dir/sub/empty-dir"), { recursive: true });
    await f("dir/sub/deep.txt", "deep");
    await f("dir/hard2", "shared content");
    await link(join(src, "dir/hard2"), join(src, "hard1"));
    await f("empty", "");
    sh("mkfifo", join(src, "fifo"));
    await symlink("a.txt", join(src, "link"));
    await f("new\nline", "nl");
    await f("noperm", "secret");
    await f("ns.txt", "ns");
    await f("old.txt", "old");
    await mkdir(join(src, "sticky"));
    await f("suid", "#!/bin/sh\n");
    await f("unicodé-文件.txt", "u");
    await f("\uFF21");
    await f("\u{1F600}");
    await chmod(join(src, "noperm"), 0o000);
    await chmod(join(src, "suid"), 0o4755);
    await chmod(join(src, "sticky"), 0o1777);
    setXattr(join(src, "a.txt"), "user.k", Buffer.from("000102ff", "hex"));
    setXattr(join(src, "a.txt"), "user.t", "text value");
    setXattr(join(src, "new\nline"), "user.nl", "x");
    setXattr(join(src, "back\\slash sp"), "user.bs", "y");
    setXattr(join(src, "dir"), "user.dir", "d");
    if (isRoot) {
      await chown(join(src, "Zed"), 1234, 5678);
      setXattr(join(src, "link"), "trusted.l", "on-link");
    }
    const touch = (p: string, ns: bigint) => sh("touch", "-h", "-m", "-d", `@${ns / 10n ** 9n}.${String(ns % 10n ** 9n).padStart(9, "0")}`, join(src, p));
    touch("ns.txt", NS_MTIME);
    touch("old.txt", OLD_MTIME);
    touch("link", NS_MTIME + 1000n);
    touch("dir/sub", OLD_MTIME + 5n);
    touch("dir", NS_MTIME - 77n);
    touch("sticky", OLD_MTIME);
  });

  it("walks depth-first in byte order with exact metadata", async () => {
    const recs = await collect(new FsImporter(src).import());
    expect(recs.map((r) => r.pathname)).toEqual(EXPECTED_ORDER);
    expect(recs.filter((r) => r.error !== undefined)).toEqual([]);
    const by = new Map(recs.map((r) => [r.pathname, r]));
    const get = (p: string): ImportRecord => by.get(p) as ImportRecord;
    expect(get("/").fileInfo.kind).toBe("dir");
    expect(get("/big.bin").fileInfo).toMatchObject({ kind: "file", size: BIG });
    expect(get("/empty").fileInfo.size).toBe(0);
    expect(get("/fifo").fileInfo.kind).toBe("fifo");
    expect(get("/fifo").open).toBeUndefined();
    expect(get("/link")).toMatchObject({ target: "a.txt", fileInfo: { kind: "symlink", mtimeNs: NS_MTIME + 1000n } });
    expect(get("/dangling")).toMatchObject({ target: "nowhere/missing", fileInfo: { kind: "symlink" } });
    expect(get("/ns.txt").fileInfo.mtimeNs).toBe(NS_MTIME);
    expect(get("/old.txt").fileInfo.mtimeNs).toBe(OLD_MTIME);
    expect(get("/dir").fileInfo.mtimeNs).toBe(NS_MTIME - 77n);
    expect(get("/suid").fileInfo.mode).toBe(0o4755);
    expect(get("/sticky").fileInfo.mode).toBe(0o1777);
    expect(get("/noperm").fileInfo.mode).toBe(0o000);
    const [h1, h2] = [get("/hard1").fileInfo, get("/dir/hard2").fileInfo];
    expect(h1.nlink).toBe(2);
    expect(h1.ino).toBe(h2.ino);
    expect(h1.dev).toBe(h2.dev);
    expect(get("/a.txt").fileInfo.username).toBe(userName(get("/a.txt").fileInfo.uid));
    expect(get("/a.txt").fileInfo.groupname).toBe(groupName(get("/a.txt").fileInfo.gid));
    const xa = (p: string) => Object.fromEntries((get(p).xattrs ?? []).map((x) => [x.name, Buffer.from(x.value).toString("hex")]));
    expect(xa("/a.txt")).toEqual({ "user.k": "000102ff", "user.t": Buffer.from("text value").toString("hex") });
    expect(xa("/new\nline")).toEqual({ "user.nl": "78" });
    expect(xa("/back\\slash sp")).toEqual({ "user.bs": "79" });
    expect(xa("/dir")).toEqual({ "user.dir": "64" });
    expect(get("/ns.txt").xattrs).toBeUndefined();
    if (isRoot) {
      expect(get("/Zed").fileInfo).toMatchObject({ uid: 1234, gid: 5678 });
      expect(xa("/link")).toEqual({ "trusted.l": Buffer.from("on-link").toString("hex") });
    }
    const none = await collect(new FsImporter(src, { noXattr: true }).import());
    expect(none.every((r) => r.xattrs === undefined)).toBe(true);
  });

  it("gives attributes on their entry's record, also when the caller takes xattr records", async () => {
    const inline = await collect(new FsImporter(src).import());
    const asRecords = await collect(new FsImporter(src).import({ xattrRecords: true }));
    expect(asRecords.some((r) => r.xattrName !== undefined)).toBe(false);
    const attrs = (recs: ImportRecord[]) => recs.flatMap((r) => (r.xattrs ?? []).map((x) => `${r.pathname} ${x.name}=${Buffer.from(x.value).toString("hex")}`));
    expect(attrs(inline).length).toBeGreaterThanOrEqual(5);
    expect(attrs(asRecords)).toEqual(attrs(inline));
  });

  it("orders each directory's entries by the bytes of their names, with and without names past U+D7FF", async () => {
    const narrow = ["z", "Z", "a b", "a-b", "a", "ab", "a.b", "é", "ÿ", "\u0100", "\u07ff", "\u0800", "日本", "\ud7ff", "0", "~"];
    for (const names of [narrow, [...narrow, "\uff21", "\u{1F600}", "\ue000"]]) {
      const t = await tmp();
      for (const n of names) await writeFile(join(t, n), n);
      const got = (await collect(new FsImporter(t, { noXattr: true }).import())).map((r) => r.pathname.slice(1)).slice(1);
      expect(got).toEqual([...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    }
  });

  it("reads content in large fresh pieces", async () => {
    const recs = await collect(new FsImporter(src, { noXattr: true }).import());
    const bigRec = recs.find((r) => r.pathname === "/big.bin") as ImportRecord;
    const pieces = await readAll(bigRec);
    expect(pieces.length).toBe(3);
    expect(pieces.every((p) => p.length <= 4 * MiB)).toBe(true);
    expect(Buffer.concat(pieces).equals(big)).toBe(true);
    expect(pieces[0]?.equals(big.subarray(0, 4 * MiB))).toBe(true); // not overwritten by later reads
    const noperm = recs.find((r) => r.pathname === "/noperm") as ImportRecord;
    if (isRoot) expect(Buffer.concat(await readAll(noperm)).toString()).toBe("secret");
    const empty = recs.find((r) => r.pathname === "/empty") as ImportRecord;
    expect(await readAll(empty)).toEqual([]);
    // Early exit closes the handle; a second iteration is refused.
    const it = await (bigRec.open as () => Promise<AsyncIterable<Uint8Array>>)();
    for await (const _ of it) break;
    expect(() => it[Symbol.asyncIterator]()).toThrow();
  });

  it("applies gitignore excludes, not descending excluded directories", async () => {
    const t = await tmp();
    for (const d of ["build", "dir/build", "other"]) await mkdir(join(t, d), { recursive: true });
    for (const p of ["x.log", "keep.log", "a.txt", "build/out.o", "dir/build/y", "dir/build.txt", "dir/keep.log", "dir/z.log", "other/build"]) {
      await writeFile(join(t, p), p);
    }
    const recs = await collect(new FsImporter(t, { excludes: ["*.log", "build/", "!keep.log"], noXattr: true }).import());
    expect(recs.map((r) => r.pathname)).toEqual([
      "/", "/a.txt", "/dir", "/dir/build.txt", "/dir/keep.log", "/keep.log", "/other", "/other/build",
    ]);
  });

  it("yields an error record for an entry that vanished, and goes on", async () => {
    const t = await tmp();
    for (const p of ["a", "b", "c"]) await writeFile(join(t, p), p);
    const out: ImportRecord[] = [];
    for await (const r of new FsImporter(t, { noXattr: true }).import()) {
      out.push(r);
      if (r.pathname === "/") await unlink(join(t, "b"));
    }
    expect(out.map((r) => r.pathname)).toEqual(["/", "/a", "/b", "/c"]);
    expect(out[2]?.error).toMatch(/ENOENT/);
    expect(out[2]?.fileInfo).toMatchObject({ name: "b", kind: "file" });
    expect(out.filter((r) => r.error !== undefined).length).toBe(1);
  });

  it("yields an unreadable directory with an error and does not descend it", async () => {
    const t = await tmp();
    await chmod(t, 0o755);
    await mkdir(join(t, "locked"));
    await writeFile(join(t, "locked/inner"), "x");
    await mkdir(join(t, "open"));
    await writeFile(join(t, "open/f"), "f");
    await chmod(join(t, "locked"), 0o000);
    const run = () => collect(new FsImporter(t, { noXattr: true }).import());
    let recs: ImportRecord[];
    if (isRoot) {
      process.seteuid?.(65534); // root reads everything: walk as nobody
      try {
        recs = await run();
      } finally {
        process.seteuid?.(0);
      }
    } else recs = await run();
    expect(recs.map((r) => r.pathname)).toEqual(["/", "/locked", "/open", "/open/f"]);
    expect(recs[1]?.error).toMatch(/EACCES/);
    expect(recs[1]?.fileInfo.kind).toBe("dir");
  });

  it("stops between entries when aborted", async () => {
    const ac = new AbortController();
    const it = new FsImporter(src, { noXattr: true }).import({ signal: ac.signal })[Symbol.asyncIterator]();
    expect((await it.next()).value?.pathname).toBe("/");
    ac.abort();
    await expect(it.next()).rejects.toMatchObject({ code: "INTERRUPTED" });
  });

  it("round-trips a tree through the exporter", async () => {
    const dst = await tmp();
    const warnings: string[] = [];
    const exp = new FsExporter(dst, { onWarning: (w) => warnings.push(w) });
    const opened: string[] = [];
    for await (const r of new FsImporter(src).import()) {
      expect(await exp.export(toExport(r, opened))).toEqual({ pathname: r.pathname });
    }
    await exp.finish();
    expect(warnings).toEqual([]);
    expect(opened).toContain("/dir/hard2");
    expect(opened).not.toContain("/hard1"); // relinked, content not read again
    const [a, b] = [await collect(new FsImporter(src).import()), await collect(new FsImporter(dst).import())];
    expect(b.map((r) => r.pathname)).toEqual(a.map((r) => r.pathname));
    for (const [i, ra] of a.entries()) {
      const rb = b[i] as ImportRecord;
      const [fa, fb] = [ra.fileInfo, rb.fileInfo];
      const what = ra.pathname;
      expect({ what, kind: fb.kind, mode: fb.mode, uid: fb.uid, gid: fb.gid }).toEqual({ what, kind: fa.kind, mode: fa.mode, uid: fa.uid, gid: fa.gid });
      const drift = fb.mtimeNs - fa.mtimeNs;
      expect(drift < 1000n && drift > -1000n, `${what} mtime ${fa.mtimeNs} -> ${fb.mtimeNs}`).toBe(true);
      expect(rb.target).toBe(ra.target);
      expect(rb.xattrs ?? []).toEqual(ra.xattrs ?? []);
      if (fa.kind === "file") {
        expect(fb.size).toBe(fa.size);
        expect(Buffer.concat(await readAll(rb)).equals(Buffer.concat(await readAll(ra))), what).toBe(true);
      }
    }
    const [h1, h2] = [await lstat(join(dst, "hard1")), await lstat(join(dst, "dir/hard2"))];
    expect(h1.ino).toBe(h2.ino);
    expect(h1.nlink).toBe(2);
    expect((await lstat(join(dst, "fifo"))).isFIFO()).toBe(true);
    expect(await readlink(join(dst, "dangling"))).toBe("nowhere/missing");
  });

  it("leaves holes for zero pieces (sparse restore)", async () => {
    const dst = await tmp();
    const data = randomBytes(4096);
    const size = 2 * MiB + 8192;
    const pieces: ContentPiece[] = [
      { offset: 0, length: 4096, data },
      { offset: 4096, length: MiB, zero: true },
      { offset: MiB + 4096, length: 4096, data },
      { offset: MiB + 8192, length: MiB, zero: true },
    ];
    const exp = new FsExporter(dst);
    const fileInfo = { name: "sparse", kind: "file" as const, size, mode: 0o640, mtimeNs: NS_MTIME, dev: 1n, ino: 1n, uid: 0, gid: 0, nlink: 1 };
    const content = async function* () {
      yield* pieces;
    };
    expect(await exp.export({ pathname: "/sparse", fileInfo, content })).toEqual({ pathname: "/sparse" });
    await exp.finish();
    const st = await lstat(join(dst, "sparse"));
    expect(st.size).toBe(size);
    expect(st.blocks * 512).toBeLessThan(size / 4);
    const back = await readFile(join(dst, "sparse"));
    expect(back.subarray(0, 4096).equals(data)).toBe(true);
    expect(back.subarray(MiB + 4096, MiB + 8192).equals(data)).toBe(true);
    expect(back.subarray(4096, MiB + 4096).every((x) => x === 0)).toBe(true);
    expect(back.subarray(MiB + 8192).every((x) => x === 0)).toBe(true);
    expect(st.mode & 0o7777).toBe(0o640);
  });

  it("refuses paths that escape the target and never writes through symlinks", async () => {
    const base = await tmp();
    const dst = join(base, "target");
    const outside = join(base, "outside");
    await mkdir(outside);
    const exp = new FsExporter(dst);
    const info = (kind: "file" | "dir" | "symlink") => ({ name: "x", kind, size: 4, mode: 0o644, mtimeNs: NS_MTIME, dev: 9n, ino: 9n, uid: 0, gid: 0, nlink: 1 });
    const file = (pathname: string): ExportRecord => ({
      pathname,
      fileInfo: info("file"),
      content: async function* () {
        yield { offset: 0, length: 4, data: Buffer.from("evil") };
      },
    });
    expect((await exp.export({ pathname: "/", fileInfo: info("dir") })).error).toBeUndefined();
    for (const p of ["/../evil", "/a/../../x", "relative", "/nul\0x", "/.."]) {
      expect((await exp.export(file(p))).error, p).toMatch(/unsafe path/);
    }
    expect(() => safeParts("/a/../../x")).toThrow(expect.objectContaining({ code: "UNSAFE_PATH" }));
    expect((await exp.export({ pathname: "/link", fileInfo: info("symlink"), target: outside })).error).toBeUndefined();
    expect((await exp.export(file("/link/file"))).error).toMatch(/symlink/);
    expect((await exp.export(file("/link/sub/deeper"))).error).toMatch(/symlink/);
    expect((await exp.export({ pathname: "/link/d", fileInfo: info("dir") })).error).toMatch(/symlink/);
    // A symlink already at the path of a file is replaced, not written through.
    await writeFile(join(outside, "victim"), "keep");
    await symlink(join(outside, "victim"), join(dst, "pre"));
    expect((await exp.export(file("/pre"))).error).toBeUndefined();
    expect((await lstat(join(dst, "pre"))).isFile()).toBe(true);
    // A file replaces a file; a directory in the way is an error result, not a throw.
    expect((await exp.export(file("/pre"))).error).toBeUndefined();
    await mkdir(join(dst, "adir"));
    expect((await exp.export(file("/adir"))).error).toMatch(/directory/);
    await exp.finish();
    expect(await readdir(outside)).toEqual(["victim"]);
    expect(await readFile(join(outside, "victim"), "utf8")).toBe("keep");
    expect((await readdir(base)).sort()).toEqual(["outside", "target"]);
    expect(await readFile(join(dst, "pre"), "utf8")).toBe("evil");
  });

  it("skips sockets with a warning and creates devices as root", async () => {
    const t = await tmp();
    const server = createServer();
    await new Promise<void>((res) => server.listen(join(t, "sock"), res));
    const recs = await collect(new FsImporter(t, { noXattr: true }).import());
    server.close();
    const sock = recs.find((r) => r.pathname === "/sock") as ImportRecord;
    expect(sock.fileInfo.kind).toBe("socket");
    const dst = await tmp();
    const warnings: string[] = [];
    const exp = new FsExporter(dst, { onWarning: (w) => warnings.push(w) });
    expect(await exp.export({ pathname: "/sock", fileInfo: sock.fileInfo })).toEqual({ pathname: "/sock" });
    expect(warnings).toEqual(["/sock: socket skipped"]);
    const nullSt = await lstat("/dev/null", { bigint: true });
    expect(devNumbers(nullSt.rdev)).toEqual([1n, 3n]);
    const dev = { name: "null", kind: "chardev" as const, size: 0, mode: 0o600, mtimeNs: NS_MTIME, dev: 1n, ino: 2n, rdev: nullSt.rdev, uid: 0, gid: 0, nlink: 1 };
    const res = await exp.export({ pathname: "/null", fileInfo: dev });
    if (isRoot) {
      expect(res.error).toBeUndefined();
      const st = await lstat(join(dst, "null"), { bigint: true });
      expect(st.isCharacterDevice() && st.rdev === nullSt.rdev).toBe(true);
    } else expect(res.error).toMatch(/root/);
  });
});

describe("users helpers", () => {
  it("parses passwd and group databases", () => {
    const t = parseIdFile("# comment\nroot:x:0:0:root:/root:/bin/sh\nbad line\nalice:x:1000:1000::/home/alice:/bin/sh\ndup:x:1000:9::/:/bin/sh\n");
    expect(t.byId.get(0)).toBe("root");
    expect(t.byId.get(1000)).toBe("alice");
    expect(t.byName.get("dup")).toBe(1000);
    expect(t.byName.has("bad line")).toBe(false);
  });
});
