/**
 * tar archives from every tool, through the built CLI: each archive is made
 * by the real tool (GNU tar in gnu, pax with each sparse version, --acls
 * alone, v7; bsdtar in its pax, gnutar, ustar and v7tar formats; Python's
 * tarfile in ustar, gnu and pax; a star-style ustar variant), backed up
 * with `coffer backup tar:FILE`, restored to a directory, and compared with
 * GNU tar's extraction of the same archive (as root: owners kept): names,
 * kinds, modes, mtimes, owners, content, hard-link identity, symlink
 * targets, device numbers, and sparse-ness (the restored sparse file takes
 * few blocks), extended attributes and ACLs. Those are also compared
 * through a second restore, `--to tar:`, extracted by GNU tar with
 * --xattrs-include='*' (the only check of them where the fs exporter says
 * it cannot restore xattrs).
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeRun, type Env, EXIT, expectNoStackTrace, FAST_KDF } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";
import { archiveMtimes, diffDumps, dumpTree, makeTarSource, python, tool } from "../helpers/tar-tools.js";

const PASS = "tar-tools-e2e";
let base: string;
let src: string;
let n = 0;

const env = (): Env => ({ HOME: base, TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: PASS });
const fresh = (what: string) => path.join(base, `${what}-${++n}`);

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-tar-tools-"));
  await fsp.mkdir(path.join(base, "tmp"));
  src = path.join(base, "src");
  await fsp.mkdir(src);
  await makeTarSource(src);
}, 60_000);

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

/**
 * GNU tar's extraction of an archive, as root: owners, modes and xattrs
 * kept; with `acls`, the SCHILY.acl records too (GNU tar then sets ACLs
 * from those alone, not from system.posix_acl_* xattrs, which coffer's tar
 * exporter writes).
 */
function gnuExtract(archive: string, acls = false): string {
  const dir = fresh("gnu-x");
  tool("mkdir", [dir]);
  tool("tar", ["--xattrs", "--xattrs-include=*", ...(acls ? ["--acls"] : []), "--same-owner", "-xpf", archive, "-C", dir]);
  return dir;
}

/** Backs the archive up with the CLI; returns the snapshot id and the warnings printed. */
async function backup(repo: string, archive: string, proto = "tar"): Promise<{ id: string; stderr: string }> {
  const r = await cofferInProcess(["at", repo, "backup", "--json", `${proto}:${archive}`], { env: env(), cwd: base });
  expectNoStackTrace(r);
  expect(r.exitCode, describeRun(r)).toBe(EXIT.OK);
  return { id: (JSON.parse(r.stdout) as { id: string }).id, stderr: r.stderr };
}

async function newRepo(): Promise<string> {
  const repo = fresh("repo");
  const r = await cofferInProcess(["at", repo, "create", ...FAST_KDF], { env: env(), cwd: base });
  expect(r.exitCode, describeRun(r)).toBe(EXIT.OK);
  return repo;
}

let shared: Promise<string> | undefined;
/** One repository for the matrix (backups and restores take shared locks). */
const sharedRepo = () => (shared ??= newRepo());

async function restore(repo: string, id: string, to: string): Promise<string> {
  const r = await cofferInProcess(["at", repo, "restore", id, "--to", to], { env: env(), cwd: base });
  expectNoStackTrace(r);
  expect(r.exitCode, describeRun(r)).toBe(EXIT.OK);
  return r.stderr;
}

interface Case {
  name: string;
  /** Writes the archive from `root` (the directory archived as "."). */
  make: (archive: string, root: string) => void;
  /** Archive only base/ (the formats that hold no long names, xattrs or sparse files). */
  baseOnly?: boolean;
  /** The archive holds xattrs or ACLs: compare them too (through tar: restore). */
  xattrs?: boolean;
  /** The archive holds the sparse file as sparse. */
  sparse?: boolean;
}

