/**
 * `coffer check`: verify the repository and name every damaged snapshot and
 * file; read all of the data or a part of it, the packfiles verified
 * longest ago first, and remember what was verified (in the state where the
 * store can be written, and in this client's cache); `--coverage` reports
 * what share was verified lately.
 */
import { Command } from "commander";
import type { Repository } from "../../repository/repository.js";
import type { VerifiedRecord } from "../../repository/state.js";
import { check, type CheckReport } from "../../snapshot/check.js";
import { choosePacks, coverage, type CoverageReport, packAges, type ReadSubset } from "../../snapshot/coverage.js";
import { resolveSnapshot } from "../../snapshot/snapshots.js";
import { CofferError, isCofferError } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import { type Context, withRepository } from "../context.js";
import { ExitCode } from "../exit-codes.js";
import { bytes, say, shown } from "../format.js";
import { parseDuration, parseSize } from "../quantities.js";
import { parseSnapshotSelector } from "../snapshot-target.js";
import { readVerifiedCache, verifiedCacheFile, writeVerifiedCache } from "../verified-cache.js";

interface CheckCmdOptions {
  fast?: boolean;
  readData?: boolean;
  /** `N/M`, `P%` or `SIZE`. */
  readDataSubset?: string;
  /** DURATION. */
  maxDuration?: string;
  coverage?: boolean;
  json?: boolean;
}

/** The largest M of `--read-data-subset N/M`. */
const MAX_PARTS = 2 ** 32;

/** `--read-data-subset`: `N/M` (part N of M, by name), `P%` (that share, longest unverified first) or `SIZE` (so many bytes of them). */
export function parseReadSubset(s: string): ReadSubset {
  const bad = (why: string) => new CofferError("USAGE", `--read-data-subset: ${why}: ${JSON.stringify(s)} (N/M, P% or SIZE: 1/5, 10%, 2G)`);
  const part = /^(\d+)\/(\d+)$/.exec(s);
  if (part) {
    const n = Number(part[1]), m = Number(part[2]);
    if (!(n >= 1 && n <= m && m <= MAX_PARTS)) throw bad(`N/M needs 1 <= N <= M <= ${MAX_PARTS}`);
    return { part: n, of: m };
  }
  const share = /^(\d+(?:\.\d+)?)%$/.exec(s);
  if (share) {
    const percent = Number(share[1]);
    if (!(percent > 0 && percent <= 100)) throw bad("a share needs 0 < P <= 100");
    return { percent };
  }
  let size: number;
  try {
    size = parseSize(s, "--read-data-subset");
  } catch {
    throw bad("not a subset");
  }
  if (size <= 0) throw bad("a size needs more than 0 bytes");
  return { bytes: size };
}

/**
 * Opens the repository for writing where the store allows it, so that what
 * the check finds damaged is recorded in the state (backups then store those
 * blobs again); a read-only store is checked all the same.
 */
async function withCheckable<T>(ctx: Context, fn: (repo: Repository, writable: boolean) => Promise<T>): Promise<T> {
  try {
    return await withRepository(ctx, {}, (repo) => fn(repo, true));
  } catch (e) {
    if (!isCofferError(e, "READ_ONLY")) throw e;
    return withRepository(ctx, { readOnly: true }, (repo) => fn(repo, false));
  }
}

