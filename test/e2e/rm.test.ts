/**
 * `backup --time/--host`, `rm` and `undelete` through the built CLI, in
 * process (run `npm run build` first), one through the binary: snapshots
 * recorded at a given time and host; rm by ID prefix and by filters, its
 * plan (text and --json), --dry-run writing nothing, the refusal to remove
 * every snapshot without --all; undelete bringing a snapshot back
 * restorable, refused for one not removed, and refused with exit 5 once the
 * data it references is gone; `check` passing after each.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { builtCliExists, coffer, type CofferResult, describeRun, EXIT, expectExit, expectNoStackTrace, FAST_KDF, parseJson } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";

const PASS = "rm test passphrase";
let base = "";
let src = "";
let counter = 0;

const env = () => ({ HOME: path.join(base, "home"), TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: PASS });

async function run(args: string[]): Promise<CofferResult> {
  const r = await cofferInProcess(args, { env: env(), cwd: base, timeoutMs: 60_000 });
  expectNoStackTrace(r);
  return r;
}

const ok = async (args: string[]) => expectExit(await run(args), EXIT.OK);

interface Listed {
  id: string;
  time: string;
  hostname: string;
  source: string;
  tags: string[];
}

interface PlanJson {
  version: number;
  command: string;
  dryRun: boolean;
  keep: number;
  remove: number;
  entries: { id: string; short: string; time: string; host: string; source: string; tags: string[]; action: "keep" | "remove"; reasons: string[] }[];
}

const list = async (repo: string) => parseJson<Listed[]>(await ok(["at", repo, "ls", "--json"]));

/** A repository with four snapshots: host a (tag daily) on March 1, 2 and 3 at 10:00, host b (tag weekly) on March 2 at 12:00 (+01:00). */
async function timeline(): Promise<{ repo: string; ids: string[] }> {
  const repo = path.join(base, `repo-${++counter}`);
  await ok(["at", repo, "create", ...FAST_KDF]);
  const ids: string[] = [];
  for (const [day, host, tag] of [["01T10", "a", "daily"], ["02T10", "a", "daily"], ["03T10", "a", "daily"], ["02T12", "b", "weekly"]] as const) {
    const r = await ok(["at", repo, "backup", "--json", "--time", `2026-03-${day}:00:00+01:00`, "--host", host, "--tag", tag, src]);
    ids.push(parseJson<{ id: string }>(r).id);
  }
  return { repo, ids };
}

beforeAll(async () => {
  if (!builtCliExists()) throw new Error("the CLI is not built: run `npm run build` first");
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-rm-"));
  src = path.join(base, "src");
  await fsp.mkdir(path.join(base, "home"));
  await fsp.mkdir(path.join(base, "tmp"));
  await fsp.mkdir(src);
  await fsp.writeFile(path.join(src, "a.txt"), "hello rm\n");
});

afterAll(async () => {
  if (base) await fsp.rm(base, { recursive: true, force: true });
});

describe("backup --time and --host", () => {
  it("record the snapshot at that time and host; a time without an offset is a usage error", async () => {
    const { repo, ids } = await timeline();
    const l = await list(repo);
    expect(l.map((s) => [s.id, s.time, s.hostname, s.tags])).toEqual([
      [ids[0], "2026-03-01T09:00:00.000Z", "a", ["daily"]],
      [ids[1], "2026-03-02T09:00:00.000Z", "a", ["daily"]],
      [ids[3], "2026-03-02T11:00:00.000Z", "b", ["weekly"]],
      [ids[2], "2026-03-03T09:00:00.000Z", "a", ["daily"]],
    ]);
    for (const bad of ["2026-03-01T10:00:00", "yesterday", "2026-02-30T00:00:00Z"]) {
      const r = expectExit(await run(["at", repo, "backup", "--time", bad, src]), EXIT.USAGE);
      expect(r.stderr).toContain("RFC 3339");
    }
    expect((await list(repo)).length).toBe(4);
  });
});

