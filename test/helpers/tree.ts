/**
 * Test trees for the end-to-end suite: `makeAwkwardTree` builds a directory
 * with every kind of entry and metadata a backup must carry over, and
 * `compareTrees` lists every difference between two trees that a faithful
 * restore must not have. Both rely only on Node and standard tools (touch,
 * mkfifo), never on coffer's own code, but for extended attributes: those
 * go through coffer's libc binding (xattr-native.ts), as no tool of a
 * machine without the attr package reads or sets them byte for byte.
 *
 * Building the tree needs root (chown to other users, setuid bits).
 */
import { execFileSync } from "node:child_process";
import { createCipheriv, createHash } from "node:crypto";
import { createReadStream, promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { xattrSyscalls } from "../../src/connectors/fs/xattr-native.js";
import { escapeName, nameFromBytes } from "../../src/util/names.js";

const MiB = 1024 * 1024;
const KiB = 1024;

// ---------------------------------------------------------------- data ---

/**
 * A deterministic pseudo-random stream: the AES-256-CTR keystream under a
 * key derived from `seed`. Fast (GB/s) and the same on every run.
 */
class SeededRandom {
  private readonly cipher;
  constructor(seed: string) {
    const key = createHash("sha256").update(`coffer-test:${seed}`).digest();
    this.cipher = createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  }
  bytes(n: number): Buffer {
    return this.cipher.update(Buffer.alloc(n));
  }
}

export function seededBytes(seed: string, size: number): Buffer {
  return new SeededRandom(seed).bytes(size);
}

/** Writes `size` seeded random bytes to `file` in 4 MiB pieces. */
export async function writeSeededFile(file: string, seed: string, size: number): Promise<void> {
  const rnd = new SeededRandom(seed);
  const fh = await fsp.open(file, "w");
  try {
    for (let done = 0; done < size; ) {
      const n = Math.min(4 * MiB, size - done);
      await fh.write(rnd.bytes(n));
      done += n;
    }
  } finally {
    await fh.close();
  }
}

/** Compressible text: numbered lines of prose, `size` bytes. */
export function compressibleText(size: number, flavour = "lorem"): Buffer {
  const words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", flavour];
  const parts: string[] = [];
  let n = 0;
  for (let i = 0; n < size; i++) {
    const line = `${String(i).padStart(7, "0")} ${words.map((w, j) => words[(i + j) % words.length] ?? w).join(" ")}\n`;
    parts.push(line);
    n += line.length;
  }
  return Buffer.from(parts.join("")).subarray(0, size);
}

/** Sets atime and mtime of `p` (never following a symlink) to `@seconds` as GNU touch parses it (ns precision). */
export function touchAt(p: string, seconds: string): void {
  execFileSync("touch", ["-h", "-d", `@${seconds}`, "--", p]);
}

/** Sets atime and mtime of `p` (not following symlinks) to exactly `ns` nanoseconds since the epoch (ns >= 0). */
export function setMtimeNs(p: string, ns: bigint): void {
  const sec = ns / 1_000_000_000n;
  const frac = (ns % 1_000_000_000n).toString().padStart(9, "0");
  touchAt(p, `${sec}.${frac}`);
}

/** Sets an extended attribute of `p` (not following symlinks); `name` may be a Buffer (any bytes), a null value is empty. */
export function setXattr(p: string | Buffer, name: string | Buffer, value: string | Buffer | null): void {
  const bytes = (s: string | Buffer) => (typeof s === "string" ? Buffer.from(s, "utf8") : s);
  xattrSyscalls().set(bytes(p), bytes(name), value === null ? Buffer.alloc(0) : bytes(value));
}

// ------------------------------------------------------- awkward tree ---

export interface AwkwardTree {
  root: string;
  /** Paths inside the tree, '/'-rooted as a snapshot names them. */
  bigFile: string;
  bigFileSize: number;
  textDir: string;
  /** Names directly inside textDir. */
  textDirNames: string[];
  unicodeFile: string;
  sparseFile: string;
  sparseFileSize: number;
  emptyFile: string;
  namesDir: string;
  /** A file whose change the incremental tests may make (small, random). */
  smallRandomFile: string;
}

const CHUNK_BOUNDARY_SIZES = [512 * KiB - 1, 512 * KiB, 512 * KiB + 1, 1 * MiB, 8 * MiB, 8 * MiB + 1];

/**
 * Builds the awkward tree under `dir` (created if missing; should be empty).
 * Deterministic except for ctimes/inodes and the mtimes of entries not set
 * explicitly.
 */
export async function makeAwkwardTree(dir: string): Promise<AwkwardTree> {
  const root = path.resolve(dir);
  const p = (rel: string) => path.join(root, rel);
  const mkdir = (rel: string) => fsp.mkdir(p(rel), { recursive: true });
  const write = (rel: string, data: string | Buffer) => fsp.writeFile(p(rel), data);
  await fsp.mkdir(root, { recursive: true });

  // Plain files and chunk boundaries.
  await write("empty", "");
  await write("one-byte", "x");
  await mkdir("chunks");
  for (const size of CHUNK_BOUNDARY_SIZES) await writeSeededFile(p(`chunks/size-${size}`), `chunk-${size}`, size);
  const bigFileSize = 20 * MiB;
  await writeSeededFile(p("random-20MiB.bin"), "big-20MiB", bigFileSize);
  await write("small-random.bin", seededBytes("small-random", 300 * KiB));

  // Compressible text.
  await mkdir("text");
  await write("text/lorem.txt", compressibleText(300 * KiB));
  await write("text/repeat.log", compressibleText(4 * MiB, "repeat"));
  await write("text/small.md", "# small\n\nA short markdown file.\n");
  await write("text/crlf.txt", "line one\r\nline two\r\n");

  // Names.
  await mkdir("names/日本");
  await write("names/é", "NFC e-acute\n");
  await write("names/e\u0301", "NFD e + combining acute\n");
  await write("names/日本/日本語.txt", "こんにちは世界\n");
  await write("names/🦊🚀.txt", "emoji\n");
  await write("names/new\nline", "a name with a newline\n");
  await write("names/back\\slash", "a name with a backslash\n");
  await write("names/ with  spaces .txt", "spaces\n");
  await write("names/-dash", "leading dash\n");
  await write("names/[brackets]*?", "glob characters\n");

  // Deep nesting: 30 levels.
  let deep = "deep";
  for (let i = 1; i <= 30; i++) deep += `/d${String(i).padStart(2, "0")}`;
  await mkdir(deep);
  await write(`${deep}/leaf.txt`, "at the bottom\n");

  // Symlinks.
  await mkdir("links");
  await fsp.symlink("../one-byte", p("links/relative"));
  await fsp.symlink("/etc/hostname", p("links/absolute"));
  await fsp.symlink("does/not/exist", p("links/dangling"));
  await fsp.symlink("../text", p("links/to-dir"));

  // Hardlinks across directories.
  await mkdir("hard/a");
  await mkdir("hard/b");
  await mkdir("hard/c");
  await write("hard/a/two", seededBytes("hard-two", 100 * KiB));
  await fsp.link(p("hard/a/two"), p("hard/b/two-again"));
  await write("hard/a/three", seededBytes("hard-three", 70 * KiB));
  await fsp.link(p("hard/a/three"), p("hard/b/three-again"));
  await fsp.link(p("hard/a/three"), p("hard/c/three-third"));

  // Special files.
  await mkdir("special");
  execFileSync("mkfifo", ["-m", "0640", "--", p("special/fifo")]);

  // Extended attributes (binary values, an empty one, a largish one).
  await mkdir("xattr/dir");
  await write("xattr/file.bin", seededBytes("xattr-file", 5000));
  setXattr(p("xattr/file.bin"), "user.binary", Buffer.from([0x00, 0xff, 0x00, 0xfe, 0x0a, 0x0d, 0x3d, 0x5c]));
  setXattr(p("xattr/file.bin"), "user.text", "hello world");
  setXattr(p("xattr/file.bin"), "user.empty", null);
  setXattr(p("xattr/file.bin"), "user.large", seededBytes("xattr-large", 2000));
  setXattr(p("xattr/dir"), "user.on-a-dir", Buffer.from([1, 2, 3, 0]));

  // Odd modes (xattr on the 0o000 file: a restore must set the mode last).
  await mkdir("modes/sticky-1777");
  await mkdir("modes/private-700");
  await write("modes/sticky-1777/inside", "in a sticky dir\n");
  await write("modes/private-700/inside", "in a private dir\n");
  await write("modes/mode-000", "nobody may read me\n");
  setXattr(p("modes/mode-000"), "user.locked", Buffer.from([0xde, 0xad]));
  await write("modes/setuid-4755", "#!/bin/sh\necho setuid\n");
  await write("modes/setgid-2750", "#!/bin/sh\necho setgid\n");

  // Owners other than root (numeric ids with no passwd entry, and nobody).
  await mkdir("owners/nobody-dir");
  await write("owners/nobody-dir/file", "owned by nobody\n");
  await write("owners/u1234-g5678", "owned by 1234:5678\n");
  await fsp.symlink("u1234-g5678", p("owners/link-4321"));
  await fsp.chown(p("owners/u1234-g5678"), 1234, 5678);
  await fsp.chown(p("owners/nobody-dir"), 65534, 65534);
  await fsp.chown(p("owners/nobody-dir/file"), 65534, 65534);
  await fsp.lchown(p("owners/link-4321"), 4321, 4321);

  // Modes after chown (chown clears setuid/setgid).
  await fsp.chmod(p("modes/mode-000"), 0o000);
  await fsp.chmod(p("modes/setuid-4755"), 0o4755);
  await fsp.chmod(p("modes/setgid-2750"), 0o2750);
  await fsp.chmod(p("modes/sticky-1777"), 0o1777);
  await fsp.chmod(p("modes/private-700"), 0o700);
  await fsp.chmod(p("text/small.md"), 0o640);

  // A sparse file: 24 MiB with three small data islands.
  const sparseFileSize = 24 * MiB;
  {
    const fh = await fsp.open(p("sparse-holes.bin"), "w");
    try {
      await fh.write(seededBytes("sparse-a", 64 * KiB), 0, 64 * KiB, 0);
      await fh.write(seededBytes("sparse-b", 64 * KiB), 0, 64 * KiB, 12 * MiB);
      await fh.write(seededBytes("sparse-c", 4 * KiB), 0, 4 * KiB, sparseFileSize - 4 * KiB);
      await fh.truncate(sparseFileSize);
    } finally {
      await fh.close();
    }
  }

  // Times last (deepest first, directories after their content).
  await mkdir("times/old-dir");
  await write("times/old-dir/inside", "old dir\n");
  await write("times/1975.txt", "1975\n");
  await write("times/1e9.txt", "one billion seconds\n");
  await write("times/ns-precise.txt", "nanoseconds\n");
  touchAt(p("times/1975.txt"), "157766400"); // 1975-01-01T00:00:00Z
  touchAt(p("times/1e9.txt"), "1000000000");
  touchAt(p("times/ns-precise.txt"), "1234567890.123456789");
  touchAt(p("times/old-dir/inside"), "1300000000.5");
  touchAt(p("times/old-dir"), "315532800"); // 1980
  touchAt(p("links/relative"), "1500000000.25");
  touchAt(p("special/fifo"), "1111111111");
  touchAt(p("hard/a/three"), "1400000000.000001");
  touchAt(p(deep), "1200000000");
  touchAt(p("modes/mode-000"), "1410000000.987654321");
  touchAt(root, "1600000000.75");

  return {
    root,
    bigFile: "/random-20MiB.bin",
    bigFileSize,
    textDir: "/text",
    textDirNames: ["crlf.txt", "lorem.txt", "repeat.log", "small.md"],
    unicodeFile: "/names/日本/日本語.txt",
    sparseFile: "/sparse-holes.bin",
    sparseFileSize,
    emptyFile: "/empty",
    namesDir: "/names",
    smallRandomFile: "/small-random.bin",
  };
}

// ------------------------------------------------------------- walking ---

export type Kind = "file" | "dir" | "symlink" | "fifo" | "socket" | "chardev" | "blockdev" | "other";

export interface TreeEntry {
  /** '/'-separated path relative to the tree root; "" is the root. */
  rel: string;
  kind: Kind;
  size: bigint;
  mode: number;
  mtimeNs: bigint;
  uid: number;
  gid: number;
  nlink: number;
  inode: string;
  blocks: bigint;
  target?: string;
  /** sha256 hex of a file's content, or "unreadable: CODE". */
  hash?: string;
}

function kindOf(st: import("node:fs").BigIntStats): Kind {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isFIFO()) return "fifo";
  if (st.isSocket()) return "socket";
  if (st.isCharacterDevice()) return "chardev";
  if (st.isBlockDevice()) return "blockdev";
  return "other";
}