const gnu = (...flags: string[]) => (a: string, root: string) => void tool("tar", [...flags, "-cf", a, "-C", root, "."]);
const bsd = (...flags: string[]) => (a: string, root: string) => void tool("bsdtar", [...flags, "-cf", a, "-C", root, "."]);
const py = (format: string) => (a: string, root: string) =>
  void python(
    `import tarfile,sys,os
os.chdir(sys.argv[2])
with tarfile.open(sys.argv[1], "w", format=tarfile.${format}) as t: t.add(".")`,
    [a, root],
  );

/**
 * A star-style archive (ustar magic, a 131-byte prefix, atime and ctime at
 * 476 and 488, "tar\0" at 508), made from Python's ustar output: no tool
 * here writes star's own format, so its headers are rewritten.
 */
const star = (a: string, root: string) => {
  py("USTAR_FORMAT")(a, root);
  python(
    `import sys
d = bytearray(open(sys.argv[1], "rb").read())
i = 0
while i + 512 <= len(d) and any(d[i:i+512]):
    h = d[i:i+512]
    size = int(h[124:136].strip(b"\\0 ") or b"0", 8)
    assert h[345+130:345+155].strip(b"\\0") == b"", "prefix longer than star's"
    h[476:500] = (b"%011o\\0" % 1600000000) * 2
    h[508:512] = b"tar\\0"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\\0 " % sum(h)
    d[i:i+512] = h
    i += 512 + (size + 511) // 512 * 512 * (h[156] in b"07\\0")
open(sys.argv[1], "wb").write(d)`,
    [a],
  );
};

const CASES: Case[] = [
  { name: "GNU tar, gnu format (long names, old GNU sparse)", make: gnu("--format=gnu", "-S"), sparse: true },
  { name: "GNU tar, pax format, sparse 1.0, --xattrs --acls", make: gnu("--format=pax", "-S", "--xattrs", "--xattrs-include=*", "--acls"), xattrs: true, sparse: true },
  { name: "GNU tar, pax format, sparse 0.0", make: gnu("--format=pax", "-S", "--sparse-version=0.0"), sparse: true },
  { name: "GNU tar, pax format, sparse 0.1", make: gnu("--format=pax", "-S", "--sparse-version=0.1"), sparse: true },
  { name: "GNU tar, pax format, --acls alone (ACLs as SCHILY.acl text)", make: gnu("--format=pax", "--acls"), xattrs: true },
  { name: "GNU tar, v7 format", make: (a, r) => void tool("tar", ["--format=v7", "-cf", a, "-C", r, "."], { okCodes: [2] }), baseOnly: true },
  { name: "bsdtar, default (restricted pax: xattrs, ACLs, sparse)", make: bsd(), xattrs: true, sparse: true },
  { name: "bsdtar, gnutar format", make: bsd("--format=gnutar") },
  { name: "bsdtar, ustar format", make: bsd("--format=ustar"), baseOnly: true },
  { name: "bsdtar, v7tar format", make: bsd("--format=v7tar"), baseOnly: true },
  { name: "Python tarfile, ustar", make: py("USTAR_FORMAT"), baseOnly: true },
  { name: "Python tarfile, gnu", make: py("GNU_FORMAT") },
  { name: "Python tarfile, pax", make: py("PAX_FORMAT") },
  { name: "star-style ustar (131-byte prefix, atime/ctime)", make: star, baseOnly: true },
];

