/**
 * `coffer maintenance`: garbage collection and repacking that never block a
 * backup (docs/FORMAT.md, "Garbage collection"): deletes the packfiles an
 * earlier run marked once that is safe, repacks mostly unused and small
 * packfiles, marks what no live snapshot needs, and says what it freed and
 * what it kept because of the grace period or of running backups.
 */
import { Command } from "commander";
import { maintenance, type MaintenanceOptions, type MaintenanceReport, type PackCount } from "../../snapshot/maintenance.js";
import { CofferError } from "../../util/errors.js";
import { type Context, withRepository } from "../context.js";
import { ExitCode } from "../exit-codes.js";
import { bytes, say } from "../format.js";
import { parseDuration, parseSize } from "../quantities.js";

interface MaintenanceCmdOptions {
  grace: string;
  maxUnused: string;
  maxRepackSize?: string;
  dryRun?: boolean;
  json?: boolean;
}

/** The default grace period (docs/FORMAT.md, "Garbage collection"). */
const DEFAULT_GRACE = "1d";

/** `--max-unused`: `P%` of the repository, a SIZE, or `unlimited`. */
function parseMaxUnused(s: string): MaintenanceOptions["maxUnused"] {
  if (s === "unlimited") return null;
  const share = /^(\d+(?:\.\d+)?)%$/.exec(s);
  if (share) {
    const percent = Number(share[1]);
    if (!(percent >= 0 && percent <= 100)) throw new CofferError("USAGE", `--max-unused: a share needs 0 <= P <= 100: ${JSON.stringify(s)}`);
    return { percent };
  }
  try {
    return { bytes: parseSize(s, "--max-unused") };
  } catch {
    throw new CofferError("USAGE", `--max-unused: not a share, a size or "unlimited": ${JSON.stringify(s)} (5%, 1G, unlimited)`);
  }
}

async function runMaintenance(o: MaintenanceCmdOptions, ctx: Context): Promise<ExitCode> {
  const graceMs = parseDuration(o.grace, "--grace");
  const maxUnused = parseMaxUnused(o.maxUnused);
  const maxRepackBytes = o.maxRepackSize === undefined ? Infinity : parseSize(o.maxRepackSize, "--max-repack-size");
  const dryRun = o.dryRun ?? false;
  return withRepository(ctx, { readOnly: dryRun }, async (repo) => {
    if (!dryRun) await repo.requireDeleteRights("maintenance", ctx.signal);
    if (!dryRun) await repo.acquire("maintenance", "maintenance", (m) => say(ctx.stderr, `coffer: warning: ${m}`), ctx.signal);
    const r = await maintenance(repo, { graceMs, maxUnused, maxRepackBytes, dryRun, signal: ctx.signal });
    if (o.json) ctx.stdout.write(`${JSON.stringify(r)}\n`);
    else for (const line of describeMaintenance(r)) say(ctx.stdout, line);
    return ExitCode.OK;
  });
}

function describeMaintenance(r: MaintenanceReport): string[] {
  const n = (c: PackCount) => `${c.packs} packfiles (${bytes(c.bytes)})`;
  const [would, free, mark, repack] = r.dryRun ? ["would be ", "would free", "would mark", "would repack"] : ["", "freed", "marked", "repacked"];
  const lines = [`live: ${r.snapshots} snapshots${r.removedInGrace > 0 ? `, of which ${r.removedInGrace} removed but inside the grace period` : ""}`];
  lines.push(`${free} ${n(r.freed)} of ${n(r.before)}`);
  if (r.revived.packs > 0) lines.push(`${r.revived.packs} marked packfiles ${would}kept again: a snapshot committed since their mark needs them`);
  if (r.keptForGrace.packs > 0) lines.push(`kept for the grace period: ${n(r.keptForGrace)} marked less than ${r.graceMs / 1000} s ago`);
  if (r.keptForLocks.packs > 0) lines.push(`kept for running backups: ${n(r.keptForLocks)} marked while a backup that may still use them ran`);
  if (r.repacked.packs > 0) lines.push(`${repack} ${n(r.repacked)}${r.dryRun ? "" : `: ${r.repacked.blobs} live blobs (${bytes(r.repacked.blobBytes)}) stored again`}`);
  if (r.marked.packs > 0) lines.push(`${mark} ${n(r.marked)} unused: a later run frees them once the grace period has passed and the backups running now have ended`);
  lines.push(`unused data left: ${bytes(r.unusedAfter)}${r.deltasRemoved > 0 ? `; ${r.deltasRemoved} state deltas removed` : ""}${r.dryRun ? " (dry run: nothing written)" : ""}`);
  return lines;
}

export function maintenanceCommand(ctx: () => Context, done: (code: ExitCode) => void): Command {
  return new Command("maintenance")
    .description("collect garbage and repack, without blocking backups: deletes what an earlier run marked unused once safe, then marks and repacks")
    .option("--grace <duration>", "how long marks and removed snapshots wait, and the clock skew tolerated between hosts (0 for tests and single-client repositories)", DEFAULT_GRACE)
    .option("--max-unused <limit>", "unused data tolerated: a share of the repository, a size, or unlimited", "5%")
    .option("--max-repack-size <size>", "packfile bytes read for repacking at most (default: no limit)")
    .option("--dry-run", "only say what would be done")
    .option("--json", "print a JSON report")
    .action(async (o: MaintenanceCmdOptions) => done(await runMaintenance(o, ctx())));
}