async function runCheck(snaps: string[], o: CheckCmdOptions, ctx: Context): Promise<ExitCode> {
  const partial = o.readDataSubset !== undefined || o.maxDuration !== undefined;
  if (o.coverage && (partial || o.fast || o.readData || snaps.length > 0)) throw new CofferError("USAGE", "--coverage reports only: it takes no snapshots and no other check option");
  if (o.fast && partial) throw new CofferError("USAGE", "--fast reads no data: it cannot be combined with --read-data-subset or --max-duration");
  if (o.coverage) return runCoverage(o, ctx);
  const subset = o.readDataSubset === undefined ? undefined : parseReadSubset(o.readDataSubset);
  const maxDurationMs = o.maxDuration === undefined ? undefined : parseDuration(o.maxDuration, "--max-duration");
  const fast = (o.fast ?? false) && !o.readData;
  const selectors = snaps.map(parseSnapshotSelector);
  return withCheckable(ctx, async (repo, writable) => {
    const ids = selectors.length ? await Promise.all(selectors.map(async (s) => (await resolveSnapshot(repo, s, ctx.signal)).id)) : undefined;
    const cache = verifiedCacheFile(ctx.env, repo.config.id);
    const local = fast ? new Map<string, number>() : await readVerifiedCache(cache, repo.config.id, repo.mac, warn(ctx));
    const readPacks = fast ? undefined : choosePacks(packAges(repo.index, local), subset).map((a) => a.mac);
    const r = await check(repo, { fast, signal: ctx.signal, maxDurationMs, ...(readPacks ? { readPacks } : {}), ...(ids ? { snapshots: ids } : {}) });
    let recorded = 0;
    let notRecorded: string | undefined;
    if (writable && repo.unrecordedDamage > 0) {
      try {
        await repo.acquire("shared", "check");
        recorded = await repo.recordDamage(ctx.signal);
      } catch (e) {
        if (!isCofferError(e, "LOCKED")) throw e;
        notRecorded = e.message;
      }
    }
    const kept = await keepVerified(repo, writable, r.verified, local, cache, ctx);
    // Problems as text: the errors behind them are for callers of check(), not part of the JSON report.
    if (o.json) {
      const { verified: _verified, ...rest } = r;
      ctx.stdout.write(
        `${JSON.stringify({
          ...rest,
          problems: r.problems.map(({ error: _error, ...p }) => p),
          recorded,
          read: { ...r.read, subset: o.readDataSubset ?? null, maxDurationMs: maxDurationMs ?? null },
          verified: { packs: r.verified.length, ...kept },
        })}\n`,
      );
    } else {
      for (const p of r.problems) {
        const where = p.snapshot ? `snapshot ${p.snapshot.slice(0, 8)}${p.path ? `: ${shown(p.path)}` : ""}: ` : "";
        say(ctx.stdout, `error: ${where}${p.message}`);
      }
      say(
        ctx.stdout,
        `checked ${r.snapshots} snapshots, ${r.packs} packfiles, ${r.blobs} blobs${fast ? " (fast: content not read)" : ""}: ` +
          `${r.problems.length ? `${r.problems.length} problems` : "no problems"}` +
          `${r.unreferencedPacks ? `; ${r.unreferencedPacks} unreferenced packfiles (left by an interrupted backup, or dropped by \`repair index\`)` : ""}`,
      );
      if (!fast && (partial || r.read.packs < r.read.of.packs)) say(ctx.stdout, readLine(r, o));
      if (recorded > 0) say(ctx.stdout, "recorded the damage in the state: backups store the damaged blobs again; `coffer repair index` and `coffer repair snapshots` repair the rest");
      if (r.verified.length > 0 && !kept.state && kept.cache) say(ctx.stdout, "the verification is remembered in this client's cache only: the repository cannot be written");
    }
    if (notRecorded !== undefined) say(ctx.stderr, `coffer: warning: the damage found was not recorded in the state: ${notRecorded}`);
    return r.problems.length ? ExitCode.ERROR : ExitCode.OK;
  });
}

const warn = (ctx: Context) => (m: string) => say(ctx.stderr, `coffer: warning: ${m}`);

/** "read 3 of 10 packfiles (1.2 MiB of 4.0 MiB), the longest unverified first; stopped at the time limit (--max-duration 0)" */
function readLine(r: CheckReport, o: CheckCmdOptions): string {
  const what = `read ${r.read.packs} of ${r.read.of.packs} packfiles (${bytes(r.read.bytes)} of ${bytes(r.read.of.bytes)})`;
  const how = o.readDataSubset !== undefined && /^\d+\/\d+$/.test(o.readDataSubset) ? `: part ${o.readDataSubset}` : ", the longest unverified first";
  return `${what}${how}${r.read.stopped ? `; stopped at the time limit (--max-duration ${o.maxDuration ?? ""})` : ""}`;
}

/** Whether a write failed because the store takes none (opened writable, it refuses them all the same). */
function refusesWrites(e: unknown): boolean {
  if (isCofferError(e, "READ_ONLY")) return true;
  const errno = isCofferError(e) ? e.data.errno : (e as NodeJS.ErrnoException | null)?.code;
  return errno === "EROFS" || errno === "EACCES" || errno === "EPERM";
}

/**
 * Remembers the packfiles found intact: in this client's cache (the later
 * of its times and the state's, for every packfile the state names) and,
 * where the store takes writes, in one state delta of `verified` records.
 * Neither failing is an error: a store that refuses writes is silent, any
 * other failure a warning.
 */
async function keepVerified(repo: Repository, writable: boolean, verified: VerifiedRecord[], local: Map<string, number>, cache: string, ctx: Context): Promise<{ state: boolean; cache: boolean }> {
  if (verified.length === 0) return { state: false, cache: false };
  const times = new Map<string, number>();
  for (const a of packAges(repo.index, local)) if (a.verifiedMs !== null) times.set(a.hex, a.verifiedMs);
  for (const v of verified) {
    const hex = toHex(v.pack);
    times.set(hex, Math.max(times.get(hex) ?? v.timeMs, v.timeMs));
  }
  let cached = true;
  await writeVerifiedCache(cache, repo.config.id, times, repo.mac, (m) => {
    cached = false;
    warn(ctx)(m);
  });
  if (!writable) return { state: false, cache: cached };
  try {
    await repo.acquire("shared", "check");
    await repo.recordVerified(verified, ctx.signal);
    return { state: true, cache: cached };
  } catch (e) {
    if (isCofferError(e, "INTERRUPTED")) throw e;
    if (!refusesWrites(e)) warn(ctx)(`which packfiles were verified was not recorded in the state: ${(e as Error).message}`);
    return { state: false, cache: cached };
  }
}

/** `check --coverage`: what share of the packfiles was verified in the last day, week and month (read-only). */
async function runCoverage(o: CheckCmdOptions, ctx: Context): Promise<ExitCode> {
  return withRepository(ctx, { readOnly: true }, async (repo) => {
    const local = await readVerifiedCache(verifiedCacheFile(ctx.env, repo.config.id), repo.config.id, repo.mac, warn(ctx));
    const c = coverage(packAges(repo.index, local), Date.now());
    if (o.json) {
      const { oldestMs, ...rest } = c;
      ctx.stdout.write(`${JSON.stringify({ ...rest, oldest: oldestMs === null ? null : new Date(oldestMs).toISOString() })}\n`);
    } else for (const line of coverageLines(c)) say(ctx.stdout, line);
    return ExitCode.OK;
  });
}

function coverageLines(c: CoverageReport): string[] {
  const pct = (n: number, of: number) => (of === 0 ? "0%" : `${((100 * n) / of).toFixed(1)}%`);
  const share = (s: { packs: number; bytes: number }) => `${s.packs} packfiles (${pct(s.packs, c.packs)}), ${bytes(s.bytes)} (${pct(s.bytes, c.bytes)})`;
  return [
    `${c.packs} packfiles, ${bytes(c.bytes)}; verified:`,
    ...c.windows.map((w) => `  in the last ${`${w.window}:`.padEnd(7)} ${share(w)}`),
    `  never:              ${share(c.never)}`,
    c.oldestMs === null ? "oldest verification: none" : `oldest verification: ${new Date(c.oldestMs).toISOString()} (packfile ${c.oldestPack!.slice(0, 12)})`,
  ];
}

export function checkCommand(ctx: () => Context, done: (code: ExitCode) => void): Command {
  return new Command("check")
    .description("verify that snapshots are complete and, without --fast, that every blob is intact")
    .argument("[snap...]", "snapshots to check (default: all)")
    .option("--fast", "check presence only, without reading content")
    .option("--read-data", "read and verify every blob (the default; overrides --fast)")
    .option("--read-data-subset <subset>", "read only N/M (part N of M), P% or SIZE of the packfiles, the longest unverified first")
    .option("--max-duration <duration>", "start no packfile read after DURATION (30m, 1h30m; 0: read one packfile)")
    .option("--coverage", "report what share of the packfiles was verified in the last day, week and month")
    .option("--json", "print a JSON report")
    .action(async (snaps: string[], o: CheckCmdOptions) => done(await runCheck(snaps, o, ctx())));
}
