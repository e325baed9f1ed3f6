/**
 * `coffer prune`: removes the snapshots a retention policy does not keep
 * (src/snapshot/retention.ts, restic's rules with coffer's three
 * differences), through the same removal as `rm` (src/snapshot/removal.ts).
 * Prints the plan first; `--dry-run` prints it only, `--plan FILE` writes
 * it, `--apply FILE` commits exactly a plan written before, unless the
 * repository changed in a way that alters it (exit code 4). Space is
 * reclaimed by `coffer maintenance`, not here.
 */
import { Command, Option } from "commander";
import { planChanges, prunePlan } from "../../snapshot/prune.js";
import { planRemovals, removeSnapshots } from "../../snapshot/removal.js";
import {
  COUNT_RULES,
  type CountRule,
  GROUP_KEYS,
  type GroupKey,
  type RetentionPolicy,
  UNLIMITED,
  WITHIN_RULES,
  type WithinRule,
} from "../../snapshot/retention.js";
import { describeFilter, hasFilters, selectSnapshots, type SnapshotFilter } from "../../snapshot/select.js";
import { listSnapshots } from "../../snapshot/snapshots.js";
import { type CalendarDuration, formatCalendarDuration, isTimeZone, isZeroDuration, machineTimeZone, parseCalendarDuration } from "../../util/calendar.js";
import { CofferError } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import { type Context, userPath, withRepository } from "../context.js";
import { ExitCode } from "../exit-codes.js";
import { addMatchOptions, type FilterOptions, parseFilterOptions } from "../filter-options.js";
import { say } from "../format.js";
import { planJson, planLines } from "../plan-output.js";
import { readPlanFile, writePlanFile } from "../prune-plan-file.js";

/** commander's camel-cased options: keepLast, keepWithinDaily, ... */
type PruneOptions = MatchOptions & { [K in CountRule as `keep${Capitalize<K>}`]?: number } & { [K in WithinRule as `keepWithin${Capitalize<K>}`]?: CalendarDuration } & {
  keepWithin?: CalendarDuration;
  keepTag?: string[][];
  keepMin: number;
  groupBy: GroupKey[];
  tz?: string;
  dryRun?: boolean;
  json?: boolean;
  plan?: string;
  apply?: string;
};

type MatchOptions = Pick<FilterOptions, "tag" | "host" | "source">;

const capital = <S extends string>(s: S) => (s[0]!.toUpperCase() + s.slice(1)) as Capitalize<S>;

function policyOf(o: PruneOptions): RetentionPolicy {
  return {
    counts: Object.fromEntries(COUNT_RULES.map((r) => [r, o[`keep${capital(r)}`] ?? 0])),
    within: o.keepWithin,
    withinBuckets: Object.fromEntries(WITHIN_RULES.flatMap((r) => (o[`keepWithin${capital(r)}`] ? [[r, o[`keepWithin${capital(r)}`]!]] : []))),
    tags: o.keepTag ?? [],
    keepMin: o.keepMin,
  };
}

/** Whether any policy option was given (`--apply` takes none). */
function hasPolicyOptions(o: PruneOptions): boolean {
  return (
    COUNT_RULES.some((r) => o[`keep${capital(r)}`] !== undefined) ||
    o.keepWithin !== undefined ||
    WITHIN_RULES.some((r) => o[`keepWithin${capital(r)}`] !== undefined) ||
    o.keepTag !== undefined
  );
}

/** The policy in restic's words: `keep 7 daily, 4 weekly snapshots, all snapshots within 2d of the newest, ...; at least 1 per group`. */
function describePolicy(p: RetentionPolicy): string {
  const counts = COUNT_RULES.filter((r) => p.counts[r]).map((r) => `${p.counts[r] === UNLIMITED ? "all" : p.counts[r]} ${r === "last" ? "latest" : r}`);
  const parts = counts.length ? [`${counts.join(", ")} snapshots`] : [];
  for (const r of WITHIN_RULES) if (!isZeroDuration(p.withinBuckets[r])) parts.push(`${r} snapshots within ${formatCalendarDuration(p.withinBuckets[r]!)}`);
  if (p.tags.length) parts.push(`all snapshots with tags ${p.tags.map((t) => t.join(",")).join(" or ")}`);
  if (!isZeroDuration(p.within)) parts.push(`all snapshots within ${formatCalendarDuration(p.within!)} of the newest`);
  return `keep ${parts.join(", ") || "nothing"}; at least ${p.keepMin} per group`;
}

