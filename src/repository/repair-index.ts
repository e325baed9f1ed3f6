/**
 * `repair index`: rebuilds the state from the packfiles themselves. Every
 * stored packfile is read whole and verified; an intact one is named by the
 * new state with its own index, a damaged one is dropped from it after its
 * intact blobs (each authenticated on its own) are stored again in new
 * packfiles, and packfiles the state names that the store lacks are left
 * out. The new state deltas are stored first and the old ones deleted last,
 * so a repair killed at any point leaves the union of both: a usable state
 * that a second run finishes (docs/FORMAT.md, "State").
 */
import { Resource } from "../connectors/flags.js";
import { mapLimit } from "../util/concurrency.js";
import { corruptDetail, isCofferError, throwIfAborted } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { BlobType } from "./codec.js";
import { type BlobEntry, readPack, readPackIndex } from "./packfile.js";
import type { Repository } from "./repository.js";
import { blobKey, type BlobLocation, type DroppedRecord, keyMac, keyType, type PackRecord, type RemovalRecord, type VerifiedRecord } from "./state.js";

/** Index entries per consolidated state delta (bounds a delta's size, ~40 bytes an entry). */
const ENTRIES_PER_DELTA = 100_000;

export interface DamagedPack {
  pack: string;
  why: string;
  /** Intact blobs stored again elsewhere. */
  salvaged: number;
  /** Blobs known to be in it that could not be read back. */
  lost: number;
}

export interface IndexRepairReport {
  dryRun: boolean;
  /** Packfiles in the store, read and verified. */
  packs: number;
  intact: number;
  /** Intact packfiles no usable state delta named before. */
  adopted: string[];
  damaged: DamagedPack[];
  /** Packfiles the state named that the store does not have. */
  missing: string[];
  /** State deltas that could not be used (now replaced). */
  unusableDeltas: string[];
  /** Snapshots whose header was in no intact packfile and could not be salvaged: removed, with a record saying why. */
  lostSnapshots: string[];
  deltasWritten: number;
  deltasRemoved: number;
}

export interface IndexRepairOptions {
  dryRun?: boolean;
  signal?: AbortSignal | undefined;
  onProgress?: (what: string) => void;
}

/** Rebuilds the index; the caller holds an exclusive lock. */
export async function repairIndex(repo: Repository, o: IndexRepairOptions = {}): Promise<IndexRepairReport> {
  const signal = o.signal;
  const dryRun = o.dryRun ?? false;
  const oldDeltas: Uint8Array[] = [];
  for await (const n of repo.store.list(Resource.STATE, { signal })) oldDeltas.push(n);
  const stored: Uint8Array[] = [];
  // A packfile recorded as deleted stays so (`maintenance` deletes its object).
  for await (const m of repo.store.list(Resource.PACKFILE, { signal })) if (!repo.index.deleted.has(toHex(m))) stored.push(m);
  const storedHex = new Set(stored.map(toHex));
  const known = new Set(repo.index.packs.keys());

  const intact: PackRecord[] = [];
  const damaged: DamagedPack[] = [];
  const dropped: DroppedRecord[] = [];
  const now = Date.now();
  const salvagedHeaders = new Set<string>();
  await mapLimit(stored, 2, async (mac) => {
    throwIfAborted(signal);
    const hex = toHex(mac);
    o.onProgress?.(`packfile ${hex.slice(0, 12)}`);
    let bytes: Uint8Array;
    try {
      bytes = await repo.store.get(Resource.PACKFILE, mac, undefined, { signal });
    } catch (e) {
      if (isCofferError(e, "NOT_FOUND")) return; // deleted since it was listed
      throw e;
    }
    try {
      intact.push({ mac, entries: await readPack(bytes, mac, repo.codec, repo.mac) });
      return;
    } catch (e) {
      if (!isCofferError(e, "CORRUPT")) throw e;
      const why = corruptDetail(e);
      const salvage = await salvageable(repo, mac, bytes);
      // Stop using the damaged copy, so that putBlob stores the intact blobs again.
      if (!dryRun) repo.index.markDamaged({ pack: mac, blobs: null, why, timeMs: now });
      let salvaged = 0;
      for (const b of salvage.good) {
        if (b.type === BlobType.SNAPSHOT) salvagedHeaders.add(toHex(b.mac));
        if (!dryRun) await repo.putBlob(b.type, b.raw, b.mac, signal);
        salvaged++;
      }
      damaged.push({ pack: hex, why, salvaged, lost: salvage.lost });
      dropped.push({ pack: mac, why, timeMs: now });
    }
  });
  const missing = [...known].filter((hex) => !storedHex.has(hex));
  for (const hex of missing) dropped.push({ pack: repo.index.packs.get(hex)!, why: `packfile ${hex} is missing from the store`, timeMs: now });
  const report: IndexRepairReport = {
    dryRun,
    packs: stored.length,
    intact: intact.length,
    adopted: intact.map((p) => toHex(p.mac)).filter((hex) => !known.has(hex)),
    damaged,
    missing,
    unusableDeltas: repo.stateDamage.map((d) => toHex(d.name)),
    lostSnapshots: [],
    deltasWritten: 0,
    deltasRemoved: 0,
  };
  // Snapshots whose header neither an intact packfile holds nor a salvage stored again are gone: say so in the state.
  const kept = new Set<string>();
  for (const p of intact) for (const e of p.entries) if (e.type === BlobType.SNAPSHOT) kept.add(toHex(e.mac));
  const lostHeaders: RemovalRecord[] = [];
  for (const [hex, id] of repo.index.snapshots) {
    if (kept.has(hex) || salvagedHeaders.has(hex)) continue;
    report.lostSnapshots.push(hex);
    lostHeaders.push({ snapshot: id, why: `header lost (${repo.index.lostReason(BlobType.SNAPSHOT, id) ?? "in a damaged or missing packfile"}); removed by repair index`, timeMs: now });
  }
  if (dryRun) return report;

  // The salvaged blobs' packfiles and their deltas first.
  await repo.flush(signal);
  // Then the intact packfiles in consolidated deltas, and the records to keep.
  await writeConsolidated(repo, intact, signal);
  const removed = [...repo.index.removed.values(), ...lostHeaders];
  // When intact packfiles were last verified is kept too (check reads the longest unverified first).
  const verified = intact.flatMap((p): VerifiedRecord[] => {
    const t = repo.index.verified.get(toHex(p.mac));
    return t === undefined ? [] : [{ pack: p.mac, timeMs: t }];
  });
  const deleted = [...repo.index.deleted.values()];
  if (dropped.length + removed.length + verified.length + deleted.length > 0) await repo.writeDelta({ dropped, removed, verified, deleted }, signal);
  report.deltasWritten = repo.deltasWritten.size;
  // Last, the deltas the new ones replace.
  for (const name of oldDeltas) {
    if (repo.deltasWritten.has(toHex(name))) continue;
    throwIfAborted(signal);
    if (await repo.deleteObject(Resource.STATE, name, signal)) report.deltasRemoved++;
  }
  await repo.store.sync?.({ signal });
  return report;
}

