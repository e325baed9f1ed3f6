/**
 * Reads a directory tree back as the exporter kit compares it: one
 * ExpectedEntry per entry, "/" being the directory itself. Walks with lstat
 * (kinds, modes, mtimes, content, symlink targets, hard links by inode as
 * `sameAs` the first name in sorted order) and reads user.* xattrs through
 * the libc binding (no getfattr needed). Shared by the exporter conformance tests that read back a tree
 * (fs, and tar after GNU tar extracted the archive).
 */
import { promises as fsp } from "node:fs";
import { join } from "node:path";
import { kindOf } from "../../src/connectors/fs/importer.js";
import { xattrSyscalls } from "../../src/connectors/fs/xattr-native.js";
import type { Xattr } from "../../src/connectors/records.js";
import type { ExpectedEntry } from "../../src/sdk/kits/index.js";

/** user.* attributes of one entry (symlinks not followed), sorted by name. */
function userXattrs(path: string): Xattr[] {
  const sys = xattrSyscalls();
  const p = Buffer.from(path);
  return sys
    .list(p)
    .filter((n) => n.subarray(0, 5).toString() === "user.")
    .sort(Buffer.compare)
    .map((n) => ({ name: n.toString("utf8"), value: new Uint8Array(sys.get(p, n)) }));
}

/** The tree at `target` ([] when there is nothing there). */
export async function readTree(target: string): Promise<ExpectedEntry[]> {
  const out: ExpectedEntry[] = [];
  const inodes = new Map<bigint, string[]>();
  const walk = async (abs: string, pathname: string): Promise<void> => {
    const st = await fsp.lstat(abs, { bigint: true });
    const e: ExpectedEntry = { pathname, kind: kindOf(st), mode: Number(st.mode & 0o7777n), mtimeNs: st.mtimeNs, xattrs: userXattrs(abs) };
    out.push(e);
    if (e.kind === "file") {
      e.content = new Uint8Array(await fsp.readFile(abs));
      e.size = Number(st.size);
      if (st.nlink > 1n) inodes.set(st.ino, [...(inodes.get(st.ino) ?? []), pathname]);
    } else if (e.kind === "symlink") {
      e.target = await fsp.readlink(abs);
    } else if (e.kind === "dir") {
      for (const name of (await fsp.readdir(abs)).sort()) await walk(join(abs, name), pathname === "/" ? `/${name}` : `${pathname}/${name}`);
    }
  };
  const exists = await fsp.lstat(target).then(
    () => true,
    () => false,
  );
  if (exists) await walk(target, "/");
  for (const paths of inodes.values()) {
    const [first, ...rest] = paths.sort();
    for (const p of rest) (out.find((e) => e.pathname === p) as ExpectedEntry).sameAs = first;
  }
  return out;
}
