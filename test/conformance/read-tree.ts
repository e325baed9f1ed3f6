/**
 * Reads a directory tree back as the exporter kit compares it: one
 * ExpectedEntry per entry, "/" being the directory itself. Walks with lstat
 * (kinds, modes, mtimes, content, symlink targets, hard links by inode as
 * `sameAs` the first name in sorted order) and reads user.* xattrs with
 * getfattr. Shared by the exporter conformance tests that read back a tree
 * (fs, and tar after GNU tar extracted the archive).
 */
import { spawnSync } from "node:child_process";
import { promises as fsp } from "node:fs";
import { join } from "node:path";
import { kindOf } from "../../src/connectors/fs/importer.js";
import type { Xattr } from "../../src/connectors/records.js";
import type { ExpectedEntry } from "../../src/sdk/kits/index.js";

/** user.* attributes of one entry (symlinks not followed), values as getfattr prints them in hex. */
export function userXattrs(path: string): Xattr[] {
  const r = spawnSync("getfattr", ["-h", "-d", "-m", "^user\\.", "-e", "hex", "--absolute-names", "--", path], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`getfattr ${path}: ${r.stderr}`);
  const out: Xattr[] = [];
  for (const line of r.stdout.split("\n")) {
    const m = /^(user\.[^=]+)=0x([0-9a-f]*)$/.exec(line);
    if (m) out.push({ name: m[1] as string, value: new Uint8Array(Buffer.from(m[2] as string, "hex")) });
  }
  return out;
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
