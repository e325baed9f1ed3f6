/**
 * `diff` and `locate` through the built CLI, in process (and `diff` once
 * through the binary): three snapshots of a tree that gains, loses and
 * changes files, changes a symlink's target, a mode and a type, and holds
 * a name that is not UTF-8; the human output (restic's markers and
 * summary), --metadata, SNAP:PATH, --json, and locate's grouping by path
 * with --snapshot and --latest.
 */
import { chmodSync, mkdirSync, promises as fsp, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { coffer, describeRun, EXIT, expectExit, FAST_KDF, lines, parseJson } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";

const env = { COFFER_PASSPHRASE: "compare me" };
const LATIN = Buffer.from("lat\xe9", "latin1");
const LATIN_SHOWN = "lat\\351";

let base = "";
let repo = "";
/** Short IDs of the snapshots, oldest first. */
let ids: string[] = [];

const run = (...args: string[]) => cofferInProcess(["at", repo, ...args], { env });

async function backup(src: string): Promise<void> {
  expectExit(await run("backup", src), EXIT.OK);
}

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-diff-"));
  repo = path.join(base, "repo");
  const src = path.join(base, "src");
  const p = (rel: string) => path.join(src, rel);
  mkdirSync(p("sub"), { recursive: true });
  mkdirSync(p("keep/deep"), { recursive: true });
  writeFileSync(p("changed"), "one");
  writeFileSync(p("gone"), "bye");
  writeFileSync(p("sub/file"), "same");
  writeFileSync(p("keep/deep/report.pdf"), "pdf");
  writeFileSync(p("typed"), "a file first");
  symlinkSync("a", p("link"));
  writeFileSync(Buffer.concat([Buffer.from(`${src}/`), LATIN]), "x");
  expectExit(await run("create", ...FAST_KDF), EXIT.OK);
  await backup(src);

  writeFileSync(p("changed"), "two, longer");
  rmSync(p("gone"));
  writeFileSync(p("added.pdf"), "new");
  rmSync(p("link"));
  symlinkSync("b", p("link"));
  rmSync(p("typed"));
  mkdirSync(p("typed"));
  writeFileSync(p("typed/in"), "inside");
  chmodSync(p("sub/file"), 0o600);
  writeFileSync(Buffer.concat([Buffer.from(`${src}/`), LATIN]), "xy");
  await backup(src);

  writeFileSync(p("keep/deep/report.pdf"), "pdf, revised");
  await backup(src);

  const listed = parseJson<{ short: string }[]>(expectExit(await run("ls", "--json"), EXIT.OK));
  ids = listed.map((s) => s.short);
  expect(ids).toHaveLength(3);
});
afterAll(async () => {
  if (base) await fsp.rm(base, { recursive: true, force: true });
});