async function runPrune(o: PruneOptions, ctx: Context): Promise<ExitCode> {
  const given: SnapshotFilter = parseFilterOptions({ ...(o.tag && { tag: o.tag }), ...(o.host && { host: o.host }), ...(o.source && { source: o.source }) });
  if (o.apply !== undefined && (hasPolicyOptions(o) || hasFilters(given) || o.plan !== undefined || o.tz !== undefined)) {
    throw new CofferError("USAGE", "--apply takes the policy and the snapshots it covers from its plan: give no --keep-*, --tag, --host, --source, --tz or --plan with it");
  }
  const zone = o.tz ?? machineTimeZone();
  if (!isTimeZone(zone)) throw new CofferError("USAGE", `--tz: unknown time zone ${JSON.stringify(zone)} (an IANA name such as Europe/Paris, or UTC)`);
  const writes = !o.dryRun && o.plan === undefined;
  return withRepository(ctx, { readOnly: !writes }, async (repo) => {
    // As rm: what prune removes is reclaimed later, which append-only credentials may not start.
    if (writes) await repo.requireDeleteRights("prune", ctx.signal);
    const { snapshots, unreadable } = await listSnapshots(repo, ctx.signal);
    for (const u of unreadable) say(ctx.stderr, `coffer: snapshot ${toHex(u.id)} cannot be read (${u.message}): the policy leaves it out and it is not removed`);
    let plan, policy: string, groupBy: GroupKey[], filter: SnapshotFilter;
    if (o.apply !== undefined) {
      const file = await readPlanFile(userPath(ctx, o.apply));
      if (file.repository !== repo.id) throw new CofferError("USAGE", `${o.apply}: the plan is for repository ${file.repository}, not this one (${repo.id})`);
      const changes = planChanges(file.plan, file.groupBy, selectSnapshots(snapshots, file.filter));
      if (changes.length > 0) {
        throw new CofferError("PLAN_CHANGED", `the repository changed since the plan was made, so it was not applied (make a new one): ${changes.join("; ")}`, { changes });
      }
      ({ plan, policy, groupBy, filter } = file);
    } else {
      policy = describePolicy(policyOf(o));
      groupBy = o.groupBy;
      filter = given;
      plan = prunePlan(selectSnapshots(snapshots, filter), { policy: policyOf(o), zone, groupBy, nowMs: Date.now() });
    }
    if (o.plan !== undefined) await writePlanFile(userPath(ctx, o.plan), { repository: repo.id, createdMs: Date.now(), groupBy, filter, policy, plan });
    if (writes) await removeSnapshots(repo, planRemovals(plan), { command: "prune", signal: ctx.signal, onWarning: (m) => say(ctx.stderr, `coffer: warning: ${m}`) });
    const outcome = { dryRun: !writes };
    const only = hasFilters(filter) ? describeFilter(filter) : undefined;
    if (o.json) ctx.stdout.write(`${JSON.stringify({ ...planJson(plan, outcome), policy, groupBy, ...(only !== undefined ? { only } : {}), ...(o.plan !== undefined ? { planFile: o.plan } : {}) })}\n`);
    else {
      say(ctx.stdout, `policy: ${policy}`);
      say(ctx.stdout, `grouped by: ${groupBy.length ? groupBy.join(",") : "nothing (one group)"}`);
      if (only !== undefined) say(ctx.stdout, `only snapshots matching: ${only} (the others are left alone)`);
      for (const line of planLines(plan, outcome)) say(ctx.stdout, line);
      if (o.plan !== undefined) say(ctx.stdout, `plan written to ${o.plan}: apply it with \`coffer prune --apply ${o.plan}\``);
    }
    return unreadable.length > 0 ? ExitCode.PARTIAL : ExitCode.OK;
  });
}

