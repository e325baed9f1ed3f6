/**
 * The importer kit on TarImporter:
 * - over archives GNU tar made of a temp tree
 *   (tar --format=pax --xattrs --xattrs-include='*' -C TREE -cf X .) holding
 *   directories, empty/small/multi-MiB files, symlinks (one dangling), a
 *   hard link, a FIFO, setuid/sticky modes, an exact nanosecond mtime, user
 *   xattrs (text and binary) on a file and a directory, non-ASCII and long
 *   names; expected with the tree's own modes and mtimes (lstat, exact:
 *   GNU tar's pax headers keep nanoseconds), "/" from the archive's "./";
 * - over an archive made with tar-stream's packer holding entries GNU tar
 *   would not write: names with "..", and a hard link to one; each is an
 *   error record (reported at quarantinePath, inside the root), and the
 *   entries after them (a hard link among them) are still imported.
 * Each runs as a plain .tar file, a .tar.gz (gzip: true), and standard
 * input (path "-", a fresh Readable of the archive's bytes per fixture,
 * delivered in uneven pieces; a STREAM importer).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { pack } from "tar-stream";
import type { Header } from "tar-stream";
import { afterAll } from "vitest";
import { LocationFlag } from "../../src/connectors/flags.js";
import { quarantinePath } from "../../src/connectors/tar/format.js";
import { TarImporter } from "../../src/connectors/tar/importer.js";
import { importerKit } from "../../src/sdk/kits/index.js";
import type { ExpectedEntry, ImporterFixture } from "../../src/sdk/kits/index.js";
import { vitestHarness } from "./harness.js";

const MiB = 1 << 20;

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0 || r.stderr !== "") throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr || r.error?.message || `exit ${r.status}`}`);
}

/** An archive in both forms, and what importing it must give. */
interface Source {
  tar: string;
  tgz: string;
  expected: ExpectedEntry[];
}

const temps: string[] = [];
afterAll(async () => {
  for (const d of temps.splice(0)) await fsp.rm(d, { recursive: true, force: true });
});

async function tempDir(what: string): Promise<string> {
  const d = await fsp.mkdtemp(join(tmpdir(), `coffer-kit-tar-importer-${what}-`));
  temps.push(d);
  return d;
}

/** Made once, on first use, for every test of this file. */
function once<T>(make: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= make());
}

