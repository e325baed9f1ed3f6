/**
 * End-to-end runs of the built CLI through the connector layer: stdin ->
 * cat/stdout, option validation, and a NEEDACK importer (a separate
 * process on the built library) killed mid-backup: every record it was
 * told is stored can be restored afterwards.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createReadStream, existsSync, promises as fsp, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CofferResult, describeRun, type Env, EXIT, expectExit, expectNoStackTrace, FAST_KDF, PROJECT_ROOT, parseJson } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";
import { prng } from "../helpers/prng.js";
import { compareTrees, makeAwkwardTree, walkTree } from "../helpers/tree.js";

const PASS = "connectors-e2e";
let base: string;
let n = 0;

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-conn-"));
  await fsp.mkdir(path.join(base, "tmp"));
});
afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

const fresh = (what: string) => path.join(base, `${what}-${++n}`);

function env(extra: Env = {}): Env {
  return { HOME: base, TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: PASS, ...extra };
}

async function run(args: string[], o: { input?: Buffer | string; code?: number } = {}): Promise<CofferResult> {
  const r = await cofferInProcess(args, { env: env(), cwd: base, ...(o.input !== undefined ? { input: o.input } : {}) });
  expectNoStackTrace(r);
  return expectExit(r, o.code ?? EXIT.OK);
}

async function newRepo(): Promise<string> {
  const repo = fresh("repo");
  await run(["at", repo, "create", ...FAST_KDF]);
  return repo;
}

interface SnapJson {
  id: string;
  short: string;
  partial?: boolean;
  files: number;
  source: string;
}

describe("stdin and stdout", () => {
  it("stdin:NAME stores the piped bytes; cat and restore --to stdout: give them back byte-identical", async () => {
    const repo = await newRepo();
    const data = Buffer.from(prng(7, 3 * 1024 * 1024 + 12345));
    const b = parseJson<{ id: string; files: number }>(await run(["at", repo, "backup", "--json", "stdin:dumps/db.sql"], { input: data }));
    expect(b.files).toBe(1);
    const cat = await run(["at", repo, "cat", `${b.id.slice(0, 8)}:/dumps/db.sql`]);
    expect(cat.stdoutBytes.equals(data), describeRun(cat, 200)).toBe(true);
    const out = await run(["at", repo, "restore", "-q", "--to", "stdout:", `${b.id.slice(0, 8)}:/dumps`]);
    expect(out.stdoutBytes.equals(data)).toBe(true);
    const ls = parseJson<SnapJson[]>(await run(["at", repo, "ls", "--json"]));
    expect(ls.map((s) => s.source)).toEqual(["stdin:/dumps/db.sql"]);
  });

  it("an empty stdin is an empty file", async () => {
    const repo = await newRepo();
    const b = parseJson<{ id: string }>(await run(["at", repo, "backup", "--json", "stdin:empty"], { input: "" }));
    const cat = await run(["at", repo, "cat", `${b.id.slice(0, 8)}:/empty`]);
    expect(cat.stdoutBytes.byteLength).toBe(0);
  });
});

describe("locations and options", () => {
  it("an unknown protocol is a usage error naming it and the known ones", async () => {
    const repo = await newRepo();
    const r = await run(["at", repo, "backup", "nosuch:thing"], { code: EXIT.USAGE });
    expect(r.stderr).toContain('"nosuch:"');
    expect(r.stderr).toContain("stdin:");
    const r2 = await run(["at", "nosuch://x", "ls"], { code: EXIT.USAGE });
    expect(r2.stderr).toContain("nosuch");
  });

  it("-o options are validated before anything runs, naming the parameter", async () => {
    const repo = await newRepo();
    const src = fresh("src");
    await fsp.mkdir(src);
    const bad = await run(["at", repo, "backup", "-o", "colour=blue", src], { code: EXIT.USAGE });
    expect(bad.stderr).toContain('"colour"');
    expect(bad.stderr).toContain("one_file_system");
    const badValue = await run(["at", repo, "backup", "-o", "one_file_system=perhaps", src], { code: EXIT.USAGE });
    expect(badValue.stderr).toContain("one_file_system");
    expect(badValue.stderr).toContain("true or false");
    const malformed = await run(["at", repo, "backup", "-o", "novalue", src], { code: EXIT.USAGE });
    expect(malformed.stderr).toContain("KEY=VALUE");
    const badStore = await run(["--store-opt", "x=1", "at", repo, "ls"], { code: EXIT.USAGE });
    expect(badStore.stderr).toContain('"x"');
    // Nothing was stored by the refused runs.
    expect(parseJson<SnapJson[]>(await run(["at", repo, "ls", "--json"]))).toEqual([]);
    await run(["at", repo, "backup", "-q", "-o", "one_file_system=true", src]);
    expect(parseJson<SnapJson[]>(await run(["at", repo, "ls", "--json"]))).toHaveLength(1);
  });

  it("restore -o is validated for the exporter", async () => {
    const repo = await newRepo();
    await run(["at", repo, "backup", "-q", "stdin:x"], { input: "hello" });
    const r = await run(["at", repo, "restore", "--to", fresh("out"), "-o", "owners=sometimes"], { code: EXIT.USAGE });
    expect(r.stderr).toContain('"owners"');
  });
});

describe("tar: archive -> snapshot -> archive", () => {
  const gnuTar = (...args: string[]) => execFileSync("tar", args, { stdio: ["ignore", "pipe", "pipe"] });

  it("GNU tar extracts what coffer restores from a backed-up archive with the same contents, modes, mtimes, owners, links and xattrs", async () => {
    const src = fresh("awkward");
    await makeAwkwardTree(src);
    // GNU tar cannot archive sockets; everything else must come back.
    const sockets = new Set([...(await walkTree(src)).values()].filter((e) => e.kind === "socket").map((e) => e.rel));
    const inTar = fresh("in.tar");
    gnuTar("--format=pax", "--xattrs", "--xattrs-include=*", "-C", src, "-cf", inTar, ".");
    const repo = await newRepo();
    const b = parseJson<{ id: string; errors: number }>(await run(["at", repo, "backup", "--json", `tar:${inTar}`]));
    expect(b.errors).toBe(0);
    const snaps = parseJson<SnapJson[]>(await run(["at", repo, "ls", "--json"]));
    expect(snaps[0]!.source).toContain(inTar);

    const outTar = fresh("out.tar");
    await run(["at", repo, "restore", "-q", "--to", `tar:${outTar}`, b.id.slice(0, 8)]);
    const x = fresh("extracted");
    await fsp.mkdir(x);
    gnuTar("--xattrs", "--xattrs-include=*", "--same-owner", "-xpf", outTar, "-C", x);
    // The root's own mode, owner, mtime and xattrs travel as the member "./".
    const diffs = await compareTrees(src, x, { ignore: (rel) => sockets.has(rel) });
    expect(diffs).toEqual([]);
  }, 120_000);

  // From stdin the tar importer is a STREAM source that refuses a second import() (USAGE):
  // were the core to import twice (a counting pass), this backup would fail.
  it("tar+gz:- reads an archive from stdin (a STREAM source) and restore --to tar+gz:- writes one to stdout", async () => {
    const src = fresh("small");
    await fsp.mkdir(path.join(src, "d"), { recursive: true });
    await fsp.writeFile(path.join(src, "d", "one.txt"), "one\n");
    await fsp.writeFile(path.join(src, "two.bin"), prng(5, 700_000));
    await fsp.symlink("d/one.txt", path.join(src, "link"));
    const tgz = execFileSync("tar", ["--format=pax", "-C", src, "-czf", "-", "."]);
    const repo = await newRepo();
    const b = parseJson<{ id: string; files: number }>(await run(["at", repo, "backup", "--json", "tar+gz:-"], { input: tgz }));
    expect(b.files).toBe(2);
    const out = await run(["at", repo, "restore", "-q", "--to", "tar+gz:-", b.id.slice(0, 8)]);
    const x = fresh("x");
    await fsp.mkdir(x);
    execFileSync("tar", ["-xzpf", "-", "-C", x], { input: out.stdoutBytes });
    expect(await compareTrees(src, x)).toEqual([]);
  });

  it("a damaged archive is named and no snapshot is committed", async () => {
    const repo = await newRepo();
    const bad = fresh("bad.tar");
    const src = fresh("s");
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, "f"), prng(9, 300_000));
    gnuTar("-C", src, "-cf", bad, ".");
    await fsp.truncate(bad, 4096);
    const r = await run(["at", repo, "backup", `tar:${bad}`], { code: EXIT.ERROR });
    expect(r.stderr).toContain(bad);
    expect(parseJson<SnapJson[]>(await run(["at", repo, "ls", "--json"]))).toEqual([]);
  });
});

describe("ptar: a repository in one file", () => {
  it("create, backup, ls, restore and check work on x.ptar, which stays one file", async () => {
    const dir = fresh("ptar");
    await fsp.mkdir(dir);
    const repo = path.join(dir, "backups.ptar");
    await run(["at", repo, "create", ...FAST_KDF]);
    const src = fresh("src");
    await fsp.mkdir(path.join(src, "sub"), { recursive: true });
    await fsp.writeFile(path.join(src, "a.bin"), prng(3, 2 * 1024 * 1024));
    await fsp.writeFile(path.join(src, "sub", "b.txt"), "hello ptar\n");
    await fsp.symlink("sub/b.txt", path.join(src, "link"));
    const first = parseJson<{ id: string }>(await run(["at", repo, "backup", "--json", src]));
    await fsp.writeFile(path.join(src, "sub", "c.txt"), "second\n");
    const second = parseJson<{ id: string }>(await run(["at", repo, "backup", "--json", src]));
    expect(await fsp.readdir(dir)).toEqual(["backups.ptar"]);
    const snaps = parseJson<SnapJson[]>(await run(["at", repo, "ls", "--json"]));
    expect(snaps.map((x) => x.id)).toEqual([first.id, second.id]);
    await run(["at", repo, "check"]);
    const out = fresh("out");
    await run(["at", repo, "restore", "-q", "--to", out]);
    expect((await fsp.readFile(path.join(out, "a.bin"))).equals(Buffer.from(prng(3, 2 * 1024 * 1024)))).toBe(true);
    expect(await fsp.readFile(path.join(out, "sub", "c.txt"), "utf8")).toBe("second\n");
    expect(await fsp.readlink(path.join(out, "link"))).toBe("sub/b.txt");
    // ptar: and a bare path ending in .ptar are the same store.
    expect(parseJson<SnapJson[]>(await run(["at", `ptar:${repo}`, "ls", "--json"]))).toHaveLength(2);
  });

  it("a backup killed mid-way leaves the previous archive whole, and no half archive under the name", async () => {
    const dir = fresh("ptar");
    await fsp.mkdir(dir);
    const repo = path.join(dir, "r.ptar");
    await run(["at", repo, "create", ...FAST_KDF]);
    await run(["at", repo, "backup", "-q", "stdin:first"], { input: "first snapshot" });
    const before = await fsp.readFile(repo);
    const src = fresh("big");
    await fsp.mkdir(src);
    for (let i = 0; i < 40; i++) await fsp.writeFile(path.join(src, `f${i}`), prng(100 + i, 1024 * 1024));
    // A backup of stdin that is never ended cannot complete: killed once it has
    // started writing its session's temp file, it cannot have finished first.
    const child = spawn(process.execPath, [path.join(PROJECT_ROOT, "bin", "coffer.js"), "at", repo, "backup", "stdin:big"], {
      env: { ...env(), PATH: process.env.PATH ?? "" } as NodeJS.ProcessEnv,
      stdio: ["pipe", "ignore", "ignore"],
    });
    child.stdin!.on("error", () => {});
    const closed = new Promise((r) => child.on("close", r));
    async function* files() {
      for (let i = 0; i < 40; i++) yield* createReadStream(path.join(src, `f${i}`));
    }
    const fed = pipeline(files, child.stdin!, { end: false }).catch(() => {}); // ends with EPIPE once killed
    const t0 = Date.now();
    while (!(await fsp.readdir(dir)).some((n) => n.endsWith(".tmp")) && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 5));
    child.kill("SIGKILL");
    await closed;
    child.stdin!.destroy();
    await fed;
    expect((await fsp.readFile(repo)).equals(before)).toBe(true);
    const snaps = parseJson<SnapJson[]>(await run(["at", repo, "ls", "--json"]));
    expect(snaps.map((x) => x.source)).toEqual(["stdin:/first"]);
    await run(["at", repo, "check"]);
    await run(["at", repo, "backup", "-q", src]);
    expect(parseJson<SnapJson[]>(await run(["at", repo, "ls", "--json"]))).toHaveLength(2);
  });
});

const FILES = 120;
const fileContent = (i: number) => Buffer.from(prng(1000 + i, 48 * 1024 + i));
const fileName = (i: number) => `item-${String(i).padStart(4, "0")}.bin`;

function startFixture(repo: string, src: string, ackLog: string, holdAfter?: number): { child: ChildProcess; done: Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, "test", "fixtures", "needack-backup.mjs"), repo, src, ackLog, ...(holdAfter !== undefined ? [String(holdAfter)] : [])], {
    env: { ...env(), PATH: process.env.PATH ?? "" } as NodeJS.ProcessEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { child, done };
}

function ackedPaths(ackLog: string): string[] {
  return existsSync(ackLog) ? readFileSync(ackLog, "utf8").split("\n").filter((l) => l !== "") : [];
}

describe("NEEDACK: killed mid-backup", () => {
  it("every acknowledged record (deleted from its source) is restorable from the partial snapshot", async () => {
    const repo = await newRepo();
    const src = fresh("queue");
    await fsp.mkdir(src);
    for (let i = 0; i < FILES; i++) await fsp.writeFile(path.join(src, fileName(i)), fileContent(i));
    const ackLog = fresh("acks.log");

    // The first run holds after 60 files (it cannot complete): killed once 25 are acknowledged.
    const first = startFixture(repo, src, ackLog, 60);
    const t0 = Date.now();
    while (ackedPaths(ackLog).length < 25 && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 20));
    first.child.kill("SIGKILL");
    const end = await first.done;
    expect(end.signal, `fixture ended on its own: ${end.stdout} ${end.stderr}`).toBe("SIGKILL");

    const acked = ackedPaths(ackLog);
    expect(acked.length).toBeGreaterThanOrEqual(25);
    expect(acked.length).toBeLessThan(FILES);
    // What the source deleted, it had been told was safe.
    const left = new Set(await fsp.readdir(src));
    for (let i = 0; i < FILES; i++) if (!left.has(fileName(i))) expect(acked).toContain(`/${fileName(i)}`);

    const snaps = parseJson<SnapJson[]>(await run(["at", repo, "ls", "--json"]));
    expect(snaps).toHaveLength(1);
    expect(snaps[0]!.partial).toBe(true);
    const ls = await run(["at", repo, "ls"]);
    expect(ls.stdout).toContain("partial");
    await run(["at", repo, "check"]);

    const out = fresh("restored");
    await run(["at", repo, "restore", "-q", "--to", out, snaps[0]!.short]);
    for (const p of acked) {
      const i = Number(/item-(\d+)/.exec(p)![1]);
      const got = await fsp.readFile(path.join(out, p.slice(1)));
      expect(got.equals(fileContent(i)), p).toBe(true);
    }

    // The next run completes; the interrupted run's checkpoint stays listed beside it.
    const second = startFixture(repo, src, ackLog);
    const end2 = await second.done;
    expect(end2.code, end2.stderr).toBe(0);
    const snaps2 = parseJson<SnapJson[]>(await run(["at", repo, "ls", "--json"]));
    expect(snaps2.map((s) => Boolean(s.partial))).toEqual([true, false]);
    // Between the two snapshots, every item is kept, and the source is empty.
    expect(await fsp.readdir(src)).toEqual([]);
    const all = new Set(ackedPaths(ackLog));
    expect(all.size).toBe(FILES);
    const out2 = fresh("restored");
    await run(["at", repo, "restore", "-q", "--to", out2, snaps2[1]!.short]);
    for (const name of await fsp.readdir(out2)) {
      const i = Number(/item-(\d+)/.exec(name)![1]);
      expect((await fsp.readFile(path.join(out2, name))).equals(fileContent(i)), name).toBe(true);
    }
    expect((await fsp.readdir(out)).length + (await fsp.readdir(out2)).length).toBeGreaterThanOrEqual(FILES);
  }, 120_000);
});
