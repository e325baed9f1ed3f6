/**
 * The retention timeline of issue 17: two hosts, two sources, a year of
 * irregular daily snapshots with missing days (one machine off for the
 * last weeks), hourly runs on some days, a few tagged ones. Each policy of
 * `prune --dry-run --json` (the BUILT CLI, in process) must keep exactly
 * what restic's rules, restated naively (test/helpers/retention-reference.ts),
 * keep per group; then coffer's three differences: one declared zone,
 * keep-min, and a policy that keeps nothing refused. The tagged snapshots
 * are real backups made with `backup --time --host`; the rest (hundreds of
 * backups would take minutes) are their headers cloned with other times
 * through the Repository API, so check and restore work on them all.
 */
import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsStore } from "../../src/connectors/fs/store.js";
import { BlobType } from "../../src/repository/codec.js";
import { Repository } from "../../src/repository/repository.js";
import { encodeHeader } from "../../src/snapshot/header.js";
import { listSnapshots } from "../../src/snapshot/snapshots.js";
import { toHex } from "../../src/util/hex.js";
import { describeRun, EXIT, FAST_KDF } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";
import { centralEuropeanOffset, type Period, refBucket, refCount, type RefDuration, type RefSnapshot, refWithin } from "../helpers/retention-reference.js";

const PASS = "retention timeline";
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const HOSTS = ["alpha", "beta"];
/** The two sources: directories under `base`. */
let SOURCES: string[] = [];
let base: string;
let repo: string;

interface Made extends RefSnapshot {
  host: string;
  source: string;
  tags: string[];
}
const made: Made[] = [];

/** xorshift32: the timeline is the same on every run. */
function random(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** The snapshot times of one group: 2025's days at about 02:00 UTC (some missing), every hour of a few days, a snapshot in late 2024. */
function groupTimes(g: number): number[] {
  const rnd = random(1000 + g);
  const start = Date.parse("2025-01-01T00:00:00Z");
  // beta's machine is off from December 10 on (kopia's #3758): its windows must follow its own newest snapshot.
  const lastDay = HOSTS[g >> 1] === "beta" ? 344 : 365;
  const times = [Date.parse("2024-11-20T10:00:00Z") + g * 60_000];
  for (let day = 0; day < lastDay; day++) {
    if (day < lastDay - 2 && rnd() < 0.12) continue;
    // Around 02:00 UTC, sometimes just before midnight: the day differs by zone.
    const at = rnd() < 0.15 ? -20 * 60_000 - rnd() * HOUR : 2 * HOUR + rnd() * HOUR;
    times.push(start + day * DAY + Math.floor(at));
    if (day % 97 === 5 || day >= lastDay - 2) {
      for (let h = 6; h < 24; h++) if (rnd() < 0.8) times.push(start + day * DAY + h * HOUR + Math.floor(rnd() * 50 * 60_000));
    }
  }
  return times;
}

async function run(args: string[], code: number = EXIT.OK) {
  const r = await cofferInProcess(["at", repo, ...args], { env: { COFFER_PASSPHRASE: PASS, XDG_CACHE_HOME: path.join(base, "cache") } });
  expect(r.exitCode, describeRun(r)).toBe(code);
  return r;
}

interface PlanJson {
  zone: string;
  keep: number;
  remove: number;
  entries: { id: string; host: string; source: string; action: "keep" | "remove"; reasons: string[]; group?: string }[];
}

async function planOf(policy: string[]): Promise<PlanJson> {
  return JSON.parse((await run(["prune", "--dry-run", "--json", ...policy])).stdout) as PlanJson;
}

async function keptBy(policy: string[]): Promise<string[]> {
  return (await planOf(policy)).entries.filter((e) => e.action === "keep").map((e) => e.id).sort();
}

/** What the reference keeps, group by group (host and source). */
function expected(rule: (group: Made[]) => Set<string>): string[] {
  const out: string[] = [];
  for (const host of HOSTS) for (const source of SOURCES) out.push(...rule(made.filter((s) => s.host === host && s.source === source)));
  return out.sort();
}

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-retention-"));
  repo = path.join(base, "repo");
  SOURCES = [path.join(base, "www"), path.join(base, "db")];
  for (const dir of SOURCES) {
    await fsp.mkdir(dir);
    await fsp.writeFile(path.join(dir, "a.txt"), `the tree of ${path.basename(dir)}\n`);
  }
  await run(["create", ...FAST_KDF]);
  const planned: Made[] = [];
  let g = 0;
  for (const host of HOSTS) {
    for (const source of SOURCES) {
      for (const ms of groupTimes(g++)) {
        const d = new Date(ms);
        planned.push({ id: "", ms, host, source, tags: d.getUTCDate() === 1 && d.getUTCMonth() % 3 === 0 ? ["archive"] : [] });
      }
    }
  }
  for (const m of planned.filter((x) => x.tags.length > 0)) {
    const r = await run(["backup", "-q", "--json", "--time", new Date(m.ms).toISOString(), "--host", m.host, "--tag", "archive", m.source]);
    m.id = (JSON.parse(r.stdout) as { id: string }).id;
  }
  const r = await Repository.open(new FsStore(repo), { passphrase: async () => PASS });
  try {
    const models = new Map((await listSnapshots(r)).snapshots.map((h) => [h.importer.root, h]));
    expect([...models.keys()].sort()).toEqual([...SOURCES].sort());
    await r.acquire("shared", "test");
    for (const m of planned.filter((x) => x.id === "")) {
      const id = randomBytes(32);
      const model = models.get(m.source)!;
      const header = { ...model, run: undefined, prior: undefined, parent: undefined, id, timeNs: BigInt(m.ms) * 1_000_000n, hostname: m.host, tags: [] };
      await r.putBlob(BlobType.SNAPSHOT, encodeHeader(header), id);
      m.id = toHex(id);
    }
    await r.flush();
  } finally {
    await r.close();
  }
  made.push(...planned);
}, 180_000);

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

