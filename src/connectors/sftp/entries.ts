/**
 * What the sftp importer and exporter share: SFTP attributes as FileInfo
 * (SFTP v3 has mtimes in whole seconds, no inode, device or link count),
 * and SFTP failures as IO errors naming the server and the path.
 */
import type { Attributes } from "ssh2";
import { CofferError, isCofferError } from "../../util/errors.js";
import type { EntryKind, FileInfo } from "../records.js";
import { SftpStatus, sftpStatus } from "./connection.js";

const S_IFMT = 0o170000;
const KINDS: ReadonlyMap<number, EntryKind> = new Map([
  [0o100000, "file"],
  [0o040000, "dir"],
  [0o120000, "symlink"],
  [0o010000, "fifo"],
  [0o140000, "socket"],
  [0o020000, "chardev"],
  [0o060000, "blockdev"],
]);

export function kindOfMode(mode: number): EntryKind {
  return KINDS.get(mode & S_IFMT) ?? "other";
}

/**
 * An entry's FileInfo from its SFTP attributes. dev and ino are 0 and nlink
 * 1: SFTP does not give them, and a link count above 1 with no inode would
 * make every such file a hard link of every other.
 */
export function infoOfAttrs(name: string, a: Attributes, names: { user?: string | undefined; group?: string | undefined } = {}): FileInfo {
  return {
    name,
    kind: kindOfMode(a.mode),
    size: a.size,
    mode: a.mode & 0o7777,
    mtimeNs: BigInt(a.mtime) * 1_000_000_000n,
    dev: 0n,
    ino: 0n,
    uid: a.uid,
    gid: a.gid,
    nlink: 1,
    username: names.user,
    groupname: names.group,
  };
}

/** An SFTP failure of `op` on `at` (the location of the entry: server and path) as an IO error naming it; CofferErrors pass through. */
export function sftpError(e: unknown, op: string, at: string): CofferError {
  if (isCofferError(e)) return e;
  const status = sftpStatus(e);
  const why = status === SftpStatus.NO_SUCH_FILE ? "no such file or directory" : status === SftpStatus.PERMISSION_DENIED ? "permission denied" : (e as Error).message;
  const data: Record<string, unknown> = { path: at };
  if (status === SftpStatus.PERMISSION_DENIED) data.errno = "EACCES";
  if (status === SftpStatus.NO_SUCH_FILE) data.errno = "ENOENT";
  return new CofferError("IO", `[sftp] cannot ${op} ${at}: ${why}`, data, { cause: e });
}

/** Seconds since the epoch of a nanosecond time, rounded down (SFTP v3 times). */
export function nsToWholeSeconds(ns: bigint): number {
  const s = ns / 1_000_000_000n;
  return Number(ns < 0n && s * 1_000_000_000n !== ns ? s - 1n : s);
}
