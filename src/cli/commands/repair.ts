/**
 * `coffer repair index|snapshots`: what to run after `check` finds damage.
 * `index` rebuilds the state from the packfiles (exclusive lock); `snapshots`
 * rewrites snapshots that reference lost data, marking the affected entries
 * damaged (shared lock, as a backup). Both print what they did, or with
 * --dry-run what they would do, and take --json.
 */
import { Command } from "commander";
import { describeIndexRepair, repairIndex } from "../../repository/repair-index.js";
import { repairSnapshots, type SnapshotRepairReport } from "../../snapshot/repair-snapshots.js";
import { type Context, withRepository } from "../context.js";
import { ExitCode } from "../exit-codes.js";
import { say, shown } from "../format.js";

interface RepairCmdOptions {
  dryRun?: boolean;
  json?: boolean;
}

async function runRepairIndex(o: RepairCmdOptions, ctx: Context): Promise<ExitCode> {
  return withRepository(ctx, { readOnly: o.dryRun ?? false }, async (repo) => {
    if (!o.dryRun) await repo.requireDeleteRights("repair index", ctx.signal);
    if (!o.dryRun) await repo.acquire("exclusive", "repair index");
    const r = await repairIndex(repo, { dryRun: o.dryRun ?? false, signal: ctx.signal });
    if (o.json) ctx.stdout.write(`${JSON.stringify(r)}\n`);
    else for (const line of describeIndexRepair(r)) say(ctx.stdout, line);
    return ExitCode.OK;
  });
}

async function runRepairSnapshots(o: RepairCmdOptions, ctx: Context): Promise<ExitCode> {
  return withRepository(ctx, { readOnly: o.dryRun ?? false }, async (repo) => {
    if (!o.dryRun) await repo.acquire("shared", "repair snapshots");
    const r = await repairSnapshots(repo, { dryRun: o.dryRun ?? false, signal: ctx.signal });
    if (o.json) ctx.stdout.write(`${JSON.stringify(r)}\n`);
    else for (const line of describeSnapshotRepair(r)) say(ctx.stdout, line);
    return ExitCode.OK;
  });
}

function describeSnapshotRepair(r: SnapshotRepairReport): string[] {
  const would = r.dryRun ? "would be " : "";
  const lines: string[] = [];
  for (const s of r.repaired) {
    lines.push(`snapshot ${s.from.slice(0, 8)}: ${s.entries.length} entries ${would}marked damaged; ${r.dryRun ? "would be replaced" : `replaced by ${s.to!.slice(0, 8)}`}`);
    for (const e of s.entries) lines.push(`  ${shown(e.path)}: ${e.why}`);
  }
  for (const s of r.removed) lines.push(`snapshot ${s.id.slice(0, 8)}: header lost (${s.why}); ${would}removed`);
  const intact = r.snapshots - r.repaired.length - r.removed.length;
  lines.push(`${r.snapshots} snapshots: ${r.repaired.length} ${r.dryRun ? "to repair" : "repaired"}, ${r.removed.length} ${r.dryRun ? "to remove" : "removed"}, ${intact} intact${r.dryRun ? " (dry run: nothing written)" : ""}`);
  return lines;
}

export function repairCommand(ctx: () => Context, done: (code: ExitCode) => void): Command {
  const repair = new Command("repair").description("repair a damaged repository (run `coffer check` first)");
  repair
    .command("index")
    .description("rebuild the index from the packfiles' own indexes, dropping damaged and missing packfiles and storing their intact blobs again")
    .option("--dry-run", "only say what would be done")
    .option("--json", "print a JSON report")
    .action(async (o: RepairCmdOptions) => done(await runRepairIndex(o, ctx())));
  repair
    .command("snapshots")
    .description("rewrite snapshots that reference lost data, marking the affected files damaged; a backup afterwards stores them again")
    .option("--dry-run", "only say what would be done")
    .option("--json", "print a JSON report")
    .action(async (o: RepairCmdOptions) => done(await runRepairSnapshots(o, ctx())));
  return repair;
}
