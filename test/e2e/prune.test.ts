/**
 * `coffer prune` as a user runs it (the BUILT CLI, in process; one case
 * through the binary): the plan printed and as --json, --dry-run, the
 * removal itself (check passes, kept snapshots restore, the removal can be
 * taken back), --plan/--apply and the refusal of a plan the repository no
 * longer matches (exit code 4), and usage errors. The policy rules in depth:
 * test/unit/retention.test.ts and test/integration/retention-timeline.test.ts.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { coffer, describeRun, EXIT, FAST_KDF } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";

const PASS = "prune e2e";
let base: string;
let src: string;
const env = () => ({ COFFER_PASSPHRASE: PASS, XDG_CACHE_HOME: path.join(base, "cache") });

async function run(repo: string, args: string[], code: number = EXIT.OK) {
  const r = await cofferInProcess(["at", repo, ...args], { env: env(), cwd: base });
  expect(r.exitCode, describeRun(r)).toBe(code);
  return r;
}

interface PlanJson {
  version: number;
  command: string;
  zone: string;
  dryRun: boolean;
  keep: number;
  remove: number;
  policy: string;
  groupBy: string[];
  planFile?: string;
  entries: { id: string; short: string; time: string; host: string; source: string; tags: string[]; action: "keep" | "remove"; reasons: string[]; group?: string }[];
}

const json = (r: { stdout: string }) => JSON.parse(r.stdout) as PlanJson;
const kept = (p: PlanJson) => p.entries.filter((e) => e.action === "keep").map((e) => e.id);
const removed = (p: PlanJson) => p.entries.filter((e) => e.action === "remove").map((e) => e.id);

/** The IDs `ls` lists. */
async function listed(repo: string): Promise<string[]> {
  return (JSON.parse((await run(repo, ["ls", "--json"])).stdout) as { id: string }[]).map((s) => s.id);
}

/** A backup of `src` recorded at `time` by `host`; its ID. */
async function backupAt(repo: string, time: string, host: string, tags: string[] = []): Promise<string> {
  const r = await run(repo, ["backup", "--json", "--time", time, "--host", host, ...tags.flatMap((t) => ["--tag", t]), src]);
  return (JSON.parse(r.stdout) as { id: string }).id;
}

/** A repository with host a's four days (two on March 3) and host b's two. */
async function timeline(name: string): Promise<{ repo: string; a: string[]; b: string[] }> {
  const repo = path.join(base, name);
  await run(repo, ["create", ...FAST_KDF]);
  const a = [];
  for (const t of ["2026-03-01T10:00:00Z", "2026-03-02T10:00:00Z", "2026-03-03T08:00:00Z", "2026-03-03T20:00:00Z"]) a.push(await backupAt(repo, t, "a"));
  const b = [await backupAt(repo, "2026-03-01T12:00:00Z", "b", ["keep"]), await backupAt(repo, "2026-03-02T12:00:00Z", "b")];
  return { repo, a, b };
}

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-prune-e2e-"));
  src = path.join(base, "src");
  await fsp.mkdir(src);
  await fsp.writeFile(path.join(src, "a.txt"), "pruned or kept\n");
}, 60_000);

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

