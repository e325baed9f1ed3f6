/**
 * `repair snapshots`: rewrites every snapshot that references lost data
 * (blobs the index no longer has, or whose packfile the store lacks) so
 * that the affected entries are marked damaged and drop what is lost, and
 * everything else stays restorable. The new snapshot keeps the old one's
 * time and fields, names it in `repairOf`, and is committed together with
 * the removal record of the old one: one atomic state delta replaces it.
 * A snapshot whose header is lost is removed (it cannot be rewritten).
 */
import { encode } from "@msgpack/msgpack";
import { Resource } from "../connectors/flags.js";
import { BlobType, blobTypeName } from "../repository/codec.js";
import { randomKey } from "../repository/crypto.js";
import type { Repository } from "../repository/repository.js";
import type { RemovalRecord } from "../repository/state.js";
import { CorruptError, isCofferError, throwIfAborted } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { decodeBounded } from "../util/msgpack.js";
import { encodeHeader, type SnapshotHeader } from "./header.js";
import { decodeTree, type Entry, encodeTree } from "./tree.js";
import { listSnapshots } from "./snapshots.js";
import { joinPath } from "./tree-reader.js";

export interface DamagedEntry {
  path: string;
  why: string;
}

export interface SnapshotRepairReport {
  dryRun: boolean;
  /** Snapshots examined. */
  snapshots: number;
  /** Snapshots rewritten: the old ID, the new one (null in a dry run), the entries marked damaged. */
  repaired: { from: string; to: string | null; entries: DamagedEntry[] }[];
  /** Snapshots removed because their header is lost. */
  removed: { id: string; why: string }[];
}

export interface SnapshotRepairOptions {
  dryRun?: boolean;
  signal?: AbortSignal | undefined;
  onProgress?: (what: string) => void;
}

/**
 * A rewritten subtree: its new tree MAC (undefined when unchanged) and what
 * below it was marked damaged, by path relative to it; or why its listing
 * cannot be read.
 */
type Rewritten = { tree: Uint8Array | undefined; damaged: DamagedEntry[] } | { unreadable: string };

