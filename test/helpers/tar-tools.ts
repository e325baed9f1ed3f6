/**
 * For the tar tests: build a source tree with every kind of member a tar
 * archive holds, make archives of it with the real tools (GNU tar, bsdtar,
 * Python's tarfile), and describe an extracted tree byte-exact (names,
 * symlink targets and xattrs as hex) with Python, so that nothing depends
 * on the attr package or on coffer's own code. Building needs root.
 */
import { execFileSync } from "node:child_process";
import { promises as fsp } from "node:fs";
import * as path from "node:path";

/** Runs a tool; throws with its stderr when it fails (a missing tool fails the test). */
export function tool(cmd: string, args: string[], opts: { cwd?: string; okCodes?: number[] } = {}): string {
  try {
    return execFileSync(cmd, args, { cwd: opts.cwd, encoding: "latin1", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 });
  } catch (e) {
    const err = e as { status?: number; stdout?: string; stderr?: string; message: string };
    if (err.status !== undefined && opts.okCodes?.includes(err.status)) return err.stdout ?? "";
    throw new Error(`${cmd} ${args.join(" ")}: ${err.stderr || err.message}`, { cause: e });
  }
}

/** Runs a Python 3 program with arguments. */
export function python(program: string, args: string[] = []): string {
  return tool("python3", ["-c", program, ...args]);
}

const DUMP = String.raw`
import os, sys, json, hashlib, stat
root = os.fsencode(sys.argv[1])
out = {}
inodes = {}
def walk(rel):
    p = os.path.join(root, rel) if rel else root
    st = os.lstat(p)
    m = st.st_mode
    kind = ("dir" if stat.S_ISDIR(m) else "file" if stat.S_ISREG(m) else "symlink" if stat.S_ISLNK(m) else
            "fifo" if stat.S_ISFIFO(m) else "chardev" if stat.S_ISCHR(m) else "blockdev" if stat.S_ISBLK(m) else "other")
    e = {"kind": kind, "mode": oct(stat.S_IMODE(m)), "mtime": str(st.st_mtime_ns), "uid": st.st_uid, "gid": st.st_gid}
    if kind == "file":
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for b in iter(lambda: f.read(1 << 20), b""): h.update(b)
        e["size"] = st.st_size
        e["sha256"] = h.hexdigest()
        e["blocks"] = st.st_blocks
        inodes.setdefault((st.st_dev, st.st_ino), []).append(rel.hex())
        e["inode"] = (st.st_dev, st.st_ino)
    if kind == "symlink": e["target"] = os.readlink(p).hex()
    if kind in ("chardev", "blockdev"): e["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
    x = {}
    try:
        names = os.listxattr(p, follow_symlinks=False)
    except OSError:
        names = []
    for n in names:
        if n == "security.selinux": continue
        x[os.fsencode(n).hex()] = os.getxattr(p, n, follow_symlinks=False).hex()
    if x: e["xattrs"] = x
    out[rel.hex()] = e
    if kind == "dir":
        for n in sorted(os.listdir(p)): walk(os.path.join(rel, n) if rel else n)
walk(b"")
for e in out.values():
    if "inode" in e: e["links"] = sorted(inodes[tuple(e.pop("inode"))])
print(json.dumps(out))
`;

export interface DumpEntry {
  kind: string;
  mode: string;
  mtime: string;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  blocks?: number;
  /** The names (hex) of every path sharing this file's inode. */
  links?: string[];
  target?: string;
  rdev?: [number, number];
  xattrs?: Record<string, string>;
}

/** Every entry under `root`, keyed by its relative path's bytes in hex ("" is the root). */
export function dumpTree(root: string): Map<string, DumpEntry> {
  return new Map(Object.entries(JSON.parse(python(DUMP, [root])) as Record<string, DumpEntry>));
}

