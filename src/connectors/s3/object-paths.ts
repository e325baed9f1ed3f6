/**
 * How object keys and snapshot pathnames map onto each other under a
 * prefix: `PREFIX` + `a/b/c` is the file /a/b/c, its directories implied by
 * the `/` in the key; a key ending in `/` (an empty "folder" object, as the
 * AWS console makes) is a directory.
 */

/** What a key under the prefix stands for, or why it cannot be a pathname. */
export type KeyPath = { parts: string[]; dir: boolean } | { problem: string };

/** The pathname components of `rel`, a key with the prefix taken off. */
export function keyPath(rel: string): KeyPath {
  const dir = rel === "" || rel.endsWith("/");
  const path = dir ? rel.slice(0, -1) : rel;
  if (path === "") return { parts: [], dir: true };
  const parts = path.split("/");
  for (const p of parts) {
    if (p === "") return { problem: "it has an empty path component (a leading or doubled /)" };
    if (p === "." || p === "..") return { problem: `it has a "${p}" path component` };
    if (p.includes("\0")) return { problem: "it holds a NUL character" };
  }
  return { parts, dir };
}

/** The key of pathname `p` under `prefix` (which ends in `/` or is empty), or why `p` is not a safe pathname. */
export function pathKey(prefix: string, p: string): { rel: string; key: string } | { problem: string } {
  if (!p.startsWith("/")) return { problem: "not an absolute pathname" };
  const rel = p.slice(1);
  if (rel === "") return { rel, key: prefix };
  const k = keyPath(rel);
  if ("problem" in k || k.dir) return { problem: "problem" in k ? k.problem : "it ends with /" };
  return { rel, key: prefix + rel };
}