export async function hashFile(file: string): Promise<string> {
  const h = createHash("sha256");
  for await (const piece of createReadStream(file, { highWaterMark: 4 * MiB })) h.update(piece as Buffer);
  return h.digest("hex");
}

/** Every entry of the tree at `root` (the root itself as rel ""), in a stable order. */
export async function walkTree(root: string, opts: { hashes?: boolean } = {}): Promise<Map<string, TreeEntry>> {
  const out = new Map<string, TreeEntry>();
  const visit = async (rel: string): Promise<void> => {
    const abs = rel === "" ? root : path.join(root, rel);
    const st = await fsp.lstat(abs, { bigint: true });
    const kind = kindOf(st);
    const e: TreeEntry = {
      rel,
      kind,
      size: st.size,
      mode: Number(st.mode & 0o7777n),
      mtimeNs: st.mtimeNs,
      uid: Number(st.uid),
      gid: Number(st.gid),
      nlink: Number(st.nlink),
      inode: `${st.dev}:${st.ino}`,
      blocks: st.blocks,
    };
    if (kind === "symlink") e.target = await fsp.readlink(abs);
    if (kind === "file" && opts.hashes !== false) {
      e.hash = await hashFile(abs).catch((err: NodeJS.ErrnoException) => `unreadable: ${err.code ?? err.message}`);
    }
    out.set(rel, e);
    if (kind === "dir") {
      const names = (await fsp.readdir(abs)).sort();
      for (const n of names) await visit(rel === "" ? n : `${rel}/${n}`);
    }
  };
  await visit("");
  return out;
}

