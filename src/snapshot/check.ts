/**
 * Repository check. Fast mode verifies that every packfile the state names
 * exists and that every blob each snapshot references is indexed, reading
 * headers and trees. Full mode also reads every packfile whole, verifies
 * its name, its index against the state, and every blob (authenticated,
 * decompressed, and chunk MACs recomputed), then names every snapshot and
 * file that depends on a damaged blob. What it finds damaged or missing is
 * noted in the repository (Repository.noteDamage), for the caller to record
 * in the state so that backups store those blobs again. It also reports
 * state deltas that could not be used, damage recorded earlier and not yet
 * repaired, and snapshots that disappeared without a removal record.
 * A partial check reads only the packfiles it is given (./coverage.ts
 * chooses them), in order, and may stop at a time limit; the packfiles it
 * found intact come back for the caller to record as verified.
 */
import { Resource } from "../connectors/flags.js";
import { parallelReads } from "../repository/blob-reader.js";
import { BlobType, blobTypeName } from "../repository/codec.js";
import { readPack } from "../repository/packfile.js";
import type { Repository } from "../repository/repository.js";
import { blobKey, keyMac, keyType, type VerifiedRecord } from "../repository/state.js";
import { CofferError, CorruptError, corruptDetail, throwIfAborted } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { decodeHeader, type SnapshotHeader } from "./header.js";
import { decodeTree, type Entry } from "./tree.js";
import { listSnapshots } from "./snapshots.js";
import { joinPath } from "./tree-reader.js";

export interface CheckProblem {
  /** Snapshot ID (hex) when the problem is within a snapshot. */
  snapshot?: string;
  path?: string;
  message: string;
  /**
   * The error behind the problem when a read failed: damaged bytes are a
   * CorruptError (code CORRUPT; `detail`, and in `data` the blob's type and
   * MAC and the packfile where known), a missing object a NotFoundError.
   */
  error?: CofferError;
}

/** `e` as the `error` of a problem: CofferErrors only (anything else is named by the message alone). */
function cause(e: unknown): { error?: CofferError } {
  return e instanceof CofferError ? { error: e } : {};
}

/** Bytes of whole packfiles read at once (their number is also at most the store's parallelism). */
const READ_DATA_BUDGET = 128 << 20;
/** Packfiles read at once from a store that does not tell its parallelism (Store.connections). */
const DEFAULT_PACKS_AT_ONCE = 2;

export interface CheckOptions {
  fast?: boolean;
  /** Snapshots to check (all when omitted). */
  snapshots?: Uint8Array[];
  /** Without `fast`: the packfiles to read whole, in this order (default: every packfile the state names). */
  readPacks?: readonly Uint8Array[];
  /**
   * Without `fast`: no packfile read starts once this many ms have passed
   * since the first one started (those under way finish). The first always
   * starts, so 0 reads exactly one packfile.
   */
  maxDurationMs?: number | undefined;
  /** Milliseconds since the epoch (default Date.now): the time limit's clock, and the time of the verifications. */
  clock?: () => number;
  signal?: AbortSignal | undefined;
  onProgress?: (what: string) => void;
}

/** The packfiles read, and their bytes (Index.packBytes), against all those the state names. */
export interface ReadReport {
  packs: number;
  bytes: number;
  of: { packs: number; bytes: number };
  /** Whether the time limit left packfiles of those asked for unread. */
  stopped: boolean;
}

export interface CheckReport {
  snapshots: number;
  packs: number;
  blobs: number;
  unreferencedPacks: number;
  problems: CheckProblem[];
  read: ReadReport;
  /** The packfiles read whole and found intact (Repository.recordVerified records them). */
  verified: VerifiedRecord[];
}