/** A tree with every kind of entry, archived by GNU tar. */
const gnuSource = once(async (): Promise<Source> => {
  const base = await tempDir("gnu");
  const root = join(base, "tree");
  await fsp.mkdir(root);
  const abs = (rel: string) => join(root, rel);
  const entries: ExpectedEntry[] = [];
  const dir = async (rel: string, mode: number) => {
    await fsp.mkdir(abs(rel));
    await fsp.chmod(abs(rel), mode);
    entries.push({ pathname: `/${rel}`, kind: "dir", mode });
  };
  const file = async (rel: string, content: Buffer, mode: number, extra: Partial<ExpectedEntry> = {}) => {
    await fsp.writeFile(abs(rel), content);
    await fsp.chmod(abs(rel), mode);
    entries.push({ pathname: `/${rel}`, kind: "file", size: content.byteLength, content, mode, ...extra });
  };
  const setXattrs = (rel: string, xattrs: { name: string; value: Buffer }[]) => {
    for (const x of xattrs) run("setfattr", ["-h", "-n", x.name, "-v", `0x${x.value.toString("hex")}`, abs(rel)]);
    const e = entries.find((en) => en.pathname === `/${rel}`) as ExpectedEntry;
    e.xattrs = xattrs.map((x) => ({ name: x.name, value: new Uint8Array(x.value) }));
  };

  await fsp.chmod(root, 0o755);
  entries.push({ pathname: "/", kind: "dir", mode: 0o755 });
  await dir("a-dir", 0o750);
  await file("a-dir/nested.txt", Buffer.from("nested\n"), 0o640);
  await dir("a-dir/empty-dir", 0o700);
  setXattrs("a-dir", [{ name: "user.coffer.dir", value: Buffer.from("on a directory") }]);
  const big = randomBytes(5 * MiB + 17);
  await file("big.bin", big, 0o644, { content: undefined, sha256: createHash("sha256").update(big).digest("hex") });
  await file("empty", Buffer.alloc(0), 0o600);
  await file("small.txt", Buffer.from("hello, tar\n"), 0o644);
  await file("setuid", Buffer.from("#!/bin/sh\n"), 0o4755);
  await dir("sticky", 0o1777);
  await file("ünïcödé ✓ name.txt", Buffer.from("odd name\n"), 0o644);
  await dir(`${"long-".repeat(25)}dir`, 0o755); // 128 bytes: a pax path
  await file(`${"long-".repeat(25)}dir/${"ü".repeat(60)}`, Buffer.from("long name\n"), 0o644);

  run("mkfifo", ["-m", "640", abs("fifo")]);
  entries.push({ pathname: "/fifo", kind: "fifo", mode: 0o640 });

  await file("hard-a", Buffer.from("shared inode\n"), 0o644);
  await fsp.link(abs("hard-a"), abs("hard-b"));
  entries.push({ pathname: "/hard-b", kind: "file", size: 13, content: "shared inode\n", mode: 0o644, sameAs: "/hard-a" });

  await fsp.symlink("a-dir/nested.txt", abs("link"));
  entries.push({ pathname: "/link", kind: "symlink", target: "a-dir/nested.txt" });
  await fsp.symlink("does/not/exist", abs("dangling"));
  entries.push({ pathname: "/dangling", kind: "symlink", target: "does/not/exist" });

  await file("mtime.txt", Buffer.from("exact time\n"), 0o644);
  run("touch", ["-m", "-d", "@1577934245.123456789", abs("mtime.txt")]);

  await file("xattrs.txt", Buffer.from("with attributes\n"), 0o644);
  setXattrs("xattrs.txt", [
    { name: "user.coffer.text", value: Buffer.from("value ✓") },
    { name: "user.coffer.bin", value: Buffer.from([0, 0xff, 0x3d, 0x0a, 0x00]) },
  ]);

  // Every entry's exact mtime as the filesystem has it now (directories last touched by their children).
  for (const e of entries) e.mtimeNs = (await fsp.lstat(join(root, e.pathname), { bigint: true })).mtimeNs;
  const mtime = entries.find((e) => e.pathname === "/mtime.txt") as ExpectedEntry;
  assert.equal(mtime.mtimeNs, 1577934245123456789n, "the filesystem keeps nanoseconds");
  // No other user.* attribute than those set.
  for (const e of entries) e.xattrs ??= [];

  const tar = join(base, "tree.tar");
  const tgz = join(base, "tree.tar.gz");
  run("tar", ["--format=pax", "--xattrs", "--xattrs-include=*", "-C", root, "-cf", tar, "."]);
  run("tar", ["--format=pax", "--xattrs", "--xattrs-include=*", "-C", root, "-czf", tgz, "."]);
  return { tar, tgz, expected: entries };
});

/** An archive made with tar-stream (for entries GNU tar would not write). */
async function packed(entries: { header: Partial<Header> & { name: string }; data?: Buffer }[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const c of p as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const e of entries) {
    await new Promise<void>((res, rej) => {
      if (e.data !== undefined) p.entry({ ...e.header, size: e.data.length }, e.data, (err) => (err ? rej(err) : res()));
      else p.entry(e.header, (err) => (err ? rej(err) : res())).end(undefined);
    });
  }
  p.finalize();
  await collected;
  return Buffer.concat(chunks);
}

