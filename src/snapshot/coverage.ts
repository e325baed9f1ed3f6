/**
 * Verification coverage: when each packfile was last read whole and found
 * intact, from the state's `verified` records and a client's own record of
 * them (passed in: the CLI keeps it in the user's cache), which packfiles a
 * partial check reads (`--read-data-subset`: a part N/M by name, or the
 * longest unverified first up to a share or a size), and what share of the
 * repository was verified lately (`check --coverage`).
 */
import type { Index } from "../repository/state.js";

/** A packfile with its size and when it was last verified (null: never, as far as this client knows). */
export interface PackAge {
  hex: string;
  mac: Uint8Array;
  /** Bytes its blobs span (Index.packBytes). */
  bytes: number;
  verifiedMs: number | null;
}

/** Which packfiles a check reads: part `part` of `of` (1-based, by name), a share of them, or up to so many bytes. */
export type ReadSubset = { part: number; of: number } | { percent: number } | { bytes: number };

/**
 * Every packfile the state names, longest unverified first: those never
 * verified, then the oldest verification first; ties by name, so that the
 * order, and the packfiles a share or a size picks, do not depend on how the
 * state was read. `local` is this client's own record (packfile hex -> ms
 * since the epoch); the later of it and the state's wins.
 */
export function packAges(index: Index, local: ReadonlyMap<string, number> = new Map()): PackAge[] {
  const out: PackAge[] = [];
  for (const [hex, mac] of index.packs) {
    const a = index.verified.get(hex), b = local.get(hex);
    const verifiedMs = a === undefined ? (b ?? null) : b === undefined ? a : Math.max(a, b);
    out.push({ hex, mac, bytes: index.packBytes.get(hex) ?? 0, verifiedMs });
  }
  return out.sort((x, y) => (x.verifiedMs ?? -Infinity) - (y.verifiedMs ?? -Infinity) || (x.hex < y.hex ? -1 : x.hex > y.hex ? 1 : 0));
}

/**
 * Which part (0 to `of` - 1) of a split into `of` parts a packfile belongs
 * to: its name's first 48 bits modulo `of`. Names are MACs, so the parts are
 * even, and the same on every client and every run.
 */
export function partOf(mac: Uint8Array, of: number): number {
  return Buffer.from(mac.buffer, mac.byteOffset, 6).readUIntBE(0, 6) % of;
}

/**
 * The packfiles of `ages` (in packAges' order) that a subset reads, in that
 * order. A part keeps its packfiles whatever they were verified; a share
 * takes the first ceil(P% of them); a size takes them while their bytes fit,
 * and at least one, so that every run makes progress.
 */
export function choosePacks(ages: readonly PackAge[], subset: ReadSubset | undefined): PackAge[] {
  if (subset === undefined) return [...ages];
  if ("part" in subset) return ages.filter((a) => partOf(a.mac, subset.of) === subset.part - 1);
  if ("percent" in subset) return ages.slice(0, Math.ceil((ages.length * subset.percent) / 100));
  const out: PackAge[] = [];
  let total = 0;
  for (const a of ages) {
    if (out.length > 0 && total + a.bytes > subset.bytes) break;
    out.push(a);
    total += a.bytes;
  }
  return out;
}

/** The windows `check --coverage` reports, as [name, length in ms]. */
const COVERAGE_WINDOWS: readonly (readonly [string, number])[] = [
  ["day", 24 * 3600_000],
  ["week", 7 * 24 * 3600_000],
  ["month", 30 * 24 * 3600_000],
];

export interface CoverageShare {
  packs: number;
  bytes: number;
}

export interface CoverageReport extends CoverageShare {
  /** Packfiles verified within each window before `nowMs` (cumulative: the week includes the day). */
  windows: ({ window: string; ms: number } & CoverageShare)[];
  never: CoverageShare;
  /** The least recent verification of a packfile verified at all (ms since the epoch), null if none was. */
  oldestMs: number | null;
  /** Which packfile that is (hex). */
  oldestPack: string | null;
}

export function coverage(ages: readonly PackAge[], nowMs: number): CoverageReport {
  const sum = (l: readonly PackAge[]): CoverageShare => ({ packs: l.length, bytes: l.reduce((s, a) => s + a.bytes, 0) });
  const verified = ages.filter((a) => a.verifiedMs !== null);
  const oldest = verified.reduce<PackAge | null>((o, a) => (o === null || a.verifiedMs! < o.verifiedMs! ? a : o), null);
  return {
    ...sum(ages),
    windows: COVERAGE_WINDOWS.map(([window, ms]) => ({ window, ms, ...sum(verified.filter((a) => a.verifiedMs! > nowMs - ms)) })),
    never: sum(ages.filter((a) => a.verifiedMs === null)),
    oldestMs: oldest?.verifiedMs ?? null,
    oldestPack: oldest?.hex ?? null,
  };
}
