/**
 * The command line's snapshot filters (`--tag`, `--host`, `--source`,
 * `--before`, `--latest`): the options a command adds, and what they parse
 * into, the SnapshotFilter of src/snapshot/select.ts.
 */
import type { Command } from "commander";
import type { SnapshotFilter } from "../snapshot/select.js";
import { instantOf, machineTimeZone, parseRfc3339 } from "../util/calendar.js";
import { CofferError } from "../util/errors.js";

export interface FilterOptions {
  tag?: string[];
  host?: string[];
  source?: string[];
  before?: string;
  latest?: string;
}

const collect = (v: string, prev: string[] | undefined) => [...(prev ?? []), v];

/** Adds the options that match snapshots by what they are (`--tag`, `--host`, `--source`) to `cmd`. */
export function addMatchOptions(cmd: Command): Command {
  return cmd
    .option("--tag <tags>", "snapshots with these tags (comma-separated: all of them); repeatable: any of the sets", collect)
    .option("--host <host>", "snapshots of this host (repeatable: any)", collect)
    .option("--source <source>", "snapshots of this source as `ls` shows it: a path, or TYPE:ROOT (repeatable: any)", collect);
}

/** Adds the filter options to `cmd`: the match options, `--before` and `--latest`. */
export function addFilterOptions(cmd: Command): Command {
  return addMatchOptions(cmd)
    .option("--before <date>", "snapshots taken before this time: RFC 3339, or YYYY-MM-DD (midnight, this machine's time zone)")
    .option("--latest <n>", "then only the N newest of each host and source");
}

/** `--before`'s value as ns since the epoch: an RFC 3339 timestamp, or a date at midnight in `zone`. */
export function parseBefore(s: string, zone = machineTimeZone()): bigint {
  const t = parseRfc3339(s);
  if (t !== undefined) return t;
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
  if (m) {
    const [year, month, day] = m.slice(1).map(Number) as [number, number, number];
    const check = parseRfc3339(`${s}T00:00:00Z`);
    if (check !== undefined) return BigInt(instantOf({ year, month, day, hour: 0, minute: 0, second: 0, ms: 0 }, zone)) * 1_000_000n;
  }
  throw new CofferError("USAGE", `--before must be an RFC 3339 timestamp or a date YYYY-MM-DD, not ${JSON.stringify(s)}`);
}

/** The filter the options give. */
export function parseFilterOptions(o: FilterOptions): SnapshotFilter {
  const tags = o.tag?.map((t) => t.split(",").filter((x) => x !== ""));
  if (tags?.some((t) => t.length === 0)) throw new CofferError("USAGE", "--tag needs at least one tag");
  let latest: number | undefined;
  if (o.latest !== undefined) {
    latest = /^\d+$/.test(o.latest) ? Number(o.latest) : NaN;
    if (!Number.isSafeInteger(latest) || latest < 1) throw new CofferError("USAGE", `--latest must be a whole number of at least 1, not ${JSON.stringify(o.latest)}`);
  }
  return {
    ...(tags ? { tags } : {}),
    ...(o.host ? { hosts: o.host } : {}),
    ...(o.source ? { sources: o.source } : {}),
    ...(o.before !== undefined ? { beforeNs: parseBefore(o.before) } : {}),
    ...(latest !== undefined ? { latest } : {}),
  };
}