function count(flag: string): (v: string) => number {
  return (v) => {
    if (v === "unlimited") return UNLIMITED;
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new CofferError("USAGE", `${flag}: ${JSON.stringify(v)} is not a count (a whole number, or unlimited)`);
    return Number(v);
  };
}

function wholeNumber(flag: string): (v: string) => number {
  return (v) => {
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new CofferError("USAGE", `${flag}: ${JSON.stringify(v)} is not a whole number`);
    return Number(v);
  };
}

function duration(flag: string): (v: string) => CalendarDuration {
  return (v) => {
    const d = parseCalendarDuration(v);
    if (!d) throw new CofferError("USAGE", `${flag}: ${JSON.stringify(v)} is not a duration (as 1y2m3d4h: years, months, days, hours)`);
    return d;
  };
}

function groupBy(v: string): GroupKey[] {
  const keys = v.split(",").map((k) => k.trim()).filter((k) => k !== "");
  for (const k of keys) if (!(GROUP_KEYS as readonly string[]).includes(k)) throw new CofferError("USAGE", `--group-by: unknown key ${JSON.stringify(k)} (host, source, tags, comma-separated; empty for no groups)`);
  return [...new Set(keys)] as GroupKey[];
}

/** The periods of the bucket rules, as the help names them. */
const PERIODS: Record<WithinRule, string> = { hourly: "hours", daily: "days", weekly: "ISO weeks (Monday to Sunday)", monthly: "months", yearly: "years" };

export function pruneCommand(ctx: () => Context, done: (code: ExitCode) => void): Command {
  const c = new Command("prune")
    .description(
      "remove the snapshots a retention policy does not keep (restic's rules, buckets in one time zone); prints the plan first. " +
        "Removal is a record: the data stays (and `coffer undelete` takes a snapshot back) until `coffer maintenance` reclaims it",
    )
    .option("--keep-last <n>", "keep the N newest snapshots", count("--keep-last"));
  for (const r of COUNT_RULES.slice(1)) c.option(`--keep-${r} <n>`, `keep the newest snapshot of each of the N newest ${PERIODS[r as WithinRule]} that have one (unlimited: all)`, count(`--keep-${r}`));
  c.option("--keep-within <duration>", "keep every snapshot less than DURATION (1y2m3d4h) older than the group's newest", duration("--keep-within"));
  for (const r of WITHIN_RULES) c.option(`--keep-within-${r} <duration>`, `keep the newest snapshot of each of the ${PERIODS[r]} within DURATION of the group's newest`, duration(`--keep-within-${r}`));
  return addMatchOptions(c)
    .option("--keep-tag <tags>", "keep snapshots having all these tags (comma-separated; repeatable: any list)", (v: string, p: string[][] | undefined) => [...(p ?? []), v.split(",").filter((t) => t !== "")])
    .addOption(new Option("--keep-min <n>", "never remove the N newest snapshots of a group, whatever the policy").default(1).argParser(wholeNumber("--keep-min")))
    .addOption(new Option("--group-by <keys>", "apply the policy per group of these keys: host, source, tags (comma-separated; '' for one group)").default(["host", "source"], "host,source").argParser(groupBy))
    .option("--tz <zone>", "count hours, days, weeks, months and years in this IANA time zone (default: this machine's)")
    .option("--dry-run", "print the plan only")
    .option("--plan <file>", "write the plan to FILE (JSON) and remove nothing")
    .option("--apply <file>", "remove exactly what the plan in FILE says, unless the repository changed in a way that alters it (exit code 4)")
    .option("--json", "print the plan as JSON")
    .action(async (o: PruneOptions) => done(await runPrune(o, ctx())));
}
