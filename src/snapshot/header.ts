/**
 * Snapshot headers (docs/FORMAT.md, "Snapshots"): a SNAPSHOT blob named by
 * the snapshot's random 32-byte ID. It is the last blob a backup writes;
 * the snapshot exists once the state delta naming its packfile is stored.
 */
import { encode } from "@msgpack/msgpack";
import { CorruptError } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { decodeBounded } from "../util/msgpack.js";
import { decodeEntry, type Entry, encodeEntry } from "./tree.js";

export const HEADER_VERSION = 1;

export interface Summary {
  files: number;
  dirs: number;
  symlinks: number;
  others: number;
  /** Sum of regular file sizes. */
  bytes: number;
  errors: number;
  /** Bytes of content read and chunked (not reused from the parent). */
  readBytes: number;
  /** New blobs and their raw bytes added to the repository by this backup. */
  newBlobs: number;
  newBytes: number;
}

export interface SnapshotHeader {
  id: Uint8Array;
  timeNs: bigint;
  durationNs: bigint;
  hostname: string;
  username: string;
  os: string;
  arch: string;
  importer: { type: string; origin: string; root: string };
  tags: string[];
  parent?: Uint8Array | undefined;
  /** The root directory's entry (its tree MAC lists the top level). */
  root: Entry;
  summary: Summary;
  /** MAC of the ERRORS blob: [[path, message], ...], when there were errors. */
  errors?: Uint8Array | undefined;
  /** The backup run that made it (16 random bytes), shared by its checkpoints and its final snapshot. */
  run?: Uint8Array | undefined;
  /** Set on checkpoints (partial snapshots): 1, 2, ... within the run. */
  checkpoint?: number | undefined;
  /**
   * The latest snapshots (up to PRIOR_SNAPSHOTS) that existed when this one
   * was taken: `check` reports one that is gone without a removal record.
   */
  prior?: Uint8Array[] | undefined;
  /** Set by `repair snapshots` on the snapshot it wrote in place of a damaged one: that one's ID and when. */
  repairOf?: { id: Uint8Array; timeNs: bigint } | undefined;
  /** Set by `sync` on a copy: the repository it was copied from (its configuration's ID) and the snapshot's ID there. */
  syncOf?: SyncOrigin | undefined;
}

/** Where a copy made by `sync` came from: the source repository's ID and the snapshot's ID in it (32 bytes each). */
export interface SyncOrigin {
  repo: Uint8Array;
  id: Uint8Array;
}

/** How many earlier snapshots a header lists in `prior`. */
export const PRIOR_SNAPSHOTS = 8;

export function isPartial(h: SnapshotHeader): boolean {
  return h.checkpoint !== undefined;
}

export function encodeHeader(h: SnapshotHeader): Uint8Array {
  const o: Record<string, unknown> = {
    v: HEADER_VERSION,
    id: h.id,
    time: h.timeNs,
    duration: h.durationNs,
    host: h.hostname,
    user: h.username,
    os: h.os,
    arch: h.arch,
    importer: h.importer,
    tags: h.tags,
    root: encodeEntry(h.root),
    summary: h.summary,
  };
  if (h.parent) o.parent = h.parent;
  if (h.errors) o.errors = h.errors;
  if (h.run) o.run = h.run;
  if (h.checkpoint !== undefined) o.checkpoint = h.checkpoint;
  if (h.prior && h.prior.length > 0) o.prior = h.prior;
  if (h.repairOf) o.repairOf = { id: h.repairOf.id, time: h.repairOf.timeNs };
  if (h.syncOf) o.syncOf = { repo: h.syncOf.repo, id: h.syncOf.id };
  return encode(o, { useBigInt64: true });
}

export function decodeHeader(raw: Uint8Array, id: Uint8Array): SnapshotHeader {
  const what = `snapshot ${toHex(id).slice(0, 8)}`;
  const o = decodeBounded(raw, (why) => new CorruptError(what, `undecodable header (${why})`), { useBigInt64: true }) as Record<string, unknown>;
  const bad = (f: string) => new CorruptError(what, `bad header field ${f}`);
  if (typeof o !== "object" || o === null || o.v !== HEADER_VERSION) throw bad("version");
  if (!(o.id instanceof Uint8Array) || Buffer.compare(o.id, id) !== 0) throw bad("id");
  const imp = o.importer as Record<string, unknown> | undefined;
  if (!imp || typeof imp.type !== "string" || typeof imp.origin !== "string" || typeof imp.root !== "string") throw bad("importer");
  if (!Array.isArray(o.tags) || !o.tags.every((t) => typeof t === "string")) throw bad("tags");
  const s = o.summary as Record<string, unknown> | undefined;
  const keys: (keyof Summary)[] = ["files", "dirs", "symlinks", "others", "bytes", "errors", "readBytes", "newBlobs", "newBytes"];
  const isCount = (n: unknown) => typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
  if (!s || !keys.every((k) => isCount(s[k]))) throw bad("summary");
  const t = (v: unknown) => (typeof v === "bigint" ? v : typeof v === "number" && Number.isSafeInteger(v) ? BigInt(v) : undefined);
  const timeNs = t(o.time);
  const durationNs = t(o.duration);
  if (timeNs === undefined || durationNs === undefined) throw bad("time");
  for (const f of ["host", "user", "os", "arch"]) if (typeof o[f] !== "string") throw bad(f);
  const h: SnapshotHeader = {
    id,
    timeNs,
    durationNs,
    hostname: o.host as string,
    username: o.user as string,
    os: o.os as string,
    arch: o.arch as string,
    importer: { type: imp.type, origin: imp.origin, root: imp.root },
    tags: o.tags as string[],
    root: decodeEntry(o.root, what),
    summary: s as unknown as Summary,
  };
  if (o.parent !== undefined) {
    if (!(o.parent instanceof Uint8Array) || o.parent.byteLength !== 32) throw bad("parent");
    h.parent = o.parent;
  }
  if (o.errors !== undefined) {
    if (!(o.errors instanceof Uint8Array) || o.errors.byteLength !== 32) throw bad("errors");
    h.errors = o.errors;
  }
  if (o.run !== undefined) {
    if (!(o.run instanceof Uint8Array) || o.run.byteLength !== 16) throw bad("run");
    h.run = o.run;
  }
  if (o.checkpoint !== undefined) {
    if (typeof o.checkpoint !== "number" || !Number.isSafeInteger(o.checkpoint) || o.checkpoint < 1 || !h.run) throw bad("checkpoint");
    h.checkpoint = o.checkpoint;
  }
  if (o.prior !== undefined) {
    if (!Array.isArray(o.prior) || !o.prior.every((p) => p instanceof Uint8Array && p.byteLength === 32)) throw bad("prior");
    h.prior = o.prior as Uint8Array[];
  }
  if (o.repairOf !== undefined) {
    const r = o.repairOf as Record<string, unknown> | null;
    const rt = r === null || typeof r !== "object" ? undefined : t(r.time);
    if (!r || !(r.id instanceof Uint8Array) || r.id.byteLength !== 32 || rt === undefined) throw bad("repairOf");
    h.repairOf = { id: r.id, timeNs: rt };
  }
  if (o.syncOf !== undefined) {
    const r = o.syncOf as Record<string, unknown> | null;
    const is32 = (v: unknown) => v instanceof Uint8Array && v.byteLength === 32;
    if (r === null || typeof r !== "object" || !is32(r.repo) || !is32(r.id)) throw bad("syncOf");
    h.syncOf = { repo: r.repo as Uint8Array, id: r.id as Uint8Array };
  }
  return h;
}