/** Unsafe names among good entries: error records, and the import goes on. */
const unsafeSource = once(async (): Promise<Source> => {
  const base = await tempDir("unsafe");
  const t = (s: number) => new Date(1_600_000_000_000 + s * 1000);
  const tarBytes = await packed([
    { header: { name: "ok-dir/", type: "directory", mode: 0o750, mtime: t(0) } },
    { header: { name: "ok-dir/before.txt", mode: 0o640, mtime: t(1) }, data: Buffer.from("before the errors\n") },
    { header: { name: "../evil", mode: 0o644, mtime: t(2) }, data: Buffer.from("EVIL\n") },
    { header: { name: "a/../../b", type: "directory", mode: 0o755, mtime: t(3) } },
    { header: { name: "x", type: "link", linkname: "../../etc/passwd", mtime: t(4) } },
    { header: { name: "ok-dir/after.txt", mode: 0o600, mtime: t(5) }, data: Buffer.from("after the errors\n") },
    { header: { name: "ok-dir/link-to-before", type: "link", linkname: "ok-dir/before.txt", mtime: t(6) } },
  ]);
  const ns = (s: number) => BigInt(t(s).getTime()) * 1_000_000n;
  const expected: ExpectedEntry[] = [
    { pathname: "/", kind: "dir" }, // synthetic: no "./" entry
    { pathname: "/ok-dir", kind: "dir", mode: 0o750, mtimeNs: ns(0) },
    { pathname: "/ok-dir/before.txt", kind: "file", mode: 0o640, mtimeNs: ns(1), content: "before the errors\n" },
    { pathname: quarantinePath("../evil"), kind: "file", error: true },
    { pathname: quarantinePath("a/../../b"), kind: "dir", error: true },
    { pathname: "/x", kind: "file", error: true },
    { pathname: "/ok-dir/after.txt", kind: "file", mode: 0o600, mtimeNs: ns(5), content: "after the errors\n" },
    { pathname: "/ok-dir/link-to-before", kind: "file", content: "before the errors\n", sameAs: "/ok-dir/before.txt" },
  ];
  const tar = join(base, "unsafe.tar");
  const tgz = join(base, "unsafe.tar.gz");
  await fsp.writeFile(tar, tarBytes);
  await fsp.writeFile(tgz, gzipSync(tarBytes));
  return { tar, tgz, expected };
});

/** A byte stream (not object mode) delivering `content` in uneven pieces. */
function piped(content: Buffer): Readable {
  const pieces: Buffer[] = [];
  for (let at = 0, n = 1; at < content.byteLength; at += n, n = n * 7 + 1000) pieces.push(content.subarray(at, at + n));
  return Readable.from(pieces, { objectMode: false });
}

type Mode = "file" | "gzip" | "stdin" | "stdin+gzip";

function fixture(source: () => Promise<Source>, mode: Mode): () => Promise<ImporterFixture> {
  return async () => {
    const s = await source();
    const gzip = mode === "gzip" || mode === "stdin+gzip";
    const archive = gzip ? s.tgz : s.tar;
    const expected = s.expected.map((e) => ({ ...e }));
    if (mode === "file" || mode === "gzip") {
      return { importer: new TarImporter(archive, { gzip }), expected, cleanup: async () => {} };
    }
    const input = piped(await fsp.readFile(archive));
    const importer = new TarImporter("-", { gzip, stdin: input });
    assert.ok((importer.flags & LocationFlag.STREAM) !== 0, "reading standard input, the tar importer is a STREAM importer");
    return {
      importer,
      expected,
      cleanup: async () => {
        input.destroy();
      },
    };
  };
}

const h = vitestHarness();
importerKit(h, "tar", fixture(gnuSource, "file"));
importerKit(h, "tar+gz", fixture(gnuSource, "gzip"));
importerKit(h, "tar (standard input)", fixture(gnuSource, "stdin"));
importerKit(h, "tar+gz (standard input)", fixture(gnuSource, "stdin+gzip"));
importerKit(h, "tar (unsafe names)", fixture(unsafeSource, "file"));
importerKit(h, "tar+gz (unsafe names)", fixture(unsafeSource, "gzip"));
importerKit(h, "tar (unsafe names, standard input)", fixture(unsafeSource, "stdin"));