describe("diff", () => {
  it("prints one line per change with restic's markers, then the summary", async () => {
    const r = expectExit(await run("diff", ids[0]!, ids[1]!), EXIT.OK);
    const out = r.stdout.split("\n");
    expect(out[0]).toBe(`comparing snapshot ${ids[0]} to ${ids[1]}:`);
    expect(out[1]).toBe("");
    const changes = out.slice(2, out.indexOf("", 2));
    expect(changes).toEqual(["+    /added.pdf", "M    /changed", "-    /gone", `M    /${LATIN_SHOWN}`, "M    /link", "T    /typed/", "+    /typed/in"]);
    expect(r.stdout).toMatch(/^Files: +2 new, +1 removed, +2 changed$/m);
    expect(r.stdout).toMatch(/^Dirs: +0 new, +0 removed$/m);
    expect(r.stdout).toMatch(/^Data Blobs: +4 new, +4 removed$/m);
    expect(r.stdout).toMatch(/^Changes: +\+ 2, - 1, M 3, U 0, T 1, \? 0$/m);
    expect(r.stdout).toMatch(/^ {2}Added: +\d/m);
    expect(r.stdout).toMatch(/^ {2}Removed: +\d/m);
    // eslint-disable-next-line no-control-regex
    expect(r.stdout).not.toMatch(/[\ufffd\u0000-\u0009\u000b-\u001f]/);
  });

  it("adds metadata-only changes with --metadata", async () => {
    const plain = expectExit(await run("diff", ids[0]!, ids[1]!), EXIT.OK);
    expect(plain.stdout).not.toContain("/sub/file");
    const r = expectExit(await run("diff", "--metadata", ids[0]!, ids[1]!), EXIT.OK);
    expect(lines(r.stdout)).toContain("U    /sub/file");
    expect(r.stdout).toMatch(/U 1, T 1/);
  });

  it("compares directories given as SNAP:PATH, with paths relative to them", async () => {
    const r = expectExit(await run("diff", "--metadata", `${ids[0]}:/sub`, `${ids[1]}:sub/`), EXIT.OK);
    expect(lines(r.stdout).filter((l) => /^[-+MUT?] /.test(l))).toEqual(["U    /file"]);
    const deep = expectExit(await run("diff", `${ids[1]}:/keep`, "latest:/keep"), EXIT.OK);
    expect(lines(deep.stdout).filter((l) => /^[-+MUT?] /.test(l))).toEqual(["M    /deep/report.pdf"]);
  });

  it("prints nothing but the summary for a snapshot compared with itself", async () => {
    const r = expectExit(await run("diff", ids[2]!, "latest"), EXIT.OK);
    expect(r.stdout).toMatch(/Changes: +\+ 0, - 0, M 0, U 0, T 0, \? 0/);
    expect(r.stdout).toMatch(/Tree Blobs: +0 new, +0 removed/);
  });

  it("gives NDJSON with --json: a change line per path, then the summary", async () => {
    const r = expectExit(await run("diff", "--json", ids[0]!, ids[1]!), EXIT.OK);
    const rows = lines(r.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = rows.pop()!;
    expect(rows.every((x) => x.type === "change")).toBe(true);
    expect(rows.map((x) => `${x.modifier as string} ${x.path as string}`)).toEqual(["+ /added.pdf", "M /changed", "- /gone", "M /lat\ufffd", "M /link", "T /typed/", "+ /typed/in"]);
    expect(rows.find((x) => x.path === "/lat\ufffd")).toMatchObject({ kind: "file", raw_path: Buffer.concat([Buffer.from("/"), LATIN]).toString("base64") });
    expect(rows.find((x) => x.path === "/typed/")).toMatchObject({ kind: "dir", was: "file" });
    expect(rows.find((x) => x.path === "/link")).toMatchObject({ kind: "symlink" });
    expect(rows.find((x) => x.path === "/changed")).not.toHaveProperty("raw_path");
    expect(summary).toMatchObject({
      type: "summary",
      changedFiles: 2,
      added: { files: 2, dirs: 0, others: 0, dataBlobs: 4 },
      removed: { files: 1, dirs: 0, others: 0, dataBlobs: 4 },
      markers: { "+": 2, "-": 1, M: 3, U: 0, T: 1, "?": 0 },
    });
    expect(summary.from).toMatch(new RegExp(`^${ids[0]}[0-9a-f]{56}$`));
    expect(summary.to).toMatch(new RegExp(`^${ids[1]}[0-9a-f]{56}$`));
    expect((summary.added as { bytes: number }).bytes).toBeGreaterThan(0);
  });

  it("fails with exit 1 naming a path that is not in a snapshot", async () => {
    const r = expectExit(await run("diff", `${ids[0]}:/nowhere`, ids[1]!), EXIT.ERROR);
    expect(r.stderr).toMatch(/\/nowhere: no such file or directory/);
  });

  it("runs the same through the binary", async () => {
    const inProcess = expectExit(await run("diff", ids[0]!, ids[1]!), EXIT.OK);
    const r = expectExit(await coffer(["at", repo, "diff", ids[0]!, ids[1]!], { env }), EXIT.OK);
    expect(r.stdout, describeRun(r)).toBe(inProcess.stdout);
  });
});

describe("locate", () => {
  it("lists each matching path with the snapshots that hold it, oldest first", async () => {
    const r = expectExit(await run("locate", "*.pdf"), EXIT.OK);
    const out = lines(r.stdout);
    expect(out.filter((l) => l.startsWith("/"))).toEqual(["/added.pdf", "/keep/deep/report.pdf"]);
    const under = (p: string) => {
      const rows: string[] = [];
      for (let k = out.indexOf(p) + 1; k < out.length && out[k]!.startsWith("  "); k++) rows.push(out[k]!.trim().split(/\s+/)[0]!);
      return rows;
    };
    expect(under("/added.pdf")).toEqual([ids[1], ids[2]]);
    expect(under("/keep/deep/report.pdf")).toEqual(ids);
    expect(out[out.indexOf("/keep/deep/report.pdf") + 1]).toMatch(/^ {2}[0-9a-f]{8} {2}\d{4}-\d\d-\d\d \d\d:\d\d:\d\d {2}file +3 {2}\d{4}-/);
  });

  it("matches a pattern with / against the full path, and prints names as ls does", async () => {
    const r = expectExit(await run("locate", "keep/**", LATIN_SHOWN), EXIT.OK);
    expect(lines(r.stdout).filter((l) => l.startsWith("/"))).toEqual(["/keep/deep", "/keep/deep/report.pdf", `/${LATIN_SHOWN}`]);
  });

  it("searches only the snapshots named with --snapshot, or the N newest with --latest", async () => {
    const named = expectExit(await run("locate", "--snapshot", ids[0]!, "--snapshot", ids[2]!, "--snapshot", ids[0]!, "report.pdf"), EXIT.OK);
    expect(lines(named.stdout).map((l) => l.trim().split(/\s+/)[0])).toEqual(["/keep/deep/report.pdf", ids[0], ids[2]]);
    const latest = expectExit(await run("locate", "--latest", "2", "gone", "in"), EXIT.OK);
    expect(lines(latest.stdout).map((l) => l.trim().split(/\s+/)[0])).toEqual(["/typed/in", ids[1], ids[2]]);
  });

  it("prints nothing and succeeds when nothing matches", async () => {
    const r = expectExit(await run("locate", "no-such-*"), EXIT.OK);
    expect(r.stdout).toBe("");
  });

  it("gives JSON with --json: one object per path, its snapshots with the entry's type, size and mtime", async () => {
    const r = expectExit(await run("locate", "--json", "report.pdf", "lat?"), EXIT.OK);
    const rows = parseJson<{ path: string; raw_path?: string; snapshots: { id: string; short: string; time: string; type: string; size: number; mtime: string }[] }[]>(r);
    expect(rows.map((x) => x.path)).toEqual(["/keep/deep/report.pdf", "/lat\ufffd"]);
    expect(rows[0]!.snapshots.map((s) => [s.short, s.size])).toEqual([
      [ids[0], 3],
      [ids[1], 3],
      [ids[2], 12],
    ]);
    expect(rows[0]!.snapshots[0]).toMatchObject({ type: "file", time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), mtime: expect.stringMatching(/Z$/) });
    expect(rows[0]!.snapshots[0]!.id).toMatch(new RegExp(`^${ids[0]}[0-9a-f]{56}$`));
    expect(rows[1]!.raw_path).toBe(Buffer.concat([Buffer.from("/"), LATIN]).toString("base64"));
  });

  it("refuses a --latest that is not a positive number", async () => {
    const r = expectExit(await run("locate", "--latest", "0", "x"), EXIT.USAGE);
    expect(r.stderr).toMatch(/--latest takes a positive number/);
  });
});
