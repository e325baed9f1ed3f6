// The rounds: in each, every tool gets a fresh repository and HOME and runs
// each phase in turn (first, no-change, change, restore, big file), the first
// tool rotating from round to round. Before each timed command the page cache
// is dropped and the tool's program warmed; wall time is measured around the
// command, peak RSS and CPU time by /usr/bin/time.

import * as fs from "node:fs";
import * as path from "node:path";
import { applyChange, revertChange } from "./change.ts";
import { measureCeiling, readFloor } from "./ceiling.ts";
import type { Ceiling } from "./ceiling.ts";
import type { Options } from "./options.ts";
import { duBytes, exec, log, rmrf } from "./process.ts";
import { PHASE_LABEL, backupCmd, initCmd, localRepo, readSettings, restoreCmd, restoredRoot, runCmd, succeeded, toolEnv, warmCmd } from "./tools.ts";
import type { Cmd, Measure, Phase, Repo, Tool, ToolName } from "./tools.ts";
import { KiB, MiB, fmtMiB, fmtSecs } from "./units.ts";

/** Drops the page cache before each timed command; once that is refused (or off), the run is "warm cache". */
export class PageCache {
  warm = false;
  reason = "";
  readonly enabled: boolean;

  constructor(enabled: boolean) {
    this.enabled = enabled;
  }