export async function check(repo: Repository, o: CheckOptions = {}): Promise<CheckReport> {
  const signal = o.signal;
  const problems: CheckProblem[] = [];
  /** Blob key -> why it cannot be used. */
  const damaged = new Map<string, string>();
  const stored = new Set<string>();
  for await (const m of repo.store.list(Resource.PACKFILE, { signal })) stored.add(toHex(m));
  const packs = [...repo.index.packs.entries()];
  const missingPacks = new Set<string>();
  for (const d of repo.stateDamage) problems.push({ message: `${d.message} (the state delta is ignored; run \`coffer repair index\`)` });
  for (const [hex, d] of repo.index.damaged) {
    if (!repo.index.packs.has(hex)) continue;
    const what = d.keys === null ? "every blob" : `${d.keys.size} blobs`;
    problems.push({ message: `packfile ${hex}: ${what} recorded as damaged on ${new Date(d.timeMs).toISOString()} (${d.why}); run \`coffer repair index\`` });
  }
  const now = Date.now();
  for (const [hex, mac] of packs) {
    if (!stored.has(hex)) {
      missingPacks.add(hex);
      problems.push({ message: `packfile ${hex} is named in the state but missing from the store` });
      if (repo.index.damaged.get(hex)?.keys !== null) repo.noteDamage({ pack: mac, blobs: null, why: `packfile ${hex} is missing from the store`, timeMs: now });
    }
  }
  const unreferencedPacks = [...stored].filter((h) => !repo.index.packs.has(h)).length;
  let blobs = 0;

  const clock = o.clock ?? Date.now;
  const packBytes = (hex: string) => repo.index.packBytes.get(hex) ?? 0;
  const read: ReadReport = { packs: 0, bytes: 0, of: { packs: packs.length, bytes: packs.reduce((n, [hex]) => n + packBytes(hex), 0) }, stopped: false };
  const verified: VerifiedRecord[] = [];

  if (!o.fast) {
    const toRead = o.readPacks ? o.readPacks.map((m) => [toHex(m), m] as const) : packs;
    await readInTurn(
      toRead.filter(([hex]) => !missingPacks.has(hex)),
      { clock, maxDurationMs: o.maxDurationMs, onStop: () => (read.stopped = true), atOnce: packsAtOnce(repo) },
      async ([hex, mac]) => {
        throwIfAborted(signal);
        o.onProgress?.(`packfile ${hex.slice(0, 12)}`);
        read.packs++;
        read.bytes += packBytes(hex);
        let intact = true;
        const bytes = await repo.store.get(Resource.PACKFILE, mac, undefined, { signal });
        let entries;
        try {
          entries = await readPack(bytes, mac, repo.codec, repo.mac);
        } catch (e) {
          intact = false;
          problems.push({ message: `packfile ${hex}: ${corruptDetail(e)}`, ...cause(e) });
          markPackDamaged(repo, mac, damaged, `packfile ${hex.slice(0, 12)} is damaged`);
          // Still try each blob the state knows about, to find which ones survive.
          entries = null;
        }
        const bad: { type: BlobType; mac: Uint8Array }[] = [];
        const whyBad: string[] = [];
        if (entries) {
          const seen = new Set(entries.map((e) => `${blobKey(e.type, e.mac)}@${e.offset}:${e.length}`));
          for (const [k, loc] of stateBlobsOf(repo, mac)) {
            if (!seen.has(`${k}@${loc.offset}:${loc.length}`)) {
              damaged.set(k, `not where the state says in packfile ${hex.slice(0, 12)}`);
              bad.push({ type: keyType(k), mac: keyMac(k) });
            }
          }
        }
        for (const [k, loc] of [...stateBlobsOf(repo, mac)]) {
          blobs++;
          const type = k.charCodeAt(0) as BlobType;
          const bmac = new Uint8Array(Buffer.from(k.slice(1), "latin1"));
          const corrupt = (detail: string) =>
            new CorruptError(`${blobTypeName(type)} blob ${toHex(bmac).slice(0, 12)} in packfile ${hex.slice(0, 12)}`, detail, { type, mac: toHex(bmac), pack: hex });
          try {
            if (loc.offset + loc.length > bytes.byteLength) throw corrupt("beyond the end of its packfile");
            const raw = await repo.codec.decode(type, bmac, bytes.subarray(loc.offset, loc.offset + loc.length));
            if (type !== BlobType.SNAPSHOT && Buffer.compare(repo.mac.mac(raw), bmac) !== 0) throw corrupt("content does not match its MAC");
            damaged.delete(k);
          } catch (e) {
            // The codec's CorruptError names the blob only: the same detail, with its packfile.
            const error = corrupt(corruptDetail(e));
            const why = error.message;
            damaged.set(k, why);
            problems.push({ message: why, error });
            bad.push({ type, mac: bmac });
            whyBad.push(why);
          }
        }
        if (bad.length > 0) repo.noteDamage({ pack: mac, blobs: bad, why: whyBad[0] ?? `blobs not where the state says in packfile ${hex}`, timeMs: now });
        else if (intact) verified.push({ pack: mac, timeMs: clock() });
      },
    );
  } else {
    blobs = repo.index.size;
  }
  for (const hex of missingPacks) markPackDamaged(repo, repo.index.packs.get(hex)!, damaged, `packfile ${hex.slice(0, 12)} is missing`);

  // Walk the snapshots, memoising each tree's findings by its MAC.
  const memo = new Map<string, Promise<Finding[]>>();
  const usable = (type: BlobType, mac: Uint8Array): string | undefined => {
    const k = blobKey(type, mac);
    const d = damaged.get(k);
    if (d) return d;
    const lost = repo.index.lostReason(type, mac);
    if (lost !== undefined) return `${blobTypeName(type)} blob ${toHex(mac).slice(0, 12)} is damaged or missing (${lost})`;
    if (!repo.index.has(type, mac)) return `${blobTypeName(type)} blob ${toHex(mac).slice(0, 12)} is not in the repository`;
    return undefined;
  };
  const checkEntry = async (e: Entry, path: string): Promise<Finding[]> => {
    const out: Finding[] = [];
    if (e.chunks) {
      for (const c of e.chunks) {
        const why = usable(BlobType.CHUNK, c.mac);
        if (why) {
          out.push([path, why]);
          break;
        }
      }
    }
    if (e.tree) {
      for (const [p, why, error] of await checkTree(e.tree)) out.push([path === "/" ? p : path + p, why, error]);
    }
    return out;
  };
  const checkTree = (mac: Uint8Array): Promise<Finding[]> => {
    const k = toHex(mac);
    let p = memo.get(k);
    if (!p) {
      p = (async () => {
        const why = usable(BlobType.TREE, mac);
        if (why) return [["/", `directory unreadable: ${why}`]];
        let children: Entry[];
        try {
          children = decodeTree(await repo.getBlob(BlobType.TREE, mac, signal), `tree ${k.slice(0, 12)}`);
        } catch (e) {
          return [["/", `directory unreadable: ${(e as Error).message}`, cause(e).error]];
        }
        const out: Finding[] = [];
        for (const c of children) out.push(...(await checkEntry(c, joinPath("/", c.name))));
        return out;
      })();
      memo.set(k, p);
    }
    return p;
  };

  // Snapshots replaced by `repair snapshots` whose removal record is missing are not checked (they are hidden).
  const replaced = o.snapshots ? new Set<string>() : new Set((await listSnapshots(repo, signal)).replaced.map((h) => toHex(h.id)));
  const ids = o.snapshots ?? repo.snapshotIds().filter((id) => !replaced.has(toHex(id)));
  /** Snapshots that headers list as existing when they were taken (see SnapshotHeader.prior), by ID, with the first lister. */
  const listed = new Map<string, string>();
  for (const id of ids) {
    throwIfAborted(signal);
    const sid = toHex(id);
    o.onProgress?.(`snapshot ${sid.slice(0, 8)}`);
    const why = usable(BlobType.SNAPSHOT, id);
    if (why) {
      problems.push({ snapshot: sid, message: `header unreadable: ${why}` });
      continue;
    }
    let header: SnapshotHeader;
    try {
      header = decodeHeader(await repo.getBlob(BlobType.SNAPSHOT, id, signal), id);
    } catch (e) {
      problems.push({ snapshot: sid, message: `header unreadable: ${(e as Error).message}`, ...cause(e) });
      continue;
    }
    for (const p of header.prior ?? []) if (!listed.has(toHex(p))) listed.set(toHex(p), sid);
    for (const [path, why, error] of await checkEntry(header.root, "/")) problems.push({ snapshot: sid, path, message: why, ...(error ? { error } : {}) });
  }
  for (const [gone, by] of listed) {
    if (repo.index.snapshots.has(gone) || repo.index.removed.has(gone) || replaced.has(gone)) continue;
    problems.push({ message: `snapshot ${gone}, which existed when snapshot ${by.slice(0, 8)} was taken, is gone without a removal record (deleted or rolled back)` });
  }
  return { snapshots: ids.length, packs: packs.length, blobs, unreferencedPacks, problems, read, verified };
}