export async function repairSnapshots(repo: Repository, o: SnapshotRepairOptions = {}): Promise<SnapshotRepairReport> {
  const signal = o.signal;
  const dryRun = o.dryRun ?? false;
  const stored = new Set<string>();
  for await (const m of repo.store.list(Resource.PACKFILE, { signal })) stored.add(toHex(m));
  /** Why a blob cannot be read, or undefined when it can. */
  const lost = (type: BlobType, mac: Uint8Array): string | undefined => {
    const loc = repo.index.get(type, mac);
    const name = `${blobTypeName(type)} blob ${toHex(mac).slice(0, 16)}`;
    if (!loc) return `${name} is lost${repo.index.lostReason(type, mac) ? ` (${repo.index.lostReason(type, mac)})` : ""}`;
    if (!stored.has(toHex(loc.pack))) return `${name} is lost (packfile ${toHex(loc.pack)} is missing from the store)`;
    return undefined;
  };
  const when = new Date().toISOString();
  const memo = new Map<string, Promise<Rewritten>>();

  const rewriteEntry = async (e: Entry): Promise<{ entry: Entry; damaged: DamagedEntry[] }> => {
    if (e.chunks) {
      const gone = e.chunks.map((c) => lost(BlobType.CHUNK, c.mac)).filter((w) => w !== undefined);
      if (gone.length === 0) return { entry: e, damaged: [] };
      const why = `damaged: ${gone.length} of ${e.chunks.length} chunks lost (${gone[0]}); marked by repair on ${when}`;
      return { entry: { ...e, chunks: undefined, error: why }, damaged: [{ path: "/", why }] };
    }
    if (e.tree) {
      const r = await rewriteTree(e.tree);
      if ("unreadable" in r) {
        const why = `damaged: the directory's listing is lost (${r.unreadable}); marked by repair on ${when}`;
        return { entry: { ...e, tree: undefined, error: why }, damaged: [{ path: "/", why }] };
      }
      return { entry: r.tree === undefined ? e : { ...e, tree: r.tree }, damaged: r.damaged };
    }
    return { entry: e, damaged: [] };
  };

  const rewriteTree = (mac: Uint8Array): Promise<Rewritten> => {
    const k = toHex(mac);
    let p = memo.get(k);
    if (!p) {
      p = (async (): Promise<Rewritten> => {
        throwIfAborted(signal);
        const gone = lost(BlobType.TREE, mac);
        if (gone !== undefined) return { unreadable: gone };
        let children: Entry[];
        try {
          children = decodeTree(await repo.getBlob(BlobType.TREE, mac, signal), `tree ${k.slice(0, 16)}`);
        } catch (e) {
          if (!isCofferError(e, "CORRUPT") && !isCofferError(e, "NOT_FOUND")) throw e;
          return { unreadable: (e as Error).message };
        }
        const out: Entry[] = [];
        const damaged: DamagedEntry[] = [];
        let changed = false;
        for (const c of children) {
          const r = await rewriteEntry(c);
          if (r.entry !== c) changed = true;
          out.push(r.entry);
          for (const d of r.damaged) damaged.push({ path: d.path === "/" ? `/${c.name}` : joinPath(`/${c.name}`, d.path.slice(1)), why: d.why });
        }
        if (!changed) return { tree: undefined, damaged };
        const tree = dryRun ? randomKey(32) : (await repo.putBlob(BlobType.TREE, encodeTree(out), undefined, signal)).mac;
        return { tree, damaged };
      })();
      memo.set(k, p);
    }
    return p;
  };

  const { snapshots, unreadable, replaced } = await listSnapshots(repo, signal, { superseded: true });
  const report: SnapshotRepairReport = { dryRun, snapshots: snapshots.length + unreadable.length, repaired: [], removed: [] };
  // A repair killed between storing a replacement and its commit: the replacement came back (adopted), its removal record did not.
  const removals: RemovalRecord[] = replaced.map((h) => ({ snapshot: h.id, why: "replaced by a snapshot written by repair snapshots", timeMs: Date.now() }));
  for (const u of unreadable) {
    report.removed.push({ id: toHex(u.id), why: u.message });
    removals.push({ snapshot: u.id, why: `header lost (${u.message}); removed by repair`, timeMs: Date.now() });
  }
  for (const h of snapshots) {
    throwIfAborted(signal);
    o.onProgress?.(`snapshot ${toHex(h.id).slice(0, 8)}`);
    const r = await rewriteEntry(h.root);
    if (r.entry === h.root) continue;
    const entries = r.damaged;
    if (dryRun) {
      report.repaired.push({ from: toHex(h.id), to: null, entries });
      continue;
    }
    const fixed = await rewrittenHeader(repo, h, r.entry, entries, signal);
    await repo.commitSnapshot(fixed.id, encodeHeader(fixed), signal, {
      removes: [{ snapshot: h.id, why: `replaced by ${toHex(fixed.id)} (repair snapshots: ${entries.length} entries damaged)`, timeMs: Date.now() }],
    });
    report.repaired.push({ from: toHex(h.id), to: toHex(fixed.id), entries });
  }
  if (!dryRun) await repo.removeSnapshots(removals, signal);
  return report;
}

/** The header of the snapshot written in place of `h`: the same but for its ID, root, errors and `repairOf`. */
async function rewrittenHeader(repo: Repository, h: SnapshotHeader, root: Entry, damaged: DamagedEntry[], signal?: AbortSignal): Promise<SnapshotHeader> {
  let errors: [string, string][] = [];
  const old = h.errors;
  if (old) {
    try {
      const raw = await repo.getBlob(BlobType.ERRORS, old, signal);
      const v = decodeBounded(raw, (why) => new CorruptError(`errors blob ${toHex(old).slice(0, 16)}`, `undecodable (${why})`));
      if (Array.isArray(v)) errors = v.filter((x): x is [string, string] => Array.isArray(x) && typeof x[0] === "string" && typeof x[1] === "string");
    } catch (e) {
      if (!isCofferError(e, "CORRUPT") && !isCofferError(e, "NOT_FOUND")) throw e;
    }
  }
  errors.push(...damaged.map((d): [string, string] => [d.path, d.why]));
  const errorsMac = (await repo.putBlob(BlobType.ERRORS, encode(errors), undefined, signal)).mac;
  const id = randomKey(32);
  return { ...h, id, root, errors: errorsMac, summary: { ...h.summary, errors: h.summary.errors + damaged.length }, repairOf: { id: h.id, timeNs: BigInt(Date.now()) * 1_000_000n } };
}
