/**
 * Extended attributes of local entries, for the fs importer and exporter.
 * Names and values are bytes (a name is held as a names.ts string), read
 * and set in-process through xattr-native.ts, never following symlinks.
 * Every attribute the process may list is read: user.* always, and as root
 * also trusted.*, security.* and the POSIX ACLs (system.posix_acl_*).
 */

import { constants } from "node:os";
import type { Xattr } from "../records.js";
import { escapeName, nameFromBytes, nameToBytes } from "../../util/names.js";
import { isUnsupported, xattrSyscalls, type XattrError } from "./xattr-native.js";

/** "No such attribute": ENODATA on Linux, ENOATTR (93, not in Node's table) on macOS. */
const ENODATA = process.platform === "darwin" ? 93 : constants.errno.ENODATA;

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const errnoOf = (e: unknown): number | undefined => (e instanceof Error && typeof (e as XattrError).errno === "number" ? (e as XattrError).errno : undefined);

/**
 * Reads entries' attributes for one import. A failure on one entry is a
 * warning naming it and the walk goes on; "not supported" (a file system
 * without xattrs) is said once per reader, not once per entry.
 */
export class XattrReader {
  private warnedUnsupported = false;

  constructor(private readonly onWarning: (msg: string) => void = () => {}) {}

  /** The entry's attributes sorted by name bytes, or undefined when it has none (or they could not be read). */
  read(abs: string): Xattr[] | undefined {
    const sys = xattrSyscalls();
    const path = nameToBytes(abs);
    let names: Buffer[];
    try {
      names = sys.list(path);
    } catch (e) {
      this.warn(abs, undefined, e);
      return undefined;
    }
    if (names.length === 0) return undefined;
    if (names.length > 1) names.sort(Buffer.compare);
    const out: Xattr[] = [];
    for (const n of names) {
      try {
        out.push({ name: nameFromBytes(n), value: new Uint8Array(sys.get(path, n)) });
      } catch (e) {
        if (errnoOf(e) !== ENODATA) this.warn(abs, nameFromBytes(n), e); // ENODATA: removed since it was listed
      }
    }
    return out.length > 0 ? out : undefined;
  }

  private warn(abs: string, name: string | undefined, e: unknown): void {
    const errno = errnoOf(e);
    if (errno !== undefined && isUnsupported(errno)) {
      if (this.warnedUnsupported) return;
      this.warnedUnsupported = true;
      this.onWarning(`${escapeName(abs)}: extended attributes not backed up: ${errorText(e)}; entries on file systems like it are not reported again`);
      return;
    }
    this.onWarning(`${escapeName(abs)}: extended attribute${name !== undefined ? ` ${escapeName(name)}` : "s"} not backed up: ${errorText(e)}`);
  }
}

/**
 * Whether an attribute is set after the mode: a POSIX ACL (chmod rewrites
 * an access ACL's mask, and the ACL carries the mode bits anyway) and file
 * capabilities (cleared by chown, set last with the ACLs).
 */
function setAfterMode(name: string): boolean {
  return name === "system.posix_acl_access" || name === "system.posix_acl_default" || name === "security.capability";
}

/** The attributes to set before the mode (while the new entry is still writable by its owner) and after it. */
export function splitXattrs(xattrs: readonly Xattr[] | undefined): { early: Xattr[]; late: Xattr[] } {
  const early: Xattr[] = [];
  const late: Xattr[] = [];
  for (const x of xattrs ?? []) (setAfterMode(x.name) ? late : early).push(x);
  return { early, late };
}

/** Sets each attribute on the entry at `abs` (never following a symlink); returns one message per attribute that could not be set. */
export function setXattrs(abs: string, xattrs: readonly Xattr[]): string[] {
  if (xattrs.length === 0) return [];
  const sys = xattrSyscalls();
  const path = nameToBytes(abs);
  const failed: string[] = [];
  for (const x of xattrs) {
    try {
      sys.set(path, nameToBytes(x.name), x.value);
    } catch (e) {
      failed.push(`extended attribute ${escapeName(x.name)} not set: ${errorText(e)}`);
    }
  }
  return failed;
}