describe.concurrent("tar archives from other tools import as GNU tar extracts them", () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const archive = `${fresh("archive")}.tar`;
      c.make(archive, c.baseOnly === true ? path.join(src, "base") : src);
      const want = dumpTree(gnuExtract(archive, true));
      const repo = await sharedRepo();
      const { id } = await backup(repo, archive);
      const out = fresh("restored");
      const said = await restore(repo, id, out);
      const got = dumpTree(out);
      // Where the fs exporter still needs setfattr it says so; xattrs (and the ACL masks in modes) are then compared through tar: below.
      const noFsXattrs = /extended attributes not restored/.test(said);
      const mtimes = archiveMtimes(archive);
      const fsRoute = diffDumps(want, got, {
        ignore: noFsXattrs ? ["xattrs"] : [],
        // The fs exporter sets times through a double: exact to the microsecond (docs/CLI.md).
        mtimeToleranceNs: 999n,
        allow: (key, field, w, g) => {
          // GNU tar sets a directory's time when it leaves it; bsdtar writes a directory's members later, so GNU tar's is the extraction time, coffer's the archive's.
          if (field === "mtime" && w.kind === "dir") return BigInt(g.mtime) / 1000n === (mtimes.get(key) ?? -1n) / 1000n;
          // An ACL's mask shows in the group bits: without the ACL restored the mode differs.
          if (noFsXattrs && field === "mode" && w.xattrs?.[Buffer.from("system.posix_acl_access").toString("hex")] !== undefined) return true;
          return false;
        },
      });
      expect(fsRoute).toEqual([]);
      if (c.baseOnly !== true) {
        const sparse = [...want.entries()].find(([k]) => k.endsWith(Buffer.from("/sparse.img").toString("hex")));
        expect(sparse, "the sparse file is in the archive").toBeDefined();
        const key = (sparse as [string, unknown])[0];
        const apparent = 10 * 1024 * 1024;
        expect(got.get(key)?.size).toBe(apparent);
        // Restored sparse: far fewer blocks than its size (GNU tar's extraction of a non-sparse member takes them all).
        expect((got.get(key)?.blocks ?? Infinity) * 512).toBeLessThan(apparent / 4);
        if (c.sparse === true) expect((want.get(key)?.blocks ?? Infinity) * 512).toBeLessThan(apparent / 4);
      }
      if (c.xattrs === true) {
        const viaTar = `${fresh("back")}.tar`;
        await restore(repo, id, `tar:${viaTar}`);
        const again = dumpTree(gnuExtract(viaTar));
        expect(diffDumps(want, again, { allow: (key, field, w, g) => field === "mtime" && w.kind === "dir" && BigInt(g.mtime) === mtimes.get(key) })).toEqual([]);
        const withX = [...want.values()].filter((e) => e.xattrs !== undefined);
        expect(withX.length).toBeGreaterThan(1);
      }
    });
  }
});

describe("names as bytes through tar", () => {
  it("a tree of names that are not UTF-8 (files, a directory, a symlink target, a hard link, an xattr name) comes back byte-exact through tar in and tar out", async () => {
    const dir = Buffer.from(fresh("raw"));
    const B = (s: string) => Buffer.from(s, "latin1");
    const at = (...parts: string[]) => Buffer.concat([dir, ...parts.map((x) => Buffer.concat([B("/"), B(x)]))]);
    await fsp.mkdir(dir);
    await fsp.writeFile(at("lat\xe9"), "latin-1\n");
    await fsp.writeFile(at("bad\xff\xfename"), "bad bytes\n");
    await fsp.mkdir(at("dir\x80"));
    await fsp.writeFile(at("dir\x80", "f"), "in a raw dir\n");
    await fsp.symlink(B("tgt\xff"), at("sym"));
    await fsp.link(at("lat\xe9"), at("hard\xe9"));
    python("import os,sys; os.setxattr(bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), b'raw')", [at("lat\xe9").toString("hex"), B("user.n\xe9").toString("hex")]);
    const repo = await newRepo();
    for (const format of ["gnu", "pax"]) {
      const archive = `${fresh("raw")}.tar`;
      tool("tar", [`--format=${format}`, "--xattrs", "--xattrs-include=*", "-cf", archive, "-C", dir.toString("latin1"), "."]);
      const want = dumpTree(gnuExtract(archive));
      expect([...want.keys()].map((k) => Buffer.from(k, "hex").toString("latin1"))).toContain("dir\x80/f");
      const { id } = await backup(repo, archive);
      const back = `${fresh("back")}.tar`;
      await restore(repo, id, `tar:${back}`);
      expect(diffDumps(want, dumpTree(gnuExtract(back)))).toEqual([]);
    }
  });
});
