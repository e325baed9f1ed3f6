/**
 * `sync`: copies snapshots from one repository into another whose keys and
 * chunking differ. Each source snapshot runs through the backup pipeline
 * into the destination (backup/backup.ts) from a SnapshotImporter, so the
 * copy is chunked and MACed with the destination's keys, deduplicates
 * against everything stored there, and keeps the pipeline's write order and
 * checkpoints. Its parent is the destination's copy of an earlier snapshot
 * of the same source (host, importer type and root): files whose content
 * the two source snapshots share keep that copy's chunks unread.
 *
 * A copy names its origin (header `syncOf`): the original's repository and
 * ID, a copy of a copy naming the first original, so that a snapshot
 * reaches a repository once whatever the path it takes. A source snapshot
 * the destination already holds, as a complete copy or as the original
 * itself, is skipped.
 */
import type { Repository } from "../../repository/repository.js";
import { CofferError } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import { backup } from "../backup/backup.js";
import type { BackupEvent } from "../backup/events.js";
import { isPartial, PRIOR_SNAPSHOTS, type SnapshotHeader, type SyncOrigin } from "../header.js";
import { listSnapshots, resolveSnapshot, type SnapshotSelector, type UnreadableSnapshot } from "../snapshots.js";
import { SnapshotImporter } from "./importer.js";

export interface SyncOptions {
  /** The source snapshots to copy; without them, every complete one. */
  selectors?: SnapshotSelector[] | undefined;
  signal?: AbortSignal | undefined;
  /** Where the backup's scan cache goes when it moves to disk. */
  tmpDir?: string | undefined;
  /** The pipeline's events of each copy, and the copy's place in the run. */
  onEvent?: ((e: SyncEvent) => void) | undefined;
}

export type SyncEvent =
  | { type: "backup"; source: SnapshotHeader; event: BackupEvent }
  | { type: "skipped"; source: SnapshotHeader; copy: SnapshotHeader }
  | { type: "copied"; source: SnapshotHeader; copy: SnapshotHeader }
  /** A destination snapshot whose header cannot be read: were it a copy, its source is copied again. */
  | { type: "unreadable"; id: Uint8Array; message: string };

/** What became of one source snapshot: `copy` is the destination's snapshot holding it (made now, or found). */
export interface SyncedSnapshot {
  source: SnapshotHeader;
  copy: SnapshotHeader;
  skipped: boolean;
}

export interface SyncResult {
  snapshots: SyncedSnapshot[];
  /** Source snapshots whose header could not be read (without selectors): not copied. */
  unreadable: UnreadableSnapshot[];
}

/** The origin a copy of `h` (a snapshot of repository `repoId`) records: its own, if it is a copy itself. */
function originOf(h: SnapshotHeader, repoId: Uint8Array): SyncOrigin {
  return h.syncOf ?? { repo: repoId, id: h.id };
}

const originKey = (o: SyncOrigin) => `${toHex(o.repo)}:${toHex(o.id)}`;

/** Oldest first, as listSnapshots gives them (the copies made meanwhile keep their sources' times). */
const byTime = (hs: readonly SnapshotHeader[]) => [...hs].sort((a, b) => (a.timeNs < b.timeNs ? -1 : a.timeNs > b.timeNs ? 1 : 0));

const sameSource = (a: SnapshotHeader, b: SnapshotHeader) =>
  a.hostname === b.hostname && a.importer.type === b.importer.type && a.importer.root === b.importer.root;