describe("retention timeline: each policy keeps what restic's rules keep", () => {
  it("has a timeline with missing days, hourly runs and a machine that stopped", () => {
    expect(made.length).toBeGreaterThan(1000);
    const betaNewest = Math.max(...made.filter((m) => m.host === "beta").map((m) => m.ms));
    expect(new Date(betaNewest).toISOString().slice(0, 10)).toBe("2025-12-10");
  });

  const counts: [string, "last" | Period, number][] = [
    ["--keep-last", "last", 5],
    ["--keep-hourly", "hourly", 30],
    ["--keep-daily", "daily", 10],
    ["--keep-weekly", "weekly", 8],
    ["--keep-monthly", "monthly", 6],
    ["--keep-monthly", "monthly", 24],
    ["--keep-yearly", "yearly", 3],
  ];
  for (const [flag, rule, n] of counts) {
    it(`${flag} ${n}`, async () => {
      expect(await keptBy([flag, String(n), "--tz", "UTC", "--keep-min", "0"])).toEqual(expected((g) => refCount(g, rule, n)));
    });
  }

  it("--keep-daily unlimited keeps the newest of every day and the oldest", async () => {
    expect(await keptBy(["--keep-daily", "unlimited", "--tz", "UTC"])).toEqual(expected((g) => refCount(g, "daily", -1)));
  });

  const withins: [string, Period | undefined, string, RefDuration][] = [
    ["--keep-within", undefined, "10d", { days: 10 }],
    ["--keep-within", undefined, "1m2d", { months: 1, days: 2 }],
    ["--keep-within-hourly", "hourly", "2d", { days: 2 }],
    ["--keep-within-daily", "daily", "1m", { months: 1 }],
    ["--keep-within-weekly", "weekly", "3m", { months: 3 }],
    ["--keep-within-monthly", "monthly", "1y", { years: 1 }],
    ["--keep-within-yearly", "yearly", "2y", { years: 2 }],
  ];
  for (const [flag, period, spelled, d] of withins) {
    it(`${flag} ${spelled}, measured from each group's newest`, async () => {
      expect(await keptBy([flag, spelled, "--tz", "UTC", "--keep-min", "0"])).toEqual(expected((g) => refWithin(g, period, d)));
    });
  }

  it("--keep-within follows a stopped machine's own newest snapshot, so it keeps its recent history", async () => {
    const plan = await planOf(["--keep-within", "7d", "--tz", "UTC"]);
    const betaKept = plan.entries.filter((e) => e.host === "beta" && e.action === "keep");
    expect(betaKept.length).toBeGreaterThan(2 * 5);
  });

  it("--keep-tag keeps what has the tag", async () => {
    expect(await keptBy(["--keep-tag", "archive", "--tz", "UTC", "--keep-min", "0"])).toEqual(made.filter((m) => m.tags.includes("archive")).map((m) => m.id).sort());
  });

  it("a combined policy keeps the union of its rules, and names them", async () => {
    const policy = ["--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "12", "--keep-tag", "archive", "--tz", "UTC", "--keep-min", "0"];
    const union = new Set([
      ...expected((g) => refCount(g, "daily", 7)),
      ...expected((g) => refCount(g, "weekly", 4)),
      ...expected((g) => refCount(g, "monthly", 12)),
      ...made.filter((m) => m.tags.includes("archive")).map((m) => m.id),
    ]);
    const plan = await planOf(policy);
    expect(plan.entries.filter((e) => e.action === "keep").map((e) => e.id).sort()).toEqual([...union].sort());
    expect(plan.entries).toHaveLength(made.length);
    const newest = plan.entries.filter((e) => e.host === "alpha" && e.source === SOURCES[0]).at(-1)!;
    expect(newest.reasons).toEqual(["daily snapshot", "weekly snapshot", "monthly snapshot"]);
    expect(newest.group).toBe(`host=alpha source=${SOURCES[0]}`);
  });

  it("--group-by host decides per host, over both sources", async () => {
    const kept = await keptBy(["--keep-last", "3", "--group-by", "host", "--tz", "UTC", "--keep-min", "0"]);
    expect(kept).toEqual(HOSTS.flatMap((h) => [...refCount(made.filter((m) => m.host === h), "last", 3)]).sort());
  });
});

describe("retention timeline: coffer's differences from restic", () => {
  it("counts days in the zone of --tz, printed in the plan, whatever offsets the snapshots were taken at", async () => {
    const kolkata = await planOf(["--keep-daily", "20", "--tz", "Asia/Kolkata", "--keep-min", "0"]);
    expect(kolkata.zone).toBe("Asia/Kolkata");
    const inKolkata = kolkata.entries.filter((e) => e.action === "keep").map((e) => e.id).sort();
    expect(inKolkata).toEqual(expected((g) => refCount(g, "daily", 20, 330)));
    const inUtc = await keptBy(["--keep-daily", "20", "--tz", "UTC", "--keep-min", "0"]);
    expect(inKolkata).not.toEqual(inUtc);
    // The same snapshot, a few minutes before midnight UTC, is of the next day in Kolkata.
    const lateEvening = made.find((m) => new Date(m.ms).getUTCHours() === 23)!;
    expect(refBucket("daily", lateEvening.ms, 330)).not.toBe(refBucket("daily", lateEvening.ms));
    const text = (await run(["prune", "--dry-run", "--keep-daily", "20", "--tz", "Asia/Kolkata"])).stdout;
    expect(text).toContain("time zone: Asia/Kolkata");
  });

  it("counts in the zone's own offsets across daylight saving time", async () => {
    const berlin = await keptBy(["--keep-daily", "unlimited", "--keep-hourly", "unlimited", "--tz", "Europe/Berlin", "--keep-min", "0"]);
    const rule = (g: Made[]) => new Set([...refCount(g, "daily", -1, centralEuropeanOffset), ...refCount(g, "hourly", -1, centralEuropeanOffset)]);
    expect(berlin).toEqual(expected(rule));
    // A fixed +1 h is wrong in summer: late-evening snapshots from April to October fall on other days.
    const daily = await keptBy(["--keep-daily", "unlimited", "--tz", "Europe/Berlin", "--keep-min", "0"]);
    expect(daily).toEqual(expected((g) => refCount(g, "daily", -1, centralEuropeanOffset)));
    expect(daily).not.toEqual(expected((g) => refCount(g, "daily", -1, 60)));
  });

  it("keeps the --keep-min newest of every group whatever the policy (default 1)", async () => {
    const plan = await planOf(["--keep-tag", "nothing-has-this", "--tz", "UTC"]);
    const kept = plan.entries.filter((e) => e.action === "keep");
    expect(kept.map((e) => e.id).sort()).toEqual(expected((g) => refCount(g, "last", 1)));
    for (const e of kept) expect(e.reasons).toEqual(["keep-min 1"]);
    const three = await keptBy(["--keep-yearly", "1", "--keep-min", "3", "--tz", "UTC"]);
    expect(three).toEqual(expected((g) => new Set([...refCount(g, "last", 3), ...refCount(g, "yearly", 1)])));
  });

  it("refuses a policy that keeps nothing, removing nothing", async () => {
    const none = await run(["prune", "--tz", "UTC"], EXIT.USAGE);
    expect(none.stderr).toMatch(/keeps nothing/);
    const empty = await run(["prune", "--keep-tag", "nothing-has-this", "--keep-min", "0", "--tz", "UTC"], EXIT.USAGE);
    expect(empty.stderr).toMatch(/keeps no snapshot of group host=\S+ source=/);
    expect((await planOf(["--keep-last", "1", "--tz", "UTC"])).entries).toHaveLength(made.length);
  });

  it("applied for real, the policy leaves exactly the planned snapshots, and check passes", async () => {
    const policy = ["--keep-daily", "7", "--keep-weekly", "5", "--keep-monthly", "12", "--keep-yearly", "2", "--tz", "Europe/Berlin"];
    const plan = await planOf(policy);
    const applied = JSON.parse((await run(["prune", "--json", ...policy])).stdout) as PlanJson;
    expect(applied.entries.map((e) => [e.id, e.action])).toEqual(plan.entries.map((e) => [e.id, e.action]));
    const listed = (JSON.parse((await run(["ls", "--json"])).stdout) as { id: string }[]).map((x) => x.id).sort();
    expect(listed).toEqual(plan.entries.filter((e) => e.action === "keep").map((e) => e.id).sort());
    await run(["check"]);
  });
});