/** How many packfiles to read at once: the store's parallelism, within READ_DATA_BUDGET. */
function packsAtOnce(repo: Repository): number {
  return Math.max(1, Math.min(parallelReads(repo.store, DEFAULT_PACKS_AT_ONCE), Math.floor(READ_DATA_BUDGET / repo.config.packSize)));
}

/**
 * Runs `fn` over `items` in order, `atOnce` at a time, starting none once
 * `maxDurationMs` has passed since the first started (`onStop` is told if
 * items are left); the first always starts.
 */
async function readInTurn<T>(items: readonly T[], t: { clock: () => number; maxDurationMs: number | undefined; onStop: () => void; atOnce: number }, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let started: number | undefined;
  const take = (): T | undefined => {
    if (next >= items.length) return undefined;
    if (started === undefined) started = t.clock();
    else if (t.maxDurationMs !== undefined && t.clock() - started >= t.maxDurationMs) {
      next = items.length;
      t.onStop();
      return undefined;
    }
    return items[next++];
  };
  const worker = async () => {
    for (let item = take(); item !== undefined; item = take()) await fn(item);
  };
  await Promise.all(Array.from({ length: Math.min(t.atOnce, items.length) }, worker));
}

/** A path below a tree, what is wrong there, and the error behind it when a read failed. */
type Finding = [path: string, message: string, error?: CofferError | undefined];

function* stateBlobsOf(repo: Repository, pack: Uint8Array): Iterable<[string, { offset: number; length: number }]> {
  yield* repo.index.blobsOfPack(pack);
}

function markPackDamaged(repo: Repository, pack: Uint8Array, damaged: Map<string, string>, why: string): void {
  for (const [k] of repo.index.blobsOfPack(pack)) damaged.set(k, why);
}