describe("prune", () => {
  it("prints the plan with --dry-run and removes nothing", async () => {
    const { repo, a, b } = await timeline("dry");
    const r = await run(repo, ["prune", "--dry-run", "--keep-daily", "1", "--tz", "UTC"]);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("policy: keep 1 daily snapshots; at least 1 per group");
    expect(lines[1]).toBe("grouped by: host,source");
    expect(lines).toContain("time zone: UTC");
    expect(lines).toContain(`group host=a source=${src}:`);
    expect(lines.find((l) => l.includes(a[3]!.slice(0, 8)))).toMatch(/^keep +\S+ +2026-03-03 20:00:00 +a .*daily snapshot$/);
    expect(lines.find((l) => l.includes(a[0]!.slice(0, 8)))).toMatch(/^remove +\S+ +2026-03-01 10:00:00 /);
    expect(lines.at(-1)).toBe("6 snapshots: 2 kept, 4 to remove (dry run: nothing removed)");
    expect((await listed(repo)).sort()).toEqual([...a, ...b].sort());
  });

  it("--json gives the plan as data, every snapshot with its action and rules", async () => {
    const { repo, a, b } = await timeline("json");
    const p = json(await run(repo, ["prune", "--dry-run", "--json", "--keep-last", "1", "--keep-tag", "keep", "--tz", "Europe/Paris"]));
    expect(p).toMatchObject({ version: 1, command: "prune", zone: "Europe/Paris", dryRun: true, keep: 3, remove: 3, groupBy: ["host", "source"] });
    expect(p.policy).toBe("keep 1 latest snapshots, all snapshots with tags keep; at least 1 per group");
    expect(kept(p).sort()).toEqual([a[3]!, b[0]!, b[1]!].sort());
    const e = p.entries.find((x) => x.id === b[0])!;
    expect(e).toMatchObject({ short: b[0]!.slice(0, 8), time: "2026-03-01T12:00:00.000Z", host: "b", source: src, tags: ["keep"], reasons: ["has tags keep"], group: `host=b source=${src}` });
    expect(p.entries.find((x) => x.id === a[0])!.reasons).toEqual(["kept by no rule of the policy"]);
  });

  it("removes what the policy does not keep: check passes, the kept restore, a removed one can be taken back", async () => {
    const { repo, a, b } = await timeline("real");
    const p = json(await run(repo, ["prune", "--json", "--keep-daily", "2", "--tz", "UTC"]));
    expect(p.dryRun).toBe(false);
    // a: the 3rd (newest of two on March 3) and the 2nd; b keeps both days.
    expect(kept(p).sort()).toEqual([a[3]!, a[1]!, b[0]!, b[1]!].sort());
    expect((await listed(repo)).sort()).toEqual(kept(p).sort());
    await run(repo, ["check", "--read-data"]);
    const to = path.join(base, "restored");
    await run(repo, ["restore", `${a[3]!.slice(0, 12)}:/`, "--to", to]);
    expect(await fsp.readFile(path.join(to, "a.txt"), "utf8")).toBe("pruned or kept\n");
    // Again: nothing more to remove.
    expect(json(await run(repo, ["prune", "--json", "--keep-daily", "2", "--tz", "UTC"])).remove).toBe(0);
    expect((await run(repo, ["undelete", a[0]!.slice(0, 12)])).stdout).toContain("prune: kept by no rule of the policy");
    expect(await listed(repo)).toContain(a[0]);
  });

  it("--plan writes the plan and removes nothing; --apply removes exactly it", async () => {
    const { repo, a, b } = await timeline("plan");
    const file = path.join(base, "plan.json");
    const p = json(await run(repo, ["prune", "--json", "--plan", "plan.json", "--keep-last", "1", "--tz", "UTC"]));
    expect(p).toMatchObject({ dryRun: true, planFile: "plan.json" });
    const doc = JSON.parse(await fsp.readFile(file, "utf8")) as { format: string; version: number; repository: string; groupBy: string[]; plan: PlanJson };
    expect(doc).toMatchObject({ format: "coffer prune plan", version: 1, groupBy: ["host", "source"] });
    expect(doc.plan.entries.map((e) => e.id)).toEqual(p.entries.map((e) => e.id));
    expect((await listed(repo)).sort()).toEqual([...a, ...b].sort());
    // A snapshot of a host the plan does not cover changes nothing of it.
    const other = await backupAt(repo, "2026-03-05T10:00:00Z", "c");
    const applied = json(await run(repo, ["prune", "--json", "--apply", "plan.json"]));
    expect(applied).toMatchObject({ dryRun: false, zone: "UTC", policy: p.policy });
    expect(removed(applied).sort()).toEqual(removed(p).sort());
    expect((await listed(repo)).sort()).toEqual([a[3]!, b[1]!, other].sort());
  });

  it("--apply refuses, with exit code 4, a plan the repository no longer matches", async () => {
    const { repo, a } = await timeline("stale");
    await run(repo, ["prune", "--plan", "stale.json", "--keep-last", "2", "--tz", "UTC"]);
    const newer = await backupAt(repo, "2026-03-04T10:00:00Z", "a");
    const r = await run(repo, ["prune", "--apply", "stale.json"], EXIT.PLAN_CHANGED);
    expect(r.stderr).toContain(`snapshot ${newer.slice(0, 8)} is new in group host=a source=${src}`);
    expect(await listed(repo)).toHaveLength(7);

    await run(repo, ["prune", "--plan", "gone.json", "--keep-last", "2", "--tz", "UTC"]);
    await run(repo, ["prune", "--keep-last", "1", "--tz", "UTC"]);
    const g = await run(repo, ["prune", "--apply", "gone.json"], EXIT.PLAN_CHANGED);
    expect(g.stderr).toContain(`snapshot ${a[3]!.slice(0, 8)} (planned to be kept) is gone or already removed`);
  });

  it("--host, --tag and --source limit the snapshots the policy sees; the others are left alone, also by --apply", async () => {
    const { repo, a, b } = await timeline("filtered");
    const p = json(await run(repo, ["prune", "--json", "--host", "a", "--keep-last", "1", "--group-by", "", "--tz", "UTC"]));
    expect(p.entries.map((e) => e.id).sort()).toEqual([...a].sort());
    expect(kept(p)).toEqual([a[3]]);
    expect(p).toMatchObject({ only: "--host a" });
    expect((await listed(repo)).sort()).toEqual([a[3]!, ...b].sort());
    // --tag: only b's tagged snapshot is considered, and keep-min keeps it.
    const t = json(await run(repo, ["prune", "--json", "--tag", "keep", "--keep-last", "1", "--tz", "UTC"]));
    expect(t.entries.map((e) => e.id)).toEqual([b[0]]);
    expect(await run(repo, ["prune", "--source", "/nowhere", "--keep-last", "1", "--tz", "UTC"])).toMatchObject({ exitCode: 0 });
    expect((await listed(repo)).sort()).toEqual([a[3]!, ...b].sort());
    // A plan made for host b only: a new snapshot of host a does not alter it, and applying it leaves a alone.
    await run(repo, ["prune", "--plan", "only-b.json", "--host", "b", "--keep-last", "1", "--group-by", "", "--tz", "UTC"]);
    const doc = JSON.parse(await fsp.readFile(path.join(base, "only-b.json"), "utf8")) as { filter: unknown };
    expect(doc.filter).toEqual({ tags: [], hosts: ["b"], sources: [] });
    const newA = await backupAt(repo, "2026-03-06T10:00:00Z", "a");
    const applied = json(await run(repo, ["prune", "--json", "--apply", "only-b.json"]));
    expect(removed(applied)).toEqual([b[0]]);
    expect((await listed(repo)).sort()).toEqual([a[3]!, b[1]!, newA].sort());
    expect((await run(repo, ["prune", "--apply", "only-b.json", "--host", "a"], EXIT.USAGE)).stderr).toContain("--apply takes the policy");
  });

  it("--apply takes no policy, and refuses a file that is not a plan of this repository", async () => {
    const { repo } = await timeline("bad-apply");
    await run(repo, ["prune", "--plan", "mine.json", "--keep-last", "1", "--tz", "UTC"]);
    expect((await run(repo, ["prune", "--apply", "mine.json", "--keep-last", "1"], EXIT.USAGE)).stderr).toContain("--apply takes the policy and the snapshots it covers from its plan");
    const doc = JSON.parse(await fsp.readFile(path.join(base, "mine.json"), "utf8")) as { version: number; repository: string };
    await fsp.writeFile(path.join(base, "v9.json"), JSON.stringify({ ...doc, version: 9 }));
    expect((await run(repo, ["prune", "--apply", "v9.json"], EXIT.USAGE)).stderr).toContain("version 9");
    await fsp.writeFile(path.join(base, "elsewhere.json"), JSON.stringify({ ...doc, repository: "00".repeat(32) }));
    expect((await run(repo, ["prune", "--apply", "elsewhere.json"], EXIT.USAGE)).stderr).toContain("the plan is for repository");
    await fsp.writeFile(path.join(base, "junk.json"), "{ not json");
    expect((await run(repo, ["prune", "--apply", "junk.json"], EXIT.USAGE)).stderr).toContain("not JSON");
    expect(await listed(repo)).toHaveLength(6);
  });

  it("refuses bad options with a usage error, and says where space is reclaimed", async () => {
    const { repo } = await timeline("usage");
    for (const [args, says] of [
      [["--keep-daily", "x"], "--keep-daily"],
      [["--keep-within", "3w"], "--keep-within"],
      [["--keep-last", "1", "--tz", "Mars/Olympus"], "unknown time zone"],
      [["--keep-last", "1", "--group-by", "os"], "--group-by"],
      [[], "keeps nothing"],
    ] as const) {
      expect((await run(repo, ["prune", ...args], EXIT.USAGE)).stderr).toContain(says);
    }
    expect((await run(repo, ["prune", "--help"])).stdout).toContain("coffer maintenance");
  });

  it("through the binary: a stale plan exits 4", async () => {
    const { repo } = await timeline("binary");
    await run(repo, ["prune", "--plan", "bin.json", "--keep-last", "1", "--tz", "UTC"]);
    await backupAt(repo, "2026-03-09T10:00:00Z", "b");
    const r = await coffer(["at", repo, "prune", "--apply", "bin.json"], { env: env(), cwd: base });
    expect(r.exitCode, describeRun(r)).toBe(EXIT.PLAN_CHANGED);
    expect(r.stderr).toMatch(/changed since the plan was made/);
  });
});
