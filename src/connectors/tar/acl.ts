/**
 * POSIX ACLs as GNU tar and star store them (pax SCHILY.acl.access and
 * SCHILY.acl.default: acl_to_text's "user::rw-\nuser:nobody:r--\n..."),
 * turned into the value of the kernel's system.posix_acl_* xattr, so that
 * an archive made with `--acls` alone restores its ACLs. Named users and
 * groups are resolved on this machine (as GNU tar's acl_from_text does on
 * extraction); star's fourth field, a numeric id, wins when present.
 */
import { readFileSync } from "node:fs";

const TAG = { user_obj: 0x01, user: 0x02, group_obj: 0x04, group: 0x08, mask: 0x10, other: 0x20 } as const;
const UNDEFINED_ID = 0xffffffff;
const VERSION = 2;

/**
 * The xattr value of an ACL in text form; null when there is nothing to
 * keep (an access ACL of the three base entries is the mode itself); a
 * string saying what is wrong when the text is not an ACL.
 */
export function aclXattr(text: string, access: boolean): Uint8Array | null | string {
  const entries: { tag: number; perm: number; id: number }[] = [];
  for (const raw of text.split(/[\n,]/)) {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") continue;
    const f = line.split(":");
    if (f.length < 3 || f.length > 4) return `bad ACL entry ${JSON.stringify(line)}`;
    const [tagText, qual, permText, idText] = f as [string, string, string, string | undefined];
    const perm = perms(permText);
    if (perm === undefined) return `bad permissions in ACL entry ${JSON.stringify(line)}`;
    let tag: number;
    let id = UNDEFINED_ID;
    const kind = tagText === "u" ? "user" : tagText === "g" ? "group" : tagText === "m" ? "mask" : tagText === "o" ? "other" : tagText;
    if (kind === "mask" || kind === "other") {
      tag = kind === "mask" ? TAG.mask : TAG.other;
    } else if (kind === "user" || kind === "group") {
      if (qual === "") tag = kind === "user" ? TAG.user_obj : TAG.group_obj;
      else {
        tag = kind === "user" ? TAG.user : TAG.group;
        const resolved = idText !== undefined && /^\d+$/.test(idText) ? Number(idText) : lookup(kind, qual);
        if (resolved === undefined) return `unknown ${kind} ${JSON.stringify(qual)} in the ACL`;
        id = resolved;
      }
    } else return `bad ACL entry ${JSON.stringify(line)}`;
    entries.push({ tag, perm, id });
  }
  if (entries.length === 0) return null;
  if (access && entries.every((e) => e.tag === TAG.user_obj || e.tag === TAG.group_obj || e.tag === TAG.other)) return null;
  entries.sort((a, b) => a.tag - b.tag || a.id - b.id);
  const out = Buffer.alloc(4 + entries.length * 8);
  out.writeUInt32LE(VERSION, 0);
  entries.forEach((e, i) => {
    out.writeUInt16LE(e.tag, 4 + i * 8);
    out.writeUInt16LE(e.perm, 6 + i * 8);
    out.writeUInt32LE(e.id, 8 + i * 8);
  });
  return new Uint8Array(out);
}

function perms(s: string): number | undefined {
  if (/^\d$/.test(s)) return Number(s) <= 7 ? Number(s) : undefined;
  let p = 0;
  for (const c of s) {
    if (c === "r") p |= 4;
    else if (c === "w") p |= 2;
    else if (c === "x") p |= 1;
    else if (c !== "-") return undefined;
  }
  return p;
}

let tables: { user: Map<string, number>; group: Map<string, number> } | undefined;

/** A user or group id by name (/etc/passwd, /etc/group), or a numeric name as itself. */
function lookup(kind: "user" | "group", name: string): number | undefined {
  if (/^\d+$/.test(name)) return Number(name);
  tables ??= { user: readIds("/etc/passwd"), group: readIds("/etc/group") };
  return tables[kind].get(name);
}

function readIds(file: string): Map<string, number> {
  const m = new Map<string, number>();
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return m;
  }
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length >= 3 && f[0] !== "" && /^\d+$/.test(f[2] as string) && !m.has(f[0] as string)) m.set(f[0] as string, Number(f[2]));
  }
  return m;
}

/** The permissions of an ACL xattr's mask entry (what the kernel shows as the group bits), if it has one. */
export function aclMask(value: Uint8Array): number | undefined {
  const b = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (b.length < 4 || b.readUInt32LE(0) !== VERSION) return undefined;
  for (let i = 4; i + 8 <= b.length; i += 8) if (b.readUInt16LE(i) === TAG.mask) return b.readUInt16LE(i + 2) & 7;
  return undefined;
}
