/** `coffer check`: verify the repository and name every damaged snapshot and file. */
import { Command } from "commander";
import type { Repository } from "../../repository/repository.js";
import { check } from "../../snapshot/check.js";
import { resolveSnapshot } from "../../snapshot/snapshots.js";
import { isCofferError } from "../../util/errors.js";
import { type Context, withRepository } from "../context.js";
import { ExitCode } from "../exit-codes.js";
import { say, shown } from "../format.js";
import { parseSnapshotSelector } from "../snapshot-target.js";

interface CheckCmdOptions {
  fast?: boolean;
  readData?: boolean;
  json?: boolean;
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
  const fast = (o.fast ?? false) && !o.readData;
  const selectors = snaps.map(parseSnapshotSelector);
  return withCheckable(ctx, async (repo, writable) => {
    const ids = selectors.length ? await Promise.all(selectors.map(async (s) => (await resolveSnapshot(repo, s, ctx.signal)).id)) : undefined;
    const r = await check(repo, { fast, signal: ctx.signal, ...(ids ? { snapshots: ids } : {}) });
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
    // Problems as text: the errors behind them are for callers of check(), not part of the JSON report.
    if (o.json) ctx.stdout.write(`${JSON.stringify({ ...r, problems: r.problems.map(({ error: _error, ...p }) => p), recorded })}\n`);
    else {
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
      if (recorded > 0) say(ctx.stdout, "recorded the damage in the state: backups store the damaged blobs again; `coffer repair index` and `coffer repair snapshots` repair the rest");
    }
    if (notRecorded !== undefined) say(ctx.stderr, `coffer: warning: the damage found was not recorded in the state: ${notRecorded}`);
    return r.problems.length ? ExitCode.ERROR : ExitCode.OK;
  });
}

export function checkCommand(ctx: () => Context, done: (code: ExitCode) => void): Command {
  return new Command("check")
    .description("verify that snapshots are complete and, without --fast, that every blob is intact")
    .argument("[snap...]", "snapshots to check (default: all)")
    .option("--fast", "check presence only, without reading content")
    .option("--read-data", "read and verify every blob (the default; overrides --fast)")
    .option("--json", "print a JSON report")
    .action(async (snaps: string[], o: CheckCmdOptions) => done(await runCheck(snaps, o, ctx())));
}
