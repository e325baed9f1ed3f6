/**
 * `coffer rm SNAP... | rm FILTERS`: removes snapshots by writing removal
 * records (src/snapshot/removal.ts) under a shared lock, after printing the
 * plan: every snapshot, kept or removed, and why. Filters that select every
 * snapshot of the repository are refused unless `--all` is given.
 */
import { Command } from "commander";
import type { SnapshotHeader } from "../../snapshot/header.js";
import { type Plan, planEntry } from "../../snapshot/plan.js";
import { planRemovals, removeSnapshots } from "../../snapshot/removal.js";
import { describeFilter, hasFilters, selectSnapshots } from "../../snapshot/select.js";
import { listSnapshots, resolveSnapshot } from "../../snapshot/snapshots.js";
import { CofferError } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import { type Context, withRepository } from "../context.js";
import { ExitCode } from "../exit-codes.js";
import { addFilterOptions, type FilterOptions, parseFilterOptions } from "../filter-options.js";
import { say } from "../format.js";
import { printPlan } from "../plan-output.js";
import { parseSnapshotSelector } from "../snapshot-target.js";

interface RmOptions extends FilterOptions {
  all?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

async function runRm(snaps: string[], o: RmOptions, ctx: Context): Promise<ExitCode> {
  const filter = parseFilterOptions(o);
  const filtered = hasFilters(filter);
  if (snaps.length > 0 && (filtered || o.all)) throw new CofferError("USAGE", "name snapshots or give filters (or --all), not both");
  if (snaps.length === 0 && !filtered && !o.all) throw new CofferError("USAGE", "name the snapshots to remove, or select them with --tag, --host, --source, --before, --latest or --all");
  const selectors = snaps.map(parseSnapshotSelector);
  const dryRun = o.dryRun ?? false;
  return withRepository(ctx, { readOnly: dryRun }, async (repo) => {
    const warn = (m: string) => say(ctx.stderr, `coffer: warning: ${m}`);
    if (!dryRun) {
      // Removed snapshots are reclaimed by maintenance later: append-only credentials may not start that.
      await repo.requireDeleteRights("rm", ctx.signal);
      await repo.acquire("shared", "rm", warn);
    }
    const { snapshots, unreadable } = await listSnapshots(repo, ctx.signal);
    for (const u of unreadable) say(ctx.stderr, `coffer: snapshot ${toHex(u.id)} cannot be read: ${u.message} (kept; \`coffer repair snapshots\` removes it)`);
    const all = [...snapshots];
    const chosen = new Set<string>();
    let why: string;
    if (snaps.length > 0) {
      why = "named on the command line";
      for (const s of selectors) {
        const h = await resolveSnapshot(repo, s, ctx.signal);
        // A checkpoint the listing hides (its run completed) can still be named.
        if (!all.some((x) => toHex(x.id) === toHex(h.id))) all.push(h);
        chosen.add(toHex(h.id));
      }
    } else {
      why = filtered ? `matches ${describeFilter(filter)}` : "--all";
      for (const h of selectSnapshots(all, filter)) chosen.add(toHex(h.id));
      if (!o.all && chosen.size > 0 && chosen.size === all.length) {
        throw new CofferError("USAGE", `the filters select every snapshot of the repository (${all.length}): add --all to remove them all`);
      }
    }
    const plan: Plan = { command: "rm", entries: sortedByTime(all).map((h) => (chosen.has(toHex(h.id)) ? planEntry(h, "remove", [why]) : planEntry(h, "keep", [snaps.length > 0 ? "not named" : "not selected"]))) };
    if (!dryRun) await removeSnapshots(repo, planRemovals(plan), { command: "rm", signal: ctx.signal, onWarning: warn });
    printPlan(ctx.stdout, plan, { dryRun, json: o.json });
    return unreadable.length > 0 ? ExitCode.PARTIAL : ExitCode.OK;
  });
}

function sortedByTime(l: SnapshotHeader[]): SnapshotHeader[] {
  return [...l].sort((a, b) => Number(a.timeNs - b.timeNs));
}

export function rmCommand(ctx: () => Context, done: (code: ExitCode) => void): Command {
  const cmd = new Command("rm")
    .description("remove snapshots (by ID prefix, or selected by filters); their data stays until maintenance reclaims it, and `undelete` takes a removal back until then")
    .argument("[snap...]", "snapshot ID prefixes (or latest)");
  return addFilterOptions(cmd)
    .option("--all", "allow the filters to select every snapshot; alone, select every snapshot")
    .option("--dry-run", "print the plan only: remove nothing")
    .option("--json", "print the plan as JSON")
    .action(async (snaps: string[], o: RmOptions) => done(await runRm(snaps, o, ctx())));
}
