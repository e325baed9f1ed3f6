/** Human-readable output helpers. */
import { escapeControls, escapeName, isRawName, lossyName, nameToBytes } from "../util/names.js";
import type { SnapshotHeader } from "../snapshot/header.js";
import { snapshotSource } from "../snapshot/select.js";
import type { Entry } from "../snapshot/tree.js";
import { toHex } from "../util/hex.js";

/**
 * Writes one line for a person to read (a message, a warning, a listing
 * row; never JSON or file content). Every such line goes through here:
 * whatever it holds is made safe for a terminal by escapeControls() (a
 * name quoted in a message cannot move the cursor, change colours or start
 * a line that looks like another message). Where a line shows a name on its
 * own (a path, a host, a tag), the caller gives it as escapeName() shows it
 * (GNU `ls -b`'s form, `\\` for a backslash), which this leaves as it is.
 */
export function say(out: { write(s: string): unknown }, text: string): void {
  out.write(`${escapeControls(text)}\n`);
}

/** A name (path, host, user, tag, location) as a human line shows it. */
export const shown = escapeName;

export function shortId(id: Uint8Array): string {
  return toHex(id).slice(0, 8);
}

export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

export function isoTime(ns: bigint): string {
  return new Date(Number(ns / 1_000_000n)).toISOString();
}

export function localTime(ns: bigint): string {
  const d = new Date(Number(ns / 1_000_000n));
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** The snapshot's source as `ls` and `info` show it (the JSON field is snapshotSource()). */
export function shownSource(h: SnapshotHeader): string {
  return h.importer.type === "fs" ? shown(h.importer.root) : `${h.importer.type}:${shown(h.importer.root)}`;
}

export function snapshotJson(h: SnapshotHeader): Record<string, unknown> {
  return {
    id: toHex(h.id),
    short: shortId(h.id),
    time: isoTime(h.timeNs),
    durationSeconds: Number(h.durationNs) / 1e9,
    hostname: h.hostname,
    username: h.username,
    source: snapshotSource(h),
    importer: h.importer,
    tags: h.tags,
    ...(h.parent ? { parent: toHex(h.parent) } : {}),
    ...(h.checkpoint !== undefined ? { partial: true, checkpoint: h.checkpoint } : {}),
    ...(h.syncOf ? { syncOf: { repo: toHex(h.syncOf.repo), id: toHex(h.syncOf.id) } } : {}),
    ...h.summary,
  };
}

const TYPE_CHAR: Record<string, string> = { file: "-", dir: "d", symlink: "l", fifo: "p", socket: "s", chardev: "c", blockdev: "b", other: "?" };

export function modeString(e: Entry): string {
  const m = e.info.mode;
  const rwx = (bits: number, special: boolean, ch: string) =>
    `${bits & 4 ? "r" : "-"}${bits & 2 ? "w" : "-"}${special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? "x" : "-"}`;
  return (
    (TYPE_CHAR[e.info.kind] ?? "?") +
    rwx((m >> 6) & 7, (m & 0o4000) !== 0, "s") +
    rwx((m >> 3) & 7, (m & 0o2000) !== 0, "s") +
    rwx(m & 7, (m & 0o1000) !== 0, "t")
  );
}

/**
 * An entry for --json. JSON text is Unicode: a name that is not valid UTF-8
 * is given with U+FFFD for each such byte, and its exact bytes, base64, in
 * `raw` (`raw_path`, `raw_target` likewise), present only then.
 */
export function entryJson(path: string, e: Entry): Record<string, unknown> {
  const i = e.info;
  const raw = (key: string, s: string | undefined) => (s !== undefined && isRawName(s) ? { [key]: nameToBytes(s).toString("base64") } : {});
  return {
    path: lossyName(path),
    ...raw("raw_path", path),
    name: lossyName(e.name),
    ...raw("raw", e.name),
    type: i.kind,
    size: i.size,
    mode: i.mode,
    mtime: isoTime(i.mtimeNs),
    uid: i.uid,
    gid: i.gid,
    ...(i.username !== undefined ? { user: i.username } : {}),
    ...(i.groupname !== undefined ? { group: i.groupname } : {}),
    ...(e.target !== undefined ? { target: lossyName(e.target), ...raw("raw_target", e.target) } : {}),
    ...(e.error !== undefined ? { error: e.error } : {}),
  };
}