/** A path's bytes (hex) as text for messages: printable ASCII as is, other bytes as \xNN. */
function showHex(hex: string): string {
  return [...Buffer.from(hex, "hex")].map((c) => (c >= 0x20 && c < 0x7f && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, "0")}`)).join("");
}

export interface DumpCompare {
  /** Fields left out (blocks always are: sparse-ness is checked apart). */
  ignore?: (keyof DumpEntry)[];
  /** Largest mtime difference tolerated, in ns (default 0). */
  mtimeToleranceNs?: bigint;
  /** Whether a difference in `field` of entry `key` is allowed after all (with the reason in a comment at the caller). */
  allow?: (key: string, field: string, want: DumpEntry, got: DumpEntry) => boolean;
}

/** Every difference between two dumps, as readable lines (empty: the same). */
export function diffDumps(want: Map<string, DumpEntry>, got: Map<string, DumpEntry>, o: DumpCompare = {}): string[] {
  const out: string[] = [];
  const skip = new Set<string>(["blocks", ...(o.ignore ?? [])]);
  for (const [k, w] of want) {
    const g = got.get(k);
    if (g === undefined) {
      out.push(`missing: ${showHex(k)} (${w.kind})`);
      continue;
    }
    for (const f of new Set([...Object.keys(w), ...Object.keys(g)])) {
      if (skip.has(f)) continue;
      if (f === "mtime") {
        const d = BigInt(w.mtime) - BigInt(g.mtime);
        if ((d < 0n ? -d : d) <= (o.mtimeToleranceNs ?? 0n)) continue;
      }
      if (o.allow?.(k, f, w, g) === true) continue;
      const a = JSON.stringify((w as unknown as Record<string, unknown>)[f]);
      const b = JSON.stringify((g as unknown as Record<string, unknown>)[f]);
      if (a !== b) out.push(`${showHex(k) || "(root)"}: ${f} ${a} != ${b}`);
    }
  }
  for (const k of got.keys()) if (!want.has(k)) out.push(`extra: ${showHex(k)}`);
  return out;
}

/** The mtime (ns, to the µs for pax's decimal times) of each member of an archive, by normalised path (hex), as Python's tarfile reads it. */
export function archiveMtimes(archive: string): Map<string, bigint> {
  const text = python(
    `import tarfile,sys,os,json
out = {}
for m in tarfile.open(sys.argv[1]):
    n = os.fsencode(m.name)
    while n.startswith(b"./"): n = n[2:]
    n = n.rstrip(b"/")
    out[n.hex() if n != b"." else ""] = str(round(m.mtime * 1000000) * 1000)
print(json.dumps(out))`,
    [archive],
  );
  return new Map(Object.entries(JSON.parse(text) as Record<string, string>).map(([k, v]) => [k, BigInt(v)]));
}

/** Sets an extended attribute (no attr package needed). */
export function setXattrPy(p: string, name: string, value: Buffer): void {
  python("import os,sys; os.setxattr(sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), follow_symlinks=False)", [p, name, value.toString("hex")]);
}

const LONG = "long-name-".repeat(12); // 120 bytes: a GNU long name, a pax path

/**
 * The source tree for the tool matrix, under `dir`:
 * - `base/`: what every format holds (ustar, v7 and star included): files
 *   (empty, text, 1 MiB), modes (0640, setuid, sticky and 0700 dirs),
 *   hard links, symlinks, a FIFO, devices, owners by number and by name,
 *   nanosecond mtimes, a path that needs ustar's prefix field;
 * - `extra/`: what only gnu and pax formats hold: long names and long link
 *   names, a sparse file of 20 islands, user xattrs (text and binary),
 *   POSIX ACLs, owner ids too large for octal fields.
 * Returns the two roots; times are set last.
 */
export async function makeTarSource(dir: string): Promise<{ base: string; extra: string }> {
  const base = path.join(dir, "base");
  const extra = path.join(dir, "extra");
  const b = (rel: string) => path.join(base, rel);
  const x = (rel: string) => path.join(extra, rel);
  for (const d of ["d/sub", "private", "sticky", "hard"]) await fsp.mkdir(b(d), { recursive: true });
  await fsp.writeFile(b("empty"), "");
  // Over 100 bytes as "./base/…": ustar splits it into prefix (under star's 131 bytes) and name.
  await fsp.mkdir(b(`${"p".repeat(60)}/${"q".repeat(60)}`), { recursive: true });
  await fsp.writeFile(b(`${"p".repeat(60)}/${"q".repeat(60)}/split.txt`), "prefix and name\n");
  await fsp.writeFile(b("d/text.txt"), "hello, tar\n");
  await fsp.writeFile(b("d/sub/mib.bin"), Buffer.alloc(1 << 20, 0x5a).fill("pattern-", 4096, 8192));
  await fsp.writeFile(b("secret"), "0640\n");
  await fsp.chmod(b("secret"), 0o640);
  await fsp.writeFile(b("suid"), "#!/bin/sh\n");
  await fsp.chmod(b("suid"), 0o4755);
  await fsp.chmod(b("sticky"), 0o1777);
  await fsp.chmod(b("private"), 0o700);
  await fsp.writeFile(b("hard/b"), "three names\n");
  await fsp.link(b("hard/b"), b("hard/c"));
  await fsp.link(b("hard/b"), b("hard/e"));
  await fsp.symlink("d/text.txt", b("sym"));
  await fsp.symlink("../nowhere", b("d/dangling"));
  tool("mkfifo", [b("fifo")]);
  tool("mknod", [b("null"), "c", "1", "3"]);
  tool("mknod", [b("loop"), "b", "7", "200"]);
  await fsp.writeFile(b("owned-num"), "1234:5678\n");
  await fsp.chown(b("owned-num"), 1234, 5678);
  await fsp.writeFile(b("owned-name"), "nobody\n");
  tool("chown", ["nobody:nogroup", b("owned-name")]);

  await fsp.mkdir(x(`deep/${LONG}/${LONG}`), { recursive: true });
  await fsp.writeFile(x(`deep/${LONG}/${LONG}/${LONG}.txt`), "a long name\n");
  await fsp.link(x(`deep/${LONG}/${LONG}/${LONG}.txt`), x("long-link"));
  await fsp.symlink(`deep/${LONG}/${LONG}/${LONG}.txt`, x("long-symlink"));
  // 20 islands of data: more than the 4 an old GNU sparse header holds (extension blocks follow it).
  const sparse = await fsp.open(x("sparse.img"), "w");
  for (let i = 0; i < 19; i++) await sparse.write(Buffer.alloc(4096, 0x61 + i), 0, 4096, i * 512 * 1024 + (i % 3) * 1000);
  await sparse.write("tail\n", 10 * 1024 * 1024 - 5, "utf8");
  await sparse.close();
  // An id over 2^21 - 1: GNU tar's gnu format writes it in base-256, pax in a record.
  await fsp.writeFile(x("big-uid"), "uid 3000000\n");
  await fsp.chown(x("big-uid"), 3_000_000, 3_000_001);
  await fsp.writeFile(x("xattrs"), "attributes\n");
  setXattrPy(x("xattrs"), "user.text", Buffer.from("a value ✓"));
  setXattrPy(x("xattrs"), "user.binary", Buffer.from([0, 0xff, 0x80, 0x0a, 0x3d]));
  await fsp.mkdir(x("xdir"));
  setXattrPy(x("xdir"), "user.dir", Buffer.from("on a directory"));
  await fsp.writeFile(x("acl-file"), "acl\n");
  tool("setfacl", ["-m", "u:nobody:r,g:daemon:rw", x("acl-file")]);
  await fsp.mkdir(x("acl-dir"));
  tool("setfacl", ["-d", "-m", "u:nobody:rx", x("acl-dir")]);

  // Times last (creating entries changes their directories' times): nanoseconds, and before 2000.
  const ns = (p: string, t: string) => tool("touch", ["-h", "-d", `@${t}`, p]);
  ns(b("d/text.txt"), "1700000000.123456789");
  ns(b("sym"), "1600000000.5");
  ns(b("empty"), "946684799");
  for (const root of [base, extra]) {
    for (const rel of tool("find", [root, "-depth", "-type", "d"]).split("\n").filter((l) => l !== "")) ns(rel, "1650000000.25");
  }
  return { base, extra };
}