describe("rm", () => {
  it("removes snapshots named by ID prefix, printing the plan; check passes and the rest restore", async () => {
    const { repo, ids } = await timeline();
    const r = await ok(["at", repo, "rm", ids[0]!.slice(0, 10), ids[3]!.slice(0, 8)]);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(5);
    expect(lines.filter((l) => l.startsWith("remove  ")).map((l) => l.slice(8, 16)).sort()).toEqual([ids[0]!.slice(0, 8), ids[3]!.slice(0, 8)].sort());
    expect(lines.filter((l) => l.startsWith("keep    ")).every((l) => l.endsWith("not named"))).toBe(true);
    expect(lines.at(-1)).toBe("4 snapshots: 2 kept, 2 removed");
    expect((await list(repo)).map((s) => s.id)).toEqual([ids[1], ids[2]]);
    await ok(["at", repo, "check"]);
    const out = path.join(base, `restored-${counter}`);
    await ok(["at", repo, "restore", ids[2]!.slice(0, 8), "--to", out]);
    expect(await fsp.readFile(path.join(out, "a.txt"), "utf8")).toBe("hello rm\n");
    expectExit(await run(["at", repo, "rm", "ffff"]), EXIT.ERROR);
  });

  it("selects by filters; --dry-run writes nothing; --json gives the plan as data", async () => {
    const { repo, ids } = await timeline();
    const dry = parseJson<PlanJson>(await ok(["at", repo, "rm", "--host", "a", "--before", "2026-03-03T00:00:00Z", "--dry-run", "--json"]));
    expect(dry).toMatchObject({ version: 1, command: "rm", dryRun: true, keep: 2, remove: 2 });
    expect(dry.entries.filter((e) => e.action === "remove").map((e) => e.id)).toEqual([ids[0], ids[1]]);
    expect(dry.entries.find((e) => e.id === ids[0])).toMatchObject({ short: ids[0]!.slice(0, 8), host: "a", source: src, tags: ["daily"], time: "2026-03-01T09:00:00.000Z" });
    expect(dry.entries.find((e) => e.id === ids[0])!.reasons[0]).toMatch(/^matches --host a --before /);
    expect((await list(repo)).length).toBe(4);
    const text = await ok(["at", repo, "rm", "--tag", "daily", "--latest", "1", "--dry-run"]);
    expect(text.stdout).toContain(`remove  ${ids[2]!.slice(0, 8)}`);
    expect(text.stdout.trim().split("\n").at(-1)).toBe("4 snapshots: 3 kept, 1 to remove (dry run: nothing removed)");
    const done = parseJson<PlanJson>(await ok(["at", repo, "rm", "--tag", "weekly", "--source", src, "--json"]));
    expect(done).toMatchObject({ dryRun: false, remove: 1 });
    expect((await list(repo)).map((s) => s.id)).toEqual([ids[0], ids[1], ids[2]]);
    await ok(["at", repo, "check"]);
  });

  it("refuses filters that select every snapshot unless --all; names and filters together, or neither, are usage errors", async () => {
    const { repo, ids } = await timeline();
    const refused = expectExit(await run(["at", repo, "rm", "--before", "2027-01-01"]), EXIT.USAGE);
    expect(refused.stderr).toContain("--all");
    expect((await list(repo)).length).toBe(4);
    expectExit(await run(["at", repo, "rm"]), EXIT.USAGE);
    expectExit(await run(["at", repo, "rm", ids[0]!.slice(0, 8), "--host", "a"]), EXIT.USAGE);
    expectExit(await run(["at", repo, "rm", "--latest", "0"]), EXIT.USAGE);
    expectExit(await run(["at", repo, "rm", "--before", "soon"]), EXIT.USAGE);
    await ok(["at", repo, "rm", "--before", "2027-01-01", "--all"]);
    expect(await list(repo)).toEqual([]);
    await ok(["at", repo, "check"]);
  });
});

