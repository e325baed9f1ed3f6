/**
 * Extended attributes and ACLs from a member's pax records, in the forms
 * GNU tar, star and libarchive write them.
 */
import type { Xattr } from "../records.js";
import { aclXattr } from "./acl.js";
import { decodeXattrName } from "./format.js";

const SCHILY = "SCHILY.xattr.";
const LIBARCHIVE = "LIBARCHIVE.xattr.";
const ACLS: [string, string, boolean][] = [
  ["SCHILY.acl.access", "system.posix_acl_access", true],
  ["SCHILY.acl.default", "system.posix_acl_default", false],
];

/**
 * SCHILY.xattr.NAME (raw value; %3D and %25 in NAME decoded), libarchive's
 * LIBARCHIVE.xattr.NAME (URL-encoded name, base64 value), and the ACLs GNU
 * tar and star keep as text (SCHILY.acl.*) as the kernel's POSIX ACL xattrs.
 */
export function xattrsOf(pax: Map<string, Buffer> | null, warn: (msg: string) => void): Xattr[] {
  if (pax === null) return [];
  const out = new Map<string, Uint8Array>();
  for (const [key, value] of pax) {
    if (key.startsWith(SCHILY) && key.length > SCHILY.length) out.set(decodeXattrName(key.slice(SCHILY.length)), new Uint8Array(value));
  }
  for (const [key, value] of pax) {
    if (!key.startsWith(LIBARCHIVE)) continue;
    let name: string;
    try {
      name = decodeURIComponent(key.slice(LIBARCHIVE.length));
    } catch {
      continue;
    }
    if (name !== "" && !out.has(name)) out.set(name, new Uint8Array(Buffer.from(value.toString("latin1"), "base64")));
  }
  for (const [key, name, access] of ACLS) {
    const text = pax.get(key);
    if (text === undefined || text.length === 0 || out.has(name)) continue;
    const bin = aclXattr(text.toString("utf8"), access);
    if (bin === null) continue;
    if (typeof bin === "string") warn(`${key}: ${bin}: not kept`);
    else out.set(name, bin);
  }
  return [...out].map(([name, value]) => ({ name, value }));
}
