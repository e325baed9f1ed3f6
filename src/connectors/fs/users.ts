/**
 * User and group names from /etc/passwd and /etc/group (Node has no
 * getpwuid/getgrgid). Each file is parsed once per process and cached; users
 * known only to NSS services (LDAP, sssd...) are not seen and keep their
 * numeric ids.
 */

import { readFileSync } from "node:fs";

export interface IdTable {
  byId: Map<number, string>;
  byName: Map<string, number>;
}

const tables = new Map<string, IdTable>();

/** Parses a colon-separated database whose first field is the name and third the id. */
export function parseIdFile(text: string): IdTable {
  const byId = new Map<number, string>();
  const byName = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const fields = line.split(":");
    const name = fields[0];
    const idText = fields[2];
    if (name === undefined || name === "" || idText === undefined || !/^\d+$/.test(idText)) continue;
    const id = Number(idText);
    // The first line wins, as getpwuid/getpwnam do.
    if (!byId.has(id)) byId.set(id, name);
    if (!byName.has(name)) byName.set(name, id);
  }
  return { byId, byName };
}

function table(file: string): IdTable {
  let t = tables.get(file);
  if (t === undefined) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      // No database (containers, Windows): names stay unknown.
    }
    t = parseIdFile(text);
    tables.set(file, t);
  }
  return t;
}

export function userName(uid: number): string | undefined {
  return table("/etc/passwd").byId.get(uid);
}

export function groupName(gid: number): string | undefined {
  return table("/etc/group").byId.get(gid);
}

export function userId(name: string): number | undefined {
  return table("/etc/passwd").byName.get(name);
}

export function groupId(name: string): number | undefined {
  return table("/etc/group").byName.get(name);
}