/** Copies the selected snapshots of `source` into `dest`, oldest first. */
export async function sync(source: Repository, dest: Repository, o: SyncOptions = {}): Promise<SyncResult> {
  const signal = o.signal;
  const listed = await listSnapshots(source, signal);
  const wanted = o.selectors?.length ? await selected(source, o.selectors, signal) : listed.snapshots.filter((h) => !isPartial(h));
  // Source snapshots by the origin their copies name: the twins of the destination's copies.
  const byOrigin = new Map<string, SnapshotHeader>();
  for (const h of [...listed.snapshots, ...wanted]) byOrigin.set(originKey(originOf(h, source.config.id)), h);
  const destListed = await listSnapshots(dest, signal);
  for (const u of destListed.unreadable) o.onEvent?.({ type: "unreadable", id: u.id, message: u.message });
  const held = destListed.snapshots;
  const out: SyncedSnapshot[] = [];
  for (const s of wanted) {
    const origin = originOf(s, source.config.id);
    const found = holding(held, origin, dest.config.id);
    if (found) {
      out.push({ source: s, copy: found, skipped: true });
      o.onEvent?.({ type: "skipped", source: s, copy: found });
      continue;
    }
    const from = chooseParent(held, s, origin, byOrigin);
    const importer = new SnapshotImporter(source, s, from?.twin);
    const { header } = await backup(dest, {
      importer,
      tags: s.tags,
      hostname: s.hostname,
      username: s.username,
      os: s.os,
      arch: s.arch,
      signal,
      parent: from?.parent ?? null,
      prior: byTime(held).slice(-PRIOR_SNAPSHOTS).map((h) => h.id),
      sameContent: importer.sameContent,
      copyOf: { timeNs: s.timeNs, syncOf: origin },
      tmpDir: o.tmpDir,
      onEvent: (event) => o.onEvent?.({ type: "backup", source: s, event }),
    });
    held.push(header);
    out.push({ source: s, copy: header, skipped: false });
    o.onEvent?.({ type: "copied", source: s, copy: header });
  }
  return { snapshots: out, unreadable: o.selectors?.length ? [] : listed.unreadable };
}

/** The snapshots the selectors name, oldest first, each once; a partial one is refused. */
async function selected(source: Repository, selectors: SnapshotSelector[], signal: AbortSignal | undefined): Promise<SnapshotHeader[]> {
  const byId = new Map<string, SnapshotHeader>();
  for (const sel of selectors) {
    const h = await resolveSnapshot(source, sel, signal);
    if (isPartial(h)) throw new CofferError("USAGE", `snapshot ${toHex(h.id).slice(0, 8)} is partial (a checkpoint of an interrupted backup): only complete snapshots are synced`);
    byId.set(toHex(h.id), h);
  }
  return byTime([...byId.values()]);
}

/** The destination's complete snapshot holding `origin`: a copy naming it, or the original itself. */
function holding(held: readonly SnapshotHeader[], origin: SyncOrigin, destId: Uint8Array): SnapshotHeader | undefined {
  const key = originKey(origin);
  const own = Buffer.compare(origin.repo, destId) === 0;
  return held.find((h) => !isPartial(h) && ((h.syncOf !== undefined && originKey(h.syncOf) === key) || (own && Buffer.compare(h.id, origin.id) === 0)));
}

/**
 * The parent of the copy of `s`: a copy in the destination of a snapshot of
 * the same source that the source still holds (its twin). A checkpoint of
 * an interrupted copy of `s` itself comes first (all it stored is reused),
 * then the latest copy not newer than `s`, then the latest.
 */
function chooseParent(
  held: readonly SnapshotHeader[],
  s: SnapshotHeader,
  origin: SyncOrigin,
  byOrigin: ReadonlyMap<string, SnapshotHeader>,
): { parent: SnapshotHeader; twin: SnapshotHeader } | undefined {
  const key = originKey(origin);
  const copies = byTime(held.filter((h) => h.syncOf !== undefined && byOrigin.has(originKey(h.syncOf)) && sameSource(h, s)));
  const parent = copies.find((h) => originKey(h.syncOf!) === key) ?? copies.filter((h) => h.timeNs <= s.timeNs).at(-1) ?? copies.at(-1);
  return parent ? { parent, twin: byOrigin.get(originKey(parent.syncOf!))! } : undefined;
}