/** Stores the records of `packs` in consolidated state deltas, one per ENTRIES_PER_DELTA index entries (also what `maintenance` writes in place of deltas naming deleted packfiles). */
export async function writeConsolidated(repo: Repository, packs: readonly PackRecord[], signal?: AbortSignal): Promise<void> {
  let group: PackRecord[] = [];
  let entries = 0;
  const writeGroup = async () => {
    if (group.length > 0) await repo.writeDelta({ packs: group }, signal);
    group = [];
    entries = 0;
  };
  for (const p of packs) {
    group.push(p);
    entries += p.entries.length;
    if (entries >= ENTRIES_PER_DELTA) await writeGroup();
  }
  await writeGroup();
}

/**
 * The blobs of a damaged packfile that still authenticate (and, but for
 * snapshot headers, match their MAC), found through its own index where
 * that survived and through the state; `lost` counts the others.
 */
async function salvageable(repo: Repository, pack: Uint8Array, bytes: Uint8Array): Promise<{ good: { type: BlobType; mac: Uint8Array; raw: Uint8Array }[]; lost: number }> {
  const hex = toHex(pack);
  const where = new Map<string, BlobLocation | BlobEntry>();
  try {
    for (const e of await readPackIndex(bytes, `packfile ${hex}`, repo.codec)) where.set(`${blobKey(e.type, e.mac)}@${e.offset}`, e);
  } catch (e) {
    if (!isCofferError(e, "CORRUPT")) throw e;
  }
  const keys = new Map<string, BlobLocation | BlobEntry>();
  for (const [k, loc] of [...repo.index.blobsOfPack(pack), ...repo.index.givenUpIn(hex)]) keys.set(`${k}@${loc.offset}`, loc);
  for (const [k, e] of where) keys.set(k, e);
  const good = new Map<string, { type: BlobType; mac: Uint8Array; raw: Uint8Array }>();
  const tried = new Set<string>();
  for (const [id, loc] of keys) {
    const k = id.slice(0, id.lastIndexOf("@"));
    tried.add(k);
    if (good.has(k) || loc.offset + loc.length > bytes.byteLength) continue;
    const type = keyType(k), mac = keyMac(k);
    try {
      const raw = await repo.codec.decode(type, mac, bytes.subarray(loc.offset, loc.offset + loc.length));
      if (type !== BlobType.SNAPSHOT && Buffer.compare(repo.mac.mac(raw), mac) !== 0) continue;
      good.set(k, { type, mac, raw: new Uint8Array(raw) });
    } catch (e) {
      if (!isCofferError(e, "CORRUPT")) throw e;
    }
  }
  return { good: [...good.values()], lost: tried.size - good.size };
}

/** One line per finding, for the CLI. */
export function describeIndexRepair(r: IndexRepairReport): string[] {
  const [will, drop, store, index, remove] = r.dryRun
    ? ["would be replaced", "would drop it", "would store", "would index it", "would be removed"]
    : ["replaced", "dropped it", "stored", "indexed it", "removed"];
  const lines: string[] = [];
  for (const d of r.unusableDeltas) lines.push(`state delta ${d}: unusable; ${will}`);
  for (const d of r.damaged) lines.push(`packfile ${d.pack}: damaged (${d.why}); ${store} ${d.salvaged} intact blobs again, ${d.lost} lost; ${drop} from the index`);
  for (const m of r.missing) lines.push(`packfile ${m}: missing from the store; ${drop} from the index`);
  for (const a of r.adopted) lines.push(`packfile ${a}: intact but not indexed; ${index}`);
  for (const s of r.lostSnapshots) lines.push(`snapshot ${s}: its header is lost; ${remove}`);
  lines.push(
    `${r.packs} packfiles read: ${r.intact} intact, ${r.damaged.length} damaged, ${r.missing.length} missing` +
      (r.dryRun ? " (dry run: nothing written)" : `; wrote ${r.deltasWritten} state deltas, removed ${r.deltasRemoved}`),
  );
  return lines;
}
