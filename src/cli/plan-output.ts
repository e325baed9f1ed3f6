/**
 * How a removal plan (src/snapshot/plan.ts) is shown, for every command
 * that makes one (`rm`, `prune`): one line per snapshot, grouped, with its
 * action and the rules that decided it, then a summary; or with --json the
 * same as data (planJson, documented in docs/CLI.md, "Plans").
 */
import { planCounts, type Plan, type PlanEntry } from "../snapshot/plan.js";
import { machineTimeZone, wallTime } from "../util/calendar.js";
import { say, shown } from "./format.js";

/** The version of planJson()'s shape. */
export const PLAN_JSON_VERSION = 1;

export interface PlanOutcome {
  /** Nothing was written (`--dry-run`). */
  dryRun: boolean;
}

/** An entry's time as the plan shows it: the wall clock in the plan's zone (the machine's when it has none). */
function planTime(e: PlanEntry, zone: string): string {
  const w = wallTime(Number(e.timeNs / 1_000_000n), zone);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${w.year}-${p(w.month)}-${p(w.day)} ${p(w.hour)}:${p(w.minute)}:${p(w.second)}`;
}

/** The plan's lines: the zone (when it has one), each group's key above its entries, one line per entry, the summary. */
export function planLines(plan: Plan, o: PlanOutcome): string[] {
  const zone = plan.zone ?? machineTimeZone();
  const lines: string[] = [];
  if (plan.zone !== undefined) lines.push(`time zone: ${plan.zone}`);
  let group: string | undefined;
  for (const e of plan.entries) {
    if (e.group !== undefined && e.group !== group) {
      group = e.group;
      lines.push(`group ${shown(e.group)}:`);
    }
    const tags = e.tags.length > 0 ? `  [${e.tags.map(shown).join(",")}]` : "";
    const partial = e.partial ? "  (partial)" : "";
    lines.push(`${e.action.padEnd(6)}  ${e.id.slice(0, 8)}  ${planTime(e, zone)}  ${shown(e.host)}  ${shown(e.source)}${tags}${partial}${e.reasons.length > 0 ? `  ${e.reasons.map(shown).join("; ")}` : ""}`);
  }
  const { keep, remove } = planCounts(plan);
  lines.push(`${plan.entries.length} snapshots: ${keep} kept, ${remove} ${o.dryRun ? "to remove (dry run: nothing removed)" : "removed"}`);
  return lines;
}

/** The plan as --json prints it. */
export function planJson(plan: Plan, o: PlanOutcome): Record<string, unknown> {
  const { keep, remove } = planCounts(plan);
  return {
    version: PLAN_JSON_VERSION,
    command: plan.command,
    ...(plan.zone !== undefined ? { zone: plan.zone } : {}),
    dryRun: o.dryRun,
    keep,
    remove,
    entries: plan.entries.map((e) => ({
      id: e.id,
      short: e.id.slice(0, 8),
      time: new Date(Number(e.timeNs / 1_000_000n)).toISOString(),
      timeNs: e.timeNs.toString(),
      host: e.host,
      source: e.source,
      tags: e.tags,
      action: e.action,
      reasons: e.reasons,
      ...(e.group !== undefined ? { group: e.group } : {}),
      ...(e.partial ? { partial: true } : {}),
    })),
  };
}

/** Prints a plan on the run's stdout: its lines, or with `json` its data on one line. */
export function printPlan(out: NodeJS.WritableStream, plan: Plan, o: PlanOutcome & { json?: boolean | undefined }): void {
  if (o.json) out.write(`${JSON.stringify(planJson(plan, o))}\n`);
  else for (const line of planLines(plan, o)) say(out, line);
}
