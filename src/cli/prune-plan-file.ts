/**
 * The file `prune --plan FILE` writes and `prune --apply FILE` reads: the
 * plan as --json prints it (plan-output.ts), wrapped with what applying it
 * needs (the repository it is for, the grouping it was made with), in a
 * versioned JSON document (docs/CLI.md, "prune"). Reading it back is strict:
 * anything unexpected is a USAGE error naming the file.
 */
import { randomBytes } from "node:crypto";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import type { Plan, PlanEntry } from "../snapshot/plan.js";
import { GROUP_KEYS, type GroupKey } from "../snapshot/retention.js";
import type { SnapshotFilter } from "../snapshot/select.js";
import { CofferError } from "../util/errors.js";
import { planJson } from "./plan-output.js";

const FORMAT = "coffer prune plan";
/** The version of the plan file's shape; a reader refuses any other. */
const PLAN_FILE_VERSION = 1;

export interface PlanFile {
  /** The repository's ID (hex): a plan applies to that repository only. */
  repository: string;
  /** When it was made, ms since the epoch. */
  createdMs: number;
  groupBy: GroupKey[];
  /** The snapshots the policy was applied to (`--tag`, `--host`, `--source`); empty: all. Absent in files of older coffers: all. */
  filter: SnapshotFilter;
  /** The policy as the plan printed it. */
  policy: string;
  plan: Plan;
}

/** Writes the plan file atomically (a temporary file renamed over FILE). */
export async function writePlanFile(path: string, f: PlanFile): Promise<void> {
  const doc = {
    format: FORMAT,
    version: PLAN_FILE_VERSION,
    repository: f.repository,
    created: new Date(f.createdMs).toISOString(),
    groupBy: f.groupBy,
    filter: { tags: f.filter.tags ?? [], hosts: f.filter.hosts ?? [], sources: f.filter.sources ?? [] },
    policy: f.policy,
    plan: planJson(f.plan, { dryRun: true }),
  };
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    await writeFile(tmp, `${JSON.stringify(doc, null, 2)}\n`, { flag: "wx" });
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

function bad(path: string, why: string): CofferError {
  return new CofferError("USAGE", `${path}: not a prune plan coffer can apply: ${why}`);
}

/** Reads a plan file: USAGE when it is not one, or of another version. */
export async function readPlanFile(path: string): Promise<PlanFile> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    if (e instanceof SyntaxError) throw bad(path, "not JSON");
    throw e;
  }
  const o = record(doc, () => bad(path, "not an object"));
  if (o.format !== FORMAT) throw bad(path, `format is not "${FORMAT}"`);
  if (o.version !== PLAN_FILE_VERSION) throw bad(path, `version ${JSON.stringify(o.version)} (this coffer reads version ${PLAN_FILE_VERSION})`);
  const str = (v: unknown, what: string) => {
    if (typeof v !== "string") throw bad(path, `${what} is not a string`);
    return v;
  };
  const strings = (v: unknown, what: string) => {
    if (!Array.isArray(v)) throw bad(path, `${what} is not a list`);
    return v.map((x, i) => str(x, `${what}[${i}]`));
  };
  const createdMs = Date.parse(str(o.created, "created"));
  if (Number.isNaN(createdMs)) throw bad(path, "created is not a time");
  const groupBy = strings(o.groupBy, "groupBy");
  for (const g of groupBy) if (!(GROUP_KEYS as readonly string[]).includes(g)) throw bad(path, `unknown group key ${JSON.stringify(g)}`);
  const filter: SnapshotFilter = {};
  if (o.filter !== undefined) {
    const f = record(o.filter, () => bad(path, "filter is not an object"));
    if (!Array.isArray(f.tags)) throw bad(path, "filter.tags is not a list");
    filter.tags = f.tags.map((t, i) => strings(t, `filter.tags[${i}]`));
    filter.hosts = strings(f.hosts, "filter.hosts");
    filter.sources = strings(f.sources, "filter.sources");
  }
  const p = record(o.plan, () => bad(path, "plan is not an object"));
  if (p.command !== "prune") throw bad(path, "plan is not a prune plan");
  if (!Array.isArray(p.entries)) throw bad(path, "plan.entries is not a list");
  const entries = p.entries.map((x, i): PlanEntry => {
    const at = `plan.entries[${i}]`;
    const e = record(x, () => bad(path, `${at} is not an object`));
    const id = str(e.id, `${at}.id`);
    if (!/^[0-9a-f]{64}$/.test(id)) throw bad(path, `${at}.id is not a snapshot ID`);
    const timeNs = str(e.timeNs, `${at}.timeNs`);
    if (!/^-?\d+$/.test(timeNs)) throw bad(path, `${at}.timeNs is not a whole number`);
    if (e.action !== "keep" && e.action !== "remove") throw bad(path, `${at}.action is neither keep nor remove`);
    return {
      id,
      timeNs: BigInt(timeNs),
      host: str(e.host, `${at}.host`),
      source: str(e.source, `${at}.source`),
      tags: strings(e.tags, `${at}.tags`),
      action: e.action,
      reasons: strings(e.reasons, `${at}.reasons`),
      ...(e.group !== undefined ? { group: str(e.group, `${at}.group`) } : {}),
      ...(e.partial === true ? { partial: true } : {}),
    };
  });
  const ids = new Set(entries.map((e) => e.id));
  if (ids.size !== entries.length) throw bad(path, "a snapshot is listed twice");
  return {
    repository: str(o.repository, "repository"),
    createdMs,
    groupBy: groupBy as GroupKey[],
    filter,
    policy: str(o.policy, "policy"),
    plan: { command: "prune", entries, ...(p.zone !== undefined ? { zone: str(p.zone, "plan.zone") } : {}) },
  };
}

function record(v: unknown, fail: () => Error): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw fail();
  return v as Record<string, unknown>;
}