describe("undelete", () => {
  it("takes a removal back (the snapshot restores); a later rm wins; a snapshot not removed is refused", async () => {
    const { repo, ids } = await timeline();
    await ok(["at", repo, "rm", ids[1]!.slice(0, 8)]);
    const j = parseJson<{ id: string; removedWhy: string }>(await ok(["at", repo, "undelete", ids[1]!.slice(0, 8), "--json"]));
    expect(j).toMatchObject({ id: ids[1], removedWhy: "rm: named on the command line" });
    expect((await list(repo)).map((s) => s.id)).toContain(ids[1]);
    const out = path.join(base, `undeleted-${counter}`);
    await ok(["at", repo, "restore", ids[1]!.slice(0, 8), "--to", out]);
    expect(await fsp.readFile(path.join(out, "a.txt"), "utf8")).toBe("hello rm\n");
    await ok(["at", repo, "check"]);
    const again = expectExit(await run(["at", repo, "undelete", ids[1]!.slice(0, 8)]), EXIT.ERROR);
    expect(again.stderr).toContain("is not removed");
    await ok(["at", repo, "rm", ids[1]!.slice(0, 8)]);
    expect((await list(repo)).map((s) => s.id)).not.toContain(ids[1]);
    const text = await ok(["at", repo, "undelete", ids[1]!.slice(0, 8)]);
    expect(text.stdout).toMatch(new RegExp(`^undeleted ${ids[1]!.slice(0, 8)} \\(removed at `));
  });

  it("ls --removed lists removed snapshots with when and why; an undeleted one leaves the list", async () => {
    const { repo, ids } = await timeline();
    expect(parseJson<unknown[]>(await ok(["at", repo, "ls", "--removed", "--json"]))).toEqual([]);
    await ok(["at", repo, "rm", ids[0]!.slice(0, 8), ids[3]!.slice(0, 8)]);
    type Removed = { id: string; hostname: string; tags: string[]; removed: { time: string; why: string } };
    const rows = parseJson<Removed[]>(await ok(["at", repo, "ls", "--removed", "--json"]));
    expect(rows.map((r) => r.id).sort()).toEqual([ids[0], ids[3]].sort());
    const b = rows.find((r) => r.id === ids[3])!;
    expect(b).toMatchObject({ hostname: "b", tags: ["weekly"], removed: { why: "rm: named on the command line" } });
    expect(Number.isNaN(Date.parse(b.removed.time))).toBe(false);
    const text = await ok(["at", repo, "ls", "--removed"]);
    expect(text.stdout.trim().split("\n")).toHaveLength(2);
    expect(text.stdout).toMatch(new RegExp(`^${ids[3]!.slice(0, 8)} .* removed .*: rm: named on the command line$`, "m"));
    await ok(["at", repo, "undelete", ids[3]!.slice(0, 8)]);
    expect(parseJson<Removed[]>(await ok(["at", repo, "ls", "--removed", "--json"])).map((r) => r.id)).toEqual([ids[0]]);
    expectExit(await run(["at", repo, "ls", "--removed", ids[0]!.slice(0, 8)]), EXIT.USAGE);
  });

  it("fails with exit 5, naming what is gone, once the snapshot's data is no longer in the repository", async () => {
    const { repo, ids } = await timeline();
    await ok(["at", repo, "rm", ids[0]!.slice(0, 8)]);
    // As if reclaimed: the packfiles go, and a backup of other data records them missing.
    for (const d of await fsp.readdir(path.join(repo, "packfiles"), { recursive: true, withFileTypes: true })) {
      if (d.isFile()) await fsp.rm(path.join(d.parentPath, d.name));
    }
    const other = path.join(base, `other-${counter}`);
    await fsp.mkdir(other);
    await fsp.writeFile(path.join(other, "b.txt"), "other data\n");
    await run(["at", repo, "backup", other]);
    const r = expectExit(await run(["at", repo, "undelete", ids[0]!.slice(0, 8)]), EXIT.RECLAIMED);
    expect(r.stderr, describeRun(r)).toMatch(/reclaimed or marked for reclaiming by maintenance \(snapshot blob [0-9a-f]{16}/);
    const listed = parseJson<{ id: string; unreadable?: string }[]>(await ok(["at", repo, "ls", "--removed", "--json"]));
    expect(listed).toEqual([expect.objectContaining({ id: ids[0], unreadable: expect.any(String) })]);
  });

  it("through the binary: rm and undelete", async () => {
    const { repo, ids } = await timeline();
    const e = { env: env(), cwd: base };
    expectExit(await coffer(["at", repo, "rm", ids[2]!.slice(0, 8)], e), EXIT.OK);
    expectExit(await coffer(["at", repo, "undelete", ids[2]!.slice(0, 8)], e), EXIT.OK);
    expect((await list(repo)).map((s) => s.id)).toContain(ids[2]);
  });
});