/** rel path -> sorted ["name=0xhex", ...] for every entry with extended attributes (symlinks not followed). */
export async function readTreeXattrs(root: string): Promise<Map<string, string[]>> {
  const sys = xattrSyscalls();
  const out = new Map<string, string[]>();
  const visit = async (abs: Buffer, rel: string): Promise<void> => {
    const names = sys.list(abs);
    if (names.length > 0) out.set(rel, names.map((n) => `${escapeName(nameFromBytes(n))}=0x${sys.get(abs, n).toString("hex")}`).sort());
    if (!(await fsp.lstat(abs)).isDirectory()) return;
    for (const n of await fsp.readdir(abs, { encoding: "buffer" })) {
      const name = nameFromBytes(n);
      await visit(Buffer.concat([abs, Buffer.from("/"), n]), rel === "" ? name : `${rel}/${name}`);
    }
  };
  await visit(Buffer.from(path.resolve(root)), "");
  return out;
}

let lutimesProbe: Promise<boolean> | undefined;

/** Whether this system can set a symlink's own mtime (lutimes). */
function lutimesWorks(): Promise<boolean> {
  lutimesProbe ??= (async () => {
    const dir = await fsp.mkdtemp(path.join(tmpdir(), "coffer-lutimes-"));
    try {
      const link = path.join(dir, "l");
      await fsp.symlink("nowhere", link);
      await fsp.lutimes(link, 1_000_000_000, 1_000_000_000);
      const st = await fsp.lstat(link, { bigint: true });
      return st.mtimeNs === 1_000_000_000_000_000_000n;
    } catch {
      return false;
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  })();
  return lutimesProbe;
}

// ----------------------------------------------------------- comparing ---

export interface CompareOptions {
  /** Leave out entries (and their subtrees) for which this returns true; rel is '/'-separated, no leading '/'. */
  ignore?: (rel: string) => boolean;
  /** Compare the roots' own metadata (mode, mtime, owner, xattrs). Default true. */
  rootMeta?: boolean;
  /** Largest mtime difference tolerated, in ns (default 999: equal to the microsecond). */
  mtimeToleranceNs?: bigint;
}

const show = (rel: string) => JSON.stringify(`/${rel}`);

/** Hardlink groups: sorted lists of the paths sharing an inode (files with nlink > 1 only, groups of 2+). */
function linkGroups(entries: Map<string, TreeEntry>): string[] {
  const byInode = new Map<string, string[]>();
  for (const e of entries.values()) {
    if (e.kind === "dir" || e.nlink < 2) continue;
    const g = byInode.get(e.inode) ?? [];
    g.push(e.rel);
    byInode.set(e.inode, g);
  }
  return [...byInode.values()]
    .filter((g) => g.length > 1)
    .map((g) => g.sort().map((r) => `/${r}`).join(" = "))
    .sort();
}

/**
 * Every difference between the trees at `a` (expected) and `b` (actual):
 * the set of entries, kinds, file contents and sizes, modes (& 0o7777),
 * mtimes to the microsecond (symlinks only where lutimes works), symlink
 * targets, uid/gid, extended attributes and hardlink groups. Directory
 * sizes and inode numbers are not compared. Empty when they match.
 */
export async function compareTrees(a: string, b: string, opts: CompareOptions = {}): Promise<string[]> {
  const tolerance = opts.mtimeToleranceNs ?? 999n;
  const symlinkTimes = await lutimesWorks();
  const keep = (rel: string) => {
    if (rel === "" || opts.ignore === undefined) return true;
    const parts = rel.split("/");
    for (let i = 1; i <= parts.length; i++) if (opts.ignore(parts.slice(0, i).join("/"))) return false;
    return true;
  };
  const filter = <V>(m: Map<string, V>) => new Map([...m].filter(([rel]) => keep(rel)));
  const [ta, tb, xa, xb] = await Promise.all([walkTree(a), walkTree(b), readTreeXattrs(a), readTreeXattrs(b)]);
  const ea = filter(ta);
  const eb = filter(tb);
  const diffs: string[] = [];

  for (const rel of ea.keys()) if (!eb.has(rel)) diffs.push(`${show(rel)}: missing (a ${ea.get(rel)?.kind})`);
  for (const rel of eb.keys()) if (!ea.has(rel)) diffs.push(`${show(rel)}: unexpected (a ${eb.get(rel)?.kind})`);

  for (const [rel, x] of ea) {
    const y = eb.get(rel);
    if (y === undefined) continue;
    const d = (what: string, ex: unknown, ac: unknown) => diffs.push(`${show(rel)}: ${what} ${String(ex)} != ${String(ac)}`);
    if (x.kind !== y.kind) {
      d("kind", x.kind, y.kind);
      continue;
    }
    if (rel === "" && opts.rootMeta === false) continue;
    if (x.kind === "file") {
      if (x.size !== y.size) d("size", x.size, y.size);
      if (x.hash !== y.hash) d("content sha256", x.hash, y.hash);
    }
    if (x.kind === "symlink" && x.target !== y.target) d("symlink target", JSON.stringify(x.target), JSON.stringify(y.target));
    if (x.kind !== "symlink" && x.mode !== y.mode) d("mode", `0o${x.mode.toString(8)}`, `0o${y.mode.toString(8)}`);
    if (x.uid !== y.uid || x.gid !== y.gid) d("owner", `${x.uid}:${x.gid}`, `${y.uid}:${y.gid}`);
    if (x.kind !== "symlink" || symlinkTimes) {
      const delta = x.mtimeNs > y.mtimeNs ? x.mtimeNs - y.mtimeNs : y.mtimeNs - x.mtimeNs;
      if (delta > tolerance) d("mtime (ns)", x.mtimeNs, y.mtimeNs);
    }
    const xx = (xa.get(rel) ?? []).join(", ");
    const xy = (xb.get(rel) ?? []).join(", ");
    if (xx !== xy) d("xattrs", `[${xx}]`, `[${xy}]`);
  }

  const ga = linkGroups(ea);
  const gb = linkGroups(eb);
  for (const g of ga) if (!gb.includes(g)) diffs.push(`hardlink group missing: ${g}`);
  for (const g of gb) if (!ga.includes(g)) diffs.push(`hardlink group unexpected: ${g}`);
  return diffs;
}

/** Total bytes of the regular files under `dir` (apparent sizes). */
export async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of (await walkTree(dir, { hashes: false })).values()) if (e.kind === "file") total += Number(e.size);
  return total;
}

/** Copies a tree preserving everything compareTrees looks at (GNU cp -a). */
export function copyTree(from: string, to: string): void {
  execFileSync("cp", ["-a", "--", from, to]);
}