  async drop(): Promise<void> {
    await exec("sync", []);
    if (!this.enabled) {
      this.warm = true;
      this.reason ||= "--no-drop-caches";
      return;
    }
    if (this.warm) return;
    try {
      fs.writeFileSync("/proc/sys/vm/drop_caches", "3");
    } catch (e) {
      this.warm = true;
      this.reason = `cannot drop caches: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
      log(`warm cache: ${this.reason}`);
    }
  }
}

/** GNU time, for peak RSS and CPU time; without it only wall time is measured. */
export const TIME_BIN = fs.existsSync("/usr/bin/time") ? "/usr/bin/time" : null;

/** Peak RSS (bytes) and CPU time (user + sys seconds) from the last line of `/usr/bin/time -f "%e %M %U %S"`. */
export function parseTimeOutput(text: string): { rss: number; cpu: number } | null {
  const lines = text.trim().split("\n");
  const f = (lines[lines.length - 1] ?? "").split(" ").map(Number);
  return f.length === 4 && f.every(Number.isFinite) ? { rss: f[1]! * KiB, cpu: f[2]! + f[3]! } : null;
}

async function runTimed(t: Tool, c: Cmd, timeFile: string): Promise<Measure & { stderr: string; stdout: string }> {
  const env = { ...toolEnv(t), ...c.env };
  fs.rmSync(timeFile, { force: true });
  const r = TIME_BIN
    ? await exec(TIME_BIN, ["-o", timeFile, "-f", "%e %M %U %S", c.cmd, ...c.args], { cwd: c.cwd, env })
    : await exec(c.cmd, c.args, { cwd: c.cwd, env });
  const used = TIME_BIN && fs.existsSync(timeFile) ? parseTimeOutput(fs.readFileSync(timeFile, "utf8")) : null;
  return { round: 0, wall: r.wall, rss: used?.rss ?? null, cpu: used?.cpu ?? null, code: r.code, stderr: r.stderr, stdout: r.stdout };
}

/** The order of round `round` (from 1): each round starts with the next tool. */
export function rotation<T>(tools: readonly T[], round: number): T[] {
  return tools.map((_, i) => tools[(i + round - 1) % tools.length]!);
}

export interface RestoreCheck {
  round: number;
  tool: ToolName;
  /** The phase's label: "restore", "S3 restore", ... */
  what: string;
  ok: boolean;
  detail: string;
}

/** What the rounds measured beside the tools' own records, and what went wrong. */
export interface RoundsResult {
  catFloor: Measure[];
  roundCeiling: Map<number, Ceiling>;
  restoreChecks: RestoreCheck[];
  failures: string[];
  /** Settings read back from the first round's repositories, by tool. */
  settings: Partial<Record<ToolName, string>>;
}

export interface RoundsInput {
  opts: Options;
  work: string;
  /** The available tools, in the first round's order. */
  tools: readonly Tool[];
  corpus: string;
  changed: readonly string[];
  bigFile: string;
  nproc: number;
  cache: PageCache;
  /** Failures found before the rounds (an unavailable coffer); the rounds add theirs. */
  failures: string[];
}

/** Runs the timed commands of the rounds and records what they measured, or their failure. */
export interface Timer {
  /** Records why the tool failed and marks it so (it sits out what is left of the rounds). */
  fail(t: Tool, what: string, r: { code: number; stderr: string }): void;
  /** Drops the cache, warms the tool, runs `c` timed and records it under `phase`; false if it failed. */
  timed(t: Tool, phase: Phase, round: number, c: Cmd): Promise<boolean>;
  /** Compares what was restored with its original (a tree with diff -r --no-dereference, a file with cmp) and records the check; a difference is a failure. */
  checkRestore(t: Tool, round: number, what: string, original: string, got: string): Promise<void>;
}

/**
 * The timer of `work`'s rounds: failures go to `result.failures`, restore
 * checks to `result.restoreChecks`, and `markFailed` marks the tool (the
 * local rounds take it out of the run, a remote store's out of that store).
 */
export function makeTimer(work: string, cache: PageCache, result: Pick<RoundsResult, "restoreChecks" | "failures">, markFailed: (t: Tool) => void): Timer {
  const timeFile = path.join(work, "time.txt");
  const { failures } = result;
  const fail = (t: Tool, what: string, r: { code: number; stderr: string }): void => {
    markFailed(t);
    const tail = r.stderr.trim().split("\n").slice(-5).join(" | ");
    failures.push(`${t.name}: ${what} exited ${r.code}: ${tail}`);
    log(`FAILED ${t.name} ${what} (exit ${r.code}): ${tail}`);
  };
  const timed = async (t: Tool, phase: Phase, round: number, c: Cmd): Promise<boolean> => {
    await cache.drop();
    await runCmd(t, warmCmd(t), "ignore");
    const m = await runTimed(t, c, timeFile);
    if (!succeeded(t, m.code)) {
      fail(t, `${PHASE_LABEL[phase]} (round ${round})`, m);
      return false;
    }
    if (m.code !== 0) log(`${t.name}: ${PHASE_LABEL[phase]} finished with warnings (exit ${m.code})`);
    t.measures[phase].push({ round, wall: m.wall, rss: m.rss, cpu: m.cpu, code: m.code });
    log(`round ${round} ${PHASE_LABEL[phase]}: ${t.name} ${fmtSecs(m.wall)} s` + (m.rss !== null ? `, peak RSS ${fmtMiB(m.rss)} MiB` : "") + (m.cpu !== null ? `, CPU ${fmtSecs(m.cpu)} s` : ""));
    return true;
  };
  const checkRestore = async (t: Tool, round: number, what: string, original: string, got: string): Promise<void> => {
    const file = fs.statSync(original).isFile();
    const d = file ? await exec("cmp", [original, got]) : await exec("diff", ["-r", "-q", "--no-dereference", original, got]);
    const ok = d.code === 0;
    const detail = ok ? `identical (${file ? "cmp" : "diff -r --no-dereference"})` : (d.stdout + d.stderr).trim().split("\n").slice(0, 10).join("\n");
    result.restoreChecks.push({ round, tool: t.name, what, ok, detail });
    if (!ok) {
      markFailed(t);
      failures.push(`${t.name}: ${what} (round ${round}) differs from ${file ? "the big file" : "the corpus"}:\n${detail}`);
      log(`RESTORE DIFFERS ${t.name} ${what}:\n${detail}`);
    } else log(`round ${round} ${what} check: ${t.name} identical`);
  };
  return { fail, timed, checkRestore };
}

export async function runRounds(input: RoundsInput): Promise<RoundsResult> {
  const { opts, work, corpus, changed, bigFile, cache, failures } = input;
  const repos = path.join(work, "repos");
  const result: RoundsResult = { catFloor: [], roundCeiling: new Map(), restoreChecks: [], failures, settings: {} };
  const { fail, timed, checkRestore } = makeTimer(work, cache, result, (t) => (t.failed = true));

  for (let round = 1; round <= opts.rounds; round++) {
    const order = rotation(input.tools, round);
    log(`round ${round}/${opts.rounds}: order ${order.map((t) => t.name).join(", ")}`);
    fs.mkdirSync(repos, { recursive: true });
    const repoOf = (t: Tool): Repo => localRepo(path.join(repos, t.name));
    for (const t of order) {
      rmrf(t.home);
      fs.mkdirSync(t.home, { recursive: true });
      const r = await runCmd(t, initCmd(t, repoOf(t)));
      if (r.code !== 0) fail(t, `repository init (round ${round})`, r);
      else if (round === 1) {
        const s = await readSettings(t, repoOf(t));
        if (s !== null) result.settings[t.name] = s;
      }
    }
    const live = (): Tool[] => order.filter((t) => !t.failed);

    for (const t of live()) {
      t.lastArchive = `r${round}-first`;
      if (await timed(t, "first", round, backupCmd(t, repoOf(t), work, "corpus", t.lastArchive))) {
        t.repoSize.push(duBytes(path.join(repos, t.name)));
        t.cacheSize.push(duBytes(t.home));
        log(`round ${round} repository size: ${t.name} ${fmtMiB(t.repoSize[t.repoSize.length - 1]!)} MiB (client cache/config ${fmtMiB(t.cacheSize[t.cacheSize.length - 1]!)} MiB)`);
      }
    }
    for (const t of live()) {
      t.lastArchive = `r${round}-nochange`;
      await timed(t, "nochange", round, backupCmd(t, repoOf(t), work, "corpus", t.lastArchive));
    }
    const stash = path.join(work, "stash");
    const changes = applyChange(corpus, changed, stash, opts.seed);
    try {
      for (const t of live()) {
        t.lastArchive = `r${round}-change`;
        await timed(t, "change", round, backupCmd(t, repoOf(t), work, "corpus", t.lastArchive));
      }
      // restore the latest snapshot (the changed tree) and compare it with the corpus as it is now
      for (const t of live()) {
        const dir = path.join(work, "restore");
        rmrf(dir);
        fs.mkdirSync(dir);
        if (await timed(t, "restore", round, restoreCmd(t, repoOf(t), dir))) {
          await checkRestore(t, round, "restore", corpus, restoredRoot(t, dir, "corpus"));
        }
        rmrf(dir);
      }
    } finally {
      revertChange(corpus, changes);
      rmrf(stash);
    }

    if (opts.bigSize > 0) {
      await cache.drop();
      const r = await readFloor(bigFile);
      result.catFloor.push({ round, wall: r.wall, rss: null, cpu: null, code: r.code });
      log(`round ${round} big file floor: cat ${fmtSecs(r.wall)} s = ${(opts.bigSize / MiB / r.wall).toFixed(0)} MiB/s`);
      const c = await measureCeiling(bigFile, opts.bigSize, input.nproc);
      result.roundCeiling.set(round, c);
      log(`round ${round} ceiling: ${c.allMiBs.toFixed(0)} MiB/s on ${c.threads} threads`);
      for (const t of live()) {
        const dir = path.join(repos, `${t.name}-big`);
        const repo = localRepo(dir);
        const ri = await runCmd(t, initCmd(t, repo));
        if (ri.code !== 0) {
          fail(t, `big-file repository init (round ${round})`, ri);
          continue;
        }
        if (await timed(t, "big", round, backupCmd(t, repo, work, "big", `r${round}-big`))) {
          const m = t.measures.big[t.measures.big.length - 1]!;
          log(`round ${round} big file: ${t.name} ${(opts.bigSize / MiB / m.wall).toFixed(0)} MiB/s`);
        }
        rmrf(dir);
      }
    }
    rmrf(repos);
    for (const t of order) rmrf(t.home);
  }
  return result;
}
